"""Many hosts with a real ZooKeeper: ownership is balanced and every router serves every pool."""

from __future__ import annotations

import pytest

from capsvc.testing.harness import days_from_today, wait_for
from capsvc.testing.hosts import cluster_host, shard_owners, wait_balanced

# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
pytestmark = pytest.mark.cluster


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


def test_every_router_grid_follows_every_shard_and_catches_up_after_a_failover(tmp_path,
                                                                             zookeeper):
    """The availability grid on each router is fed from every shard in the cluster: a slot
    filled through one host turns unbookable on the other host's grid within a second, and
    after the owning host dies the grid keeps the pools and follows the new owners."""
    data = tmp_path / "shared"
    a = cluster_host(data, zookeeper, "host-a").start(ready=False)
    b = cluster_host(data, zookeeper, "host-b").start(ready=False)
    try:
        a.wait_ready()
        b.wait_ready()
        wait_balanced(a, workers=4, shard_count=8)
        pools = [f"g-{i}" for i in range(8)]
        for pool_id in pools:
            assert a.define_pool(pool_id, [("s", 1), ("t", 5)], region="grid")[0] == 201

        def bookable(host):
            status, grid = host.get(f"/v1/availability?region=grid&date={D1}")
            assert status == 200
            return {p["pool_id"]: [s["bookable"] for s in p["slots"]] for p in grid["pools"]}

        wait_for(lambda: bookable(b) == {p: [True, True] for p in pools}, 1.5, "grid on b")
        for pool_id in pools[:4]:
            assert a.request("POST", f"/v1/pools/{pool_id}/reservations", {"slot_id": "s"})[0] == 201
        wait_for(lambda: all(bookable(b)[p] == [False, True] for p in pools[:4]), 1.5,
                 "filled slots unbookable on b's grid")
        b.kill_all()
        wait_balanced(a, workers=2, shard_count=8)
        for pool_id in pools[4:]:
            status, body, _ = a.request("POST", f"/v1/pools/{pool_id}/reservations",
                                        {"slot_id": "s"})
            assert status == 201, body
        expected = {p: [False, True] for p in pools}
        wait_for(lambda: bookable(a) == expected, 1.5, "a's grid after the failover")
    finally:
        a.kill_all()
        b.kill_all()
