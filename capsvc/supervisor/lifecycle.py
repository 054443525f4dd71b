"""What the supervisor tells the outside world about the service, and how it reloads.

- **Readiness** (`Type=notify`): `READY=1` is sent once the router's `/readyz` (per host)
  answers 200 (embedded: every shard recovered; cluster: the router's owner view is current,
  its workers answer, its read model loaded) *and* every local
  worker's `/internal/probe` shows that each shard it owns answers a real read of its file.
  Meanwhile `STATUS=` says what start-up is waiting for. If that has not happened within
  `supervisor.start_timeout_ms` (a damaged shard file fails closed and stays unready), the
  supervisor still sends `READY=1`, with a `STATUS=degraded: ...` line and an error in the
  log: systemd must not kill and restart a host whose other shards are serving (the unit's
  `TimeoutStartSec=` is longer than `start_timeout_ms`). It keeps checking every
  `DEGRADED_POLL_S` and clears the status once every shard is ready.
- **Watchdog**: `WATCHDOG=1` every half `$WATCHDOG_USEC`, from the supervisor's event loop: a
  supervisor whose loop is stuck stops pinging and systemd restarts the service.
- **Metrics**: the supervisor has no HTTP server; it writes its registry to
  `<runtime_dir>/supervisor.prom` every `METRICS_EVERY_S`, and the router serves it.
- **Reload** (SIGHUP, `systemctl reload`): `plan_reload` decides what a new configuration file
  changes. `[service]` and `[cluster]` are kept as they are (they need a restart: ports,
  directories, shard count, ZooKeeper); everything else becomes the configuration of every
  child started from now on. The supervisor applies its own settings at once and restarts the
  router (same listening socket: connections wait in the backlog) when `[auth]`, `[logging]`,
  `[limits]`, `[read_model]` or the admin tokens changed. Workers keep their configuration
  until they next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from capsvc.config import Config, config_from_json, config_to_json
from capsvc.domain.wording import counted
from capsvc.http.headers import CLUSTER_TOKEN
from capsvc.paths import runtime_dir, worker_socket
from capsvc.supervisor.notify import Notifier

log = logging.getLogger(__name__)
READY_POLL_S = 0.25
DEGRADED_POLL_S = 5.0
METRICS_EVERY_S = 2.0
CHECK_TIMEOUT_S = 3.0
SUPERVISOR_METRICS_FILE = "supervisor.prom"  # read by capsvc.router.metrics
RESTART_SECTIONS = ("service", "cluster")
ROUTER_SECTIONS = ("auth", "logging", "limits", "read_model")


# -- readiness -------------------------------------------------------------------------------
def local_url(address: tuple[Any, ...]) -> str:
    """Where this host reaches its own public socket (a wildcard bind means loopback)."""
    host, port = address[0], address[1]
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    text = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"http://{text}:{port}"


async def check_ready(config: Config, url: str) -> tuple[bool, str]:
    """(ready, what it is waiting for / how many shards are ready)."""
    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{url}/readyz") as response:
                status = response.status
                body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return False, f"router not answering yet ({type(e).__name__})"
    if status != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        return False, str(detail or f"/readyz answered {status}")
    for index in range(config.worker_count):
        ok, detail = await probe_worker(config, index)
        if not ok:
            return False, f"worker {index}: {detail}"
    shards = body.get("shards") if isinstance(body, dict) else None
    return True, f"ready: {counted(shards, 'shard')}, {counted(config.worker_count, 'worker')}"


async def probe_worker(config: Config, index: int) -> tuple[bool, str]:
    """A real read of every shard the worker owns (`/internal/probe`)."""
    headers = {}
    if config.cluster.enabled:
        headers[CLUSTER_TOKEN] = config.cluster_secret
    connector = aiohttp.UnixConnector(path=str(worker_socket(config, index)))
    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.get("http://worker/internal/probe", headers=headers) as response:
                body = await response.json(content_type=None)
                status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as e:
        return False, f"not answering ({type(e).__name__})"
    if status == 200:
        return True, "ok"
    failing = (
        [s for s in body.get("shards", []) if not s.get("ok")] if isinstance(body, dict) else []
    )
    if failing:
        first = failing[0]
        return False, f"shard {first.get('shard')}: {first.get('error')}"
    return False, f"probe answered {status}"


# -- metrics ---------------------------------------------------------------------------------
class _SupervisorCollector:
    def __init__(self, lifecycle: Lifecycle, children: Callable[[], list[Any]]) -> None:
        self.lifecycle = lifecycle
        self.children = children

    def collect(self):  # noqa: ANN201 - prometheus_client protocol
        up = GaugeMetricFamily(
            "capsvc_supervisor_child_up", "1 while the child runs", labels=["child"]
        )
        restarts = CounterMetricFamily(
            "capsvc_supervisor_child_restarts",
            "Restarts of a child after it died",
            labels=["child"],
        )
        for child in self.children():
            running = child.process is not None and child.process.returncode is None
            up.add_metric([child.name], 1.0 if running else 0.0)
            restarts.add_metric([child.name], float(child.restarts))
        reloads = CounterMetricFamily(
            "capsvc_supervisor_reloads", "Configuration reloads (SIGHUP)", labels=["outcome"]
        )
        for outcome, count in sorted(self.lifecycle.reloads.items()):
            reloads.add_metric([outcome], float(count))
        yield up
        yield restarts
        yield reloads
        yield GaugeMetricFamily(
            "capsvc_supervisor_ready",
            "1 once READY=1 was sent (0 while starting/reloading)",
            value=1.0 if self.lifecycle.ready else 0.0,
        )
        yield GaugeMetricFamily(
            "capsvc_supervisor_degraded",
            "1 if start-up gave up waiting for every shard",
            value=1.0 if self.lifecycle.degraded else 0.0,
        )
        yield GaugeMetricFamily(
            "capsvc_supervisor_start_time_seconds",
            "Unix time the supervisor started",
            value=self.lifecycle.started_at,
        )


# -- reload ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReloadPlan:
    effective: Config  # the configuration children get from now on
    changed: tuple[str, ...]  # dotted keys whose value differs from the running configuration
    need_restart: tuple[str, ...]  # changed keys that only a restart applies (kept as running)
    restart_router: bool


def _flatten(config: Config) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, values in dataclasses.asdict(config).items()
        for key, value in values.items()
    }


def plan_reload(running: Config, loaded: Config, tokens_changed: bool) -> ReloadPlan:
    """What reloading `loaded` over `running` does. Raises ConfigError if the result is invalid."""
    old, new = _flatten(running), _flatten(loaded)
    changed = tuple(sorted(k for k in new if old.get(k) != new[k]))
    need_restart = tuple(k for k in changed if k.split(".")[0] in RESTART_SECTIONS)
    kept = dataclasses.replace(loaded, service=running.service, cluster=running.cluster)
    effective = config_from_json(config_to_json(kept))  # validates the relations again
    restart_router = tokens_changed or any(k.split(".")[0] in ROUTER_SECTIONS for k in changed)
    return ReloadPlan(effective, changed, need_restart, restart_router)


# -- the supervisor's companion ----------------------------------------------------------------
class Lifecycle:
    """Readiness, watchdog and metrics of one supervisor; its background tasks."""

    def __init__(self, config: Config, url: str, notifier: Notifier | None = None) -> None:
        self.config = config
        self.url = url
        self.notifier = notifier or Notifier.from_environment()
        self.ready = False
        self.started_up = False  # start-up's READY=1 was sent (reloads send their own after)
        self.degraded = False
        self.started_at = time.time()
        self.reloads: dict[str, int] = {}
        self._registry: CollectorRegistry | None = None
        self._changed = asyncio.Event()  # write the metrics file now, not at the next tick

    def start(self, children: Callable[[], list[Any]]) -> list[asyncio.Task]:
        self._registry = CollectorRegistry()
        self._registry.register(_SupervisorCollector(self, children))
        tasks = [
            asyncio.create_task(self._become_ready(), name="readiness"),
            asyncio.create_task(self._metrics_loop(), name="supervisor-metrics"),
        ]
        if self.notifier.watchdog_interval_s:
            tasks.append(asyncio.create_task(self._watchdog_loop(), name="watchdog"))
        return tasks

    async def wait_ready(
        self, timeout_s: float, label: str = "starting", every_s: float = READY_POLL_S
    ) -> tuple[bool, str]:
        """Poll until the host is ready or `timeout_s` passed; STATUS= shows the progress."""
        deadline = time.monotonic() + timeout_s
        while True:
            ok, detail = await check_ready(self.config, self.url)
            if ok:
                return True, detail
            self.notifier.status(f"{label}: {detail}")
            if time.monotonic() >= deadline:
                return False, detail
            await asyncio.sleep(every_s)

    async def _become_ready(self) -> None:
        self.notifier.status("starting: recovering shards")
        ok, detail = await self.wait_ready(self.config.supervisor.start_timeout_ms / 1000)
        self.ready = self.started_up = True
        self._changed.set()
        if ok:
            log.info("service ready", extra={"detail": detail})
            self.notifier.ready(detail)
            return
        self.degraded = True
        log.error(
            "not every shard became ready within supervisor.start_timeout_ms; serving the rest",
            extra={"detail": detail},
        )
        self.notifier.ready(f"degraded: {detail}")
        # Keep watching, so that STATUS= and the metric clear once the shard recovers.
        ok, detail = await self.wait_ready(float("inf"), "degraded", DEGRADED_POLL_S)
        self.degraded = False
        self._changed.set()
        log.info("service ready after a degraded start", extra={"detail": detail})
        self.notifier.status(detail)

    def reloading(self) -> None:
        if not self.started_up:
            return  # still starting: the one READY=1 of start-up covers the reload too
        self.ready = False
        self._changed.set()
        self.notifier.reloading()

    async def reloaded(self, outcome: str, status: str, wait_router: bool) -> None:
        """End of a reload: wait for the (restarted) router, then READY=1 again."""
        self.reloads[outcome] = self.reloads.get(outcome, 0) + 1
        if not self.started_up:
            self.notifier.status(status)
            return
        if wait_router:
            timeout_s = self.config.supervisor.start_timeout_ms / 1000
            ok, detail = await self.wait_ready(timeout_s, "reloading")
            if not ok:
                status = f"{status}; degraded: {detail}"
        self.ready = True
        self._changed.set()
        self.notifier.ready(status)

    def stopping(self) -> None:
        self.ready = False
        self._changed.set()
        self.notifier.stopping("stopping: draining")

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _metrics_loop(self) -> None:
        path = runtime_dir(self.config) / SUPERVISOR_METRICS_FILE
        while True:
            try:
                await asyncio.to_thread(self.write_metrics, path)
            except OSError as e:  # a full /run must not stop the supervisor
                log.warning("cannot write %s: %s", path, e)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(METRICS_EVERY_S):
                    await self._changed.wait()
            self._changed.clear()

    def write_metrics(self, path) -> None:
        assert self._registry is not None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_to_textfile(str(path), self._registry)
