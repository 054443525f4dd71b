"""The leader computes the shard assignment; every worker takes part in the election.

The elected worker watches the membership (`workers/`), lets it settle for
`rebalance_delay_ms`, computes a balanced assignment with minimal movement and writes it to
`assignment`. Workers do the moving themselves: they watch `assignment`, hand off what is no
longer theirs and claim what is newly theirs. Leadership is lost with the session; then `run`
contends again.

Fencing: the assignment is written only in one ZooKeeper transaction that also checks that
the writer's own election node still exists (and, as before, the version it read). A leader
paused past its session timeout wakes with a new session and no election node: its write is
refused, whatever the version, and it gives up the term and contends again.

Runs in its own thread (kazoo's Election blocks), using blocking kazoo calls only.
"""

from __future__ import annotations

import json
import logging
import threading

from kazoo.client import KazooState
from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
)

from capsvc.cluster.assignment import assign, moves
from capsvc.cluster.zk import Zk

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """ZooKeeper refused the leader's write: its election node is gone (session expired, or
    the term was given up). The term is over."""


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
                    if term_over.is_set():
                        break
                    changed.clear()
                    if not self._rebalance():
                        changed.set()
        except LeadershipLost as e:
            log.warning("no longer the leader; contending again: %s", e,
                        extra={"worker_id": self.me})
        except KazooException as e:
            log.warning("leader lost its footing: %s", e)
        finally:
            self.leading = False
            term_over.set()
            self.zk.client.remove_listener(on_state)

    def _election_node(self) -> str:
        """This term's election node (kazoo's Election holds a Lock; its node is ours)."""
        lock = self.election.lock
        if lock.node is None:
            raise LeadershipLost("this worker holds no election node")
        return f"{lock.path}/{lock.node}"

    def _rebalance(self) -> bool:
        """Write a new assignment if membership calls for one; False if it must be retried.
        Raises LeadershipLost if ZooKeeper refused the write as no longer the leader's."""
        term = self._election_node()
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
        tx = client.transaction()
        tx.check(term, -1)  # -1: any version; the node must exist (ours: sequential, ephemeral)
        if version is None:
            tx.create(path, data)
        else:
            tx.set_data(path, data, version=version)
        fenced, written = tx.commit()
        if isinstance(fenced, NoNodeError):
            raise LeadershipLost(f"election node {term} is gone; the assignment was not written")
        if isinstance(written, BadVersionError | NodeExistsError):
            log.warning("assignment changed under the leader; recomputing")
            return False
        for result in (fenced, written):
            if isinstance(result, Exception) and not isinstance(result, RolledBackError):
                raise result
        log.info(
            "assignment written", extra={"workers": len(workers), "moved": moves(current, target)}
        )
        return True
