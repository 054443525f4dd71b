"""A worker's TCP port (`service.worker_port_base + index`), bound before anything else.

A port another program holds stays held: restarting the worker cannot help. So the worker
binds it first, before ZooKeeper and before any shard file opens, and if that fails it exits
with `EXIT_CANNOT_LISTEN`; the supervisor then stops the whole service (non-zero) instead of
restarting the worker forever behind a service that never becomes ready.
"""

from __future__ import annotations

import logging
import os
import socket

from capsvc.config import Config

log = logging.getLogger(__name__)
EXIT_CANNOT_LISTEN = 78  # EX_CONFIG (sysexits.h): the supervisor gives up on this one


def worker_address(config: Config, index: int) -> str:
    host = config.service.worker_host
    return f"{f'[{host}]' if ':' in host else host}:{config.service.worker_port_base + index}"


def bind_worker_port(config: Config, index: int) -> socket.socket | None:
    """The listening TCP socket of worker `index` (None without `worker_port_base`).

    Connections that arrive before the worker serves wait in the backlog. On failure the
    process exits with EXIT_CANNOT_LISTEN.
    """
    if not config.service.worker_port_base:
        return None
    host, port = config.service.worker_host, config.service.worker_port_base + index
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family, backlog=1024)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno and e.errno > 0 else str(e)  # < 0: DNS
        log.error(
            "worker %d cannot listen on %s (service.worker_host, service.worker_port_base + %d): %s",
            index,
            worker_address(config, index),
            index,
            reason,
        )
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
