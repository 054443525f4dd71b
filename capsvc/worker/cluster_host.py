"""A worker's shards in cluster mode: claimed and released as the leader's assignment says.

State machine of one shard on this worker (one reconcile task drives it; nothing else does):

    unowned --assigned to me, owner node free--> claimed (epoch e+1 in ZooKeeper)
    claimed --file opened with epoch, recovered--> ready (owner node marked ready)
    claimed --file still locked by a paused predecessor--> claimed (retry; 503 meanwhile)
    ready --assignment moved away, or drain--> handing off (no new commands, queue finished,
             checkpoint, file closed) --owner node deleted--> unowned
    ready --SUSPENDED--> ready but not acknowledging (lease invalid) --reconnect, verified
             after sync()--> ready
    ready --lease expired with no word from ZooKeeper--> abandoned (file closed so that the
             next owner can open it) --reconnect--> owner node released --> unowned
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from kazoo.client import KazooState

from capsvc.cluster.leader import Leader
from capsvc.cluster.lease import Lease
from capsvc.cluster.ownership import Claim, Ownership, WorkerInfo
from capsvc.cluster.zk import Zk, decode
from capsvc.config import Config
from capsvc.errors import CapsvcError, Fenced, FileLocked
from capsvc.shard.shard import Shard, ShardState

log = logging.getLogger(__name__)
CLAIM_BUSY_TIMEOUT_MS = 200  # a locked file is retried by the reconcile loop, not waited on
RECONCILE_EVERY_S = 0.5


class ClusterShardHost:
    def __init__(self, config: Config, index: int, zk: Zk, me: WorkerInfo, new_shard) -> None:
        self.config = config
        self.zk = zk
        self.me = me
        self.ownership = Ownership(zk, me)
        self.leader = Leader(
            zk, me.worker_id, config.service.shard_count, config.cluster.rebalance_delay_ms
        )
        self.lease = Lease(config.cluster.owner_lease_ms, config.cluster.session_timeout_ms)
        self.new_shard = new_shard
        self.shards: dict[int, Shard] = {}  # shared with the HTTP app: what this worker serves
        self.claims: dict[int, Claim] = {}
        self._to_release: list[Claim] = []  # claims whose files we closed while cut off
        self.assigned: set[int] = set()
        self.draining = False
        self.on_commit = lambda: None
        # called once a handed-off shard's file is closed, before its claim is released
        # (fault tests pause there)
        self.after_close: Callable[[int], None] = lambda shard_id: None
        # shard -> since when (and for whom) its claim waits for a previous owner to let go of
        # the file: shown by /internal/status (so /v1/admin/cluster) and a metric
        self.waiting_for_file: dict[int, dict] = {}
        self._wake = asyncio.Event()
        self._verify_needed = False
        self._tasks: list[asyncio.Task] = []

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.zk.on_state(self._on_state)
        self.lease.resume()
        self.lease.renew(time.monotonic())
        await self.ownership.register()
        self.zk.watch_data(self.zk.path("assignment"), self._on_assignment)
        self.leader.start()
        self._tasks = [
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]

    def wake(self) -> None:
        self._wake.set()

    def _wake_threadsafe(self) -> None:
        assert self.zk.loop is not None
        self.zk.loop.call_soon_threadsafe(self._wake.set)

    def _on_assignment(self, raw: bytes | None, _stat: object) -> None:
        shards = (decode(raw) or {}).get("shards", {})
        self.assigned = {int(s) for s, w in shards.items() if w == self.me.worker_id}
        self.wake()

    def _on_state(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            self._verify_needed = True  # resume only after re-checking ownership
        else:
            self.lease.suspend()  # SUSPENDED or LOST: stop acknowledging writes now
        self.wake()

    async def drain(self) -> None:
        """Planned stop: leave the membership, hand every shard off, stop."""
        self.draining = True
        with contextlib.suppress(CapsvcError, Exception):
            await self.ownership.unregister()
        # Give the leader a moment to name the new owners, so they are waiting when we let go.
        deadline = time.monotonic() + self.config.cluster.rebalance_delay_ms / 1000 + 2.0
        while self.assigned and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.wake()  # the reconcile loop hands off everything once draining is set
        deadline = time.monotonic() + self.config.supervisor.drain_timeout_ms / 2000
        while self.shards and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.leader.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=2.0)  # never let a stuck task block the stop
        for shard_id in sorted(self.shards):  # only if the loop could not finish in time
            await self._hand_off(shard_id)

    @property
    def ready(self) -> bool:
        return bool(self.shards) and all(s.state is ShardState.READY for s in self.shards.values())

    # -- the reconcile loop: the only place that changes ownership -----------------------
    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_EVERY_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._reconcile()
            except CapsvcError as e:
                log.warning("reconcile failed: %s", e)
            except Exception:  # kazoo errors while ZooKeeper is away: try again shortly
                log.exception("reconcile failed")

    async def _reconcile(self) -> None:
        if self.lease.expired() and self.claims:
            await self._abandon_all()
            return
        if self.zk.state != KazooState.CONNECTED:
            return
        while self._to_release:
            await self.ownership.release(self._to_release.pop())
        if self._verify_needed:
            await self._verify_all()
        for shard_id in sorted(self.shards):
            if self.draining or shard_id not in self.assigned:
                await self._hand_off(shard_id)
        if self.draining or not self.lease.valid():
            return
        for shard_id in sorted(self.assigned):
            shard = self.shards.get(shard_id)
            if shard is None or shard.state is ShardState.FAILED:
                await self._claim(shard_id)

    async def _claim(self, shard_id: int) -> None:
        claim = self.claims.get(shard_id) or await self.ownership.claim(
            shard_id, self._wake_threadsafe
        )
        if claim is None:
            return  # still held by its previous owner; its release wakes us
        self.claims[shard_id] = claim
        shard = self.new_shard(self.config, shard_id, busy_timeout_ms=CLAIM_BUSY_TIMEOUT_MS)
        shard.on_commit = self.on_commit
        shard.may_append = self.lease.valid
        self.shards[shard_id] = shard  # visible while it opens: requests get 503 "starting"
        try:
            await shard.start(epoch=claim.epoch)
        except Fenced as e:
            # The file already holds this claim's epoch (it was stored before a failure) or a
            # newer one (ZooKeeper lost its counter): this claim can never open it again. Let
            # it go, so that the next round claims afresh with a newer epoch.
            log.warning("claim is fenced by the file; claiming again: %s", e,
                        extra={"shard": shard_id})
            await self._hand_off(shard_id)
            return
        except FileLocked:
            self._note_file_held(shard_id, claim)
            return  # held by a paused predecessor: retried every round, logged once
        except CapsvcError as e:
            log.warning("cannot open shard yet: %s", e, extra={"shard": shard_id})
            return
        waited = self.waiting_for_file.pop(shard_id, None)
        if waited is not None:
            log.info("shard file let go by its previous owner", extra={
                "shard": shard_id, "waited_s": round(time.time() - waited["since_s"], 1)})
        await self.ownership.mark_ready(claim)

    def _note_file_held(self, shard_id: int, claim: Claim) -> None:
        if shard_id in self.waiting_for_file:
            return  # one line when the wait begins, one when it ends: not one per retry
        held_by = {k: claim.previous[k] for k in ("host_id", "worker_id", "epoch")
                   if k in claim.previous} if claim.previous else None
        now = time.time()
        self.waiting_for_file[shard_id] = {
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "since_s": now,
            "held_by": held_by,
        }
        log.warning("shard file still held by its previous owner; retrying until it lets go "
                    "(stop or kill that host to fence it)",
                    extra={"shard": shard_id, "held_by": held_by})

    async def _hand_off(self, shard_id: int) -> None:
        shard = self.shards.get(shard_id)
        if shard is not None:
            await shard.drain()  # stop taking commands, finish the queue, checkpoint, close
            self.shards.pop(shard_id, None)
            self.after_close(shard_id)
        if self.waiting_for_file.pop(shard_id, None) is not None:
            log.info("stopped waiting for the shard file: the shard goes elsewhere",
                     extra={"shard": shard_id})
        claim = self.claims.pop(shard_id, None)
        if claim is not None:
            try:
                await self.ownership.release(claim)
            except Exception as e:  # noqa: BLE001 - the ephemeral node dies with the session
                log.warning("release failed: %s", e, extra={"shard": shard_id})

    async def _verify_all(self) -> None:
        """Back from a disconnection: keep only the shards whose owner node is still ours."""
        for shard_id, claim in list(self.claims.items()):
            if not await self.ownership.verify(claim):
                log.warning("lost ownership while disconnected", extra={"shard": shard_id})
                shard = self.shards.pop(shard_id, None)
                if shard is not None:
                    await shard.drain()
                self.claims.pop(shard_id, None)
        self._verify_needed = False
        self.lease.renew(time.monotonic())
        self.lease.resume()
        await self.ownership.register_if_missing()

    async def _abandon_all(self) -> None:
        """The lease ran out without word from ZooKeeper: close every file so that a new
        owner can open it. Our owner nodes are released once we are connected again."""
        log.error("owner lease expired; closing every shard", extra={"shards": len(self.shards)})
        for shard_id in list(self.shards):
            await self.shards.pop(shard_id).drain()
        # Files are closed: these claims can never be resumed (their epoch is spent). Release
        # them as soon as ZooKeeper answers, so the leader's assignment can be claimed afresh.
        self._to_release.extend(self.claims.values())
        self.claims.clear()
        self._verify_needed = True

    async def _heartbeat_loop(self) -> None:
        every_s = self.lease.lease_s / 4
        while True:
            if self.zk.state == KazooState.CONNECTED:
                started = time.monotonic()
                try:
                    await self.zk.call(self.zk.client.exists_async(self.zk.root), timeout_s=every_s)
                    self.lease.renew(started)
                except Exception:  # noqa: BLE001 - a missed renewal is what the lease is for
                    pass
            if self.lease.expired() and self.claims:
                self.wake()
            await asyncio.sleep(every_s)
