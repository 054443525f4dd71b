"""The owner's lease: may this worker act as owner right now, and must it let go?

ZooKeeper expires a session `session_timeout` after it last heard from the client. The worker
renews its lease from the *start* of each successful round trip, and the lease is shorter than
the session timeout, so it always runs out before the server could give the worker's shards to
someone else. Two questions, two answers:

- `valid()`: may the worker acknowledge writes? False while SUSPENDED, and once the lease ran
  out, even if kazoo has not noticed anything (a silent partition, a paused process).
- `expired()`: must the worker close its shard files so that a new owner can open them? True
  once a whole session timeout passed with no word from ZooKeeper: only then can the server
  have expired the session and let another worker claim. Before that, a ZooKeeper restart or
  a short partition ends with the same session, the ownership verified again, and nothing
  moved (no new epoch, no recovery).

Monotonic time only: a paused process wakes with its lease expired; wall-clock jumps do nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Lease:
    def __init__(self, lease_ms: int, session_timeout_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert 0 < lease_ms < session_timeout_ms
        self.lease_s = lease_ms / 1000
        self.session_s = session_timeout_ms / 1000
        self._clock = clock
        self._last_contact = -1e18
        self._suspended = True

    def renew(self, round_trip_started: float) -> None:
        self._last_contact = max(self._last_contact, round_trip_started)

    def suspend(self) -> None:
        self._suspended = True

    def resume(self) -> None:
        self._suspended = False

    def valid(self) -> bool:
        return not self._suspended and self._clock() < self._last_contact + self.lease_s

    def expired(self) -> bool:
        return self._clock() >= self._last_contact + self.session_s
