"""Test-only fault hooks: deliberately broken builds and pause/fail points for fault tests.

NOTHING here is for production. A fault is active only when BOTH guards hold:

1. `CAPSVC_TEST_FAULTS` names it (comma separated), together with
   `CAPSVC_TEST_FAULTS_I_KNOW_THIS_BREAKS_CORRECTNESS=yes`, and
2. the configured `[service] data_dir` resolves to a path under the system temp directory
   (`tempfile.gettempdir()`, normally /tmp), which no production data directory is.

Neither guard alone enables anything; a process whose configuration fails the second guard
logs an error naming the ignored faults. A process with active faults logs a loud warning at
start (`configure`), so a broken build is never silent.

Broken builds (each proves that the history checker in tests/reliability can fail):

- `no_capacity_check`: a reserve refused with `capacity_exhausted` is decided again as if the
  pool's capacity were unlimited, and the invariant assertions that back the decision
  (`check_invariants`, `check_reservations`) are switched off in this process, so the
  overbooking reaches the log instead of crashing the worker.
- `reply_before_commit`: a batch's callers are answered before its events are appended.
- `no_epoch_check`: the shard file keeps no `events_fenced` trigger and `open()` accepts an
  epoch that is not newer than the stored one.

Points (`point(name, shard_id)`; active when `points` is listed in CAPSVC_TEST_FAULTS): a test
arms one by writing the file `<data_dir>/test-faults/<name>` containing `pause <shard>` or
`fail <shard>` (`*` for any shard). The first process to reach that point for that shard takes
the file (an atomic rename, so exactly one process acts) and then pauses itself with SIGSTOP
(the test decides: SIGCONT or SIGKILL) or raises `StorageUnavailable`. Points in the code:
`append` (a batch decided, memory changed, its pools in flight, before the append), `recovery`
(the file opened with the new epoch, before replay), `handoff` (the shard drained and closed,
before its ownership is released).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
ENV_FAULTS = "CAPSVC_TEST_FAULTS"
ENV_CONFIRM = "CAPSVC_TEST_FAULTS_I_KNOW_THIS_BREAKS_CORRECTNESS"
KNOWN = frozenset({"no_capacity_check", "reply_before_commit", "no_epoch_check", "points"})
POINTS = frozenset({"append", "recovery", "handoff"})

_active: frozenset[str] = frozenset()
_points_dir: Path | None = None


def requested() -> frozenset[str]:
    """The faults the environment asks for (both environment variables set), guard aside."""
    if os.environ.get(ENV_CONFIRM) != "yes":
        return frozenset()
    names = {n.strip() for n in os.environ.get(ENV_FAULTS, "").split(",") if n.strip()}
    return frozenset(names)


def under_temp_dir(data_dir: Path) -> bool:
    temp = Path(tempfile.gettempdir()).resolve()
    resolved = data_dir.resolve()
    return resolved != temp and resolved.is_relative_to(temp)


def configure(data_dir: Path, role: str) -> frozenset[str]:
    """Decide, once per process, which faults are active; log loudly if any are."""
    global _active, _points_dir
    names = requested()
    if not names:
        _active = frozenset()
        return _active
    unknown = sorted(names - KNOWN)
    if unknown:
        raise ValueError(f"{ENV_FAULTS}: unknown fault(s) {', '.join(unknown)}")
    if not under_temp_dir(data_dir):
        log.error(
            "test faults requested but IGNORED: data_dir %s is not under %s",
            data_dir,
            tempfile.gettempdir(),
        )
        _active = frozenset()
        return _active
    _active = names
    _points_dir = data_dir / "test-faults"
    log.warning(
        "TEST FAULTS ACTIVE: %s. THIS BUILD IS DELIBERATELY BROKEN; never use it for real data",
        ", ".join(sorted(names)),
        extra={"fault_role": role},
    )
    if "no_capacity_check" in names:
        _disable_invariant_assertions()
    return _active


def active(name: str) -> bool:
    assert name in KNOWN, name
    return name in _active


def _disable_invariant_assertions() -> None:
    """Every module that imported an invariant check by name gets a no-op in its place, so the
    broken build stays broken whoever calls which check (a missed caller would crash the worker
    on the first overbooking instead of letting it reach the log)."""
    import sys

    from capsvc.domain import evolve, invariants  # noqa: F401 - loaded before the sweep
    from capsvc.shard import recovery, shard  # noqa: F401
    from capsvc.storage import codec  # noqa: F401

    checks = {name: getattr(invariants, name)
              for name in ("check_invariants", "check_reservations", "check_pool")}
    for name, module in list(sys.modules.items()):
        if name == "capsvc" or name.startswith("capsvc."):
            for attr, original in checks.items():
                if getattr(module, attr, None) is original:
                    setattr(module, attr, lambda pool: None)


def ignore_capacity(decide, pool, command, slots_max: int, decision):
    """`no_capacity_check`: decide a capacity-refused command again against the same pool with
    unlimited capacity (restored afterwards; `decide` itself stays pure)."""
    rejection = decision.rejection
    if rejection is None or rejection.code != "capacity_exhausted" or pool is None:
        return decision
    saved = pool.total_capacity, {s.slot_id: s.capacity for s in pool.slots.values()}
    pool.total_capacity = None
    for slot in pool.slots.values():
        slot.capacity = 2**62
    try:
        return decide(pool, command, slots_max)
    finally:
        pool.total_capacity = saved[0]
        for slot_id, capacity in saved[1].items():
            pool.slots[slot_id].capacity = capacity


def point(name: str, shard_id: int) -> None:
    """A pause/fail point (see the module docstring). Costs one set lookup when not armed."""
    if "points" not in _active or _points_dir is None:
        return
    assert name in POINTS, name
    trigger = _points_dir / name
    try:
        action, _, target = trigger.read_text().strip().partition(" ")
    except FileNotFoundError:
        return
    if target not in ("*", str(shard_id)):
        return
    try:
        os.rename(trigger, _points_dir / f"{name}.taken-{os.getpid()}-{shard_id}")
    except FileNotFoundError:
        return  # another process took it first
    log.warning("test fault point %s: %s", name, action, extra={"shard": shard_id})
    if action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "fail":
        from capsvc.errors import StorageUnavailable

        raise StorageUnavailable(f"test fault at {name} (shard {shard_id})")


# -- where the worker wires its parts together, these take the place of the sound parts --------
def shard_parts(shard_id: int, event_log, decide):
    """(event log, decide) for a shard: the sound ones, or their broken stand-ins when a fault
    asks for it (`worker/main.py` calls this; production modules know nothing of faults)."""
    if "no_capacity_check" in _active:
        decide = _ignoring_capacity(decide)
    if _active & {"points", "reply_before_commit"}:
        event_log = FaultyEventLog(event_log, shard_id)
    return event_log, decide


def fencing() -> bool:
    """Whether shard files keep their fencing trigger (`no_epoch_check` drops it)."""
    return "no_epoch_check" not in _active


def after_close(shard_id: int) -> None:
    """The `handoff` point: a handed-off shard's file is closed, its claim not yet released."""
    point("handoff", shard_id)


def _ignoring_capacity(decide):
    def broken(pool, command, slots_max: int):
        return ignore_capacity(decide, pool, command, slots_max, decide(pool, command, slots_max))

    return broken


class FaultyEventLog:
    """An event log with the `recovery` and `append` points, and (`reply_before_commit`) an
    append that returns at once and reaches the file 50 ms later: its callers are answered
    before their events are durable (the `append` point is then between the two). The next
    append waits for the previous one, as a writer waits for its commit. Everything else is
    the wrapped log's."""

    def __init__(self, inner, shard_id: int) -> None:
        self._inner = inner
        self._shard_id = shard_id
        self._late: object = None  # the last late append (they stay in order)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def open(self, epoch):
        head = await self._inner.open(epoch)
        point("recovery", self._shard_id)  # opened with the new epoch, before replay
        return head

    async def append(self, events) -> None:
        if "reply_before_commit" not in _active:
            point("append", self._shard_id)  # decided and applied in memory, not appended
            await self._inner.append(events)
            return
        import asyncio

        if self._late is not None:
            await self._late  # the previous batch reaches the file first (or fails here)

        async def late() -> None:
            await asyncio.sleep(0.05)  # its callers are answered meanwhile
            point("append", self._shard_id)
            await self._inner.append(events)

        self._late = asyncio.get_running_loop().create_task(late())
