"""The checker judges every fault test, so it must be able to fail: each known-bad history
below is reported, and each good one (unknown outcomes included) is accepted."""

from __future__ import annotations

import sqlite3

import pytest

from capsvc.testing.checker import (
    Op,
    PoolFacts,
    SearchTooLarge,
    audit_shard_files,
    check,
    linearize,
)

P = "p"


class Log:
    """Builds a pool's audit log the way /v1/admin/pools/{id}/events shows it."""

    def __init__(self, capacity: int = 2, total: int | None = None, epoch: int = 1) -> None:
        self.events: list[dict] = []
        self.epoch = epoch
        self.add("PoolDefined", pool_id=P, kind="k", region="r", date="2026-12-01",
                 total_capacity=total, slots=[["s", "a", "b", capacity]])

    def add(self, event_type: str, epoch: int | None = None, **data) -> int:
        version = len(self.events) + 1
        self.events.append({"seq": version, "version": version, "type": event_type,
                            "epoch": epoch or self.epoch, "at_ms": 0, "data": data})
        return version

    def reserve(self, rid: str, key: str | None, units: int = 1, epoch: int | None = None) -> int:
        return self.add("CapacityReserved", epoch, reservation_id=rid, slot_id="s", units=units,
                        order_ref=None, idempotency_key=key, at_ms=0)

    def release(self, rid: str) -> int:
        return self.add("ReservationReleased", reservation_id=rid, at_ms=0)

    def facts(self, final_reserved: int | None = None, active: dict | None = None) -> PoolFacts:
        reserved = final_reserved if final_reserved is not None else self._reserved()
        final = {"pool_id": P, "version": len(self.events), "total_reserved": reserved,
                 "slots": [{"slot_id": "s", "capacity": self._capacity(),
                            "reserved": reserved}]}
        return PoolFacts(P, self.events, final, active or {})

    def _capacity(self) -> int:
        cap = self.events[0]["data"]["slots"][0][3]
        for e in self.events:
            if e["type"] == "SlotCapacityChanged":
                cap = e["data"]["capacity"]
        return cap

    def _reserved(self) -> int:
        units: dict[str, int] = {}
        for e in self.events:
            if e["type"] == "CapacityReserved":
                units[e["data"]["reservation_id"]] = e["data"]["units"]
            elif e["type"] == "ReservationReleased":
                units.pop(e["data"]["reservation_id"], None)
        return sum(units.values())


def reserve(client, key, t0, t1, outcome="ok", rid=None, version=None, epoch=1, units=1,
            replayed=False, code=None) -> Op:
    body = None
    if outcome == "ok":
        body = {"reservation_id": rid, "pool_id": P, "slot_id": "s", "units": units,
                "status": "active", "order_ref": None}
    return Op(client, P, key, t0, t1, outcome, reservation_id=rid, version=version,
              epoch=epoch if version is not None else None, units=units, replayed=replayed,
              code=code, body=body)


def read(client, t0, t1, version, reserved, capacity=2) -> Op:
    body = {"pool_id": P, "version": version, "total_reserved": reserved,
            "slots": [{"slot_id": "s", "capacity": capacity, "reserved": reserved}]}
    return Op(client, P, None, t0, t1, "ok", kind="read_pool", version=version, body=body)


def active(*rids: str) -> dict:
    return {rid: {"status": "active"} for rid in rids}


def violations(ops, facts) -> list[str]:
    return check(ops, [facts]).violations


# -- good histories are accepted ---------------------------------------------------------------
def test_a_correct_history_with_unknowns_and_replays_is_accepted():
    log = Log(capacity=3)
    v1 = log.reserve("r1", "k1")
    v2 = log.reserve("r2", "k2")  # k2's first answer was lost: unknown, then replayed
    ops = [
        reserve(1, "k1", 0, 1, rid="r1", version=v1),
        reserve(2, "k2", 0, 5, outcome="unknown"),
        reserve(2, "k2", 6, 7, rid="r2", version=v2, replayed=True),
        read(1, 2, 3, v1, 1, capacity=3),
        read(3, 8, 9, v2, 2, capacity=3),
        reserve(3, "k3", 10, 11, outcome="unknown"),  # never applied: allowed
        reserve(1, "k4", 10, 12, outcome="rejected", version=v2, code="capacity_exhausted",
                units=2),
    ]
    report = check(ops, [log.facts(active=active("r1", "r2"))])
    assert report.ok, report.violations


def test_a_release_and_a_refusal_after_it_are_accepted():
    log = Log(capacity=1)
    v1 = log.reserve("r1", "k1")
    v2 = log.release("r1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=v1),
           Op(1, P, None, 2, 3, "ok", kind="release", reservation_id="r1", version=v2, epoch=1),
           read(2, 4, 5, v2, 0, capacity=1)]
    assert check(ops, [log.facts(active={"r1": {"status": "released"}})]).ok


# -- each kind of bad history is reported --------------------------------------------------------
def test_overbooking_on_a_prefix_is_reported_even_if_the_end_looks_fine():
    log = Log(capacity=2)
    for n in (1, 2, 3):
        log.reserve(f"r{n}", f"k{n}")
    log.release("r3")
    ops = [reserve(n, f"k{n}", 0, 1, rid=f"r{n}", version=n + 1) for n in (1, 2, 3)]
    ops.append(Op(3, P, None, 2, 3, "ok", kind="release", reservation_id="r3", version=5))
    found = violations(ops, log.facts(active=active("r1", "r2")))
    assert any("overbooked at version 4" in v for v in found), found


def test_overbooking_against_a_lowered_capacity_is_reported():
    log = Log(capacity=3)
    log.reserve("r1", "k1", units=2)
    log.add("SlotCapacityChanged", slot_id="s", capacity=1)
    found = violations([reserve(1, "k1", 0, 1, rid="r1", version=2, units=2)],
                       log.facts(active=active("r1")))
    assert any("overbooked at version 3" in v for v in found), found


def test_a_lost_acknowledged_reservation_is_reported():
    log = Log()
    log.reserve("r1", "k1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=2),
           reserve(2, "k2", 0, 1, rid="r2", version=3)]  # acknowledged, never committed
    found = violations(ops, log.facts(active={"r1": {"status": "active"}, "r2": None}))
    assert any("r2 (reserve by client 2 (key k2)) is not in the log" in v for v in found), found
    assert any("r2 is gone" in v for v in found)
    assert any("reports version 3, the log has 2" in v for v in found)


def test_a_key_applied_twice_is_reported():
    log = Log(capacity=5)
    log.reserve("r1", "k1")
    log.reserve("r2", "k1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=2), reserve(2, "k1", 0, 1, rid="r2",
                                                                version=3)]
    found = violations(ops, log.facts(active=active("r1", "r2")))
    assert any("key k1 applied 2 times" in v for v in found), found
    assert any("key k1 answered differently" in v for v in found), found


def test_a_replay_with_another_answer_is_reported():
    log = Log()
    log.reserve("r1", "k1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=2),
           reserve(2, "k1", 2, 3, rid="r1", version=2, units=2, replayed=True)]
    found = violations(ops, log.facts(active=active("r1")))
    assert any("answered differently" in v for v in found), found


def test_a_not_applied_answer_that_was_applied_is_reported():
    log = Log()
    log.reserve("r1", "k1")
    found = violations([reserve(1, "k1", 0, 1, outcome="fail")], log.facts())
    assert any("refused as not applied, yet applied" in v for v in found), found


def test_a_reservation_from_nowhere_is_reported():
    log = Log()
    log.reserve("r1", "k1")
    log.reserve("r9", "k9")
    found = violations([reserve(1, "k1", 0, 1, rid="r1", version=2)],
                       log.facts(active=active("r1")))
    assert any("key k9 that no client sent" in v for v in found), found


def test_a_stale_read_after_the_clients_own_write_is_reported():
    log = Log()
    v1 = log.reserve("r1", "k1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=v1), read(1, 2, 3, v1 - 1, 0)]
    found = violations(ops, log.facts(active=active("r1")))
    assert any("read-your-writes" in v for v in found), found
    assert any("not linearizable" in v for v in found), found


def test_a_write_ordered_before_one_that_completed_earlier_is_reported():
    log = Log(capacity=5)
    log.reserve("r1", "k1")
    log.reserve("r2", "k2")
    ops = [reserve(1, "k2", 0, 1, rid="r2", version=3),
           reserve(2, "k1", 2, 3, rid="r1", version=2)]  # invoked after v3 was acknowledged
    found = violations(ops, log.facts(active=active("r1", "r2")))
    assert any("not linearizable: reserve by client 2" in v for v in found), found


def test_a_read_of_a_state_the_log_never_had_is_reported():
    log = Log(capacity=2)
    v1 = log.reserve("r1", "k1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=v1), read(2, 2, 3, v1, 2)]
    found = violations(ops, log.facts(active=active("r1")))
    assert any("read a state the log never had" in v for v in found), found


def test_a_refusal_while_there_was_room_is_reported():
    log = Log(capacity=2)
    log.reserve("r1", "k1")
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=2),
           reserve(2, "k2", 2, 3, outcome="rejected", version=2, code="capacity_exhausted")]
    found = violations(ops, log.facts(active=active("r1")))
    assert any("refused capacity_exhausted at version 2, with 1 unit free" in v
               for v in found), found


def test_epochs_going_back_are_reported_in_answers_and_in_the_log():
    log = Log(capacity=5, epoch=2)
    log.reserve("r1", "k1")
    log.reserve("r2", "k2", epoch=1)  # a stale owner appended after the new one
    ops = [reserve(1, "k1", 0, 1, rid="r1", version=2, epoch=2),
           reserve(2, "k2", 2, 3, rid="r2", version=3, epoch=1)]
    found = violations(ops, log.facts(active=active("r1", "r2")))
    assert any("epoch goes back at version 3" in v for v in found), found
    assert any("epoch went back" in v for v in found), found


def test_a_final_view_that_differs_from_the_log_is_reported():
    log = Log()
    log.reserve("r1", "k1")
    found = violations([reserve(1, "k1", 0, 1, rid="r1", version=2)],
                       log.facts(final_reserved=0, active=active("r1")))
    assert any("final view differs from the log" in v for v in found), found


# -- the Wing-Gong search ------------------------------------------------------------------------
def test_two_overlapping_reserves_of_the_last_unit_cannot_both_succeed():
    ops = [reserve(1, "a", 0, 2, rid="ra"), reserve(2, "b", 1, 3, rid="rb")]
    assert linearize(ops, {"s": 1}) is None
    assert linearize(ops, {"s": 2}) is not None


def test_a_read_must_see_a_write_that_completed_before_it_began():
    write = reserve(1, "a", 0, 1, rid="ra")
    assert linearize([write, read(2, 2, 3, None, 0)], {"s": 2}) is None
    assert linearize([write, read(2, 0.5, 3, None, 0)], {"s": 2}) is not None  # overlapping


def test_an_unknown_write_may_or_may_not_have_happened():
    unknown = reserve(1, "a", 0, 1, outcome="unknown")
    assert linearize([unknown, read(2, 2, 3, None, 1)], {"s": 2}) is not None
    assert linearize([unknown, read(2, 2, 3, None, 0)], {"s": 2}) is not None
    assert linearize([unknown, read(2, 2, 3, None, 2)], {"s": 2}) is None


def test_a_read_without_an_answer_tells_nothing():
    timed_out = Op(2, P, None, 0.5, 6, "unknown", kind="read_pool", status=504,
                   body={"code": "timeout"})
    write = reserve(1, "a", 0, 1, rid="ra")
    assert linearize([write, timed_out, read(3, 7, 8, None, 1)], {"s": 2}) is not None
    assert linearize([write, timed_out, read(3, 7, 8, None, 0)], {"s": 2}) is None


def test_a_refusal_needs_a_full_slot_at_some_point_in_its_interval():
    full = [reserve(1, "a", 0, 1, rid="ra"),
            reserve(2, "b", 2, 3, outcome="rejected", code="capacity_exhausted")]
    assert linearize(full, {"s": 1}) is not None
    assert linearize(full, {"s": 2}) is None


def test_the_search_is_used_by_check_for_small_histories():
    log = Log(capacity=1)
    log.reserve("ra", "a")
    ops = [reserve(1, "a", 0, 2, rid="ra"), reserve(2, "b", 1, 3, rid="rb")]
    found = violations(ops, log.facts(active=active("ra")))
    assert any("Wing-Gong" in v for v in found), found


def test_the_search_gives_up_past_its_budget():
    ops = [reserve(n, f"k{n}", 0, 100, outcome="unknown") for n in range(12)]
    ops.append(read(99, 101, 102, None, 99, capacity=100))
    with pytest.raises(SearchTooLarge):
        linearize(ops, {"s": 100}, budget=1000)


# -- the shard files -----------------------------------------------------------------------------
def test_the_file_audit_reports_an_epoch_that_goes_back(tmp_path):
    (tmp_path / "shards").mkdir()
    db = sqlite3.connect(tmp_path / "shards" / "000.sqlite3")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, epoch INTEGER)")
    db.execute("INSERT INTO meta VALUES ('epoch', 3)")
    db.executemany("INSERT INTO events VALUES (?, ?)", [(1, 1), (2, 3), (3, 2)])
    db.commit()
    db.close()
    assert audit_shard_files(tmp_path) == ["000.sqlite3: seq 3 written by epoch 2 after epoch 3"]


# -- keys bound to refusals ---------------------------------------------------------------------
def _refuse(log: Log, key: str, units: int) -> int:
    return log.add("ReservationRefused", idempotency_key=key, slot_id="s", units=units,
                   order_ref=None, code="capacity_exhausted", detail="full",
                   fields={"available_units": 0}, at_ms=0)


def test_a_refusal_replayed_after_capacity_came_free_is_judged_where_it_was_recorded():
    log = Log(capacity=1)
    v1 = log.reserve("r1", "k1")
    v2 = _refuse(log, "k2", 1)
    v3 = log.add("SlotCapacityChanged", slot_id="s", capacity=5)
    ops = [
        reserve(1, "k1", 0, 1, rid="r1", version=v1),
        reserve(2, "k2", 2, 3, outcome="rejected", version=v2, code="capacity_exhausted"),
        reserve(2, "k2", 6, 7, outcome="rejected", version=v3, code="capacity_exhausted",
                replayed=True),  # room again at v3, yet the bound refusal is the answer
    ]
    report = check(ops, [log.facts(active=active("r1"))])
    assert report.ok, report.violations


def test_a_key_bound_to_a_refusal_then_applied_is_reported():
    log = Log(capacity=1)
    v1 = _refuse(log, "k1", 2)
    v2 = log.add("SlotCapacityChanged", slot_id="s", capacity=5)
    v3 = log.reserve("r1", "k1", units=2)
    ops = [
        reserve(1, "k1", 0, 1, outcome="rejected", version=v1, code="capacity_exhausted",
                units=2),
        reserve(1, "k1", 2, 3, rid="r1", version=v3, units=2),
    ]
    assert v2 < v3
    found = violations(ops, log.facts(active=active("r1")))
    assert any("bound to a capacity_exhausted refusal" in v for v in found), found


def test_a_replayed_refusal_the_log_does_not_hold_is_reported():
    log = Log(capacity=1)
    v1 = log.reserve("r1", "k1")
    ops = [
        reserve(1, "k1", 0, 1, rid="r1", version=v1),
        reserve(2, "k2", 2, 3, outcome="rejected", version=v1, code="capacity_exhausted",
                replayed=True),
    ]
    found = violations(ops, log.facts(active=active("r1")))
    assert any("replayed a refusal the log does not hold" in v for v in found), found
