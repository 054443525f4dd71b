"""One `/metrics` for the whole host: the router's own metrics, the per-shard gauges, every
local worker's registry (with a `worker` label) and the supervisor's.

Each worker serves its registry on `/internal/metrics`; the supervisor writes its registry to
`<runtime_dir>/supervisor.prom` (it has no HTTP server). This module fetches and parses them
all, merges families that share a name (the same metric from several workers), and renders
one valid text exposition. A source that does not answer is left out, and
`capsvc_metrics_source_up{source=...}` says so.

In a cluster each router exposes its own host's processes only (scrape every router); the
per-shard gauges describe the whole cluster as this router sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from capsvc.config import Config
from capsvc.errors import CapsvcError
from capsvc.paths import runtime_dir
from capsvc.router.upstream import WorkerClient

log = logging.getLogger(__name__)
INTERNAL_METRICS = "/internal/metrics"  # served by capsvc.worker.ops_routes
SUPERVISOR_FILE = "supervisor.prom"
FETCH_TIMEOUT_S = 2.0


def supervisor_metrics_file(config: Config) -> Path:
    return runtime_dir(config) / SUPERVISOR_FILE


async def host_exposition(
    config: Config, workers: list[WorkerClient], router_parts: list[bytes], shards: list[dict]
) -> bytes:
    """The merged exposition of this host. `router_parts` are the router's own renderings."""
    local = [w for w in workers if w.socket_path is not None]
    texts = await asyncio.gather(*(_fetch(w) for w in local))
    families: dict[str, Metric] = {}
    up = GaugeMetricFamily(
        "capsvc_metrics_source_up",
        "1 if the source's metrics are in this scrape",
        labels=["source"],
    )
    for part in router_parts:
        _merge(families, _parse(part.decode()), {})
    _merge(families, [_owner_family(shards)], {})
    for worker, text in zip(local, texts, strict=True):
        parsed = _parse(text) if text is not None else None
        up.add_metric([worker.name], 0.0 if parsed is None else 1.0)
        if parsed is not None:
            _merge(families, parsed, {"worker": worker.name})
    supervisor = await asyncio.to_thread(_read, supervisor_metrics_file(config))
    parsed = _parse(supervisor) if supervisor is not None else None
    up.add_metric(["supervisor"], 0.0 if parsed is None else 1.0)
    if parsed is not None:
        _merge(families, parsed, {})
    _merge(families, [up], {})
    registry = CollectorRegistry()
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


async def _fetch(worker: WorkerClient) -> str | None:
    try:
        response = await worker.request("GET", INTERNAL_METRICS, timeout_s=FETCH_TIMEOUT_S)
    except CapsvcError:
        return None
    if response.status != 200:
        return None
    return response.body.decode()


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _parse(text: str) -> list[Metric] | None:
    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as e:
        log.warning("unparsable metrics left out of the scrape: %s", e)
        return None


def _merge(into: dict[str, Metric], families: Iterable[Metric], labels: dict[str, str]) -> None:
    for family in families:
        samples = [s._replace(labels={**s.labels, **labels}) for s in family.samples]
        known = into.get(family.name)
        if known is None:
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            copy.samples = samples
            into[family.name] = copy
        elif known.type == family.type:
            known.samples.extend(samples)
        else:  # two processes disagree about a metric's type: a bug, but not worth a 500
            log.warning("metric %s has types %s and %s", family.name, known.type, family.type)


def _owner_family(shards: list[dict[str, Any]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "capsvc_shard_owner",
        "1 for each shard's current owner (host, worker)",
        labels=["shard", "host", "worker"],
    )
    for row in shards:
        owner = row.get("owner")
        if owner:
            family.add_metric(
                [str(row["shard"]), str(owner.get("host", "")), str(owner.get("worker", ""))], 1.0
            )
    return family


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self):  # noqa: ANN201 - prometheus_client protocol
        yield from self._families
