"""The router's read model: paged first load, per-shard positions, full reloads, compact
entries that render exactly what whole views did, and grids cached per day."""

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from capsvc.domain.pool import KeyRetention, Pool, Slot
from capsvc.domain.views import availability_view
from capsvc.router.read_model import ReadModel
from capsvc.worker.feed import feed_row_with_cutoff as _feed_row

# Days relative to today: the model compares slot times with the real clock by default.
_TODAY = dt.date.today()
DAY, DAY2, DAY3, DAY9 = ((_TODAY + dt.timedelta(days=n)).isoformat() for n in (1, 2, 3, 9))


def _row(
    pool_id: str,
    bookable: bool = True,
    date: str = DAY,
    region: str = "r",
    kind: str = "k",
    version: int = 1,
) -> list:
    """A feed row of a one-slot pool (the compact format workers send)."""
    return [
        pool_id,
        kind,
        region,
        date,
        version,
        None,
        0 if bookable else 1,
        [["s", f"{date}T08:00:00Z", f"{date}T09:00:00Z", 1, 0 if bookable else 1, True]],
    ]


def _answer(
    shard: int,
    position: int,
    last_seq: int,
    rows: list,
    full: bool,
    unchanged: tuple[int, ...] = (),
) -> dict:
    return {
        "shards": {
            str(shard): {
                "state": "ready",
                "epoch": 1,
                "position": position,
                "last_seq": last_seq,
                "full": full,
                "rows": rows,
            }
        },
        "unchanged": list(unchanged),
    }


def _loaded(*rows: list) -> ReadModel:
    model = ReadModel(shard_count=1)
    model.apply("w0", _answer(0, 1, 1, list(rows), full=True), at=100.0)
    return model


def test_the_model_is_not_current_until_every_shard_was_loaded_completely():
    model = ReadModel(shard_count=1)
    model.apply("w0", _answer(0, 5, 10, [_row("p1")], full=True), at=100.0)
    assert model.as_of(["w0"]) is None  # first page only
    assert model.since_parameter() == "0:5"
    model.apply("w0", _answer(0, 10, 10, [_row("p2")], full=False), at=101.0)
    assert model.as_of(["w0"]) == 101.0
    assert [p["pool_id"] for p in model.grid("r", DAY, None)] == ["p1", "p2"]


def test_views_replace_each_other_and_a_full_answer_drops_what_is_gone():
    model = ReadModel(shard_count=1)
    model.apply("w0", _answer(0, 2, 2, [_row("p1"), _row("p2")], full=True))
    before = model.generation
    model.apply("w0", _answer(0, 3, 3, [_row("p1", bookable=False, version=2)], full=False))
    assert model.generation > before
    grid = {p["pool_id"]: p["slots"][0]["bookable"] for p in model.grid("r", DAY, None)}
    assert grid == {"p1": False, "p2": True}
    model.apply("w0", _answer(0, 3, 3, [_row("p2")], full=True))  # e.g. a restored file
    assert [p["pool_id"] for p in model.grid("r", DAY, None)] == ["p2"]


def test_an_unchanged_shard_counts_as_loaded_and_keeps_its_position():
    model = ReadModel(shard_count=2)
    model.apply(
        "w0",
        {
            "shards": {
                "0": {
                    "state": "ready",
                    "epoch": 1,
                    "position": 4,
                    "last_seq": 4,
                    "full": True,
                    "rows": [_row("p1")],
                },
                "1": {
                    "state": "starting",
                    "epoch": 1,
                    "position": 0,
                    "last_seq": 0,
                    "full": False,
                    "rows": [],
                },
            }
        },
        at=1.0,
    )
    assert model.as_of(["w0"]) is not None  # shard 1 is empty and was answered completely
    model.apply("w0", _answer(1, 3, 3, [_row("p2")], full=True, unchanged=(0,)), at=2.0)
    assert model.positions == {0: 4, 1: 3}
    assert model.shard_states == {0: "ready", 1: "ready"}
    assert model.as_of(["w0"]) == 2.0
    assert [p["pool_id"] for p in model.grid("r", DAY, None)] == ["p1", "p2"]


def test_a_change_to_one_day_leaves_the_other_days_cached_grids_in_place():
    model = _loaded(_row("a1", date=DAY), _row("b1", date=DAY2))
    day_a = model.grid_json("r", DAY, None)
    day_b = model.grid_json("r", DAY2, None)
    day_b_kind = model.grid_json("r", DAY2, "k")
    model.apply(
        "w0",
        _answer(0, 2, 2, [_row("a1", bookable=False, date=DAY, version=2)], full=False),
    )
    assert model.grid_json("r", DAY2, None) is day_b  # the very same bytes object
    assert model.grid_json("r", DAY2, "k") is day_b_kind
    fresh = model.grid_json("r", DAY, None)
    assert fresh != day_a
    assert json.loads(fresh)[0]["slots"][0]["bookable"] is False


def test_a_change_is_in_the_very_next_grid_after_the_feed_delivered_it():
    model = _loaded(_row("a1"))
    assert json.loads(model.grid_json("r", DAY, None))[0]["slots"][0]["bookable"] is True
    model.apply("w0", _answer(0, 2, 2, [_row("a1", bookable=False, version=2)], full=False))
    assert json.loads(model.grid_json("r", DAY, None))[0]["slots"][0]["bookable"] is False
    model.apply("w0", _answer(0, 3, 3, [_row("a2")], full=False))  # a new pool that day
    assert [p["pool_id"] for p in json.loads(model.grid_json("r", DAY, None))] == ["a1", "a2"]
    model.apply("w0", _answer(0, 4, 4, [_row("a2", date=DAY9, version=2)], full=False))
    assert [p["pool_id"] for p in json.loads(model.grid_json("r", DAY, None))] == ["a1"]
    assert [p["pool_id"] for p in json.loads(model.grid_json("r", DAY9, None))] == ["a2"]


def test_a_pool_sent_again_unchanged_keeps_its_days_cached_grid():
    model = _loaded(_row("a1"), _row("a2"))
    cached = model.grid_json("r", DAY, None)
    model.apply("w0", _answer(0, 2, 2, [_row("a1")], full=False))
    assert model.grid_json("r", DAY, None) is cached


def test_pools_with_one_slot_layout_share_it_and_dropping_them_frees_it():
    model = _loaded(_row("a1"), _row("a2"), _row("b1", date=DAY2))
    a1, a2 = model._pools["a1"], model._pools["a2"]
    assert a1.shape is a2.shape and a1.region is a2.region
    assert len(model._shapes) == 2
    model.apply("w0", _answer(0, 0, 0, [], full=True))  # the shard was emptied
    assert model.pool_count() == 0 and model._shapes == {} and model._by_day == {}
    assert model._shard_sizes[0] == 0
    assert model.regions() == [] and model.grid("r", DAY, None) == []


def test_the_board_reads_regions_days_and_whole_views():
    model = _loaded(
        _row("a1", region="x"),
        _row("b1", region="y", date=DAY3),
        _row("b2", region="y", kind="other"),
    )
    assert model.regions() == ["x", "y"]
    assert model.days("y") == [DAY, DAY3]
    assert [v["pool_id"] for v in model.views("y", DAY, None)] == ["b2"]
    assert model.views("y", DAY, "k") == []


# -- compact entries render exactly what whole views did ---------------------------------------
def _old_grid(views: list[dict], region: str, date: str, kind: str | None) -> list[dict]:
    """The grid as the read model built it from stored whole views, before compact entries."""
    return [
        {
            "pool_id": v["pool_id"],
            "kind": v["kind"],
            "region": region,
            "date": date,
            "slots": [
                {
                    "slot_id": s["slot_id"],
                    "starts_at": s["starts_at"],
                    "ends_at": s["ends_at"],
                    "bookable": s["bookable"],
                }
                for s in v["slots"]
            ],
        }
        for v in sorted(views, key=lambda v: v["pool_id"])
        if v["region"] == region and v["date"] == date and (kind is None or v["kind"] == kind)
    ]


_SLOT = st.tuples(st.integers(0, 50), st.integers(0, 50), st.booleans())
_POOL = st.tuples(
    st.sampled_from(["van", "bike"]),
    st.sampled_from(["2030-01-01", "2030-01-02"]),
    st.one_of(st.none(), st.integers(0, 120)),
    st.integers(0, 130),
    st.lists(_SLOT, min_size=0, max_size=6),
    st.integers(1, 10_000),
    st.sampled_from([0, 0, 30, 240, 1440]),  # booking cut-off, minutes
)
# The clock these renders compare with: 2030-01-01T03:30:00+08:00, so some slots of the
# first day have started or passed their cut-off, and the second day's pass with a long one.
_NOW_MS = 1_893_439_800_000


def _pool(i: int, spec: tuple) -> Pool:
    kind, date, total, total_reserved, slots, version, cutoff = spec
    pool = Pool(f"p{i}", kind, "reg-\u00e9", date, total, KeyRetention(), cutoff)
    for n, (capacity, reserved, is_open) in enumerate(slots):
        slot = Slot(
            f"s{n}", f"{date}T{n:02d}:00:00+08:00", f"{date}T{n + 1:02d}:00:00+08:00", capacity
        )
        slot.reserved, slot.open = min(reserved, capacity), is_open
        pool.slots[slot.slot_id] = slot
    pool.total_reserved, pool.version = total_reserved, version
    return pool


@settings(max_examples=200, deadline=None)
@given(st.lists(_POOL, min_size=1, max_size=8), st.sampled_from([None, "van", "bike"]))
def test_rows_and_views_give_the_grid_and_board_bytes_whole_views_gave(specs, kind):
    """Whatever the rows or views, the model renders what the owner's `availability_view`
    says at the same instant, cut-offs included."""
    pools = [_pool(i, spec) for i, spec in enumerate(specs)]
    views = [availability_view(p, _NOW_MS) for p in pools]
    from_rows, from_views = ReadModel(shard_count=1), ReadModel(shard_count=1)
    from_rows.apply(
        "w0", _answer(0, 1, 1, [json.loads(json.dumps(_feed_row(p))) for p in pools], full=True)
    )
    from_views.apply(
        "w0",
        {
            "shards": {
                "0": {
                    "state": "ready",
                    "epoch": 1,
                    "position": 1,
                    "last_seq": 1,
                    "full": True,
                    "pools": json.loads(json.dumps([availability_view(p) for p in pools])),
                }
            }
        },
    )
    for model in (from_rows, from_views):
        for pool, view in zip(pools, views, strict=True):
            assert json.dumps(model.view(pool.pool_id, _NOW_MS)) == json.dumps(view)
        for date in ("2030-01-01", "2030-01-02"):
            expected = json.dumps(_old_grid(views, "reg-\u00e9", date, kind)).encode()
            assert model.grid_json("reg-\u00e9", date, kind, _NOW_MS) == expected
            assert json.dumps(model.grid("reg-\u00e9", date, kind, _NOW_MS)).encode() == expected


def test_a_full_reload_of_one_shard_leaves_the_other_shards_pools():
    model = ReadModel(shard_count=2)
    model.apply("w0", _answer(0, 2, 2, [_row("a1"), _row("a2")], full=True))
    model.apply("w1", _answer(1, 1, 1, [_row("b1")], full=True))
    model.apply("w0", _answer(0, 1, 1, [_row("a2")], full=True))  # shard 0 restored
    assert [p["pool_id"] for p in model.grid("r", DAY, None)] == ["a2", "b1"]
    assert dict(model._shard_sizes) == {0: 1, 1: 1}
