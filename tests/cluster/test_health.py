"""Health and cluster-view routes on a surviving host while another host dies, freezes, or
ZooKeeper is away: never a 5xx, every answer in time, readiness per host.

Contract: `/healthz`, `/readyz` and `/v1/admin/cluster` answer within 1 s, from what the router
knows. The tests allow ANSWER_WITHIN_S = 1.5 s: this machine has 2 cores shared with other
work, and a scheduling hiccup is not what these tests are about (before the fix the cluster
view took over 2 s, and answered 500)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from capsvc.testing.harness import wait_for
from capsvc.testing.hosts import running_hosts, shard_owners

pytestmark = pytest.mark.cluster
ANSWER_WITHIN_S = 1.5  # the contract's 1 s, plus a margin for this noisy 2-core machine
SESSION_TIMEOUT_S = 3.0
HOST = "/readyz"
CLUSTER = "/readyz?scope=cluster"
VIEW = "/v1/admin/cluster"
HEALTH = "/healthz"


@dataclass(frozen=True)
class Answer:
    at: float
    path: str
    status: int
    seconds: float
    body: Any


class Poller:
    """Asks one router the health routes over and over, in a thread, and keeps every answer."""

    def __init__(self, host, paths=(VIEW, HOST, CLUSTER, HEALTH)) -> None:
        self.port, self.token, self.paths = host.port, host.admin_token, paths
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(10)
        return list(self.answers)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                self.answers.append(self._ask(path))

    def _ask(self, path: str) -> Answer:
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except OSError as e:  # no answer at all: as bad as a 5xx
            status, raw = 599, str(e).encode()
        finally:
            connection.close()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return Answer(started, path, status, time.monotonic() - started, body)

    def since(self, at: float, path: str) -> list[Answer]:
        return [a for a in list(self.answers) if a.at >= at and a.path == path]

    def rounds_since(self, at: float) -> int:
        return len(self.since(at, self.paths[0]))


@pytest.fixture
def cluster(tmp_path, zookeeper):
    """Two hosts of two workers over 8 shards."""
    with running_hosts(tmp_path / "shared", zookeeper, "ab") as hosts:
        yield hosts


def _owned_by(host, host_id: str) -> set[int]:
    return {s for s, row in shard_owners(host).items()
            if row["owner"] and row["owner"]["host"] == host_id}


def _assert_in_time_and_no_5xx(answers: list[Answer]) -> None:
    """Every answer within ANSWER_WITHIN_S; no 5xx but the cluster scope's 503 (that is its
    job: a shard has no ready owner)."""
    slow = [(a.path, round(a.seconds, 2)) for a in answers if a.seconds > ANSWER_WITHIN_S]
    assert not slow, f"answers slower than {ANSWER_WITHIN_S}s: {slow[:10]}"
    failed = [(a.path, a.status, a.body) for a in answers
              if a.status >= 500 and not (a.path == CLUSTER and a.status == 503)]
    assert not failed, f"5xx answers: {failed[:5]}"


def test_a_survivor_answers_in_time_and_stays_ready_while_a_host_is_killed(cluster):
    """Fault: kill -9 of every process of one host of two, while the other's health routes are
    asked continuously. Property: never a 5xx (the cluster scope's 503 aside), every answer in
    time; the survivor's `/readyz` stays 200 throughout, while `?scope=cluster` is 503 until the
    dead host's shards moved, and 200 after."""
    a, b = cluster
    poller = Poller(a).start()
    try:
        wait_for(lambda: any(x.status == 200 for x in poller.since(0, CLUSTER)), 10,
                 "the cluster scope to be ready before the kill")
        moved = _owned_by(a, "host-b")
        killed_at = time.monotonic()
        b.kill_all()
        wait_for(lambda: any(x.status == 503 for x in poller.since(killed_at, CLUSTER)), 10,
                 "the cluster scope to report the dead host's shards")
        wait_for(lambda: not _owned_by(a, "host-b") and all(
            row["state"] == "ready" for row in shard_owners(a).values()), 20, "b's shards to move")
        moved_at = time.monotonic()
        wait_for(lambda: any(x.status == 200 for x in poller.since(moved_at, CLUSTER)), 10,
                 "the cluster scope to be ready again")
        # keep asking a while longer: the 500s came when the dead workers left the membership
        wait_for(lambda: poller.rounds_since(moved_at) >= 20, 20, "more rounds after the move")
    finally:
        answers = poller.stop()
    after = [x for x in answers if x.at >= killed_at]
    assert moved and len([x for x in after if x.path == HOST]) >= 20
    _assert_in_time_and_no_5xx(answers)
    not_ready = [(x.status, x.body) for x in answers if x.path == HOST and x.status != 200]
    assert not not_ready, f"the survivor's own readiness failed: {not_ready[:3]}"
    problems = [x.body for x in after if x.path == CLUSTER and x.status == 503]
    assert all(p["code"] == "shard_unavailable" for p in problems)
    assert any(set(p["shards_not_ready"]) & moved for p in problems)
    assert [x.status for x in answers if x.path == CLUSTER][-1] == 200
    views = [x.body for x in after if x.path == VIEW]
    assert any(not w["reachable"] for v in views for w in v["workers"]
               if w["worker"].startswith("host-b")), "the dead workers are marked unreachable"


def test_a_frozen_host_leaves_the_other_ready_and_the_cluster_scope_names_its_shards(cluster):
    """Fault: SIGSTOP of every process of one host for ~8 s (past its session timeout), then
    SIGCONT. Property: the other host's `/readyz` stays 200 throughout; `?scope=cluster` names
    the frozen host's shards meanwhile; every answer in time, no other 5xx; after SIGCONT every
    scope of both hosts is 200 again."""
    a, b = cluster
    frozen = _owned_by(a, "host-b")
    poller = Poller(a).start()
    try:
        wait_for(lambda: poller.rounds_since(0) >= 3, 10, "a few rounds before the freeze")
        frozen_at = time.monotonic()
        os.killpg(b.process.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: any(
                x.status == 503 and frozen <= set(x.body.get("shards_not_ready", []))
                for x in poller.since(frozen_at, CLUSTER)), 10,
                "the cluster scope to name the frozen shards")
            # issue 14 item 6: the view names who still holds each file, and since when
            wait_for(lambda: _files_held_by(a, frozen, "host-b"), 15,
                     "the cluster view to name host-b as holding its shards' files")
            # the freeze lasts until the poller has answers from 8 s into it
            wait_for(lambda: poller.since(frozen_at + 8.0, HOST), 20, "an 8 s freeze")
        finally:
            os.killpg(b.process.pid, signal.SIGCONT)
        woke_at = time.monotonic()
        wait_for(lambda: any(x.status == 200 for x in poller.since(woke_at, CLUSTER)), 40,
                 "the cluster scope to be ready again after SIGCONT")
        wait_for(lambda: b.get(CLUSTER)[0] == 200 and b.get(HOST)[0] == 200, 30,
                 "the woken host to be ready again")
    finally:
        answers = poller.stop()
    assert frozen
    _assert_in_time_and_no_5xx(answers)
    during = [x for x in answers if frozen_at <= x.at <= woke_at]
    assert len([x for x in during if x.path == HOST]) >= 10
    not_ready = [(x.status, x.body) for x in answers if x.path == HOST and x.status != 200]
    assert not not_ready, f"the other host's own readiness failed: {not_ready[:3]}"
    assert a.get(HOST)[0] == 200 and a.get(CLUSTER)[0] == 200
    # one line when a wait begins and one when it ends, per shard: not one per retry (the
    # freeze lasted some 16 retries); a wait ends with the file, or with the shard moving on
    log = a.log_text()
    held = log.count("shard file still held by its previous owner")
    assert 1 <= held <= len(frozen), held
    ended = (log.count("shard file let go by its previous owner")
             + log.count("stopped waiting for the shard file"))
    assert 1 <= ended <= held, (ended, held)


def _files_held_by(host, shards: set[int], holder: str) -> bool:
    """Whether every shard of `shards` is claimed on `host`'s side and shown waiting for
    `holder` to let go of its file (with the time the wait began)."""
    rows = {r["shard"]: r for r in host.admin("GET", VIEW)[1]["shards"]}
    waits = [rows[s].get("waiting_for_file") for s in shards]
    return all(w is not None and w["held_by"] and w["held_by"]["host_id"] == holder
               and w["since"].endswith("Z") for w in waits)


@pytest.mark.own_zookeeper
def test_during_a_zookeeper_outage_the_cluster_view_marks_owners_unconfirmed(cluster, zookeeper):
    """Fault: ZooKeeper stops (past the session timeout, so the workers close their files).
    Property: `/v1/admin/cluster` answers in time, with the last owners it knew, marked
    unconfirmed (document and rows), never "unowned"; `/readyz` says the owner view is not
    current."""
    a, _b = cluster
    before = {s: row["owner"]["worker_id"] for s, row in shard_owners(a).items()}
    poller = Poller(a, paths=(VIEW, HOST)).start()
    try:
        stopped_at = time.monotonic()
        zookeeper.stop()
        wait_for(lambda: any(x.status == 200 and x.body.get("owners_confirmed") is False
                             for x in poller.since(stopped_at, VIEW)), 10,
                 "the cluster view to mark its owners unconfirmed")
        # past the owners' lease: they close their files, so the live numbers go missing
        wait_for(lambda: any(x.status == 200 and not any(r["live"] for r in x.body["shards"])
                             for x in poller.since(stopped_at, VIEW)), 20,
                 "the workers to let go of their files")
        unconfirmed_at = time.monotonic()
        wait_for(lambda: poller.rounds_since(unconfirmed_at) >= 5, 10, "a few more rounds")
    finally:
        answers = poller.stop()
    after = [x for x in answers if x.at >= stopped_at]
    slow = [(x.path, round(x.seconds, 2)) for x in after if x.seconds > ANSWER_WITHIN_S]
    assert not slow, f"answers slower than {ANSWER_WITHIN_S}s: {slow[:10]}"
    views = [x.body for x in after if x.path == VIEW and x.body.get("owners_confirmed") is False]
    assert views and all(x.status == 200 for x in after if x.path == VIEW)
    for view in views:
        for row in view["shards"]:
            assert row["state"] != "unowned", row
            assert row["owner"]["worker_id"] == before[row["shard"]], row
            assert row["owner_confirmed"] is False
            if not row["live"]:
                assert row["state"] == "unconfirmed", row
    last = [x for x in after if x.path == HOST][-1]
    assert last.status == 503 and last.body["code"] == "shard_unavailable"
    assert last.body["owners_confirmed"] is False and "zookeeper" in last.body["detail"]


def test_the_pool_list_leaves_out_a_frozen_hosts_workers_and_says_so(cluster):
    """Fault: one host SIGSTOPped. Property: the other router's `/v1/admin/pools` answers in
    time with the pools it could get, `complete: false`, and names the workers that did not
    answer (it used to wait the full request timeout and fail)."""
    a, b = cluster
    path = "/v1/admin/pools"
    status, whole = a.admin("GET", path)
    assert status == 200 and whole["complete"] is True and whole["workers_not_answering"] == []
    os.killpg(b.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, partial = a.admin("GET", path)
        took = time.monotonic() - started
    finally:
        os.killpg(b.process.pid, signal.SIGCONT)
    assert status == 200, partial
    assert took < 4, f"the list took {took:.1f}s"
    assert partial["complete"] is False
    assert partial["workers_not_answering"]
    assert all(name.startswith("host-b") for name in partial["workers_not_answering"])
