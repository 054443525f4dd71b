"""Storage faults on a real filesystem: a full disk under the data directory, a damaged shard
file. Writes fail closed with 503, reads go on, memory never runs ahead of the disk."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess

import pytest

from capsvc.cli import main as capsvc_main
from capsvc.sharding import shard_for_pool
from capsvc.testing.harness import Service, days_from_today, wait_for

# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
pytestmark = pytest.mark.integration


@contextlib.contextmanager
def small_tmpfs(path, size_kib: int):
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory, name="filler") -> str:
    """Write until the filesystem is full; return the filler's path."""
    path = os.path.join(directory, name)
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:  # the last few pages, one at a time
                f.write(b"\0" * 4096)
    return path


def test_disk_full_fails_writes_keeps_reads_and_recovers_by_itself(tmp_path):
    """Fault: the data directory's filesystem fills up. Property: reserves answer 503
    storage_full and change nothing (GET is identical), reads keep working, and once space
    is freed, writes succeed again without a restart."""
    with small_tmpfs(tmp_path / "mnt", 8192) as mnt:
        svc = Service(mnt / "data", workers=1, shard_count=1).start()
        try:
            assert svc.define_pool("full-1", [("s", 1000)])[0] == 201
            assert svc.request("POST", "/v1/pools/full-1/reservations", {"slot_id": "s"})[0] == 201
            before = svc.get("/v1/pools/full-1")
            filler = fill(mnt)
            failures = []
            for i in range(20):  # enough commits to need fresh pages in the WAL
                status, body, headers = svc.request(
                    "POST", "/v1/pools/full-1/reservations", {"slot_id": "s", "order_ref": "x" * 100},
                    {"Idempotency-Key": f"full-{i}"})
                if status != 201:
                    failures.append((status, body["code"], headers.get("Retry-After")))
                    break
            assert failures, "the disk never filled up"
            assert failures[0][:2] == (503, "storage_full") and failures[0][2] is not None
            during = svc.get("/v1/pools/full-1")
            assert during[0] == 200
            assert during[1]["total_reserved"] >= before[1]["total_reserved"]
            status, grid = svc.get(f"/v1/availability?region=sg-north&date={D1}")
            assert status == 200 and grid["pools"][0]["pool_id"] == "full-1"
            # The failed request changed nothing: retrying the same key later applies it once.
            reserved_during = during[1]["total_reserved"]
            os.remove(filler)
            status, body, _ = svc.request(
                "POST", "/v1/pools/full-1/reservations", {"slot_id": "s", "order_ref": "x" * 100},
                {"Idempotency-Key": f"full-{i}"})
            assert status == 201
            after = svc.get("/v1/pools/full-1")[1]
            assert after["total_reserved"] == reserved_during + 1
        finally:
            assert svc.stop() == 0


def test_a_damaged_shard_file_fails_closed_and_other_shards_serve(tmp_path):
    """Fault: one shard file is overwritten with garbage while the service is down.
    Property: that shard reports failed (in /readyz and /v1/admin/cluster) with a clear
    error, every other shard keeps serving, and the host does not crash-loop."""
    svc = Service(tmp_path / "data", workers=1, shard_count=4).start()
    pools = {}
    for i in range(40):
        pool_id = f"bad-{i}"
        assert svc.define_pool(pool_id, [("s", 3)])[0] == 201
        pools[pool_id] = svc.admin("GET", "/v1/admin/cluster")[1]
    assert svc.stop() == 0
    victim = tmp_path / "data" / "shards" / "002.sqlite3"
    victim.write_bytes(b"this is not a database" * 1000)
    svc.start(ready=False)
    try:
        wait_for(lambda: svc.port, 30, "the listening line")

        def shard_states():
            status, cluster = svc.admin("GET", "/v1/admin/cluster")
            return {s["shard"]: s for s in cluster["shards"]} if status == 200 else None

        states = wait_for(lambda: (s := shard_states()) and all(
            v["state"] != "unowned" for v in s.values()) and s, 30, "the shards to report")
        assert states[2]["state"] == "failed" and "shard_corrupt" in states[2]["failure"]
        assert all(states[s]["state"] == "ready" for s in (0, 1, 3))
        status, problem = svc.get("/readyz")
        assert status == 503 and problem["shards_not_ready"] == [2]
        served = failed = 0
        for pool_id in pools:
            status, body = svc.get(f"/v1/pools/{pool_id}")
            if status == 200:
                served += 1
            else:
                assert (status, body["code"]) == (503, "shard_unavailable")
                failed += 1
        assert served > 0 and failed > 0
        assert "capsvc: worker 0" in svc.child_pids()
        assert "exited with" not in svc.log_text()  # no crash loop
    finally:
        assert svc.stop() == 0


def test_a_damaged_snapshot_costs_its_pool_one_rebuild_and_nothing_else(tmp_path, capsys):
    """Fault: the reservations in one pool's snapshot are cut short while the service is down
    (the snapshot still parses up to its reservations, so the shard opens).
    Property: reads and idempotent replays answer exactly as before and new reservations are
    taken; the pool is rebuilt from its events once (`capsvc_pool_rebuilds_total`), its
    snapshot is sound again (`capsvc verify` passes), and no process restarts."""
    svc = Service(tmp_path / "data", workers=1, shard_count=2).start()
    assert svc.define_pool("dmg-1", [("s", 50)])[0] == 201
    made = {}
    for i in range(5):
        status, body, _ = svc.request("POST", "/v1/pools/dmg-1/reservations",
                                      {"slot_id": "s", "order_ref": f"o{i}"},
                                      {"Idempotency-Key": f"k{i}"})
        assert status == 201
        made[f"k{i}"] = body
    assert svc.request("DELETE", f"/v1/reservations/{made['k1']['reservation_id']}")[0] == 200
    seen = {k: svc.get(f"/v1/reservations/{b['reservation_id']}") for k, b in made.items()}
    pool_before = svc.get("/v1/pools/dmg-1")
    assert svc.stop() == 0  # a drain: every pool gets its snapshot
    victim = tmp_path / "data" / "shards" / f"{shard_for_pool('dmg-1', 2):03d}.sqlite3"
    db = sqlite3.connect(victim)
    (body,) = db.execute("SELECT body FROM snapshots WHERE pool_id = 'dmg-1'").fetchone()
    header, columns = body.split("\n")
    db.execute("UPDATE snapshots SET body = ? WHERE pool_id = 'dmg-1'", (f"{header}\n{columns[:-7]}",))
    db.commit()
    db.close()

    svc.start()
    pids = svc.child_pids()
    assert svc.get("/v1/pools/dmg-1") == pool_before  # the header alone answers this
    for key, body in made.items():
        assert svc.get(f"/v1/reservations/{body['reservation_id']}") == seen[key]
    status, again, headers = svc.request("POST", "/v1/pools/dmg-1/reservations",
                                         {"slot_id": "s", "order_ref": "o0"},
                                         {"Idempotency-Key": "k0"})
    assert (status, again, headers.get("Idempotent-Replayed")) == (201, made["k0"], "true")
    status, fresh, _ = svc.request("POST", "/v1/pools/dmg-1/reservations", {"slot_id": "s"})
    assert status == 201 and fresh["reservation_id"] not in {b["reservation_id"] for b in made.values()}
    assert svc.get("/v1/pools/dmg-1")[1]["total_reserved"] == pool_before[1]["total_reserved"] + 1
    status, text, _ = svc.request("GET", "/metrics")
    rebuilds = [line for line in text.splitlines() if line.startswith("capsvc_pool_rebuilds_total")]
    assert len(rebuilds) == 1 and rebuilds[0].endswith(" 1.0"), rebuilds
    assert svc.child_pids() == pids and "exited with" not in svc.log_text()
    assert svc.stop() == 0
    code = capsvc_main(["verify", "--config", str(svc.config_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
