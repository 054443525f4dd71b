"""Observability and data care on a real service: one `/metrics` for every process, request
ids across processes, online backups while writes go on, restore into a fresh data directory
with identical pool states, and `verify` finding problems without changing anything.

The tests of this module run in order against one service (and then a second one started
from the restored backup)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from capsvc.cli import main as capsvc_main
from capsvc.config import load_config
from capsvc.ops import backup as ops_backup
from capsvc.ops.files import sha256_of
from capsvc.ops.verify import verify
from capsvc.testing.harness import REPO, Service, request, wait_for

pytestmark = pytest.mark.integration
KINDS = ("van", "bike")
POOLS = [f"care-{i}" for i in range(12)]


def capsvc(*args: str) -> subprocess.CompletedProcess:
    """The real command line, in its own process."""
    return subprocess.run([sys.executable, "-m", "capsvc", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same command line in this process (no interpreter start-up: faster)."""
    code = capsvc_main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def pool_states(svc: Service) -> dict[str, dict]:
    return {p: svc.get(f"/v1/pools/{p}")[1] for p in POOLS}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("care")
    svc = Service(root / "data", workers=2, shard_count=8)
    text = svc.config_path.read_text().replace('format = "text"', 'format = "json"')
    svc.config_path.write_text(text + 'request_log = "all"\n')  # lands in [logging]
    svc.start()
    for i, pool_id in enumerate(POOLS):
        assert svc.define_pool(pool_id, [("a", 3), ("b", 50)], kind=KINDS[i % 2])[0] == 201
    state = {"root": root, "svc": svc, "replays": 0, "exhausted": 0}
    for pool_id in POOLS[:4]:
        for n in range(4):  # the fourth one finds slot a full
            status, body, headers = svc.request(
                "POST", f"/v1/pools/{pool_id}/reservations", {"slot_id": "a"},
                {"Idempotency-Key": f"{pool_id}-{n}"})
            assert status == (201 if n < 3 else 409), body
        status, _, headers = svc.request(
            "POST", f"/v1/pools/{pool_id}/reservations", {"slot_id": "a"},
            {"Idempotency-Key": f"{pool_id}-0"})
        assert (status, headers.get("Idempotent-Replayed")) == (201, "true")
    state["replays"] = {"van": 2, "bike": 2}
    state["exhausted"] = {"van": 2, "bike": 2}
    yield state
    for key in ("svc", "restored"):
        if key in state and state[key].process.poll() is None:
            state[key].stop()


def test_one_scrape_of_the_router_covers_router_workers_and_supervisor(world):
    svc = world["svc"]
    status, text = svc.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}  # valid exposition

    def samples(name, **labels):
        return [s for s in families[name].samples
                if all(s.labels.get(k) == v for k, v in labels.items())]

    assert samples("capsvc_http_requests", route="/v1/pools/{pool_id}/reservations")
    workers = {s.labels["worker"] for s in samples("capsvc_worker_requests")}
    assert workers == {"w0", "w1"}
    latency = samples("capsvc_worker_request_duration_seconds",
                      route="/v1/pools/{pool_id}/reservations", status="409")
    assert any(s.name.endswith("_bucket") for s in latency)
    batches = samples("capsvc_commit_batch_commands")
    assert sum(s.value for s in batches if s.name.endswith("_count")) >= len(POOLS) + 12
    assert sum(s.value for s in samples("capsvc_commit_duration_seconds")
               if s.name.endswith("_count")) > 0
    for kind in KINDS:
        replays = samples("capsvc_idempotent_replays", kind=kind)
        exhausted = samples("capsvc_capacity_exhausted", kind=kind)
        assert sum(s.value for s in replays if s.name.endswith("_total")) == world["replays"][kind]
        assert sum(s.value for s in exhausted if s.name.endswith("_total")) == \
            world["exhausted"][kind]
    assert len(samples("capsvc_shard_owner")) == 8
    assert {s.labels["shard"] for s in samples("capsvc_shard_epoch")} == {str(i) for i in range(8)}
    assert len(samples("capsvc_shard_queue_depth")) == 8
    assert len(samples("capsvc_shard_replay_seconds")) == 8
    assert len(samples("capsvc_shard_recovery_duration_seconds")) > 0
    assert {s.labels["child"] for s in samples("capsvc_supervisor_child_up")} == {
        "worker 0", "worker 1", "router"}
    assert {s.labels["source"]: s.value for s in samples("capsvc_metrics_source_up")} == {
        "w0": 1.0, "w1": 1.0, "supervisor": 1.0}


def test_a_request_id_is_followed_from_router_to_worker_log_and_back(world):
    svc = world["svc"]
    status, _, headers = svc.request("GET", f"/v1/pools/{POOLS[0]}",
                                     headers={"X-Request-Id": "trace-4242"})
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and headers["x-request-id"] == "trace-4242"

    def worker_line():
        for line in svc.log_text().splitlines():
            if line.startswith("{") and '"trace-4242"' in line:
                entry = json.loads(line)
                if entry["role"].startswith("worker"):
                    return entry
        return None

    entry = wait_for(worker_line, 10, "the worker's log line with the request id")
    assert entry["request_id"] == "trace-4242" and entry["status"] == 200

    async def direct():  # the worker itself returns the id it was given
        config = load_config(svc.config_path)
        from capsvc.paths import worker_socket
        from capsvc.sharding import shard_for_pool
        index = shard_for_pool(POOLS[0], 8) % 2
        connector = aiohttp.UnixConnector(path=str(worker_socket(config, index)))
        async with aiohttp.ClientSession(connector=connector) as session:
            return await request(session, "http://worker", "GET", f"/v1/pools/{POOLS[0]}",
                                 headers={"X-Request-Id": "trace-direct"})

    status, _, headers = asyncio.run(direct())
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and headers["x-request-id"] == "trace-direct"


def test_online_backup_while_writes_go_on_is_consistent(world):
    """Writes continue during the backup; every copy is a consistent cut: it verifies (dense
    seqs, ordered epochs, every invariant) and the manifest matches the files."""
    svc, root = world["svc"], world["root"]
    stop = threading.Event()

    def writer():
        async def run():
            async with aiohttp.ClientSession() as session:
                n = 0
                while not stop.is_set():
                    pool_id = POOLS[4 + n % 8]
                    await request(session, svc.url, "POST",
                                  f"/v1/pools/{pool_id}/reservations", {"slot_id": "b"})
                    n += 1
        asyncio.run(run())

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = capsvc("backup", str(root / "during"), "--config", str(svc.config_path),
                        "--json")
    finally:
        stop.set()
        thread.join(10)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["mode"] == "online" and manifest["complete"]
    assert sorted(manifest["shards"]) == [f"{i:03d}" for i in range(8)]
    report = verify(load_config(svc.config_path), root / "during")
    assert report["ok"], report

    world["states"] = pool_states(svc)  # writes have stopped: this is the state to restore
    manifest = ops_backup.backup(load_config(svc.config_path), root / "quiet")
    assert manifest["complete"] and manifest["mode"] == "online"


def test_restore_and_verify_refuse_while_the_service_runs(world, capsys):
    svc, root = world["svc"], world["root"]
    result = cli(capsys, "restore", str(root / "quiet"), "--config", str(svc.config_path))
    assert result.returncode == 1 and "stop it first" in result.stderr
    result = cli(capsys, "verify", "--config", str(svc.config_path))
    assert result.returncode == 2 and "stop it first" in result.stderr
    assert svc.get("/readyz")[0] == 200


def test_offline_verify_checks_everything_and_changes_nothing(world, capsys):
    svc = world["svc"]
    assert svc.stop() == 0
    shards = svc.data_dir / "shards"
    before = {p.name: sha256_of(p) for p in shards.iterdir()}
    result = cli(capsys, "verify", "--config", str(svc.config_path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["shards"]) == 8
    assert sum(s["pools"] for s in report["shards"]) == len(POOLS)
    assert {p.name: sha256_of(p) for p in shards.iterdir()} == before


def test_a_backup_restored_into_a_fresh_data_directory_gives_identical_pools(world, capsys):
    root = world["root"]
    restored = Service(root / "fresh", workers=1, shard_count=8)
    result = cli(capsys, "restore", str(root / "quiet"), "--config", str(restored.config_path))
    assert result.returncode == 0, result.stderr
    world["restored"] = restored.start()
    assert pool_states(restored) == world["states"]
    # ... and the restored service takes writes where the backup left off.
    status, _, _ = restored.request("POST", f"/v1/pools/{POOLS[5]}/reservations",
                                    {"slot_id": "b"})
    assert status == 201
    assert restored.stop() == 0


def test_restore_over_existing_data_keeps_the_previous_files(world, capsys):
    root = world["root"]
    config_path = world["restored"].config_path
    result = cli(capsys, "restore", str(root / "quiet"), "--config", str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    previous = Path(json.loads(result.stdout)["previous_shards"])
    assert previous.name.startswith("shards.before-restore-")
    assert len(list(previous.glob("*.sqlite3"))) == 8


def test_offline_backup_when_the_service_is_stopped(world, capsys):
    svc, root = world["svc"], world["root"]
    result = cli(capsys, "backup", str(root / "offline"), "--config", str(svc.config_path),
                    "--json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["mode"] == "offline" and manifest["complete"]
    assert verify(load_config(svc.config_path), root / "offline")["ok"]


def test_verify_reports_damage_and_restore_refuses_a_tampered_backup(world, capsys):
    """Fault: a backup altered after the fact (an event's epoch moved back, a reservation
    grown past its slot). verify names each problem and exits 1; restore refuses the backup
    (checksums); the damaged file itself is left exactly as it was."""
    svc, root = world["svc"], world["root"]
    backup_dir = root / "offline"
    manifest = json.loads((backup_dir / "manifest.json").read_text())

    def reservations(entry):
        db = sqlite3.connect(backup_dir / entry["file"])
        try:
            return db.execute("SELECT count(*) FROM events WHERE type = 'CapacityReserved'"
                              ).fetchone()[0]
        finally:
            db.close()

    victim = next(backup_dir / e["file"] for e in manifest["shards"].values()
                  if not e.get("absent") and reservations(e) > 0)
    db = sqlite3.connect(victim)
    last = db.execute("SELECT max(seq) FROM events").fetchone()[0]
    db.execute("UPDATE events SET epoch = epoch - 1 WHERE seq = ?", (last,))
    first_reserve = db.execute(
        "SELECT min(seq) FROM events WHERE type = 'CapacityReserved'").fetchone()[0]
    db.execute("UPDATE events SET body = json_set(body, '$.units', 9999) WHERE seq = ?",
               (first_reserve,))
    db.commit()
    db.close()
    damaged = sha256_of(victim)

    result = cli(capsys, "verify", "--dir", str(backup_dir), "--config", str(svc.config_path))
    assert result.returncode == 1, result.stdout
    assert "checksum" in result.stdout
    assert f"seq {last}: epoch" in result.stdout
    assert f"seq {first_reserve}: replaying CapacityReserved breaks an invariant" in result.stdout
    assert sha256_of(victim) == damaged

    result = cli(capsys, "restore", str(backup_dir), "--config", str(svc.config_path))
    assert result.returncode == 1 and "checksum" in result.stderr
