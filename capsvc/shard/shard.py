"""A shard: the pools it holds in memory, and the single writer loop that changes them.

The writer group-commits. It takes every command waiting in the queue (up to
`append_batch_max`), decides each in arrival order against the state left by the ones before,
appends all their events in one transaction, and only then answers the callers.

Nobody observes state the disk does not hold: commands are folded into memory as they are
decided (so the next command in the batch sees them), and the committed state of each pool
they touched is kept aside until the append commits. Readers get the committed state at once
and never wait for a commit: what is in flight is acknowledged to nobody yet, so a read that
does not see it is still linearizable, and a pool written thousands of times a second reads
as fast as any other. If the append fails, the touched pools are reloaded from the file, so
memory is exactly what the disk holds, and every command in the batch that touched them fails
with the storage error.

States: STARTING -> READY -> DRAINING -> CLOSED, and FAILED from STARTING or READY (the file
refused us: corrupt, fenced, I/O error). A FAILED shard answers nothing; its owner may retry.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from capsvc.domain import commands as cmd
from capsvc.domain.decide import Decision, decide
from capsvc.domain.events import CapacityReserved, ReservationReleased
from capsvc.domain.evolve import evolve
from capsvc.domain.invariants import check_pool
from capsvc.domain.pool import DeferredStateDamaged, KeyRetention, Pool, Reservation
from capsvc.domain.rejections import Rejection
from capsvc.domain.views import pool_view, reservation_view
from capsvc.errors import (
    CapsvcError,
    DeadlinePassed,
    Fenced,
    Overloaded,
    ShardCorrupt,
    ShardUnavailable,
)
from capsvc.shard.observer import ShardObserver
from capsvc.shard.recovery import rebuild_pool, recover_shard, reload_pool
from capsvc.storage.codec import SNAPSHOT_SCHEMA, encode_snapshot
from capsvc.storage.log import EventLog, StoredEvent, StoredSnapshot

log = logging.getLogger(__name__)


class ShardState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True)
class ShardSettings:
    append_batch_max: int = 256
    queue_max: int = 4096
    snapshot_every_events: int = 1000
    slots_max: int = 96
    retention: KeyRetention = KeyRetention()
    # A command that waited longer than this is refused (503 overloaded, never applied)
    # instead of decided: under overload the accepted commands keep their latency.
    queue_wait_max_s: float = 0.5

    def __post_init__(self) -> None:
        assert 1 <= self.append_batch_max <= self.queue_max
        assert self.queue_wait_max_s > 0
        assert self.snapshot_every_events >= 1 and self.slots_max >= 1


@dataclass(frozen=True)
class CommandResult:
    """The answer to one command: a rejection, or the body to send back."""

    rejection: Rejection | None = None
    body: dict | None = None
    created: bool = False  # a new pool or reservation came to be
    replayed: bool = False  # an idempotent replay of an earlier reservation (or refusal)
    # Ordering facts for clients and history checkers: the shard's epoch, and the pool's
    # version right after the command (for a replay or a refusal: the version it observed).
    epoch: int | None = None
    version: int | None = None


class _Pending:
    __slots__ = ("command", "actor", "future", "queued_at", "deadline")

    def __init__(
        self,
        command: cmd.Command | None,
        actor: str | None,
        future: asyncio.Future,
        deadline: float | None = None,
    ) -> None:
        self.command = command
        self.actor = actor
        self.future = future
        self.queued_at = time.monotonic()
        self.deadline = deadline  # wall-clock seconds: undecided then, never decided


class _Rebuild(_Pending):
    """A reader met a damaged snapshot: asks the writer to rebuild the pool (`Shard._rebuild`)."""

    __slots__ = ("pool_id",)

    def __init__(self, pool_id: str, future: asyncio.Future) -> None:
        super().__init__(None, None, future)
        self.pool_id = pool_id


_STOP = object()


class Shard:
    # Metrics hook, set once per worker process; None in tests and tools (see observer.py).
    observer: ShardObserver | None = None

    def __init__(
        self,
        shard_id: int,
        event_log: EventLog,
        settings: ShardSettings,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        decide: Callable[[Pool | None, cmd.Command, int], Decision] = decide,
    ) -> None:
        self.shard_id = shard_id
        self._decide = decide  # the domain's; a deliberately broken one in fault tests
        self.log = event_log
        self.settings = settings
        self._clock_ms = clock_ms
        self.state = ShardState.STARTING
        self.failure: str | None = None
        self.pools: dict[str, Pool] = {}
        self.epoch = 0
        self.last_seq = 0
        self.checkpoint_seq = 0  # as stored: recovery replays the events after it
        self.event_count = 0
        self.replay_seconds = 0.0
        self.replayed_events = 0
        self.batches = 0
        # pool id -> seq of its latest committed event, least recently changed first
        self._pool_seqs: OrderedDict[str, int] = OrderedDict()
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=settings.queue_max)
        # What readers see, until the commit lands, of what the batch in flight changed:
        # pool id -> a copy of its committed state (None: no pool yet), and reservation id ->
        # a copy of the committed reservation (None: made in this batch).
        self._committed: dict[str, Pool | None] = {}
        self._committed_reservations: dict[str, Reservation | None] = {}
        self.on_commit: Callable[[], None] = lambda: None  # wakes read-model feeds
        # Called if the writer dies of a bug (an assertion): the worker exits and replay
        # restores a correct state. Tests replace it to observe the crash.
        self.on_crash: Callable[[BaseException], None] = _default_on_crash
        # In a cluster the owner's lease says whether it may still acknowledge writes.
        self.may_append: Callable[[], bool] = lambda: True
        # pool id -> (seq of its first committed event that no snapshot holds, the version its
        # snapshot holds), oldest first: what the checkpoint policy needs
        self._unsnapshotted: dict[str, tuple[int, int]] = {}
        self._events_since_checkpoint = 0
        self._writer: asyncio.Task | None = None

    # -- life cycle ----------------------------------------------------------------------
    async def start(self, epoch: int | None = None) -> None:
        """Open the file, recover, and start the writer. Raises if the file refuses us."""
        assert self.state is ShardState.STARTING
        try:
            head = await self.log.open(epoch)
            recovered = await recover_shard(self.log, head, self.settings.retention)
            if recovered.rebuilt:  # sound snapshots now, so that no later start meets the damage
                await self.log.save_checkpoint(
                    [
                        _snapshot(pool_id, recovered.pool_seqs[pool_id], recovered.pools[pool_id])
                        for pool_id in recovered.rebuilt
                    ],
                    head.checkpoint_seq,
                )
        except CapsvcError as e:
            self._fail(e)
            await self.log.close()
            raise
        self.epoch, self.last_seq, self.event_count = head.epoch, head.last_seq, head.event_count
        self.checkpoint_seq = head.checkpoint_seq
        self.pools = recovered.pools
        for pool_id, seq in sorted(recovered.pool_seqs.items(), key=lambda kv: kv[1]):
            self._pool_seqs[pool_id] = seq
        self.replayed_events, self.replay_seconds = recovered.replayed_events, recovered.seconds
        self._events_since_checkpoint = recovered.replayed_events
        self._unsnapshotted = dict(recovered.unsnapshotted)
        self.state = ShardState.READY
        self._writer = asyncio.create_task(self._write_loop(), name=f"shard-{self.shard_id}")
        self._writer.add_done_callback(self._writer_done)
        if self.observer is not None:
            clean = head.checkpoint_seq == head.last_seq
            self.observer.recovered(self, recovered.seconds, recovered.replayed_events, clean)
            for pool_id in recovered.rebuilt:
                self.observer.rebuilt(self, pool_id)
        log.log(
            logging.INFO if recovered.replayed_events or self.pools else logging.DEBUG,
            "shard recovered",
            extra={
                "shard": self.shard_id,
                "epoch": self.epoch,
                "pools": len(self.pools),
                "replayed": recovered.replayed_events,
                "seconds": round(recovered.seconds, 3),
            },
        )

    async def drain(self) -> None:
        """Stop taking commands, finish those queued, checkpoint every changed pool, close."""
        if self.state is ShardState.READY:
            self.state = ShardState.DRAINING
            await self._queue.put(_STOP)
            assert self._writer is not None
            await self._writer
            try:
                await self._checkpoint(every_pool=True)
            except CapsvcError as e:
                log.error("final checkpoint failed: %s", e, extra={"shard": self.shard_id})
        elif self._writer is not None and not self._writer.done():
            self._writer.cancel()
        await self.log.close()
        if self.observer is not None:
            self.observer.closed(self, drained=self.state is ShardState.DRAINING)
        if self.state is not ShardState.FAILED:
            self.state = ShardState.CLOSED

    def _writer_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.critical("shard writer crashed", exc_info=error, extra={"shard": self.shard_id})
        self._fail(error)
        self._fail_queued()
        self.on_crash(error)

    def _fail(self, error: BaseException) -> None:
        self.state = ShardState.FAILED
        self.failure = f"{getattr(error, 'code', type(error).__name__)}: {error}"
        log.error("shard failed closed: %s", self.failure, extra={"shard": self.shard_id})
        if self.observer is not None:
            self.observer.failed(self, error)
        self.on_commit()

    # -- commands --------------------------------------------------------------------------
    def submit(
        self, command: cmd.Command, actor: str | None = None, deadline: float | None = None
    ) -> asyncio.Future:
        """Queue a command; the future resolves to a CommandResult after the commit. A command
        the writer reaches after `deadline` (wall-clock seconds: the caller has stopped
        waiting) is dropped undecided, with `DeadlinePassed`."""
        self.check_ready()
        if deadline is not None and deadline <= time.time():
            raise DeadlinePassed(f"the request reached shard {self.shard_id} after its "
                                 "deadline; it was not applied")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(command, actor, future, deadline))
        except asyncio.QueueFull:
            raise Overloaded(
                f"shard {self.shard_id} has {self._queue.qsize()} commands queued"
            ) from None
        return future

    def check_ready(self) -> None:
        if self.state is not ShardState.READY:
            detail = f"shard {self.shard_id} is {self.state.value}"
            if self.failure:
                detail += f" ({self.failure})"
            raise ShardUnavailable(detail, shard=self.shard_id)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def _write_loop(self) -> None:
        batch_max = self.settings.append_batch_max
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            await self._process(batch)
            if self.state is ShardState.FAILED:
                self._fail_queued()
                return
            if self._events_since_checkpoint >= self.settings.snapshot_every_events:
                try:
                    await self._checkpoint()
                except CapsvcError as e:  # snapshots only bound recovery time: keep serving
                    log.warning("checkpoint failed: %s", e, extra={"shard": self.shard_id})
            if stop:
                return

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP and not item.future.done():
                item.future.set_exception(ShardUnavailable(f"shard {self.shard_id} failed"))

    async def _process(self, batch: list[_Pending]) -> None:
        """Decide, apply and commit one batch. A pool whose snapshot turns out damaged is
        decoded before anything is decided against it; its commands wait while the pool is
        rebuilt from its events after the batch's commit, and are then decided."""
        if not self.may_append():
            # Ownership is unconfirmed (ZooKeeper unreachable): decide nothing, answer
            # "not applied" so that the router may send the commands to a confirmed owner.
            error = ShardUnavailable(
                f"shard {self.shard_id}: ownership unconfirmed", shard=self.shard_id
            )
            for item in batch:
                _fail(item.future, error)
            return
        now_ms = self._clock_ms()
        records: list[StoredEvent] = []
        answers: list[tuple[_Pending, CommandResult]] = []
        touched: set[str] = set()
        seq = self.last_seq
        committed: dict[str, Pool | None] = {}
        committed_reservations: dict[str, Reservation | None] = {}
        stale_before = time.monotonic() - self.settings.queue_wait_max_s
        wall_now = time.time()
        damaged: dict[str, DeferredStateDamaged] = {}
        later: list[_Pending] = []  # commands and rebuild requests for after the commit
        for item in batch:
            if item.command is None:  # a rebuild request (`read_reservation`)
                later.append(item)
                continue
            if item.future.done():  # the caller gave up before we started: do not apply
                continue
            if item.deadline is not None and item.deadline < wall_now:
                _fail(item.future, DeadlinePassed(
                    f"shard {self.shard_id} reached the command after its deadline; it was "
                    "not applied"))
                continue
            if item.queued_at < stale_before:  # shed: deciding it late helps nobody
                _fail(
                    item.future,
                    Overloaded(f"shard {self.shard_id} is overloaded; try again shortly"),
                )
                continue
            pool_id = item.command.pool_id
            if damaged and pool_id in damaged:
                later.append(item)
                continue
            pool = self.pools.get(pool_id)
            damage = _damage_of(pool)  # before anything is decided against it
            if damage is not None:
                damaged[pool_id] = damage
                later.append(item)
                continue
            decision = self._decide(pool, item.command, self.settings.slots_max)
            if decision.events and pool_id not in committed:
                committed[pool_id] = None if pool is None else pool.copy_for_readers()
            for event in decision.events:
                if isinstance(event, CapacityReserved):
                    committed_reservations.setdefault(event.reservation_id, None)
                elif isinstance(event, ReservationReleased):
                    if event.reservation_id not in committed_reservations:
                        was = pool.reservations[event.reservation_id]  # type: ignore[union-attr]
                        committed_reservations[event.reservation_id] = was.copy()
                pool = evolve(pool, event, self.settings.retention)
                seq += 1
                records.append(
                    StoredEvent(seq, pool_id, pool.version, self.epoch, now_ms, item.actor, event)
                )
            if decision.events:
                self.pools[pool_id] = pool
                touched.add(pool_id)
            answers.append((item, _result(item.command, decision, pool, self.epoch)))
        # before the first await: from here readers see the committed state
        self._committed, self._committed_reservations = committed, committed_reservations
        if records:
            await self._commit(records, touched, answers)
        else:
            for item, result in answers:
                _resolve(item.future, result)
        if later:
            await self._after_batch(damaged, later)

    async def _after_batch(
        self, damaged: dict[str, DeferredStateDamaged], later: list[_Pending]
    ) -> None:
        commands = [item for item in later if item.command is not None]
        for item in later:
            if isinstance(item, _Rebuild) and item.pool_id not in damaged:
                damage = _damage_of(self.pools.get(item.pool_id))  # unless rebuilt meanwhile
                if damage is not None:
                    damaged[item.pool_id] = damage
        try:
            for pool_id, error in damaged.items():
                await self._rebuild(pool_id, error)
        except CapsvcError as e:
            self._fail(e)
            for item in later:
                _fail(item.future, ShardUnavailable(f"shard {self.shard_id} failed"))
            return
        for item in later:
            if item.command is None:
                _resolve(item.future, None)
        if commands:  # their pools are rebuilt now: no longer deferred, so this ends here
            await self._process(commands)

    async def _rebuild(self, pool_id: str, error: DeferredStateDamaged) -> None:
        """A pool's snapshot is damaged: rebuild the pool from all its events and store a sound
        snapshot at once. Runs in the writer, between commits. Events that break the pool's
        invariants are a damaged file: the shard fails closed."""
        pool, seq = await rebuild_pool(self.log, error, self.settings.retention)
        was = self.pools.get(pool_id)
        if was is not None and was.version != pool.version:
            log.error(
                "pool %s: its damaged snapshot said version %d, its events say %d",
                pool_id,
                was.version,
                pool.version,
                extra={"shard": self.shard_id},
            )
        await self.log.save_checkpoint([_snapshot(pool_id, seq, pool)], self.checkpoint_seq)
        self.pools[pool_id] = pool
        self._unsnapshotted.pop(pool_id, None)  # the new snapshot holds all its events
        if self.observer is not None:
            self.observer.rebuilt(self, pool_id)

    async def _commit(
        self,
        records: list[StoredEvent],
        touched: set[str],
        answers: list[tuple[_Pending, CommandResult]],
    ) -> None:
        started = time.perf_counter()
        try:
            await self.log.append(records)
        except CapsvcError as error:
            if self.observer is not None:
                self.observer.commit_failed(self, error)
            await self._undo(touched, error)
            self._forget_committed()  # memory is what the file holds again
            for item, result in answers:
                if item.command.pool_id in touched:
                    _fail(item.future, error)
                else:
                    _resolve(item.future, result)
            return
        self._forget_committed()  # what memory holds is on disk now
        self.last_seq = records[-1].seq
        self.event_count += len(records)
        self.batches += 1
        if self.observer is not None:
            self.observer.committed(self, len(answers), len(records), time.perf_counter() - started)
        self._events_since_checkpoint += len(records)
        for record in records:
            self._pool_seqs[record.pool_id] = record.seq
            self._pool_seqs.move_to_end(record.pool_id)
            if record.pool_id not in self._unsnapshotted:
                self._unsnapshotted[record.pool_id] = (record.seq, record.pool_version - 1)
        self.on_commit()
        for item, result in answers:
            _resolve(item.future, result)

    async def _undo(self, touched: set[str], error: CapsvcError) -> None:
        """The append failed: make memory exactly what the file holds again."""
        log.warning(
            "append failed, reloading %d pools: %s",
            len(touched),
            error,
            extra={"shard": self.shard_id},
        )
        if isinstance(error, Fenced | ShardCorrupt):
            self._fail(error)
            return
        try:
            for pool_id in touched:
                pool, seq = await reload_pool(self.log, pool_id, self.settings.retention)
                if pool is None:
                    self.pools.pop(pool_id, None)
                else:
                    self.pools[pool_id] = pool
            stored_seq = await self.log.last_seq()
        except CapsvcError as e:
            self._fail(e)
            return
        if stored_seq != self.last_seq:  # the append did land after all: we cannot tell whom
            self._fail(ShardUnavailable(f"append outcome unclear (seq {stored_seq})"))

    async def _checkpoint(self, every_pool: bool = False) -> None:
        """Snapshot the pools that are due and move the checkpoint as far as they allow.

        A snapshot costs O(pool size), so snapshotting every changed pool at every checkpoint
        made a pool with 30k reservations cost the writer a third of its time. A pool is due
        when its own events since its snapshot pay for it (events x share >= size), or when
        its oldest unsnapshotted event is older than `_replay_window()`. Either way each event
        pays for at most 2 x `_SNAPSHOT_SHARE` units of snapshot work (a unit: one slot or
        one reservation), and recovery replays at most about the window plus one
        checkpoint interval of events. `every_pool` (drain) snapshots every changed pool.

        The checkpoint is the seq before the oldest event still in no snapshot: recovery
        replays from there and skips what each pool's snapshot already holds."""
        pending = self._unsnapshotted
        if not pending:
            self._events_since_checkpoint = 0
            return
        interval = self.settings.snapshot_every_events
        oldest, _ = next(iter(pending.values()))
        # the window is at least one interval: only then can any pool be overdue
        window = self._replay_window() if self.last_seq - oldest >= interval else 0
        due = []
        for pool_id, (first_seq, snapshot_version) in pending.items():
            pool = self.pools.get(pool_id)
            if pool is None:  # cannot be (its events are committed): keep its events replayed
                continue
            if every_pool or (window and self.last_seq - first_seq >= window):
                due.append((pool_id, pool))
            elif (pool.version - snapshot_version) * _SNAPSHOT_SHARE >= _snapshot_size(pool):
                due.append((pool_id, pool))
        if not due:
            self._events_since_checkpoint = 0
            return
        snapshots = []
        for pool_id, pool in due:
            check_pool(pool)
            try:
                snapshots.append(_snapshot(pool_id, self._pool_seqs.get(pool_id, 0), pool))
            except DeferredStateDamaged as e:
                await self._rebuild(pool_id, e)  # which stores its snapshot
        done = {s.pool_id for s in snapshots}
        rest = (seq for pool_id, (seq, _) in pending.items() if pool_id not in done)
        checkpoint_seq = next(rest, self.last_seq + 1) - 1
        await self.log.save_checkpoint(snapshots, checkpoint_seq)
        self.checkpoint_seq = checkpoint_seq
        for pool_id in done:
            del pending[pool_id]
        self._events_since_checkpoint = 0

    def _replay_window(self) -> int:
        """How many events recovery may have to replay: at least one checkpoint interval,
        and a share of the shard's state (replaying it costs about what loading it does)."""
        size = sum(_snapshot_size(pool) for pool in self.pools.values())
        return max(self.settings.snapshot_every_events, size // _SNAPSHOT_SHARE)

    # -- reads -----------------------------------------------------------------------------
    def _forget_committed(self) -> None:
        self._committed, self._committed_reservations = {}, {}

    def read_pool(self, pool_id: str) -> Pool | None:
        """The committed state of a pool, now: never waits for a commit (see the module's
        docstring for why that is still read-your-writes)."""
        if self.state not in (ShardState.READY, ShardState.DRAINING):
            self.check_ready()
        committed = self._committed
        if pool_id in committed:
            return committed[pool_id]
        return self.pools.get(pool_id)

    async def read_reservation(
        self, pool_id: str, reservation_id: str
    ) -> tuple[Pool | None, Reservation | None]:
        """A reservation as committed, with its pool (read-your-writes, as `read_pool`). If the
        pool's snapshot turns out damaged, the writer rebuilds the pool first."""
        pool = self.read_pool(pool_id)
        if pool is None:
            return None, None
        if reservation_id in self._committed_reservations:  # changed by the batch in flight
            return pool, self._committed_reservations[reservation_id]
        live = self.pools[pool_id]  # reservations live only there (`copy_for_readers`)
        if _damage_of(live) is None:
            return pool, live.reservations.get(reservation_id)
        self.check_ready()
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Rebuild(pool_id, future))
        except asyncio.QueueFull:
            raise Overloaded(f"shard {self.shard_id} is overloaded; try again shortly") from None
        await future
        pool = self.read_pool(pool_id)
        if pool is None or reservation_id in self._committed_reservations:
            return pool, self._committed_reservations.get(reservation_id)
        return pool, self.pools[pool_id].reservations.get(reservation_id)

    def changes_since(self, seq: int, limit: int) -> tuple[list[str], int]:
        """Pools changed after `seq`, oldest change first, at most `limit` of them, and the
        position to ask from next time (every change up to it is in the list)."""
        newer = []
        for pool_id in reversed(self._pool_seqs):
            if self._pool_seqs[pool_id] <= seq:
                break
            newer.append(pool_id)
        newer.reverse()
        if len(newer) <= limit:
            return newer, max(self.last_seq, seq)
        page = newer[:limit]
        return page, self._pool_seqs[page[-1]]


# Snapshot work each event pays for, in units (a slot or a reservation written): a pool is due
# once its events since its snapshot reach 1/_SNAPSHOT_SHARE of its size, and the replay window
# is 1/_SNAPSHOT_SHARE of the shard's size. Lower: cheaper checkpoints, longer replay after a
# crash. 4: a 30k-reservation pool is snapshotted every 7,500 of its events.
_SNAPSHOT_SHARE = 4


def _snapshot_size(pool: Pool) -> int:
    # keyed refusals are remembered (and snapshotted) like reservations: a flash-sale pool
    # that refused thousands must not be snapshotted every few events
    return len(pool.slots) + pool.reservation_count + pool.refusal_count


def _damage_of(pool: Pool | None) -> DeferredStateDamaged | None:
    """Decode a pool's deferred reservations now; what is damaged about them, if anything."""
    if pool is None or pool.deferred is None:
        return None
    try:
        pool.reservations  # noqa: B018
    except DeferredStateDamaged as e:
        return e
    return None


def _snapshot(pool_id: str, seq: int, pool: Pool) -> StoredSnapshot:
    return StoredSnapshot(pool_id, seq, pool.version, SNAPSHOT_SCHEMA, encode_snapshot(pool))


def _default_on_crash(error: BaseException) -> None:
    # A bug may have left memory inconsistent with the file: stop this process so the
    # supervisor restarts it and recovery rebuilds the truth from the log.
    logging.shutdown()
    os._exit(70)


def _result(
    command: cmd.Command, decision: Decision, pool: Pool | None, epoch: int
) -> CommandResult:
    version = pool.version if pool is not None else None
    if decision.rejection is not None:
        return CommandResult(
            rejection=decision.rejection, replayed=decision.replayed, epoch=epoch, version=version
        )
    assert pool is not None
    if isinstance(command, cmd.ReserveCapacity | cmd.ReleaseReservation):
        assert decision.reservation_id is not None
        reservation = pool.reservations[decision.reservation_id]
        body = reservation_view(
            pool, reservation, as_created=isinstance(command, cmd.ReserveCapacity)
        )
        return CommandResult(
            body=body,
            created=isinstance(command, cmd.ReserveCapacity) and not decision.replayed,
            replayed=decision.replayed,
            epoch=epoch,
            version=version,
        )
    created = isinstance(command, cmd.DefinePool) and bool(decision.events)
    return CommandResult(body=pool_view(pool), created=created, epoch=epoch, version=version)


def _resolve(future: asyncio.Future, result: CommandResult) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
