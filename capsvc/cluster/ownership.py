"""Shard ownership in ZooKeeper: membership, claims with fencing epochs, release, verification.

A claim is one multi-op transaction: bump the shard's persistent epoch counter (with a version
check) and create the ephemeral owner node. Both happen or neither does, so two workers can
never both believe they took the same epoch. The epoch then goes into the shard file, where it
fences every append.

Nodes left by a dead incarnation of the *same* worker (same worker id, another session) are
deleted on sight: the supervisor only restarts a worker after it exited, so they are stale, and
waiting for their session to expire would only delay recovery.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
)

from capsvc.cluster.zk import Zk, decode, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    host_id: str
    index: int
    url: str  # where routers on other hosts reach this worker

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host_id": self.host_id,
            "index": self.index,
            "url": self.url,
        }


@dataclass(frozen=True)
class Claim:
    shard_id: int
    epoch: int
    # who claimed the shard before us (worker_id, host_id, epoch, at), if anyone: the one
    # that may still hold its file
    previous: dict[str, Any] | None = field(default=None, compare=False)


class Ownership:
    def __init__(self, zk: Zk, me: WorkerInfo) -> None:
        self.zk = zk
        self.me = me

    # -- membership --------------------------------------------------------------------------
    async def register(self) -> None:
        path = self.zk.path("workers", self.me.worker_id)
        data = encode({**self.me.as_dict(), "session": self.zk.session_id})
        while True:
            try:
                await self.zk.call(self.zk.client.create_async(path, data, ephemeral=True))
                return
            except NodeExistsError:
                await self._delete_if_stale(path)

    async def register_if_missing(self) -> None:
        """After a lost session our ephemeral membership node is gone: put it back."""
        path = self.zk.path("workers", self.me.worker_id)
        if await self.zk.call(self.zk.client.exists_async(path)) is None:
            await self.register()

    async def unregister(self) -> None:
        try:
            await self.zk.call(
                self.zk.client.delete_async(self.zk.path("workers", self.me.worker_id))
            )
        except NoNodeError:
            pass

    async def _delete_if_stale(self, path: str) -> bool:
        """Delete `path` if it was left by a dead incarnation of this worker."""
        try:
            raw, stat = await self.zk.call(self.zk.client.get_async(path))
        except NoNodeError:
            return True
        data = decode(raw) or {}
        if data.get("worker_id") != self.me.worker_id or stat.ephemeralOwner == self.zk.session_id:
            return False
        try:
            await self.zk.call(self.zk.client.delete_async(path, version=stat.version))
            log.info("removed a node left by this worker's previous life", extra={"path": path})
        except (NoNodeError, BadVersionError):
            pass
        return True

    # -- ownership ---------------------------------------------------------------------------
    async def claim(self, shard_id: int, wake: Any) -> Claim | None:
        """Take the shard with a new epoch, or return None if someone else holds it (then
        `wake()` is called from kazoo's thread when its owner node changes)."""
        zk, client = self.zk, self.zk.client
        epoch_path, owner_path = zk.shard_path(shard_id, "epoch"), zk.shard_path(shard_id, "owner")
        # persistent, unlike the owner node: who claimed last outlives that owner's session
        last_path = zk.shard_path(shard_id, "last_claim")
        for path, empty in ((epoch_path, b"0"), (last_path, b"{}")):
            try:
                await zk.call(client.create_async(path, empty, makepath=True))
            except NodeExistsError:
                pass
        while True:
            owner = await zk.call(client.exists_async(owner_path, watch=lambda _e: wake()))
            if owner is not None:
                if not await self._delete_if_stale(owner_path):
                    mine = await self.current(shard_id)
                    return mine  # ours already (same session), or someone else's (None)
                continue
            raw, stat = await zk.call(client.get_async(epoch_path))
            epoch = int(raw or b"0") + 1
            last_raw, _ = await zk.call(client.get_async(last_path))
            previous = decode(last_raw) or None
            tx = client.transaction()
            tx.set_data(epoch_path, str(epoch).encode(), version=stat.version)
            tx.set_data(last_path, encode({"worker_id": self.me.worker_id,
                                           "host_id": self.me.host_id, "epoch": epoch,
                                           "at": time.time()}))
            tx.create(
                owner_path,
                encode({**self.me.as_dict(), "epoch": epoch, "ready": False}),
                ephemeral=True,
            )
            results = await zk.call(tx.commit_async())
            failures = [r for r in results if isinstance(r, Exception)]
            if not failures:
                log.info("claimed shard", extra={"shard": shard_id, "epoch": epoch})
                return Claim(shard_id, epoch, previous)
            if any(
                isinstance(f, NodeExistsError | BadVersionError | RolledBackError) for f in failures
            ):
                continue  # someone moved first: look again
            raise failures[0]

    async def current(self, shard_id: int) -> Claim | None:
        """Our claim on the shard if the owner node is ours (this session), else None."""
        owner_path = self.zk.shard_path(shard_id, "owner")
        try:
            raw, stat = await self.zk.call(self.zk.client.get_async(owner_path))
        except NoNodeError:
            return None
        data = decode(raw) or {}
        if data.get("worker_id") != self.me.worker_id or stat.ephemeralOwner != self.zk.session_id:
            return None
        return Claim(shard_id, int(data["epoch"]))

    async def verify(self, claim: Claim) -> bool:
        """After a reconnect: is the owner node still ours, with our epoch? Reads after
        sync() so that we see everything the quorum has committed."""
        owner_path = self.zk.shard_path(claim.shard_id, "owner")
        await self.zk.call(self.zk.client.sync_async(owner_path))
        return await self.current(claim.shard_id) == claim

    async def mark_ready(self, claim: Claim) -> None:
        owner_path = self.zk.shard_path(claim.shard_id, "owner")
        data = encode({**self.me.as_dict(), "epoch": claim.epoch, "ready": True})
        await self.zk.call(self.zk.client.set_async(owner_path, data))

    async def release(self, claim: Claim) -> None:
        if await self.current(claim.shard_id) != claim:
            return
        try:
            await self.zk.call(
                self.zk.client.delete_async(self.zk.shard_path(claim.shard_id, "owner"))
            )
            log.info("released shard", extra={"shard": claim.shard_id, "epoch": claim.epoch})
        except NoNodeError:
            pass
