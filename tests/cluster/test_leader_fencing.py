"""A deposed leader cannot write the shard assignment: the write is fenced by its own
election node, in one ZooKeeper transaction (real ZooKeeper, real kazoo)."""

from __future__ import annotations

import json
import uuid

import pytest
from kazoo.client import KazooClient

from capsvc.cluster.leader import Leader
from capsvc.cluster.zk import Zk
from capsvc.testing.harness import wait_for

pytestmark = pytest.mark.cluster


def _expire_session(hosts: str, client: KazooClient) -> None:
    """The classic trick: attach a second client to the same session and close it; the server
    ends the session (its ephemeral nodes go) and the first client learns it on reconnect."""
    session_id, password = client.client_id
    other = KazooClient(hosts=hosts, client_id=(session_id, password))
    other.start(timeout=10)
    other.stop()
    other.close()


@pytest.fixture
def layout(zookeeper):
    """A cluster root with three workers in the membership, kept by a client of their own (so
    that the leader's session ending does not change the membership)."""
    zk = Zk(zookeeper.hosts, f"fencing-{uuid.uuid4().hex[:8]}", session_timeout_ms=4000)
    members = KazooClient(hosts=zookeeper.hosts)
    members.start(timeout=10)
    for worker in ("w-a", "w-b", "w-c"):
        members.create(zk.path("workers", worker), b"{}", makepath=True)
    zk.client.start(timeout=10)
    yield zk, members
    zk.client.stop()
    zk.client.close()
    members.stop()
    members.close()


def test_a_leader_whose_session_expired_cannot_write_the_assignment(layout, zookeeper):
    """Fault: the leader's session expires (as when it is paused past the session timeout) and
    its client comes back with a new session. Property: its next assignment write is refused
    by ZooKeeper (its election node is gone), and the assignment stays as it was."""
    zk, members = layout
    leader = Leader(zk, "w-a", shard_count=6, rebalance_delay_ms=0)
    assert leader.election.lock.acquire(timeout=10), "elected"
    assert leader._rebalance(), "the elected leader writes the first assignment"
    path = zk.path("assignment")
    before_raw, before_stat = members.get(path)
    assert sorted(json.loads(before_raw)["workers"]) == ["w-a", "w-b", "w-c"]

    old_session = zk.client.client_id[0]
    _expire_session(zookeeper.hosts, zk.client)
    wait_for(lambda: zk.client.connected and zk.client.client_id[0] != old_session, 20,
             "the deposed leader's client to be back, on a new session")
    members.delete(zk.path("workers", "w-c"))  # a change that calls for a new assignment

    refused = None
    try:
        leader._rebalance()
    except Exception as e:  # noqa: BLE001 - what the refusal looks like is checked below
        refused = e
    raw, stat = members.get(path)
    assert (raw, stat.version) == (before_raw, before_stat.version), (
        "a deposed leader wrote the assignment")
    from capsvc.cluster.leader import LeadershipLost

    assert isinstance(refused, LeadershipLost), refused
