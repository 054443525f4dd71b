"""The operator subcommands of `capsvc`: argument parsing and output only.

    capsvc backup DIR    [--config FILE] [--timeout-s N] [--json]
    capsvc restore DIR   [--config FILE] [--json]
    capsvc verify        [--config FILE] [--dir BACKUP_DIR] [--json]
    capsvc archive --before YYYY-MM-DD [--dry-run] [--config FILE] [--json]
    capsvc archive show POOL_ID [--config FILE]

Exit codes: 0 done (verify: no problem found); 1 refused or failed (a running service where
a stopped one is needed, an incomplete backup, a damaged backup; verify: problems found);
2 verify could not run at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

from capsvc.config import Config
from capsvc.domain.wording import counted
from capsvc.ops.files import OpsError, ServiceRunning

OPS_COMMANDS = ("backup", "restore", "verify", "archive")


def add_ops_commands(sub: argparse._SubParsersAction) -> None:
    backup = sub.add_parser("backup", help="consistent copies of every shard file, online")
    backup.add_argument("dir", type=Path, help="new or empty directory for the backup")
    backup.add_argument("--config", help="TOML file")
    backup.add_argument("--timeout-s", type=_seconds, default=600.0, help="per worker")
    backup.add_argument("--json", action="store_true", help="print the manifest as JSON")

    restore = sub.add_parser("restore", help="put a backup back (service stopped)")
    restore.add_argument("dir", type=Path, help="a directory written by `capsvc backup`")
    restore.add_argument("--config", help="TOML file")
    restore.add_argument("--json", action="store_true")

    verify = sub.add_parser("verify", help="replay every shard and check it (service stopped)")
    verify.add_argument("--config", help="TOML file")
    verify.add_argument("--dir", type=Path, help="verify this backup instead of the data")
    verify.add_argument("--json", action="store_true")

    archive = sub.add_parser("archive", help="move past pools out of the hot files; or `show`")
    archive.add_argument("words", nargs="*", metavar="show POOL_ID", help="read an archived pool")
    archive.add_argument("--before", type=_date, metavar="YYYY-MM-DD",
                         help="archive pools dated before this day")
    archive.add_argument("--dry-run", action="store_true", help="list, change nothing")
    archive.add_argument("--config", help="TOML file")
    archive.add_argument("--json", action="store_true")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def run_ops_command(args: argparse.Namespace, config: Config) -> int:
    try:
        return _COMMANDS[args.command](args, config)
    except ServiceRunning as e:
        print(f"capsvc {args.command}: {e}", file=sys.stderr)
        return 2 if args.command == "verify" else 1
    except OpsError as e:
        print(f"capsvc {args.command}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"capsvc {args.command}: {e}", file=sys.stderr)
        return 2 if args.command == "verify" else 1


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _backup(args: argparse.Namespace, config: Config) -> int:
    from capsvc.ops.backup import backup

    manifest = backup(config, args.dir, args.timeout_s)
    files = sum(1 for s in manifest["shards"].values() if not s.get("absent"))
    text = f"{manifest['mode']} backup in {args.dir.resolve()}: {counted(files, 'shard file')}"
    if not manifest["complete"]:
        text += f"; MISSING {manifest['missing']}"
    _print(args, manifest, text)
    return 0 if manifest["complete"] else 1


def _restore(args: argparse.Namespace, config: Config) -> int:
    from capsvc.ops.backup import restore

    result = restore(config, args.dir)
    text = f"restored {counted(result['restored_files'], 'shard file')} from {result['from']}"
    if result["previous_shards"]:
        text += f"; the previous files are in {result['previous_shards']}"
    _print(args, result, text)
    return 0


def _verify(args: argparse.Namespace, config: Config) -> int:
    from capsvc.ops.verify import render_text, verify

    result = verify(config, args.dir)
    _print(args, result, render_text(result))
    if result["backup_problems"]:
        problems = "; ".join(result["backup_problems"])
        print(f"capsvc verify: restore would refuse this backup: {problems}", file=sys.stderr)
    return 0 if result["ok"] else 1


def _archive(args: argparse.Namespace, config: Config) -> int:
    from capsvc.ops import archive

    if args.words:
        if len(args.words) != 2 or args.words[0] != "show":
            raise OpsError("usage: capsvc archive show POOL_ID")
        print(json.dumps(archive.show(config, args.words[1]), indent=2))
        return 0
    if args.before is None:
        raise OpsError("--before YYYY-MM-DD is required (or: capsvc archive show POOL_ID)")
    result = archive.archive(config, args.before, args.dry_run)
    verb = "would archive" if args.dry_run else "archived"
    lines = [f"{verb} {counted(len(result['archived']), 'pool')} dated before {result['before']}"]
    lines += [
        f"  {p['pool_id']} (shard {p['shard']}, {counted(p['events'], 'event')}) -> {p['file']}"
        for p in result["archived"]
    ]
    lines += [f"  kept {p['pool_id']} (shard {p['shard']}): {p['why']}" for p in result["kept"]]
    _print(args, result, "\n".join(lines))
    return 0


_COMMANDS = {"backup": _backup, "restore": _restore, "verify": _verify, "archive": _archive}
