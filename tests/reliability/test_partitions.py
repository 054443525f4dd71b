"""Network partitions between real processes: one host runs in its own network namespace
(veth pair to the root namespace, where ZooKeeper and the other host stay), and nftables rules
inside that namespace drop chosen traffic. Needs root, `ip` and `nft`; skipped otherwise.

1. The host is cut off from ZooKeeper only (its routers and workers still reach everything
   else). Its workers stop acknowledging within the owner lease and close their files when a
   session timeout has passed; the other host claims the shards; on healing, the cut-off
   host rejoins and takes its share back by handoff.
2. Its router is cut off from the other host's workers (ZooKeeper still reachable): requests
   for those shards through this router time out (unknown outcome) and clients' retries
   through the other router succeed.
Both end with the history checker over the whole run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from capsvc.testing.checker import audit_shard_files
from capsvc.testing.harness import Service
from capsvc.testing.hosts import CLUSTER_SECRET, wait_balanced
from capsvc.testing.recorder import Workload
from capsvc.testing.zookeeper import ZooKeeper, free_port_range
from tests.reliability.cluster import SESSION_TIMEOUT_MS, wait_all_ready
from tests.reliability.common import check_run, define_pools, wait_writes_resume

pytestmark = [pytest.mark.cluster, pytest.mark.reliability]
NS, VETH_ROOT, VETH_NS = "capsvcrel", "crel0", "crel1"
ROOT_IP, NS_IP = "10.231.77.1", "10.231.77.2"
POOLS = [f"np-{i}" for i in range(12)]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _ns(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run("ip", "netns", "exec", NS, *argv, check=check)


@pytest.fixture
def namespace():
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")):
        pytest.skip("needs root, iproute2 and nftables (apt-get install -y iproute2 nftables)")
    _teardown()
    try:
        _run("ip", "netns", "add", NS)
        _run("ip", "link", "add", VETH_ROOT, "type", "veth", "peer", "name", VETH_NS)
        _run("ip", "link", "set", VETH_NS, "netns", NS)
        _run("ip", "addr", "add", f"{ROOT_IP}/24", "dev", VETH_ROOT)
        _run("ip", "link", "set", VETH_ROOT, "up")
        _ns("ip", "addr", "add", f"{NS_IP}/24", "dev", VETH_NS)
        _ns("ip", "link", "set", VETH_NS, "up")
        _ns("ip", "link", "set", "lo", "up")
        _ns("nft", "add", "table", "inet", NS)
        for chain, hook in (("out", "output"), ("in", "input")):
            _ns("nft", "add", "chain", "inet", NS, chain,
                f"{{ type filter hook {hook} priority 0 ; }}")
    except subprocess.CalledProcessError as e:
        _teardown()
        pytest.skip(f"cannot build a network namespace here: {e.stderr.strip()}")
    yield
    _teardown()


def _teardown() -> None:
    _run("ip", "link", "del", VETH_ROOT, check=False)
    _run("ip", "netns", "del", NS, check=False)


def cut(ports: list[int]) -> None:
    """Drop traffic between the namespace and the root side's `ports`, both ways."""
    spec = "{ " + ", ".join(map(str, ports)) + " }"
    _ns("nft", "add", "rule", "inet", NS, "out", "ip", "daddr", ROOT_IP, "tcp", "dport", spec,
        "drop")
    _ns("nft", "add", "rule", "inet", NS, "in", "ip", "saddr", ROOT_IP, "tcp", "sport", spec,
        "drop")


def heal() -> None:
    for chain in ("out", "in"):
        _ns("nft", "flush", "chain", "inet", NS, chain)


class VethZooKeeper(ZooKeeper):
    """ZooKeeper listening on the root side of the veth pair, reachable from the namespace."""

    def __init__(self, directory) -> None:
        super().__init__(directory)
        self.config.write_text(self.config.read_text().replace(
            "clientPortAddress=127.0.0.1", f"clientPortAddress={ROOT_IP}"))

    @property
    def hosts(self) -> str:
        return f"{ROOT_IP}:{self.port}"


class Host(Service):
    """A cluster host bound to `ip`, started inside network namespace `netns` if given."""

    def __init__(self, data, zk: ZooKeeper, host_id: str, ip: str, netns: str | None) -> None:
        self.ip, self.netns = ip, netns
        self.worker_port_base = free_port_range(2)
        super().__init__(
            data, workers=2, shard_count=8, config_name=f"host-{host_id}",
            service_extra=(f'host = "{ip if netns else "127.0.0.1"}"\nworker_host = "{ip}"\n'
                           f"worker_port_base = {self.worker_port_base}\n"),
            extra_config=(
                f'[cluster]\nzookeeper = "{zk.hosts}"\nname = "parts"\nhost_id = "{host_id}"\n'
                f'secret = "{CLUSTER_SECRET}"\nadvertise_host = "{ip}"\n'
                f"session_timeout_ms = {SESSION_TIMEOUT_MS}\nowner_lease_ms = 2000\n"
                "rebalance_delay_ms = 200\n"))

    def command_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.netns) if self.netns else ()

    @property
    def url(self) -> str:
        return f"http://{self.ip if self.netns else '127.0.0.1'}:{self.port}"


def test_partitions_from_zookeeper_and_between_router_and_worker_lose_nothing(
        tmp_path, namespace):
    """Faults (see the module docstring) under load through both routers. Properties: the cut
    off host's shards move and serve again within the session timeout plus a few seconds; no
    overbooking, nothing acknowledged lost, no key applied twice (history check); epochs
    never go back in any shard file."""
    zk = VethZooKeeper(tmp_path / "zk").start()
    data = tmp_path / "shared"
    a = Host(data, zk, "host-a", ROOT_IP, None).start(ready=False)
    b = Host(data, zk, "host-b", NS_IP, NS).start(ready=False)
    try:
        a.wait_ready()
        b.wait_ready()
        wait_balanced(a, workers=4, shard_count=8)
        define_pools(a, POOLS, {"s": 100_000})
        load = Workload([a.url, b.url], POOLS, clients=8, retry_s=30, tag="part").start()
        load.wait_flowing()

        cut([zk.port])
        cut_at = time.monotonic()
        took = wait_writes_resume(load, POOLS, cut_at + SESSION_TIMEOUT_MS / 1000, 30)
        moved = {s for s, row in _owners(a).items() if row["owner"]["host"] == "host-a"}
        print(f"host-b cut off from ZooKeeper: every pool written again "
              f"{took + SESSION_TIMEOUT_MS / 1000:.2f}s after the cut; host-a owns {len(moved)}"
              " of 8 shards")
        assert len(moved) == 8
        heal()
        healed_at = time.monotonic()
        wait_balanced(a, workers=4, shard_count=8, timeout_s=40)
        print(f"healed: balanced over both hosts again after {time.monotonic() - healed_at:.2f}s")

        cut([a.worker_port_base, a.worker_port_base + 1])
        time.sleep(3.0)  # the fault: the router reaches no remote worker for 3 s
        heal()
        wait_all_ready(a)
        wait_writes_resume(load, POOLS, time.monotonic())
        ops = load.stop()
        check_run(ops, a, POOLS).assert_ok()
    finally:
        for host in (a, b):
            host.kill_all()
        zk.stop()
    assert audit_shard_files(data) == []


def _owners(host: Service) -> dict[int, dict]:
    status, cluster = host.admin("GET", "/v1/admin/cluster")
    assert status == 200, cluster
    return {s["shard"]: s for s in cluster["shards"]}
