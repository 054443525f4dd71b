"""Specifies the collector pause around recovery: nested pauses, the caller's setting kept,
and a freeze only after a big build."""

from __future__ import annotations

import gc

import pytest

from capsvc.storage import gc_pause
from capsvc.storage.gc_pause import cyclic_gc_paused


@pytest.fixture
def collector():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    if not was:
        gc.disable()


def test_overlapping_pauses_resume_the_collector_when_the_last_one_ends(collector):
    outer = cyclic_gc_paused()
    inner = cyclic_gc_paused()
    outer.__enter__()
    inner.__enter__()
    assert not gc.isenabled()
    outer.__exit__(None, None, None)  # the first to start ends first: another is still open
    assert not gc.isenabled()
    inner.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled(collector):
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()


def test_an_error_inside_still_resumes_the_collector(collector):
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        raise RuntimeError("recovery failed")
    assert gc.isenabled()


def test_only_a_big_build_is_frozen(collector, monkeypatch):
    monkeypatch.setattr(gc_pause, "FREEZE_AFTER_OBJECTS", 10_000)
    gc.collect()
    frozen = gc.get_freeze_count()
    with cyclic_gc_paused():
        small = [[i] for i in range(100)]
    assert gc.get_freeze_count() == frozen
    with cyclic_gc_paused():
        big = [[i] for i in range(20_000)]
    assert gc.get_freeze_count() >= frozen + 20_000
    assert len(small) + len(big) == 20_100
