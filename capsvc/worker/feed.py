"""The worker's side of the read-model feed (`GET /internal/feed`, the router's long-poll):
the pools changed since the router's per-shard positions, waiting a little if none did.

Answered by the worker's lean front (`front.py`), not aiohttp: under write load it is asked
every `read_model.feed_interval_ms`, and aiohttp's request machinery cost more than the
answer. With `rows=1` (routers that read compact rows) each pool is a `feed_row`, not a whole
view, and a ready shard with nothing new is only listed in `unchanged`; `rows=2` (routers that
know booking cut-offs) adds the pool's cut-off at the end of each row. An older router asks
`rows=1` and gets the rows it can read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from capsvc.domain.pool import Pool
from capsvc.domain.views import availability_view
from capsvc.http import parsing
from capsvc.shard.shard import Shard, ShardState

LIMIT_DEFAULT, LIMIT_MAX = 2000, 100_000


@dataclass(frozen=True)
class FeedQuery:
    positions: dict[int, int]  # shard id -> the last seq the router has
    wait_ms: int
    limit: int  # pools per shard in one answer
    compact: bool  # rows, not views
    with_cutoff: bool = False  # rows end with the pool's booking cut-off (rows=2)


def parse_query(raw: bytes, wait_max_ms: int) -> FeedQuery:
    """The query string of a feed request; raises BadRequest naming the bad parameter."""
    query = {k: v[0] for k, v in parse_qs(raw.decode("latin-1"), keep_blank_values=True).items()}
    positions = {}
    for part in filter(None, query.get("since", "").split(",")):
        shard, _, seq = part.partition(":")
        if not (shard.isdigit() and seq.isdigit()):
            raise parsing.bad_parameter("since", "must be shard:seq,shard:seq,...")
        positions[int(shard)] = int(seq)
    return FeedQuery(
        positions,
        parsing.int_parameter("wait_ms", query.get("wait_ms"), 0, 0, wait_max_ms),
        parsing.int_parameter("limit", query.get("limit"), LIMIT_DEFAULT, 1, LIMIT_MAX),
        query.get("rows") in ("1", "2"),
        query.get("rows") == "2",
    )


async def wait_for_change(
    shards: Mapping[int, Shard], query: FeedQuery, changed: asyncio.Event
) -> None:
    """Return once a shard's position differs from the router's, or after `wait_ms`."""
    deadline = time.monotonic() + query.wait_ms / 1000
    while True:
        changed.clear()
        if any(s.last_seq != query.positions.get(i, -1) for i, s in shards.items()):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            async with asyncio.timeout(remaining):
                await changed.wait()
        except TimeoutError:
            return


def feed_answer(shards: Mapping[int, Shard], query: FeedQuery, worker: int) -> dict[str, Any]:
    """What changed, shard by shard. Synchronous: no shard can come or go while it runs."""
    out: dict[str, Any] = {}
    unchanged = []
    if query.compact:
        render = feed_row_with_cutoff if query.with_cutoff else feed_row
    else:
        render = availability_view
    for shard_id, shard in shards.items():
        since = query.positions.get(shard_id, 0)
        full = since <= 0 or since > shard.last_seq  # unknown position: send everything
        pools = []
        if shard.state is ShardState.FAILED:
            position, full = since, False  # its memory is not trustworthy: send nothing
        else:
            pool_ids, position = shard.changes_since(0 if full else since, query.limit)
            for pool_id in pool_ids:
                pool = shard.read_pool(pool_id)
                if pool is not None:
                    pools.append(render(pool))
        if (
            query.compact
            and not pools
            and not full
            and position == since
            and shard.state is ShardState.READY
        ):
            unchanged.append(shard_id)
            continue
        out[str(shard_id)] = {
            "state": shard.state.value,
            "epoch": shard.epoch,
            "position": position,
            "last_seq": shard.last_seq,
            "full": full,
            "rows" if query.compact else "pools": pools,
        }
    answer: dict[str, Any] = {"worker": worker, "shards": out}
    if query.compact:
        answer["unchanged"] = unchanged
    return answer


def feed_row(pool: Pool) -> list[Any]:
    """A pool as the router's read model keeps it (`ReadModel._entry_from_row`): about a
    tenth of the work of a whole view, and half its bytes."""
    return [
        pool.pool_id,
        pool.kind,
        pool.region,
        pool.date,
        pool.version,
        pool.total_capacity,
        pool.total_reserved,
        [
            [s.slot_id, s.starts_at, s.ends_at, s.capacity, s.reserved, s.open]
            for s in pool.slots.values()
        ],
    ]


def feed_row_with_cutoff(pool: Pool) -> list[Any]:
    """`feed_row` and the pool's booking cut-off in minutes: the router turns it into each
    slot's closing instant with the domain's own arithmetic (`capsvc.domain.instants`)."""
    row = feed_row(pool)
    row.append(pool.booking_cutoff_minutes)
    return row
