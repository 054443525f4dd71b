"""The leader computes the shard assignment; every worker takes part in the election.

The elected worker watches the membership (`workers/`), lets it settle for
`rebalance_delay_ms`, computes a balanced assignment with minimal movement and writes it to
`assignment` with a version check (a deposed leader's late write fails instead of winning).
Workers do the moving themselves: they watch `assignment`, hand off what is no longer theirs
and claim what is newly theirs. Leadership is lost with the session; then `run` contends again.

Runs in its own thread (kazoo's Election blocks), using blocking kazoo calls only.
"""

from __future__ import annotations

import json
import logging
import threading

from kazoo.client import KazooState
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError

from capsvc.cluster.assignment import assign, moves
from capsvc.cluster.zk import Zk

log = logging.getLogger(__name__)


class Leader:
    def __init__(self, zk: Zk, me: str, shard_count: int, rebalance_delay_ms: int) -> None:
        self.zk = zk
        self.me = me
        self.shard_count = shard_count
        self.delay_s = rebalance_delay_ms / 1000
        self.election = zk.client.Election(zk.path("leader"), me)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._contend, name="capsvc-leader", daemon=True)
        self.leading = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.election.cancel()

    def _contend(self) -> None:
        while not self._stop.is_set():
            try:
                self.election.run(self._lead)
            except KazooException as e:
                log.warning("leader election interrupted: %s", e)
            self._stop.wait(0.5)

    def _lead(self) -> None:
        term_over = threading.Event()
        changed = threading.Event()
        changed.set()

        def on_state(state: str) -> bool:
            if state != KazooState.CONNECTED:
                term_over.set()
                return True  # remove this listener
            return False

        def on_workers(_children: list[str]) -> bool:
            changed.set()
            return not term_over.is_set()  # False stops the watch

        self.zk.client.add_listener(on_state)
        self.zk.client.ChildrenWatch(self.zk.path("workers"), on_workers)
        self.leading = True
        log.info("leading the cluster", extra={"worker_id": self.me})
        try:
            while not (self._stop.is_set() or term_over.is_set()):
                if changed.wait(0.5):
                    self._stop.wait(self.delay_s)  # let a burst of joins or departures settle
                    changed.clear()
                    if not self._rebalance():
                        changed.set()
        except KazooException as e:
            log.warning("leader lost its footing: %s", e)
        finally:
            self.leading = False
            term_over.set()
            self.zk.client.remove_listener(on_state)

    def _rebalance(self) -> bool:
        """Write a new assignment if membership calls for one; False if it must be retried."""
        client, path = self.zk.client, self.zk.path("assignment")
        workers = sorted(client.get_children(self.zk.path("workers")))
        try:
            raw, stat = client.get(path)
            current = {int(s): w for s, w in json.loads(raw or b"{}").get("shards", {}).items()}
            version = stat.version
        except NoNodeError:
            current, version = {}, None
        target = assign(self.shard_count, workers, current)
        if target == current:
            return True
        data = json.dumps(
            {
                "shards": {str(s): w for s, w in sorted(target.items())},
                "workers": workers,
                "leader": self.me,
            }
        ).encode()
        try:
            if version is None:
                client.create(path, data, makepath=True)
            else:
                client.set(path, data, version=version)
        except (BadVersionError, NodeExistsError):
            log.warning("assignment changed under the leader; recomputing")
            return False
        log.info(
            "assignment written", extra={"workers": len(workers), "moved": moves(current, target)}
        )
        return True
