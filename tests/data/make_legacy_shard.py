"""Writes `legacy-v0-shard.sqlite3`: a real shard file whose events use the v0 shapes.

v0 is the first, pre-release event format (see the upcasters in `capsvc/storage/codec.py`):
slot specs were JSON objects (`{"slot_id": ..., "starts_at": ..., ...}`) in `PoolDefined` and
`SlotAdded`, and `CapacityReserved` had no `order_ref`. Every other event type is unchanged
(stored as v1). The file is written by the real `SqliteEventLog`, with only its encoder
swapped for the v0 one, and it has no snapshot, so loading it replays every old event.

The checked-in file is the fixture; this script documents how it was made (it is not run by
the tests). Regenerate only if the fixture is lost:

    .venv/bin/python -m tests.data.make_legacy_shard
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from capsvc.domain import events as ev
from capsvc.storage import codec, sqlite_log
from capsvc.storage.log import StoredEvent

OUT = Path(__file__).with_name("legacy-v0-shard.sqlite3")
AT = 1_767_225_600_000  # 2026-01-01T00:00:00Z

VAN = "legacy:2026-03-01:van"
BIKE = "legacy:2026-03-02:bike"
A = ev.SlotSpec("0800-1000", "2026-03-01T08:00:00+08:00", "2026-03-01T10:00:00+08:00", 5)
B = ev.SlotSpec("1000-1200", "2026-03-01T10:00:00+08:00", "2026-03-01T12:00:00+08:00", 2)
C = ev.SlotSpec("1200-1400", "2026-03-01T12:00:00+08:00", "2026-03-01T14:00:00+08:00", 4)
M = ev.SlotSpec("am", "2026-03-02T08:00:00+08:00", "2026-03-02T12:00:00+08:00", 10)

# The history, in today's types; the v0 encoder below writes it in the old shapes.
HISTORY: list[tuple[str, ev.Event]] = [
    (VAN, ev.PoolDefined(VAN, "van", "legacy", "2026-03-01", 9, (A, B))),
    (VAN, ev.CapacityReserved(f"{VAN}~1.aaaaaaaaaaaa", A.slot_id, 2, None, "order-1", AT + 1)),
    (BIKE, ev.PoolDefined(BIKE, "bike", "legacy", "2026-03-02", None, (M,))),
    (VAN, ev.CapacityReserved(f"{VAN}~2.bbbbbbbbbbbb", B.slot_id, 1, None, None, AT + 2)),
    (VAN, ev.SlotAdded(C)),
    (BIKE, ev.CapacityReserved(f"{BIKE}~1.cccccccccccc", M.slot_id, 4, None, "order-2", AT + 3)),
    (VAN, ev.CapacityReserved(f"{VAN}~3.dddddddddddd", C.slot_id, 3, None, "order-3", AT + 4)),
    (VAN, ev.ReservationReleased(f"{VAN}~2.bbbbbbbbbbbb", AT + 5)),
    (VAN, ev.SlotClosed(B.slot_id)),
    (VAN, ev.SlotCapacityChanged(A.slot_id, 6)),
    (BIKE, ev.TotalCapacityChanged(8)),
]


def _spec_v0(spec: ev.SlotSpec) -> dict:
    return {"slot_id": spec.slot_id, "starts_at": spec.starts_at, "ends_at": spec.ends_at,
            "capacity": spec.capacity}


def encode_v0(event: ev.Event) -> tuple[str, int, str]:
    name, _, body = codec.encode_event(event)
    data = json.loads(body)
    if isinstance(event, ev.PoolDefined):
        data["slots"] = [_spec_v0(s) for s in event.slots]
    elif isinstance(event, ev.SlotAdded):
        data["slot"] = _spec_v0(event.slot)
    elif isinstance(event, ev.CapacityReserved):
        assert event.order_ref is None  # v0 had no order_ref
        del data["order_ref"]
    else:
        return name, 1, body
    return name, 0, json.dumps(data, separators=(",", ":"))


async def main() -> None:
    OUT.unlink(missing_ok=True)
    log = sqlite_log.SqliteEventLog(OUT)
    head = await log.open(None)
    versions: dict[str, int] = {}
    records = []
    for seq, (pool_id, event) in enumerate(HISTORY, start=1):
        versions[pool_id] = versions.get(pool_id, 0) + 1
        records.append(StoredEvent(seq, pool_id, versions[pool_id], head.epoch, AT + seq,
                                   "admin:legacy", event))
    original, sqlite_log.encode_event = sqlite_log.encode_event, encode_v0
    try:
        await log.append(records)
    finally:
        sqlite_log.encode_event = original
        await log.close()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(records)} events)")


if __name__ == "__main__":
    asyncio.run(main())
