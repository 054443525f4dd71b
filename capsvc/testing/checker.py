"""The history checker: the judge of every fault test.

Input: the operations clients performed (`Op`, recorded as invoke then ok / rejected / fail /
unknown, with monotonic timestamps and the client's identity) and what the service holds
afterwards (`PoolFacts`: each pool's audit log from `/v1/admin/pools/{id}/events`, its final
view, and the final state of every acknowledged reservation). Pure: no I/O, so its own tests
feed it known-bad histories (tests/reliability/test_checker.py).

Outcomes: `ok` (a success answer), `rejected` (a business refusal: decided, changed nothing),
`fail` (the service promised it applied nothing: 503 `shard_unavailable` / `overloaded`),
`unknown` (a timeout, a dropped connection, any other 5xx: it may or may not have applied).
A logical operation retried with the same key has one `Op`; its outcome joins its attempts:
ok if any attempt succeeded, else unknown if any attempt was unknown, else the last answer.

Properties, per pool (`check`):

1. No overbooking on any prefix of the log: replaying the events in version order, after
   every event each slot holds 0 <= reserved <= capacity, and the pool total stays within
   `total_capacity`, honouring capacity changes as they happen. Versions are dense.
2. Every acknowledged reservation is in the log (same slot, units, key, order ref) and exists
   afterwards (active, unless a release of it was acknowledged or may have happened).
3. Every `Idempotency-Key` is applied at most once (one `CapacityReserved` per key), every
   successful answer for one key is identical, a key whose every attempt was refused with
   "not applied" is absent from the log, no reservation appears from nowhere, and a key bound
   to a refusal (`ReservationRefused`) is never applied after it.
4. Every answer matches the log at the version it reports (`X-Capsvc-Version`, a read's
   `version`): a reserve's event is at that version and was stamped with the reported epoch
   (`X-Capsvc-Epoch`); a read's numbers equal the log's state at its version; a
   `capacity_exhausted` refusal saw no room at its version (a replayed one: at the version of
   the refusal its key is bound to); the final view equals the whole log.
5. Linearizable writes and reads, by version: an operation that completed before another was
   invoked sits at an earlier position (write at v: (v, 0); read or refusal or replay of v:
   (v, 1)); for each client this includes read-your-writes. Epochs never go back as versions
   go up.
6. For small histories (`wg_max_ops`), a bounded Wing-Gong search for a linearization against
   a model of the pool (static capacities), which needs neither versions nor the log.

`audit_shard_files` checks the files themselves: in seq order, epochs never go back, and no
event carries an epoch above the file's `meta.epoch`.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capsvc.domain.wording import counted

DEFINITE = ("ok", "rejected", "fail")
WRITE, READ = 0, 1


@dataclass
class Op:
    """One logical operation of one client (all its attempts)."""

    client: int | str
    pool_id: str
    key: str | None
    invoked: float
    completed: float = 0.0
    outcome: str = "pending"  # ok | rejected | fail | unknown | pending
    status: int | None = None
    code: str | None = None
    reservation_id: str | None = None
    attempts: int = 0
    kind: str = "reserve"  # reserve | release | read_pool | read_reservation
    slot_id: str = "s"
    units: int = 1
    order_ref: str | None = None
    epoch: int | None = None  # X-Capsvc-Epoch of the answer
    version: int | None = None  # X-Capsvc-Version, or a read's `version`
    replayed: bool = False
    body: Any = None  # the answer's JSON (reservation view, pool view or problem)

    @property
    def done(self) -> float:
        """When the outcome became known; never, for an unknown outcome."""
        return self.completed if self.outcome in DEFINITE else math.inf


@dataclass
class PoolFacts:
    """What the service holds for one pool after the run."""

    pool_id: str
    events: list[dict[str, Any]]  # the audit log: {"version", "type", "epoch", "data", ...}
    final: dict[str, Any] | None  # GET /v1/pools/{id}
    reservations: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # rid -> GET


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.violations.append(text)

    @property
    def ok(self) -> bool:
        return not self.violations

    def assert_ok(self) -> Report:
        assert self.ok, f"{len(self.violations)} violations:\n" + "\n".join(self.violations[:30])
        return self


# -- the log as a sequence of states ---------------------------------------------------------
@dataclass
class State:
    version: int
    capacity: dict[str, int]
    reserved: dict[str, int]
    open: dict[str, bool]
    total_capacity: int | None
    total_reserved: int

    def available(self, slot_id: str) -> int:
        free = self.capacity[slot_id] - self.reserved[slot_id]
        if self.total_capacity is not None:
            free = min(free, self.total_capacity - self.total_reserved)
        return max(free, 0)


@dataclass
class Replay:
    """The log folded event by event: every prefix's state, and where each fact was born."""

    states: list[State]  # states[v] is the state after version v (states[0]: nothing)
    created: dict[str, dict[str, Any]]  # rid -> CapacityReserved data + "version", "epoch"
    released: dict[str, int]  # rid -> version of its ReservationReleased
    keys: dict[str, list[str]]  # idempotency key -> reservation ids applied with it
    epochs: dict[int, int]  # version -> epoch stamped on its event
    types: dict[int, str]  # version -> event type
    # idempotency key -> the ReservationRefused data (+ "version") that bound it to a refusal
    refused: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def replay(facts: PoolFacts, report: Report) -> Replay:
    pool = facts.pool_id
    empty = State(0, {}, {}, {}, None, 0)
    out = Replay([empty], {}, {}, {}, {}, {})
    state = empty
    last_epoch = 0
    for n, event in enumerate(facts.events, start=1):
        if event["version"] != n:
            report.add(f"{pool}: log versions not dense: event {n} has version {event['version']}")
            return out
        state = _apply(state, event, out, report, pool)
        state.version = n
        out.states.append(state)
        out.epochs[n], out.types[n] = event["epoch"], event["type"]
        if event["epoch"] < last_epoch:
            report.add(f"{pool}: epoch goes back at version {n}: {event['epoch']} < {last_epoch}")
        last_epoch = max(last_epoch, event["epoch"])
        for slot_id, reserved in state.reserved.items():
            if not 0 <= reserved <= state.capacity[slot_id]:
                report.add(f"{pool}: overbooked at version {n}: slot {slot_id} holds {reserved}"
                           f" of {state.capacity[slot_id]}")
        if state.total_capacity is not None and state.total_reserved > state.total_capacity:
            report.add(f"{pool}: overbooked at version {n}: total {state.total_reserved} of "
                       f"{state.total_capacity}")
    return out


def _apply(s: State, event: dict[str, Any], out: Replay, report: Report, pool: str) -> State:
    d, kind = event["data"], event["type"]
    s = State(s.version, dict(s.capacity), dict(s.reserved), dict(s.open), s.total_capacity,
              s.total_reserved)
    if kind == "PoolDefined":
        s.total_capacity = d["total_capacity"]
        for slot_id, _start, _end, capacity in d["slots"]:
            s.capacity[slot_id], s.reserved[slot_id], s.open[slot_id] = capacity, 0, True
    elif kind == "SlotAdded":
        slot_id, _start, _end, capacity = d["slot"]
        s.capacity[slot_id], s.reserved[slot_id], s.open[slot_id] = capacity, 0, True
    elif kind == "SlotCapacityChanged":
        s.capacity[d["slot_id"]] = d["capacity"]
    elif kind in ("SlotOpened", "SlotClosed"):
        s.open[d["slot_id"]] = kind == "SlotOpened"
    elif kind == "TotalCapacityChanged":
        s.total_capacity = d["total_capacity"]
    elif kind == "CapacityReserved":
        rid = d["reservation_id"]
        if rid in out.created:
            report.add(f"{pool}: reservation {rid} created twice")
        out.created[rid] = {**d, "version": event["version"], "epoch": event["epoch"]}
        if d.get("idempotency_key") is not None:
            out.keys.setdefault(d["idempotency_key"], []).append(rid)
        s.reserved[d["slot_id"]] += d["units"]
        s.total_reserved += d["units"]
    elif kind == "ReservationReleased":
        rid = d["reservation_id"]
        created = out.created.get(rid)
        if created is None or rid in out.released:
            report.add(f"{pool}: release of {rid} that is not active")
            return s
        out.released[rid] = event["version"]
        s.reserved[created["slot_id"]] -= created["units"]
        s.total_reserved -= created["units"]
    elif kind == "ReservationRefused":  # binds a key to a refusal; changes no capacity
        out.refused.setdefault(d["idempotency_key"], []).append(
            {**d, "version": event["version"]})
    else:
        report.add(f"{pool}: unknown event type {kind}")
    return s


# -- the checks ------------------------------------------------------------------------------
def check(ops: Iterable[Op], facts: Iterable[PoolFacts], *, wg_max_ops: int = 14) -> Report:
    """Judge a history against what the service holds (see the module docstring)."""
    report = Report()
    by_pool: dict[str, list[Op]] = {}
    for op in ops:
        by_pool.setdefault(op.pool_id, []).append(op)
    for f in facts:
        pool_ops = by_pool.get(f.pool_id, [])
        r = replay(f, report)
        _check_final(f, r, report)
        _check_keys(f.pool_id, pool_ops, r, report)
        _check_answers(f, pool_ops, r, report)
        _check_order(f.pool_id, pool_ops, r, report)
        if 0 < len(pool_ops) <= wg_max_ops:
            _check_wing_gong(f, pool_ops, report)
        for outcome in ("ok", "rejected", "fail", "unknown"):
            report.stats[outcome] = report.stats.get(outcome, 0) + sum(
                op.outcome == outcome for op in pool_ops)
        report.stats["events"] = report.stats.get("events", 0) + len(f.events)
    report.stats["pools"] = len(by_pool)
    return report


def _check_final(f: PoolFacts, r: Replay, report: Report) -> None:
    if f.final is None:
        if f.events:
            report.add(f"{f.pool_id}: has {counted(len(f.events), 'event')} but reads as missing")
        return
    last = r.states[-1]
    if f.final["version"] != last.version:
        report.add(f"{f.pool_id}: final view at version {f.final['version']}, log at "
                   f"{last.version}")
    diff = _view_differs(f.final, last)
    if diff:
        report.add(f"{f.pool_id}: final view differs from the log: {diff}")


def _view_differs(view: dict[str, Any], state: State) -> str | None:
    for slot in view["slots"]:
        sid = slot["slot_id"]
        if sid not in state.capacity:
            return f"slot {sid} is not in the log"
        seen = (slot["capacity"], slot["reserved"])
        want = (state.capacity[sid], state.reserved[sid])
        if seen != want:
            return f"slot {sid} (capacity, reserved) {seen} != {want} at version {state.version}"
    if view["total_reserved"] != state.total_reserved:
        return f"total_reserved {view['total_reserved']} != {state.total_reserved}"
    return None


def _check_keys(pool: str, ops: list[Op], r: Replay, report: Report) -> None:
    for key, rids in r.keys.items():
        if len(rids) > 1:
            report.add(f"{pool}: key {key} applied {len(rids)} times: {rids}")
    keyed: dict[str, list[Op]] = {}
    for op in ops:
        if op.kind == "reserve" and op.key is not None:
            keyed.setdefault(op.key, []).append(op)
    for key, same in keyed.items():
        answers = {_canonical(op.body) for op in same if op.outcome == "ok"}
        if len(answers) > 1:
            report.add(f"{pool}: key {key} answered differently: {sorted(answers)[:3]}")
        if all(op.outcome == "fail" for op in same) and key in r.keys:
            report.add(f"{pool}: key {key} was refused as not applied, yet applied as "
                       f"{r.keys[key]}")
    for key, refusals in r.refused.items():  # a key told "no" never books (within retention)
        told_no = refusals[0]["version"]
        booked = [rid for rid in r.keys.get(key, ()) if r.created[rid]["version"] > told_no]
        if booked:
            report.add(f"{pool}: key {key} was bound to a {refusals[0]['code']} refusal at "
                       f"version {told_no}, yet applied as {booked}")
    if all(op.key is not None for op in ops if op.kind == "reserve"):
        for key in r.keys:
            if key not in keyed and ops:
                report.add(f"{pool}: reservation {r.keys[key]} applied with key {key} that no "
                           "client sent")


def _canonical(body: Any) -> str:
    import json

    return json.dumps(body, sort_keys=True)


def _check_answers(f: PoolFacts, ops: list[Op], r: Replay, report: Report) -> None:
    pool = f.pool_id
    released_maybe = {op.reservation_id for op in ops
                      if op.kind == "release" and op.outcome in ("ok", "unknown")}
    for op in ops:
        if op.outcome != "ok" and not (op.outcome == "rejected" and op.kind == "reserve"):
            continue
        v = op.version
        if v is not None and not 0 <= v < len(r.states):
            report.add(f"{pool}: {_name(op)} reports version {v}, the log has "
                       f"{len(r.states) - 1}")
            v = None  # judge the rest of the answer without it
        if op.kind == "reserve" and op.outcome == "ok":
            _check_reserved(pool, op, r, report)
            final = f.reservations.get(op.reservation_id, "unfetched")
            if final is None:
                report.add(f"{pool}: acknowledged reservation {op.reservation_id} is gone")
            elif final != "unfetched" and final["status"] != "active" and (
                    op.reservation_id not in released_maybe):
                report.add(f"{pool}: acknowledged reservation {op.reservation_id} is "
                           f"{final['status']} though nobody released it")
        elif op.kind == "reserve" and op.code == "capacity_exhausted" and v is not None:
            if op.replayed:  # answered from the refusal its key is bound to: judge that one
                bound = [e for e in r.refused.get(op.key or "", ()) if e["version"] <= v
                         and e["code"] == op.code]
                if not bound:
                    report.add(f"{pool}: {_name(op)} replayed a refusal the log does not hold "
                               f"by version {v}")
                    continue
                v = bound[-1]["version"]
            state = r.states[v]
            if op.slot_id in state.capacity and state.available(op.slot_id) >= op.units:
                report.add(f"{pool}: {_name(op)} refused capacity_exhausted at version {v}, "
                           f"with {counted(state.available(op.slot_id), 'unit')} free")
        elif op.kind == "release" and v is not None:
            released_at = r.released.get(op.reservation_id)
            if released_at is None or released_at > v:
                report.add(f"{pool}: {_name(op)} acknowledged the release of "
                           f"{op.reservation_id}, not released in the log by version {v}")
        elif op.kind == "read_pool" and v is not None:
            diff = _view_differs(op.body, r.states[v])
            if diff:
                report.add(f"{pool}: {_name(op)} read a state the log never had: {diff}")
        elif op.kind == "read_reservation" and op.body is not None:
            if op.reservation_id not in r.created:
                report.add(f"{pool}: {_name(op)} read {op.reservation_id}, not in the log")


def _check_reserved(pool: str, op: Op, r: Replay, report: Report) -> None:
    created = r.created.get(op.reservation_id)
    if created is None:
        report.add(f"{pool}: acknowledged reservation {op.reservation_id} ({_name(op)}) is not "
                   "in the log")
        return
    mine = (op.slot_id, op.units, op.key, op.order_ref)
    logged = (created["slot_id"], created["units"], created["idempotency_key"],
              created["order_ref"])
    if mine != logged:
        report.add(f"{pool}: {_name(op)} acknowledged {mine}, the log holds {logged}")
    v = op.version
    if v is None:
        return
    if op.replayed:
        if v < created["version"]:
            report.add(f"{pool}: replay {_name(op)} observed version {v} before its "
                       f"reservation was created at {created['version']}")
    elif v != created["version"]:
        report.add(f"{pool}: {_name(op)} reported version {v}, its event is at "
                   f"{created['version']}")
    elif op.epoch is not None and op.epoch != created["epoch"]:
        report.add(f"{pool}: {_name(op)} reported epoch {op.epoch}, its event was written by "
                   f"epoch {created['epoch']}")


def _name(op: Op) -> str:
    return f"{op.kind} by client {op.client} (key {op.key})"


# -- ordering: real time against versions ---------------------------------------------------
def _positions(ops: list[Op], r: Replay) -> list[tuple[float, float, tuple[int, int], str]]:
    """(invoked, done, position, label) for every operation whose place in the pool's history
    is known, plus one pseudo-operation per applied key: its event sits between the first
    invocation with that key and the first answer showing it."""
    out = []
    for op in ops:
        if op.version is None or op.outcome not in ("ok", "rejected"):
            continue
        kind = READ
        if op.outcome == "ok" and op.kind == "reserve" and not op.replayed:
            kind = WRITE
        if op.outcome == "ok" and op.kind == "release" and (
                r.released.get(op.reservation_id) == op.version):
            kind = WRITE
        out.append((op.invoked, op.completed, (op.version, kind), _name(op)))
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        if op.kind == "reserve" and op.key is not None:
            by_key.setdefault(op.key, []).append(op)
    for key, same in by_key.items():
        rids = r.keys.get(key)
        if not rids or any(op.outcome == "ok" and not op.replayed for op in same):
            continue
        first_invoke = min(op.invoked for op in same)
        first_ok = min((op.completed for op in same if op.outcome == "ok"), default=math.inf)
        version = r.created[rids[0]]["version"]
        out.append((first_invoke, first_ok, (version, WRITE), f"applied key {key}"))
    return out


def _check_order(pool: str, ops: list[Op], r: Replay, report: Report) -> None:
    placed = _positions(ops, r)
    by_done = sorted(placed, key=lambda p: p[1])
    best: tuple[tuple[int, int], str] | None = None
    i = 0
    for invoked, _done, pos, label in sorted(placed, key=lambda p: p[0]):
        while i < len(by_done) and by_done[i][1] < invoked:
            if best is None or by_done[i][2] > best[0]:
                best = (by_done[i][2], by_done[i][3])
            i += 1
        if best is None:
            continue
        if best[0] > pos or (best[0] == pos and pos[1] == WRITE):
            report.add(f"{pool}: not linearizable: {label} at {_pos(pos)} was invoked after "
                       f"{best[1]} at {_pos(best[0])} had completed")
    _check_read_your_writes(pool, ops, report)
    _check_epochs(pool, ops, report)


def _pos(pos: tuple[int, int]) -> str:
    return f"{'write' if pos[1] == WRITE else 'read'}@v{pos[0]}"


def _check_read_your_writes(pool: str, ops: list[Op], report: Report) -> None:
    """A client's read of the pool shows at least the versions of its own earlier writes,
    and a client's read of its own acknowledged reservation finds it."""
    by_client: dict[Any, list[Op]] = {}
    for op in ops:
        by_client.setdefault(op.client, []).append(op)
    for client, mine in by_client.items():
        seen = 0
        acked: set[str] = set()
        for op in sorted(mine, key=lambda o: o.invoked):
            if op.kind == "read_pool" and op.outcome == "ok" and op.version is not None:
                if op.version < seen:
                    report.add(f"{pool}: read-your-writes: client {client} read version "
                               f"{op.version} after its own write at version {seen}")
            if op.kind == "read_reservation" and op.reservation_id in acked and (
                    op.outcome == "rejected" and op.code == "reservation_not_found"):
                report.add(f"{pool}: read-your-writes: client {client} got 404 for its own "
                           f"reservation {op.reservation_id}")
            if op.outcome == "ok" and op.kind in ("reserve", "release"):
                if op.version is not None:
                    seen = max(seen, op.version)
                if op.kind == "reserve":
                    acked.add(op.reservation_id)


def _check_epochs(pool: str, ops: list[Op], report: Report) -> None:
    stamped = sorted((op.version, op.epoch, _name(op)) for op in ops
                     if op.outcome in ("ok", "rejected") and op.version is not None
                     and op.epoch is not None)
    for (v1, e1, n1), (v2, e2, n2) in itertools.pairwise(stamped):
        if e2 < e1 and v2 > v1:
            report.add(f"{pool}: epoch went back: {n1} saw (epoch {e1}, v{v1}), {n2} saw "
                       f"(epoch {e2}, v{v2})")


# -- Wing-Gong: search for a linearization of a small history --------------------------------
class SearchTooLarge(Exception):
    pass


def _check_wing_gong(f: PoolFacts, ops: list[Op], report: Report) -> None:
    if not f.events or f.events[0]["type"] != "PoolDefined":
        return
    if any(e["type"] not in ("PoolDefined", "CapacityReserved", "ReservationReleased",
                             "ReservationRefused")
           for e in f.events):
        return  # the model keeps capacities fixed
    d = f.events[0]["data"]
    capacity = {s[0]: s[3] for s in d["slots"]}
    try:
        if linearize(ops, capacity, d["total_capacity"]) is None:
            report.add(f"{f.pool_id}: no linearization of its {len(ops)} operations exists "
                       "(Wing-Gong search)")
    except SearchTooLarge:
        report.stats["wg_skipped"] = report.stats.get("wg_skipped", 0) + 1


def linearize(ops: list[Op], capacity: dict[str, int], total_capacity: int | None = None,
              budget: int = 200_000) -> list[Op] | None:
    """A linearization of `ops` against the pool model (a list of the operations that took
    effect, in order), or None if there is none. Unknown operations may take effect at any
    point after their invocation, or never. Raises SearchTooLarge past `budget` steps."""
    relevant = [op for op in ops  # a read without an answer changed nothing and tells nothing
                if (op.kind in ("reserve", "release") and op.outcome == "unknown")
                or (op.kind in ("reserve", "release", "read_pool") and op.outcome == "ok")
                or (op.kind == "reserve" and op.outcome == "rejected"
                    and op.code == "capacity_exhausted" and not op.replayed)]
    n = len(relevant)
    must = sum(1 << i for i, op in enumerate(relevant) if op.outcome != "unknown")
    slots = sorted(capacity)
    # state: (reserved per slot, active {(rid, slot, units)}, created {rid}, keys {(key, rid)})
    start = (tuple(0 for _ in slots), frozenset(), frozenset(), frozenset())
    seen: set[tuple[int, Any]] = set()
    steps = [0]

    def step(state, op: Op, i: int):
        reserved, active, created, keys = state
        if op.kind == "read_pool":
            got = {s["slot_id"]: s["reserved"] for s in op.body["slots"]}
            return state if all(got.get(s) == reserved[j] for j, s in enumerate(slots)) else None
        if op.kind == "release":
            match = [a for a in active if a[0] == op.reservation_id]
            if not match:  # releasing twice is harmless; releasing what never was is not
                return state if op.outcome == "unknown" or op.reservation_id in created else None
            rid, sid, units = match[0]
            j = slots.index(sid)
            new = reserved[:j] + (reserved[j] - units,) + reserved[j + 1:]
            return new, active - {match[0]}, created, keys
        keymap = dict(keys)
        if op.key is not None and op.key in keymap:  # a replay
            return state if op.outcome == "unknown" or (
                op.outcome == "ok" and op.reservation_id == keymap[op.key]) else None
        j = slots.index(op.slot_id)
        free = capacity[op.slot_id] - reserved[j]
        if total_capacity is not None:
            free = min(free, total_capacity - sum(reserved))
        if op.outcome == "rejected":
            return state if free < op.units else None
        if free < op.units:
            return None
        rid = op.reservation_id or f"unknown-{i}"
        new = reserved[:j] + (reserved[j] + op.units,) + reserved[j + 1:]
        new_keys = keys | {(op.key, rid)} if op.key is not None else keys
        return new, active | {(rid, op.slot_id, op.units)}, created | {rid}, new_keys

    def search(done: int, state, order: list[Op]) -> list[Op] | None:
        if done & must == must:
            return order
        if (done, state) in seen:
            return None
        seen.add((done, state))
        steps[0] += 1
        if steps[0] > budget:
            raise SearchTooLarge
        pending = [i for i in range(n) if not done >> i & 1]
        horizon = min(relevant[i].done for i in pending)
        for i in pending:
            op = relevant[i]
            if op.invoked > horizon:
                continue  # another pending operation completed before this one began
            after = step(state, op, i)
            if after is not None:
                found = search(done | 1 << i, after, [*order, op])
                if found is not None:
                    return found
            if op.outcome == "unknown":  # or it never took effect
                found = search(done | 1 << i, state, order)
                if found is not None:
                    return found
        return None

    return search(0, start, [])


# -- the shard files ---------------------------------------------------------------------------
def audit_shard_files(data_dir: Path) -> list[str]:
    """Epochs in every shard file (read after the service stopped): never back in seq order,
    never above the file's meta.epoch. Returns the problems found."""
    problems = []
    for path in sorted((data_dir / "shards").glob("*.sqlite3")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT seq, epoch FROM events ORDER BY seq").fetchall()
            meta = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        finally:
            db.close()
        top = 0
        for seq, epoch in rows:
            if epoch < top:
                problems.append(f"{path.name}: seq {seq} written by epoch {epoch} after "
                                f"epoch {top}")
                break
            top = epoch
        if meta is not None and rows and int(meta[0]) < top:
            problems.append(f"{path.name}: meta.epoch {meta[0]} is below written epoch {top}")
    return problems
