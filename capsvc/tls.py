"""TLS contexts from the configuration, built in one place.

Public port: a server context with this host's certificate. Between hosts: workers serve
their TCP port with the same certificate, and routers verify remote workers against
`tls.ca_file` (the cluster secret still authenticates every request on top of it).
"""

from __future__ import annotations

import ssl

from capsvc.config import Config


def server_context(config: Config) -> ssl.SSLContext | None:
    if not config.tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls.cert_file, config.tls.key_file)
    return context


def worker_server_context(config: Config) -> ssl.SSLContext | None:
    return server_context(config) if config.tls.between_hosts else None


def client_context(config: Config) -> ssl.SSLContext | None:
    """For routers talking to workers on other hosts."""
    if not (config.tls.enabled and config.tls.between_hosts):
        return None
    context = ssl.create_default_context(cafile=config.tls.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
