"""The one command line: `capsvc serve`, `capsvc check-config`, the operator commands
(capsvc/ops/commands.py), `capsvc plan` (capsvc/cli_plan.py), and the internal `child` entry
point the supervisor uses to start workers and the router (kept out of `--help`)."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from collections.abc import Callable

from capsvc.cli_plan import add_plan_parser, run_plan
from capsvc.config import Config, ConfigError, config_from_json, load_config
from capsvc.ops.commands import OPS_COMMANDS, add_ops_commands, run_ops_command
from capsvc.testing import faults

ENV_CONFIG = "CAPSVC_CONFIG"
DESCRIPTION = (
    "capsvc: capacity reservations for scheduled delivery. "
    "`capsvc COMMAND --help` tells more about one command."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capsvc", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the supervisor, its workers and the router")
    serve.add_argument(
        "--config", help=f"TOML file (default: ${ENV_CONFIG}, else built-in defaults)"
    )
    serve.add_argument("--port", type=int, help="public HTTP port (overrides service.port)")
    serve.add_argument("--host", help="public bind address (overrides service.host)")
    serve.add_argument("--data-dir", help="data directory (overrides service.data_dir)")
    serve.add_argument("--workers", type=int, help="worker processes (overrides service.workers)")

    check = sub.add_parser("check-config", help="validate a configuration file and print it")
    check.add_argument("--config", help="TOML file")
    add_ops_commands(sub)  # backup, restore, verify, archive

    add_plan_parser(sub)
    # The internal `child` stays out of the help: not in the metavar, and with no `help` it
    # is not listed (help=SUPPRESS would list it as "==SUPPRESS==").
    sub.metavar = "{" + ",".join(sub.choices) + "}"
    child = sub.add_parser("child")
    child.add_argument("role", choices=("worker", "router"))
    child.add_argument("--index", type=int, default=0)
    child.add_argument("--parent", type=int, required=True)
    child.add_argument("--listen-fd", type=int)
    return parser


def _load(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get(ENV_CONFIG) or None
    try:
        config = load_config(path)
    except OSError as e:  # a directory, no permission: one line, not a traceback
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if args.command == "serve":
        config = config.with_overrides(
            port=args.port, host=args.host, data_dir=args.data_dir, workers=args.workers
        )
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "child":
        return _child(args)
    if args.command == "plan":
        return run_plan(args)
    try:
        config = _load(args)
    except ConfigError as e:
        print(f"capsvc: invalid configuration: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        from capsvc.config import config_to_json

        print(config_to_json(config))
        return 0
    if args.command in OPS_COMMANDS:
        return run_ops_command(args, config)
    return _serve(config, lambda: _load(args))


def _serve(config: Config, reload_config: Callable[[], Config] | None = None) -> int:
    import setproctitle
    import uvloop

    from capsvc.logs import configure_logging
    from capsvc.supervisor.main import AlreadyRunning, run_supervisor

    setproctitle.setproctitle("capsvc: supervisor")
    configure_logging(config.logging.level, config.logging.format, "supervisor")
    faults.configure(config.data_dir, "supervisor")  # test-only; see capsvc.testing.faults
    try:
        return uvloop.run(run_supervisor(config, reload_config))
    except AlreadyRunning as e:
        print(f"capsvc: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"capsvc: cannot start: {e}", file=sys.stderr)
        return 1


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies, then make sure it has not already."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _child(args: argparse.Namespace) -> int:
    import setproctitle
    import uvloop

    from capsvc.logs import configure_logging

    _die_with_parent(args.parent)
    config = config_from_json(sys.stdin.read())
    sys.stdin.close()
    if args.role == "worker":
        from capsvc.worker.main import serve_worker

        setproctitle.setproctitle(f"capsvc: worker {args.index}")
        configure_logging(config.logging.level, config.logging.format, f"worker-{args.index}")
        faults.configure(config.data_dir, f"worker-{args.index}")  # test-only
        uvloop.run(serve_worker(config, args.index))
    else:
        from capsvc.router.main import serve_router

        setproctitle.setproctitle("capsvc: router")
        configure_logging(config.logging.level, config.logging.format, "router")
        faults.configure(config.data_dir, "router")  # test-only
        assert args.listen_fd is not None
        uvloop.run(serve_router(config, args.listen_fd))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
