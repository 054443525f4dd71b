"""What the router knows about its host and the cluster: `/healthz`, `/readyz`,
`/v1/admin/cluster`, and the per-shard table `/metrics` turns into gauges.

Every answer is bounded and built from what the router knows: each worker is asked once, all
at the same time, each with its own deadline (`ASK_DEADLINE_S`, no retry). A worker that does
not answer in time (dead, frozen, restarting, or closed meanwhile because it left the cluster)
is marked as not asked successfully; it never holds an answer up or turns it into a 500.

Readiness has two scopes:

- `host` (the default: load balancers, systemd): this host can serve. Its router has a
  current view of the owners (cluster: its ZooKeeper session is connected; embedded: always),
  its read model has loaded, and every local worker answers a real read of each shard it
  holds. In a cluster a shard on its way in or out (being opened, waiting for its previous
  owner to let go of the file, being handed off) does not count against the host: the host
  serves everything else meanwhile, and `scope=cluster` names the shard.
- `cluster` (on-call): every shard has a ready owner that answers a real read of its file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiMapping
from prometheus_client.core import GaugeMetricFamily

from capsvc.domain.wording import counted
from capsvc.errors import BadRequest, CapsvcError
from capsvc.http.json_body import json_text
from capsvc.http.problems import problem
from capsvc.http.routes import INTERNAL_PROBE, INTERNAL_STATUS
from capsvc.router.upstream import WorkerClient

if TYPE_CHECKING:
    from capsvc.router.app import RouterState

log = logging.getLogger(__name__)
# Per worker call: the whole answer, asked concurrently, stays within the contract's 1 s.
ASK_DEADLINE_S = 0.75
SCOPES = ("host", "cluster")
_ASK_FAILURES = (CapsvcError, OSError, ValueError, RuntimeError)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- asking the workers ----------------------------------------------------------------------
async def ask_worker(worker: WorkerClient, path: str, statuses: tuple[int, ...] = (200,),
                     deadline_s: float = ASK_DEADLINE_S) -> dict | None:
    """The worker's JSON answer, or None if it gave none in time (or not one of `statuses`)."""
    try:
        async with asyncio.timeout(deadline_s):
            response = await worker.request("GET", path, timeout_s=deadline_s, retry_unsent=False)
        body = json.loads(response.body) if response.status in statuses else None
    except _ASK_FAILURES as e:  # TimeoutError is an OSError
        log.debug("worker not asked: %s", e, extra={"worker": worker.name, "path": path})
        return None
    return body if isinstance(body, dict) else None


async def statuses(workers: list[WorkerClient]) -> list[dict | None]:
    """Each worker's `/internal/status`, None for a worker that did not answer in time."""
    return list(await asyncio.gather(*(ask_worker(w, INTERNAL_STATUS) for w in workers)))


async def probes(workers: list[WorkerClient]) -> list[dict | None]:
    """Each worker's `/internal/probe` (a real read of every shard's file; 503 when one
    fails), None for a worker that did not answer in time."""
    return list(await asyncio.gather(*(ask_worker(w, INTERNAL_PROBE, (200, 503)) for w in workers)))


# -- the shard table -------------------------------------------------------------------------
def shard_table(topology, workers: list[WorkerClient], answers: list[dict | None]) -> list[dict]:
    """Every shard with its owner and, where the owner's worker answered, its live numbers
    (`live`). A row without them has `state` "unowned" as it always had, or "unconfirmed" while
    the ZooKeeper session is not connected (its owner is the last one known, probably still
    alive), and `reason` says why the numbers are missing."""
    confirmed = topology.owners_confirmed
    answered = {w.name for w, a in zip(workers, answers, strict=True) if a is not None}
    live: dict[tuple[str, int], dict[str, Any]] = {}
    for worker, answer in zip(workers, answers, strict=True):
        for shard in (answer or {}).get("shards", []):
            live[(worker.name, shard["shard"])] = shard
    table = []
    for shard_id in range(topology.shard_count):
        owner = topology.owner_of(shard_id)
        owner_name = topology.owner_name(shard_id)
        numbers = live.get((owner_name, shard_id)) if owner_name is not None else None
        if numbers is not None:
            row = numbers
        else:
            if owner is None:
                reason = "no owner"
            elif owner_name in answered:
                reason = f"{owner_name} answered without this shard (a move in progress)"
            else:
                reason = f"{owner_name} did not answer within {ASK_DEADLINE_S:g}s"
            row = {"shard": shard_id, "state": "unowned" if confirmed else "unconfirmed",
                   "reason": reason}
        table.append({**row, "owner": owner, "owner_confirmed": confirmed,
                      "live": numbers is not None})
    return table


async def current_shard_table(state: RouterState) -> list[dict]:
    workers = state.topology.clients()
    return shard_table(state.topology, workers, await statuses(workers))


class ShardCollector:
    """The shard table as Prometheus gauges (one scrape's worth)."""

    def __init__(self, shards: list[dict[str, Any]]) -> None:
        self.shards = shards

    def collect(self):  # noqa: ANN201 - prometheus_client protocol
        families = {
            "ready": GaugeMetricFamily(
                "capsvc_shard_ready", "1 if the shard is ready", labels=["shard"]
            ),
            "epoch": GaugeMetricFamily("capsvc_shard_epoch", "Owner epoch", labels=["shard"]),
            "event_count": GaugeMetricFamily(
                "capsvc_shard_events", "Events in the shard log", labels=["shard"]
            ),
            "queue_depth": GaugeMetricFamily(
                "capsvc_shard_queue_depth", "Commands waiting", labels=["shard"]
            ),
            "pools": GaugeMetricFamily("capsvc_shard_pools", "Pools held", labels=["shard"]),
            "replay_seconds": GaugeMetricFamily(
                "capsvc_shard_replay_seconds", "Last recovery time", labels=["shard"]
            ),
        }
        for shard in self.shards:
            label = [str(shard["shard"])]
            families["ready"].add_metric(label, 1.0 if shard["state"] == "ready" else 0.0)
            for key in ("epoch", "event_count", "queue_depth", "pools", "replay_seconds"):
                if shard.get(key) is not None:
                    families[key].add_metric(label, float(shard[key]))
        yield from families.values()


# -- readiness -------------------------------------------------------------------------------
def _scope(query: MultiMapping[str]) -> str:
    values = query.getall("scope", [])
    if not values:
        return "host"
    if len(values) > 1 or values[0] not in SCOPES:
        raise BadRequest("invalid_parameter", "scope: 'host' (the default) or 'cluster', once",
                         field="scope")
    return values[0]


def _moving(probe: dict[str, Any]) -> bool:
    """A shard on its way in or out of this host: opening, waiting for its previous owner (on
    another host, perhaps frozen) to let go of the file, or being handed off."""
    return probe.get("state") in ("starting", "draining") or bool(probe.get("waiting_for_file"))


def _owner_view_problem(topology) -> str | None:
    if topology.owners_confirmed:
        return None
    return (f"the owner view is not current (zookeeper {topology.zookeeper_state}): "
            "owners are the last ones known")


async def _host_readiness(state: RouterState) -> web.Response:
    topology, model = state.topology, state.model
    workers = topology.local_clients()
    answers = await probes(workers)
    silent = [w.name for w, a in zip(workers, answers, strict=True) if a is None]
    held = {r["shard"]: r for a in answers if a for r in a.get("shards", [])}
    if topology.mode == "embedded":  # every shard is this host's, and none ever moves
        total = topology.shard_count
        not_ready = [s for s in range(total) if not held.get(s, {}).get("ok")]
        moving: list[int] = []
    else:
        total = len(held)
        not_ready = sorted(s for s, r in held.items() if not r.get("ok") and not _moving(r))
        moving = sorted(s for s, r in held.items() if not r.get("ok") and _moving(r))
    loaded = model.as_of([w.name for w in workers]) is not None
    reasons = [r for r in (_owner_view_problem(topology),) if r]
    if silent:
        reasons.append(f"{', '.join(silent)} did not answer within {ASK_DEADLINE_S:g}s")
    if not_ready:
        reasons.append(f"{len(not_ready)} of {counted(total, 'shard')} held here not ready")
    if not loaded:
        reasons.append("read model loading")
    if reasons:
        failures = {str(s): held[s]["error"] for s in not_ready if held.get(s, {}).get("error")}
        return problem("shard_unavailable", "; ".join(reasons), retry_after_s=1, scope="host",
                       shards_not_ready=not_ready, failures=failures, workers_not_answering=silent,
                       owners_confirmed=topology.owners_confirmed)
    ready = sum(1 for r in held.values() if r.get("ok"))
    return _json({"status": "ready", "scope": "host", "shards": ready, "shards_moving": moving})


async def _cluster_readiness(state: RouterState) -> web.Response:
    topology = state.topology
    workers = topology.clients()
    answers = await probes(workers)
    answered = {w.name for w, a in zip(workers, answers, strict=True) if a is not None}
    ok: set[int] = set()
    errors: dict[int, str] = {}
    for answer in answers:
        for r in (answer or {}).get("shards", []):
            if r.get("ok"):
                ok.add(r["shard"])
            elif r.get("error"):
                errors[r["shard"]] = r["error"]
    shards = range(topology.shard_count)
    not_ready = [s for s in shards if s not in ok]
    failures = {}
    for s in not_ready:
        owner = topology.owner_name(s)
        if owner is not None and owner not in answered:
            failures[str(s)] = f"its owner {owner} did not answer within {ASK_DEADLINE_S:g}s"
        elif s in errors:
            failures[str(s)] = errors[s]
        elif owner is None:
            failures[str(s)] = "no owner"
    loaded = state.model.as_of([w.name for w in workers]) is not None
    reasons = [r for r in (_owner_view_problem(topology),) if r]
    if not_ready:
        reasons.append(f"{len(not_ready)} of {counted(len(shards), 'shard')} not ready")
    if not loaded:
        reasons.append("read model loading")
    if reasons:
        return problem("shard_unavailable", "; ".join(reasons), retry_after_s=1, scope="cluster",
                       shards_not_ready=not_ready, failures=failures,
                       owners_confirmed=topology.owners_confirmed)
    return _json({"status": "ready", "scope": "cluster", "shards": len(shards)})


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json_text(body), content_type="application/json")


# -- the handlers ----------------------------------------------------------------------------
def health_handlers(state_of: Callable[[web.Request], RouterState]) -> dict[str, Handler]:
    """The route table's `healthz`, `readyz` and `cluster` handlers."""

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        """Host readiness by default; `?scope=cluster` for every shard of the cluster."""
        if _scope(request.query) == "cluster":
            return await _cluster_readiness(state_of(request))
        return await _host_readiness(state_of(request))

    async def cluster(request: web.Request) -> web.Response:
        state = state_of(request)
        topology, model = state.topology, state.model
        workers = topology.clients()
        answers = await statuses(workers)
        return _json(
            {
                **topology.describe(),
                "owners_confirmed": topology.owners_confirmed,
                "shard_count": topology.shard_count,
                "workers": [
                    {
                        "worker": w.name,
                        "pid": (a or {}).get("pid"),
                        "reachable": a is not None,
                        "address": w.address,
                    }
                    for w, a in zip(workers, answers, strict=True)
                ],
                "shards": shard_table(topology, workers, answers),
                "read_model": {
                    "pools": model.pool_count(),
                    "positions": {str(k): v for k, v in model.positions.items()},
                },
            }
        )

    return {"healthz": healthz, "readyz": readyz, "cluster": cluster}
