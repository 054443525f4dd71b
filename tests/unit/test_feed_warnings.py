"""The router's feed loop: a worker not listening yet at start is waited for quietly (debug
only) within the grace period; a worker that answered once and then fails, or one still
unreachable after the grace period, is warned about."""

from __future__ import annotations

import asyncio
import json
import logging

from capsvc.config import ReadModelConfig
from capsvc.http.answer_reader import Answer
from capsvc.router.feed import follow_worker
from capsvc.router.rawclient import NotSent
from capsvc.router.read_model import ReadModel

SETTINGS = ReadModelConfig(feed_wait_ms=0, feed_retry_ms=1, feed_interval_ms=0)
FAILING = "read-model feed failing"
ANSWERED = "answered"


class FakeRaw:
    """Plays a script of outcomes (ANSWERED, or an exception to raise), then stops answering."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.done = asyncio.Event()

    async def request(self, data: bytes, timeout_s: float, idempotent: bool) -> Answer:
        if not self.script:
            self.done.set()
            await asyncio.Event().wait()  # the loop waits here until cancelled
        outcome = self.script.pop(0)
        if outcome != ANSWERED:
            raise outcome
        return Answer(200, [], json.dumps({"shards": {}}).encode())


class FakeWorker:
    name = "w0"
    header_lines = b""

    def __init__(self, script: list) -> None:
        self.raw = FakeRaw(script)


def run(script: list, grace_ms: int) -> None:
    async def scenario() -> None:
        worker = FakeWorker(script)
        loop = asyncio.create_task(
            follow_worker(worker, ReadModel(4), SETTINGS, 1000, grace_ms)  # type: ignore[arg-type]
        )
        try:
            await asyncio.wait_for(worker.raw.done.wait(), timeout=10)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(scenario())


def unreachable() -> NotSent:
    return NotSent("worker w0 is unreachable: [Errno 2] No such file or directory")


def messages(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_worker_not_listening_yet_is_waited_for_quietly(caplog):
    caplog.set_level(logging.DEBUG, logger="capsvc.router.feed")
    run([unreachable(), unreachable(), unreachable(), ANSWERED, ANSWERED], grace_ms=60_000)
    assert not messages(caplog, logging.WARNING)
    assert len([m for m in messages(caplog, logging.DEBUG) if "waiting" in m]) == 3
    assert "read-model feed recovered" not in messages(caplog, logging.INFO)


def test_a_worker_that_answered_once_and_goes_away_is_warned_about(caplog):
    caplog.set_level(logging.INFO, logger="capsvc.router.feed")
    run([ANSWERED, unreachable(), unreachable(), ANSWERED], grace_ms=60_000)
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith(FAILING), warnings
    assert "No such file or directory" in warnings[0]
    assert "read-model feed recovered" in messages(caplog, logging.INFO)


def test_a_worker_still_unreachable_after_the_grace_period_is_warned_about(caplog):
    caplog.set_level(logging.INFO, logger="capsvc.router.feed")
    run([unreachable(), unreachable(), ANSWERED], grace_ms=0)
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith(FAILING), warnings


def test_other_failures_than_not_reaching_the_worker_warn_at_once(caplog):
    caplog.set_level(logging.INFO, logger="capsvc.router.feed")
    run([ValueError("not JSON"), ANSWERED], grace_ms=60_000)
    assert messages(caplog, logging.WARNING) == [f"{FAILING}: not JSON"]
