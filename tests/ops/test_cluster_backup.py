"""In a cluster, one `capsvc backup` on one host backs up every shard of every host: it asks
each shard's ready owner (found in ZooKeeper) for an online copy over HTTP with the cluster
secret; the copies land on the shared mount and verify."""

from __future__ import annotations

import pytest

from capsvc.config import load_config
from capsvc.ops.backup import backup
from capsvc.ops.verify import verify
from capsvc.testing.hosts import cluster_host, wait_balanced
from capsvc.testing.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster


def test_one_backup_command_covers_every_host(tmp_path):
    zk = ZooKeeper(tmp_path / "zk").start()
    data = tmp_path / "shared"
    a = cluster_host(data, zk, "host-a", workers=1, shard_count=4).start(ready=False)
    b = cluster_host(data, zk, "host-b", workers=1, shard_count=4).start(ready=False)
    try:
        a.wait_ready()
        b.wait_ready()
        owners = wait_balanced(a, workers=2, shard_count=4)
        assert {s["owner"]["host"] for s in owners.values()} == {"host-a", "host-b"}
        for i in range(8):
            assert a.define_pool(f"cb-{i}", [("s", 5)])[0] == 201
        config = load_config(a.config_path)
        manifest = backup(config, tmp_path / "shared-backups" / "one")
        assert manifest["mode"] == "online" and manifest["complete"], manifest
        assert sorted(manifest["shards"]) == ["000", "001", "002", "003"]
        # Each host's worker copied the shards it owns.
        assert "shard backed up" in a.log_text() and "shard backed up" in b.log_text()
        report = verify(config, tmp_path / "shared-backups" / "one")
        assert report["ok"] and sum(s["pools"] for s in report["shards"]) == 8
    finally:
        assert b.stop() == 0, b.log_text()[-3000:]
        assert a.stop() == 0, a.log_text()[-3000:]
        zk.stop()
