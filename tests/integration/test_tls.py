"""Optional TLS: on the public port, and between hosts (routers to remote workers)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import aiohttp
import pytest

from capsvc.testing.harness import Service
from capsvc.testing.hosts import CLUSTER_SECRET, cluster_host, wait_balanced
from capsvc.testing.zookeeper import ZooKeeper

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def _client_context(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _tls_config(cert, key) -> str:
    return f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\nca_file = "{cert}"\n'


def test_the_public_port_speaks_tls_and_only_tls(tmp_path, certificate):
    cert, key = certificate
    svc = Service(tmp_path / "data", workers=1, shard_count=2, extra_config=_tls_config(cert, key))
    svc.ssl_context = _client_context(cert)
    svc.start()
    try:
        assert svc.define_pool("tls-1", [("s", 2)])[0] == 201
        status, r, _ = svc.request("POST", "/v1/pools/tls-1/reservations", {"slot_id": "s"})
        assert status == 201 and svc.get(f"/v1/reservations/{r['reservation_id']}")[0] == 200

        async def plain():
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{svc.port}/healthz") as response:
                    return response.status

        with pytest.raises(aiohttp.ClientError):
            asyncio.run(plain())
    finally:
        assert svc.stop() == 0


def test_routers_reach_remote_workers_over_tls(tmp_path, certificate):
    cert, key = certificate
    zk = ZooKeeper(tmp_path / "zk").start()
    hosts = []
    try:
        for name in ("host-a", "host-b"):
            host = cluster_host(tmp_path / "shared", zk, name)
            host.config_path.write_text(host.config_path.read_text() + _tls_config(cert, key))
            host.ssl_context = _client_context(cert)
            hosts.append(host.start(ready=False))
        for host in hosts:
            host.wait_ready()
        wait_balanced(hosts[0], workers=4, shard_count=8)
        for i in range(8):
            assert hosts[0].define_pool(f"t-{i}", [("s", 5)])[0] == 201
            status, body, _ = hosts[1].request("POST", f"/v1/pools/t-{i}/reservations",
                                               {"slot_id": "s"})
            assert status == 201, body
        worker_port = int(hosts[0].config_path.read_text().split("worker_port_base = ")[1]
                          .split()[0])

        async def plain_to_worker():
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{worker_port}/internal/status",
                                       headers={"X-Capsvc-Cluster-Token": CLUSTER_SECRET}) as r:
                    return r.status

        with pytest.raises(aiohttp.ClientError):
            asyncio.run(plain_to_worker())
    finally:
        for host in hosts:
            host.kill_all()
        zk.stop()
