"""Many hosts with a real ZooKeeper: ownership is balanced and every router serves every pool."""

from __future__ import annotations

import pytest

from tests.cluster.hosts import cluster_host, shard_owners, wait_balanced
from tests.cluster.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster


@pytest.fixture
def zookeeper(tmp_path):
    zk = ZooKeeper(tmp_path / "zk").start()
    yield zk
    zk.stop()


def test_two_hosts_share_the_shards_and_route_across_hosts(tmp_path, zookeeper):
    data = tmp_path / "shared"
    a = cluster_host(data, zookeeper, "host-a").start(ready=False)
    b = cluster_host(data, zookeeper, "host-b").start(ready=False)
    try:
        a.wait_ready()
        b.wait_ready()
        owners = wait_balanced(a, workers=4, shard_count=8)
        assert {s["owner"]["host"] for s in owners.values()} == {"host-a", "host-b"}
        assert all(s["epoch"] >= 1 for s in owners.values())
        for i in range(12):
            assert a.define_pool(f"x-{i}", [("s", 5)])[0] == 201
        for i in range(12):
            status, r, _ = b.request("POST", f"/v1/pools/x-{i}/reservations", {"slot_id": "s"})
            assert status == 201, r
            assert a.get(f"/v1/reservations/{r['reservation_id']}")[0] == 200
            assert a.get(f"/v1/pools/x-{i}")[1]["total_reserved"] == 1
        assert shard_owners(b).keys() == owners.keys()
    finally:
        assert b.stop() == 0, b.log_text()[-3000:]
        assert a.stop() == 0, a.log_text()[-3000:]
