"""The router's read model: paged first load, per-shard positions, full reloads."""

from capsvc.router.read_model import ReadModel


def _view(pool_id: str, bookable: bool = True) -> dict:
    return {"pool_id": pool_id, "kind": "k", "region": "r", "date": "2026-12-01",
            "slots": [{"slot_id": "s", "starts_at": "a", "ends_at": "b", "bookable": bookable}]}


def _answer(shard: int, position: int, last_seq: int, pools: list[dict], full: bool) -> dict:
    return {"shards": {str(shard): {"state": "ready", "epoch": 1, "position": position,
                                    "last_seq": last_seq, "full": full, "pools": pools}}}


def test_the_model_is_not_current_until_every_shard_was_loaded_completely():
    model = ReadModel(shard_count=1)
    model.apply("w0", _answer(0, 5, 10, [_view("p1")], full=True), at=100.0)
    assert model.as_of(["w0"]) is None  # first page only
    assert model.since_parameter() == "0:5"
    model.apply("w0", _answer(0, 10, 10, [_view("p2")], full=False), at=101.0)
    assert model.as_of(["w0"]) == 101.0
    assert [p["pool_id"] for p in model.grid("r", "2026-12-01", None)] == ["p1", "p2"]


def test_views_replace_each_other_and_a_full_answer_drops_what_is_gone():
    model = ReadModel(shard_count=1)
    model.apply("w0", _answer(0, 2, 2, [_view("p1"), _view("p2")], full=True))
    before = model.generation
    model.apply("w0", _answer(0, 3, 3, [_view("p1", bookable=False)], full=False))
    assert model.generation > before
    grid = {p["pool_id"]: p["slots"][0]["bookable"] for p in model.grid("r", "2026-12-01", None)}
    assert grid == {"p1": False, "p2": True}
    model.apply("w0", _answer(0, 3, 3, [_view("p2")], full=True))  # e.g. a restored file
    assert [p["pool_id"] for p in model.grid("r", "2026-12-01", None)] == ["p2"]
