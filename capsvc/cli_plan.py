"""`capsvc plan apply FILE [--dry-run]` and `capsvc plan export`: bulk plans from the shell,
through the HTTP admin API (the same routes as the board page), with the admin token from
$CAPSVC_ADMIN_TOKEN or a token file.

Exit codes: 0 done (or, with --dry-run, the plan would apply); 1 the service answered with a
refusal or an error (the plan refused, invalid, only partly applied; an export refused); 2 the
service could not be asked (usage, a bad URL or output path, network, token).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from capsvc.domain.wording import counted

ENV_URL = "CAPSVC_URL"
ENV_TOKEN = "CAPSVC_ADMIN_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TOKEN_FILE = "data/admin-token"
TIMEOUT_S = 120.0


class CliError(Exception):
    """The service could not be asked; exit code 2."""


class Answered(Exception):
    """The service answered with an error; exit code 1."""


def add_plan_parser(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="bulk capacity plans as CSV, through the admin API")
    actions = plan.add_subparsers(dest="plan_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"capsvc base URL (default: ${ENV_URL}, else {DEFAULT_URL})")
    common.add_argument(
        "--token-file",
        help=f"file holding the admin token (default: ${ENV_TOKEN}, else {DEFAULT_TOKEN_FILE})",
    )
    apply = actions.add_parser("apply", parents=[common], help="apply a plan CSV")
    apply.add_argument("file", help="the plan (CSV; '-' reads standard input)")
    apply.add_argument("--dry-run", action="store_true", help="only show what would change")
    apply.add_argument("--json", action="store_true", help="print the service's answer as is")
    export = actions.add_parser("export", parents=[common], help="write pools as a plan CSV")
    export.add_argument("--region", required=True)
    export.add_argument("--from", dest="first", required=True, help="first date YYYY-MM-DD")
    export.add_argument("--to", dest="last", help="last date (default: --from)")
    export.add_argument("--kind", help="only pools of this kind")
    export.add_argument("-o", "--output", help="write to this file (default: standard output)")


def run_plan(args: argparse.Namespace) -> int:
    try:
        base, token = _base_url(args), _token(args)
        if args.plan_command == "apply":
            return _apply(args, base, token)
        return _export(args, base, token)
    except CliError as e:
        print(f"capsvc plan: {e}", file=sys.stderr)
        return 2
    except Answered as e:
        print(f"capsvc plan: {e}", file=sys.stderr)
        return 1


def _base_url(args: argparse.Namespace) -> str:
    url = (args.url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
    if not _is_http_url(url):
        raise CliError(f"--url {url!r} is not an http(s) URL such as {DEFAULT_URL}")
    return url


def _is_http_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is no number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        path = Path(args.token_file)
    elif os.environ.get(ENV_TOKEN, "").strip():
        return os.environ[ENV_TOKEN].strip()
    else:
        path = Path(DEFAULT_TOKEN_FILE)
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"no admin token: set ${ENV_TOKEN} or pass --token-file ({e})") from None
    if not token:
        raise CliError(f"the token file {path} is empty")
    return token


def _call(
    method: str, url: str, token: str, body: bytes | None = None, content_type: str = ""
) -> tuple[int, bytes, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError) as e:
        raise CliError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    except (ValueError, http.client.HTTPException) as e:  # not HTTP that answered
        raise CliError(f"cannot ask {url}: {e!r}") from None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _apply(args: argparse.Namespace, base: str, token: str) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e}") from None
    query = "?dry_run=true" if args.dry_run else ""
    status, body, _ = _call("POST", f"{base}/v1/admin/plans{query}", token, data, "text/csv")
    if status == 401:
        raise CliError("the admin token was refused (401)")
    answer = _json_object(body)
    if answer is None:
        raise Answered(f"the service answered {status} with no JSON: {_start(body)}")
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(format_answer(args.file, status, answer))
    if status != 200:
        return 1
    return 0 if answer.get("would_apply", answer.get("applied", False)) else 1


def _export(args: argparse.Namespace, base: str, token: str) -> int:
    if args.output:
        _check_writable(Path(args.output))
    query = {"region": args.region, "from": args.first}
    if args.last:
        query["to"] = args.last
    if args.kind:
        query["kind"] = args.kind
    url = f"{base}/v1/admin/plans/export?{urllib.parse.urlencode(query)}"
    status, body, _ = _call("GET", url, token)
    if status == 401:
        raise CliError("the admin token was refused (401)")
    if status != 200:
        problem = _json_object(body)
        detail = problem.get("detail", "") if problem is not None else _start(body)
        raise Answered(f"export failed ({status}): {detail}")
    if not args.output:
        sys.stdout.write(body.decode())
        return 0
    try:
        Path(args.output).write_bytes(body)
    except OSError as e:
        raise Answered(f"cannot write {args.output}: {e.strerror or e}") from None
    return 0


def _check_writable(path: Path) -> None:
    """Before asking: an output file that could never be written is a usage error."""
    if path.is_dir():
        raise CliError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise CliError(f"cannot write {path}: no directory {path.parent}")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise CliError(f"cannot write {path}: permission denied")


def _start(body: bytes) -> str:
    """The first line of a body that is not what capsvc sends, for the error message."""
    text = body[:200].decode(errors="replace").strip()
    return text.splitlines()[0] if text else "(empty)"


# -- the human-readable report -------------------------------------------------------------
def format_answer(source: str, status: int, answer: dict[str, Any]) -> str:
    if "pools" not in answer:  # an error about the request itself: invalid rows, too large
        lines = [f"{source}: {answer.get('title', 'refused')} ({status}): {answer.get('detail')}"]
        for error in answer.get("errors", []):
            where = f"line {error['line']}"
            if error.get("field"):
                where += f", {error['field']}"
            lines.append(f"  {where}: {error['detail']}")
        if answer.get("errors_total", 0) > len(answer.get("errors", [])):
            lines.append(f"  ... {counted(answer['errors_total'], 'error')} in all")
        return "\n".join(lines)
    if answer["dry_run"]:
        mode = "DRY RUN, nothing written"
    elif answer.get("applied"):
        mode = "applied"
    elif "applied" in answer:  # applied pool by pool, and some pools failed
        mode = "only partly applied"
    else:  # refused after the check: nothing was applied
        mode = "REFUSED, nothing written"
    size = f"{counted(answer['row_count'], 'row')}, {counted(len(answer['pools']), 'pool')}"
    lines = [f"{source}: {size} ({mode})"]
    for pool in answer["pools"]:
        lines.append(f"  {pool['pool_id']}: {pool['outcome']}")
        for change in pool["changes"]:
            lines.append(f"    line {change['line']}: {_describe(change)}")
        result = pool.get("result")
        if result and result["status"] not in ("applied", "unchanged"):
            lines.append(f"    NOT APPLIED ({result['code']}): {result['detail']}")
    s = answer["summary"]
    lines.append(
        f"summary: {s['created']} created, {s['raised']} raised, {s['lowered']} lowered, "
        f"{s['refused']} refused, {counted(s['unchanged_pools'], 'pool')} unchanged"
    )
    if answer["dry_run"]:
        verdict = "yes" if answer.get("would_apply") else "no: the plan would be refused"
        lines.append(f"would apply: {verdict}")
    elif status != 200:
        lines.append(f"{answer.get('title', 'refused')}: {answer.get('detail')}")
    return "\n".join(lines)


def _describe(change: dict[str, Any]) -> str:
    what = change["slot_id"] or "pool"
    kind = change["change"]
    if kind == "refused":
        return f"{what} REFUSED ({change['code']}): {change['detail']}"
    if change["field"] == "pool":
        return change.get("detail") or "new pool"
    if change["field"] == "slot":
        return f"{what} new slot, capacity {change['after']}"
    before = "none" if change["before"] is None else change["before"]
    after = "none" if change["after"] is None else change["after"]
    return f"{what} {change['field']} {before} -> {after} ({kind})"
