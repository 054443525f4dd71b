"""Fixtures shared across the suite."""

from __future__ import annotations

import pytest

from capsvc.testing.harness import Service
from capsvc.testing.zookeeper import ZooKeeper


@pytest.fixture(scope="session")
def shared_zookeeper(tmp_path_factory):
    """One ZooKeeper for every cluster test that does not stop it: each cluster of hosts gets
    its own root under it (`capsvc.testing.hosts.cluster_host`), so tests do not meet."""
    zk = ZooKeeper(tmp_path_factory.mktemp("shared-zk")).start()
    yield zk
    zk.stop()


@pytest.fixture
def zookeeper(request, tmp_path, shared_zookeeper):
    """The shared ZooKeeper, or (`@pytest.mark.own_zookeeper`, for tests that stop or restart
    it) one of the test's own."""
    if request.node.get_closest_marker("own_zookeeper") is None:
        yield shared_zookeeper
        return
    zk = ZooKeeper(tmp_path / "zk").start()
    yield zk
    zk.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    """One running capsvc (2 workers, 8 shards, embedded) for every test that needs only *a*
    service and keeps to pools of its own; a module that needs other settings defines its own
    `service`. It must stop cleanly, having logged no unhandled error."""
    svc = Service(tmp_path_factory.mktemp("shared-service") / "data").start()
    yield svc
    assert svc.stop() == 0, svc.log_text()[-3000:]
    assert "unhandled error" not in svc.log_text(), svc.log_text()[-3000:]
