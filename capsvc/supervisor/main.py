"""The supervisor: starts one worker per CPU and the router, restarts what dies, drains on
SIGTERM. A worker that cannot bind its TCP port (`capsvc.worker.listen`) is not restarted:
the supervisor drains the rest and exits 1 naming the address.

It owns the data directory's lock (so a second instance cannot open the same shard files) and
the public listening socket (inherited by the router, so a router restart loses no port).
Children receive the effective configuration on stdin and die with the supervisor
(PR_SET_PDEATHSIG), so a killed supervisor never leaves orphans holding shard files.

Drain order on SIGTERM, embedded: the router first (it stops accepting and finishes what is in
flight, which needs the workers), then the workers (finish queued commands, checkpoint, close).
In a cluster the other way round: the workers hand their shards off to other hosts while the
router still forwards this host's clients to the new owners; then the router stops.

Under systemd (`Type=notify`) it reports readiness, reloads and the drain, and pings the
watchdog; SIGHUP reloads the configuration file (see `capsvc/supervisor/lifecycle.py`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from capsvc.config import Config, ConfigError, config_to_json
from capsvc.domain.wording import counted
from capsvc.paths import lock_file
from capsvc.router.auth import ensure_admin_token, load_tokens
from capsvc.stop_signals import ignore_further_stops, stop_on_signals
from capsvc.supervisor.lifecycle import Lifecycle, local_url, plan_reload
from capsvc.worker.listen import EXIT_CANNOT_LISTEN, worker_address

log = logging.getLogger(__name__)


class AlreadyRunning(RuntimeError):
    """Another capsvc instance holds this data directory."""


@dataclass
class Child:
    role: str  # "worker" | "router"
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    backoff_ms: int = 0
    restarts: int = 0
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    planned_restart: bool = False  # stopped on purpose (reload): start again at once

    @property
    def name(self) -> str:
        return "router" if self.role == "router" else f"worker {self.index}"


def lock_data_dir(config: Config) -> int:
    path = lock_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another capsvc instance is using {config.data_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def bind_public_socket(config: Config) -> socket.socket:
    sock = socket.create_server(
        (config.service.host, config.service.port), backlog=1024, reuse_port=False
    )
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(
        self,
        config: Config,
        listen: socket.socket,
        reload_config: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.listen = listen
        self.children = [Child("worker", i) for i in range(config.worker_count)]
        self.children.append(Child("router", 0))
        self.stopping = False
        self.failed: str | None = None  # why the service stopped on its own (exit non-zero)
        self._stop = asyncio.Event()
        self._config_json = config_to_json(config).encode()
        # Reads NOTIFY_SOCKET and WATCHDOG_* and removes them before any child is started.
        self.lifecycle = Lifecycle(config, local_url(listen.getsockname()))
        self._reload_config = reload_config
        self._reload_wanted = asyncio.Event()
        self._tokens = load_tokens(config)

    async def _spawn(self, child: Child) -> None:
        argv = [
            sys.executable,
            "-m",
            "capsvc",
            "child",
            child.role,
            "--index",
            str(child.index),
            "--parent",
            str(os.getpid()),
        ]
        pass_fds: tuple[int, ...] = ()
        if child.role == "router":
            argv += ["--listen-fd", str(self.listen.fileno())]
            pass_fds = (self.listen.fileno(),)
        child.process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, pass_fds=pass_fds
        )
        assert child.process.stdin is not None
        child.process.stdin.write(self._config_json)
        await child.process.stdin.drain()
        child.process.stdin.close()
        child.started_at = time.monotonic()
        child.exited.clear()
        log.info("started %s", child.name, extra={"child_pid": child.process.pid})

    async def _watch(self, child: Child) -> None:
        """Run one child for as long as the supervisor runs, restarting it with backoff."""
        s = self.config.supervisor
        while True:
            await self._spawn(child)
            assert child.process is not None
            code = await child.process.wait()
            child.exited.set()
            if self.stopping:
                return
            if child.planned_restart:
                child.planned_restart = False
                log.info("restarting %s with the reloaded configuration", child.name)
                continue
            if child.role == "worker" and code == EXIT_CANNOT_LISTEN:
                # Restarting cannot free a port another program holds: stop everything.
                address = worker_address(self.config, child.index)
                self.failed = f"{child.name} cannot listen on {address} (see its error above)"
                log.error("%s; stopping the service: a restart would not help", self.failed)
                self._stop.set()
                return
            ran_ms = (time.monotonic() - child.started_at) * 1000
            if ran_ms >= s.restart_backoff_reset_ms:
                child.backoff_ms = 0
            child.backoff_ms = min(
                max(child.backoff_ms * 2, s.restart_backoff_initial_ms), s.restart_backoff_max_ms
            )
            child.restarts += 1
            log.error(
                "%s exited with %s; restarting in %d ms",
                child.name,
                code,
                child.backoff_ms,
                extra={"restarts": child.restarts},
            )
            await asyncio.sleep(child.backoff_ms / 1000)
            if self.stopping:
                return

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop_on_signals(self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_wanted.set)
        watchers = [asyncio.create_task(self._watch(c), name=c.name) for c in self.children]
        background = self.lifecycle.start(lambda: self.children)
        background.append(asyncio.create_task(self._reload_loop(), name="reload"))
        await self._stop.wait()
        ignore_further_stops()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        code = await self._drain(watchers)
        return 1 if self.failed else code

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    async def reload(self) -> None:
        """SIGHUP: re-read the configuration file and apply what needs no restart."""
        lifecycle = self.lifecycle
        lifecycle.reloading()
        if self._reload_config is None:
            await lifecycle.reloaded("refused", "reload: no configuration file to re-read", False)
            return
        try:
            loaded = self._reload_config()
            plan = plan_reload(self.config, loaded, load_tokens(loaded) != self._tokens)
        except ConfigError as e:
            log.error("reload refused, the running configuration stays: %s", e)
            await lifecycle.reloaded("refused", f"reload refused: {e}", False)
            return
        self.config = lifecycle.config = plan.effective
        self._config_json = config_to_json(plan.effective).encode()
        self._tokens = load_tokens(plan.effective)
        _apply_logging(plan.effective)
        if plan.need_restart:
            log.warning("changed keys that apply only after a restart: %s", ", ".join(plan.need_restart))
        log.info(
            "configuration reloaded",
            extra={"changed": list(plan.changed), "router_restarted": plan.restart_router},
        )
        router = next(c for c in self.children if c.role == "router")
        if plan.restart_router and router.process is not None and router.process.returncode is None:
            # The listening socket stays open here: connections wait in the backlog meanwhile.
            old, router.planned_restart = router.process, True
            old.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(old.wait(), self.config.supervisor.drain_timeout_ms / 1000)
            except TimeoutError:
                old.kill()
                await old.wait()
        status = f"reloaded: {counted(len(plan.changed), 'key')} changed"
        if plan.need_restart:
            status += f", {len(plan.need_restart)} need a restart"
        await lifecycle.reloaded("applied", status, wait_router=plan.restart_router)

    async def _drain(self, watchers: list[asyncio.Task]) -> int:
        self.stopping = True
        self.lifecycle.stopping()
        log.info("draining")
        self.listen.close()
        timeout_s = self.config.supervisor.drain_timeout_ms / 1000
        clean = True
        routers = [c for c in self.children if c.role == "router"]
        workers = [c for c in self.children if c.role == "worker"]
        # Embedded: the router stops first and its in-flight requests need the workers.
        # Cluster: the workers hand their shards to other hosts first, while the router keeps
        # forwarding this host's clients to the new owners.
        order = (workers, routers) if self.config.cluster.enabled else (routers, workers)
        for group in order:
            clean &= await self._stop_group(group, timeout_s)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        log.info("stopped", extra={"clean": clean})
        return 0 if clean else 1

    async def _stop_group(self, group: list[Child], timeout_s: float) -> bool:
        running = [c for c in group if c.process is not None and c.process.returncode is None]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + timeout_s
        for child in running:
            try:
                await asyncio.wait_for(child.process.wait(), max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                log.error("%s did not stop in %.1fs; killing it", child.name, timeout_s)
                child.process.kill()
                await child.process.wait()
                clean = False
            if child.process.returncode != 0:
                clean = False
                log.error("%s exited with %s during drain", child.name, child.process.returncode)
        return clean


def _apply_logging(config: Config) -> None:
    from capsvc.logs import configure_logging

    configure_logging(config.logging.level, config.logging.format, "supervisor")


async def run_supervisor(
    config: Config, reload_config: Callable[[], Config] | None = None
) -> int:
    """Run until SIGTERM. `reload_config` re-reads the configuration file (for SIGHUP)."""
    lock_fd = lock_data_dir(config)
    try:
        token_file = ensure_admin_token(config)
        listen = bind_public_socket(config)
        host, port = listen.getsockname()[:2]
        if token_file is not None:
            print(f"capsvc: admin token is in {token_file} (mode 0600)", flush=True)
        print(
            f"capsvc: listening on http://{host}:{port} with {counted(config.worker_count, 'worker')}, "
            f"data in {config.data_dir}",
            flush=True,
        )
        supervisor = Supervisor(config, listen, reload_config)
        code = await supervisor.run()
        if supervisor.failed:
            print(f"capsvc: cannot start: {supervisor.failed}", file=sys.stderr, flush=True)
        return code
    finally:
        os.close(lock_fd)
