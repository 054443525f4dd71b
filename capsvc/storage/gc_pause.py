"""Keep CPython's cyclic garbage collector out of a shard's recovery.

Recovery builds hundreds of thousands of objects (pools, reservations, keys) that all survive
and hold no reference cycles. With the collector on, the bursts of allocations make it run
over and over, and its collections walk the objects built so far: a quarter of replay's time.
So it is paused meanwhile (reference counting still frees everything that is not a cycle),
and if the recovery built a great deal, what the process holds then is frozen
(`gc.freeze()`): the recovered state is long-lived, and no later collection needs to walk it.
Freezing also keeps any cyclic garbage of that moment for good, so small recoveries, which
the collector handles cheaply, do not freeze.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FREEZE_AFTER_OBJECTS = 200_000  # objects built during the pauses; below this, just resume
_depth = 0  # pauses open now (shards recover concurrently on one event loop)
_resume = False  # whether the first pause found the collector enabled


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    global _depth, _resume
    if _depth == 0:
        _resume = gc.isenabled()
        gc.disable()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _resume:
            if gc.get_count()[0] >= FREEZE_AFTER_OBJECTS:
                gc.freeze()
            gc.enable()
