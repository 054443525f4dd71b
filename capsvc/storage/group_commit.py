"""Group commit across the shard files of one worker: every append its shards ask for in one
turn of the event loop becomes durable in one hand-off to one writer thread.

Each shard file still commits its own transaction (the file per shard is the unit of
ownership, handoff and fencing); what the shards share is the trip to the thread and the one
wake-up back. With 32 shards per worker and load spread over many pools, each shard used to
pay a thread hop (and a GIL hand-over) for a batch of one or two events.

While the thread works, appends that arrive wait for the next hand-off, so a batch grows with
the commit latency: a slow disk makes batches larger, never the queue of hand-offs longer.

A caller that stops waiting does not stop its commit: once handed off, the transaction runs
to its end, and its outcome is what the file says (the shard checks `last_seq` after an
unclear failure).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

Work = Callable[[], None]


class GroupCommitter:
    """One writer thread and the appends waiting for it. One per worker process (`worker/main.py`);
    a log without one gets its own (tools and tests)."""

    def __init__(self, name: str = "capsvc-commit") -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._waiting: list[tuple[Work, asyncio.Future]] = []
        self._busy = False
        self._scheduled = False
        self.handoffs = 0  # how many trips to the thread (load.bench.commit_cost reports it)

    def commit(self, work: Work) -> asyncio.Future:
        """Run `work` (one shard file's transaction) on the writer thread with whatever else
        is waiting; the future resolves when it committed, or raises what it raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((work, future))
        if not self._busy and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._hand_off)  # after the other shards of this turn had theirs
        return future

    def _hand_off(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        self._busy = True
        self.handoffs += 1
        done = asyncio.get_running_loop().run_in_executor(
            self._executor, _run_all, [work for work, _ in batch]
        )
        done.add_done_callback(functools.partial(self._landed, batch))

    def _landed(self, batch: list[tuple[Work, asyncio.Future]], done: asyncio.Future) -> None:
        self._busy = False
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is None:
            outcomes = done.result()
        else:  # the executor itself failed (shut down): nothing of this batch ran
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller gave up waiting; its commit ran all the same
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)
        if self._waiting:
            self._hand_off()

    def close(self) -> None:
        """Let the commits handed off finish; take no more."""
        self._executor.shutdown(wait=True)


def _run_all(works: list[Work]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = []
    for work in works:
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - each file's own outcome goes to its caller
            outcomes.append(e)
        else:
            outcomes.append(None)
    return outcomes
