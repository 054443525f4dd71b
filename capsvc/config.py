"""One typed, frozen configuration, loaded once from TOML and passed down.

Every limit of the service lives here. Loading validates strictly: an unknown key or a value
of the wrong type or range fails with a `ConfigError` that names its dotted path, so a typo in
`config.toml` is caught at start-up instead of silently falling back to a default.
Units go last in names (`request_timeout_ms`, `append_batch_max`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the dotted path."""


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: str = "./data"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0  # 0 means one worker per CPU
    shard_count: int = 64
    runtime_dir: str = ""  # Unix sockets of the workers; empty means <data_dir>/run
    # Workers also listen on TCP at worker_host:(worker_port_base + index) when the base is
    # set: for routers on other hosts, and to benchmark a worker without the router.
    worker_host: str = "127.0.0.1"
    worker_port_base: int = 0


@dataclass(frozen=True)
class TlsConfig:
    """Optional TLS: on the public port, and on the workers' TCP ports between hosts."""

    cert_file: str = ""  # PEM certificate chain of this host; empty = plain HTTP
    key_file: str = ""
    ca_file: str = ""  # CA that signed the other hosts' certificates (verify peers)
    between_hosts: bool = True  # also encrypt router -> remote worker traffic

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True)
class ClusterConfig:
    zookeeper: str = ""  # "host:port,host:port"; empty = embedded mode, all shards local
    name: str = "capsvc"  # ZooKeeper root: /capsvc/<name>
    host_id: str = ""  # empty = the machine's hostname
    advertise_host: str = ""  # address other hosts reach this host at; empty = service.host
    secret: str = ""  # shared by all hosts; CAPSVC_CLUSTER_SECRET overrides
    session_timeout_ms: int = 6000
    owner_lease_ms: int = 4000  # an owner stops writing this long after its last ZooKeeper contact
    request_buffer_ms: int = 5000  # how long the router holds a request for a shard with no owner
    request_buffer_max: int = 2000  # requests held at once
    rebalance_delay_ms: int = 500  # the leader waits for membership to settle this long

    @property
    def enabled(self) -> bool:
        return bool(self.zookeeper)


@dataclass(frozen=True)
class AuthConfig:
    admin_tokens: tuple[str, ...] = ()
    admin_token_min_length: int = 16


@dataclass(frozen=True)
class StorageConfig:
    synchronous: str = "FULL"
    snapshot_every_events: int = 1000
    append_batch_max: int = 256
    busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class LimitsConfig:
    units_max: int = 100
    capacity_max: int = 1_000_000
    slots_per_pool_max: int = 96
    body_max_bytes: int = 65536
    shard_queue_max: int = 4096
    shard_queue_wait_max_ms: int = 500  # older commands are shed with 503 overloaded
    # a request's headers and body must arrive within this (was `header_timeout_ms`)
    request_read_timeout_ms: int = 10_000
    request_timeout_ms: int = 5000
    idempotency_retention_s: int = 86400
    idempotency_keys_max: int = 100_000
    events_page_max: int = 1000
    router_connections_per_worker: int = 64
    router_queue_max: int = 1024  # requests waiting for a connection to one worker, at most


@dataclass(frozen=True)
class ReadModelConfig:
    feed_wait_ms: int = 250
    feed_retry_ms: int = 200
    # The least time between two feed requests to one worker: under write load one answer
    # carries the changes of many commits instead of one answer per commit.
    feed_interval_ms: int = 5


@dataclass(frozen=True)
class SupervisorConfig:
    restart_backoff_initial_ms: int = 100
    restart_backoff_max_ms: int = 5000
    restart_backoff_reset_ms: int = 10_000
    drain_timeout_ms: int = 15_000
    start_timeout_ms: int = 60_000


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "json"  # json | text
    request_log: str = "errors"  # worker request lines: none | errors (5xx) | all


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    read_model: ReadModelConfig = field(default_factory=ReadModelConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    # -- derived values -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.service.data_dir).resolve()

    @property
    def host_id(self) -> str:
        return self.cluster.host_id or socket.gethostname()

    @property
    def cluster_secret(self) -> str:
        return os.environ.get("CAPSVC_CLUSTER_SECRET") or self.cluster.secret

    def worker_url(self, index: int) -> str:
        """Where routers on other hosts reach worker `index` of this host."""
        host = self.cluster.advertise_host or self.service.worker_host
        scheme = "https" if self.tls.enabled and self.tls.between_hosts else "http"
        return f"{scheme}://{host}:{self.service.worker_port_base + index}"

    @property
    def worker_count(self) -> int:
        return self.service.workers or (os.cpu_count() or 1)

    def with_overrides(self, **service_overrides: object) -> Config:
        """Return a copy with `[service]` values replaced (command-line flags); None is ignored."""
        hints = typing.get_type_hints(ServiceConfig)
        values = {  # checked as the same keys in the file would be
            k: _coerce(hints[k], v, f"service.{k}")
            for k, v in service_overrides.items()
            if v is not None
        }
        service = dataclasses.replace(self.service, **values)
        new = dataclasses.replace(self, service=service)
        _check_relations(new)
        return new


_RANGES: dict[str, tuple[int, int]] = {
    "service.port": (0, 65535),
    "service.workers": (0, 256),
    "service.worker_port_base": (0, 65000),
    "service.shard_count": (1, 4096),
    "storage.snapshot_every_events": (1, 10_000_000),
    "storage.append_batch_max": (1, 100_000),
    "storage.busy_timeout_ms": (0, 600_000),
    "limits.units_max": (1, 1_000_000),
    "limits.capacity_max": (1, 2**53),
    "limits.slots_per_pool_max": (1, 10_000),
    "limits.body_max_bytes": (1024, 64 * 1024 * 1024),
    "limits.shard_queue_max": (1, 10_000_000),
    "limits.shard_queue_wait_max_ms": (1, 600_000),
    "limits.request_read_timeout_ms": (100, 600_000),
    "limits.request_timeout_ms": (10, 600_000),
    "limits.idempotency_retention_s": (1, 30 * 86400),
    "limits.idempotency_keys_max": (1, 100_000_000),
    "limits.events_page_max": (1, 100_000),
    "limits.router_connections_per_worker": (1, 10_000),
    "limits.router_queue_max": (0, 1_000_000),
    "read_model.feed_wait_ms": (10, 60_000),
    "read_model.feed_retry_ms": (10, 60_000),
    "read_model.feed_interval_ms": (0, 1000),
    "supervisor.restart_backoff_initial_ms": (1, 600_000),
    "supervisor.restart_backoff_max_ms": (1, 600_000),
    "supervisor.restart_backoff_reset_ms": (1, 3_600_000),
    "supervisor.drain_timeout_ms": (100, 3_600_000),
    "supervisor.start_timeout_ms": (1000, 3_600_000),
    "auth.admin_token_min_length": (8, 1024),
    "cluster.session_timeout_ms": (1000, 600_000),
    "cluster.owner_lease_ms": (500, 600_000),
    "cluster.request_buffer_ms": (0, 600_000),
    "cluster.request_buffer_max": (0, 1_000_000),
    "cluster.rebalance_delay_ms": (0, 60_000),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "storage.synchronous": ("FULL", "NORMAL", "EXTRA"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "logging.format": ("json", "text"),
    "logging.request_log": ("none", "errors", "all"),
}
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")  # _: container DNS


def _host_problem(value: str) -> str | None:
    """None for an IP address or a host name, else what is wrong with it."""
    if not value:
        return "must not be empty"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if (
        len(value) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()  # 10.0.0.300 is a mistyped address, not a name
    ):
        return None
    return f"{value!r} is neither an IP address nor a host name"


def _zookeeper_problem(value: str) -> str | None:
    """Kazoo's form: host[:port],host[:port]... with an optional /chroot; empty = no cluster."""
    if not value:
        return None
    hosts, _, chroot = value.partition("/")
    if chroot and not all(chroot.removesuffix("/").split("/")):
        return f"chroot /{chroot} has an empty path segment"
    for entry in hosts.split(","):
        entry = entry.strip()
        if not entry:
            return f"an empty entry in {hosts!r}"
        if entry.startswith("["):  # [IPv6]:port
            host, bracket, port = entry[1:].partition("]")
            if not bracket or (port and not port.startswith(":")) or ":" not in host:
                return f"{entry!r} is not [IPv6 address]:port"
            port = port[1:]
        elif entry.count(":") > 1:
            return f"{entry!r} is not host:port (an IPv6 address goes in [brackets])"
        else:
            host, _, port = entry.partition(":")
        problem = _host_problem(host)
        if problem:
            return f"{entry!r}: host {problem}"
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"{entry!r}: port {port!r} is not 1..65535"
    return None


def _dir_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    return "contains a NUL character" if "\0" in value else None


_FORMATS: dict[str, Callable[[str], str | None]] = {
    "service.data_dir": _dir_problem,
    "service.host": _host_problem,
    "service.worker_host": _host_problem,
    "cluster.advertise_host": lambda value: _host_problem(value) if value else None,
    "cluster.zookeeper": _zookeeper_problem,
}


# Old names still read (a config file written for an older release keeps working): old -> new.
RENAMED = {"limits.header_timeout_ms": "limits.request_read_timeout_ms"}


def _renamed(raw: dict, path: str) -> dict:
    for old, new in RENAMED.items():
        section, _, old_key = old.rpartition(".")
        new_key = new.rpartition(".")[2]
        if section == path and old_key in raw:
            if new_key in raw:
                raise ConfigError(f"{old}: give only {new} (its new name)")
            raw = {(new_key if k == old_key else k): v for k, v in raw.items()}
    return raw


def _build(cls: type, raw: object, path: str) -> object:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a table")
    raw = _renamed(raw, path)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key")
    values = {}
    for name, value in raw.items():
        dotted = _join(path, name)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, dotted)
        else:
            values[name] = _coerce(hint, value, dotted)
    return cls(**values)


def _coerce(hint: object, value: object, dotted: str) -> object:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{dotted}: expected a list of strings")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{dotted}: expected an integer, got {value!r}")
        low, high = _RANGES.get(dotted, (-(2**63), 2**63))
        if not low <= value <= high:
            raise ConfigError(f"{dotted}: {value} is outside {low}..{high}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{dotted}: expected a string, got {value!r}")
        choices = _CHOICES.get(dotted)
        if choices is not None and value not in choices:
            raise ConfigError(f"{dotted}: {value!r} is not one of {', '.join(choices)}")
        problem = _FORMATS[dotted](value) if dotted in _FORMATS else None
        if problem:
            raise ConfigError(f"{dotted}: {problem}")
        return value
    if isinstance(hint, types.UnionType):  # pragma: no cover - no such fields yet
        raise ConfigError(f"{dotted}: unsupported type")
    raise ConfigError(f"{dotted}: unsupported type {hint!r}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_relations(config: Config) -> None:
    """Limits that only make sense together; asserted where they are defined."""
    s = config.supervisor
    if s.restart_backoff_initial_ms > s.restart_backoff_max_ms:
        raise ConfigError("supervisor.restart_backoff_initial_ms: exceeds restart_backoff_max_ms")
    if config.storage.append_batch_max > config.limits.shard_queue_max:
        raise ConfigError("storage.append_batch_max: exceeds limits.shard_queue_max")
    if config.read_model.feed_wait_ms >= config.limits.request_timeout_ms:
        raise ConfigError("read_model.feed_wait_ms: must be below limits.request_timeout_ms")
    if config.read_model.feed_interval_ms >= config.read_model.feed_wait_ms:
        raise ConfigError("read_model.feed_interval_ms: must be below read_model.feed_wait_ms")
    sv = config.service
    last = sv.worker_port_base + config.worker_count - 1  # worker i listens on base + i
    if sv.worker_port_base and sv.worker_port_base <= sv.port <= last:
        raise ConfigError(
            f"service.worker_port_base: the worker ports {sv.worker_port_base}..{last} "
            f"include service.port {sv.port}"
        )
    t = config.tls
    if t.enabled != bool(t.key_file):
        raise ConfigError("tls.key_file: cert_file and key_file go together")
    for name in ("cert_file", "key_file", "ca_file"):
        value = getattr(t, name)
        if value and not os.path.isfile(value):
            raise ConfigError(f"tls.{name}: no such file {value}")
    c = config.cluster
    if c.enabled:
        if c.owner_lease_ms >= c.session_timeout_ms:
            raise ConfigError("cluster.owner_lease_ms: must be below session_timeout_ms")
        if not config.service.worker_port_base:
            raise ConfigError("service.worker_port_base: must be set when cluster.zookeeper is")
        if len(c.secret) < 16 and len(os.environ.get("CAPSVC_CLUSTER_SECRET", "")) < 16:
            raise ConfigError(
                "cluster.secret: at least 16 characters when cluster.zookeeper is set"
            )
        if not c.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("cluster.name: letters, digits, - and _ only")
    for token in config.auth.admin_tokens:
        if len(token) < config.auth.admin_token_min_length:
            raise ConfigError("auth.admin_tokens: a token is shorter than admin_token_min_length")


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load and validate a TOML file; None gives the built-in defaults (same as config.toml)."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {path}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
    config = _build(Config, raw, "")
    assert isinstance(config, Config)
    _check_relations(config)
    return config


def config_to_json(config: Config) -> str:
    """The effective configuration, for handing to child processes."""
    return json.dumps(dataclasses.asdict(config))


def config_from_json(text: str) -> Config:
    config = _build(Config, json.loads(text), "")
    assert isinstance(config, Config)
    _check_relations(config)
    return config
