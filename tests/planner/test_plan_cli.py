"""`capsvc plan` against a stand-in HTTP server that gives one canned answer: exit code 1 when
the service answered with a refusal or an error, 2 only when it could not be asked; every
error one line, never a traceback; a refused or partial plan is not reported as applied."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from capsvc.cli import main
from capsvc.cli_plan import format_answer

TOKEN = "test-admin-token-0123456789"
DAY = dt.date.today().isoformat()


class Canned:
    """An HTTP server on a free port that answers every request with `status` and `body`."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.requests: list[str] = []
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                canned.requests.append(f"{self.command} {self.path}")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def canned() -> Iterator:
    servers: list[Canned] = []

    def start(status: int, body: bytes | dict, content_type: str = "application/problem+json"):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        servers.append(Canned(status, data, content_type))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def plan_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSVC_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "plan.csv"
    path.write_text("pool_id,kind\n")  # the stand-in does not read it
    return str(path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROBLEM_400 = {"code": "invalid_parameter", "title": "Invalid parameter", "status": 400,
               "detail": "`to` is before `from`"}


@pytest.mark.parametrize(
    ("command", "status", "body", "content_type", "message"),
    [
        pytest.param("apply", 502, b"<html>Bad gateway</html>", "text/html",
                     "capsvc plan: the service answered 502 with no JSON: <html>Bad gateway</html>",
                     id="apply answered by a proxy's error page"),
        pytest.param("apply", 200, b"[]", "application/json",
                     "capsvc plan: the service answered 200 with no JSON: []",
                     id="apply answered with JSON that is no object"),
        pytest.param("export", 400, PROBLEM_400, "application/problem+json",
                     "capsvc plan: export failed (400): `to` is before `from`",
                     id="export refused"),
        pytest.param("export", 503, b"", "text/plain",
                     "capsvc plan: export failed (503): (empty)", id="export answered an error"),
    ],
)
def test_an_answer_with_an_error_exits_1_with_one_line(
    canned, plan_file, capsys, command, status, body, content_type, message
):
    server = canned(status, body, content_type)
    args = [plan_file] if command == "apply" else ["--region", "r", "--from", DAY]
    code, _, err = run(capsys, command, *args, "--url", server.url)
    assert (code, one_line(err)) == (1, message)


@pytest.mark.parametrize("command", ["apply", "export"])
def test_a_service_that_cannot_be_asked_exits_2_with_one_line(canned, plan_file, capsys,
                                                              command):
    args = [plan_file] if command == "apply" else ["--region", "r", "--from", DAY]
    code, _, err = run(capsys, command, *args, "--url", "notaurl")
    assert code == 2
    assert one_line(err) == ("capsvc plan: --url 'notaurl' is not an http(s) URL such as "
                             "http://127.0.0.1:8080")
    code, _, err = run(capsys, command, *args, "--url", "http://127.0.0.1:port")
    assert code == 2 and "is not an http(s) URL" in one_line(err)
    port = free_port()  # nothing listens there
    code, _, err = run(capsys, command, *args, "--url", f"http://127.0.0.1:{port}")
    assert code == 2 and "cannot reach" in one_line(err)
    server = canned(401, {"code": "unauthorized", "status": 401, "detail": "no"})
    code, _, err = run(capsys, command, *args, "--url", server.url)
    assert (code, one_line(err)) == (2, "capsvc plan: the admin token was refused (401)")


def test_an_export_to_a_path_that_cannot_be_written_asks_nothing(canned, plan_file, tmp_path,
                                                                  capsys):
    server = canned(200, b"pool_id\n", "text/csv")
    target = tmp_path / "no-such-dir" / "x.csv"
    code, _, err = run(capsys, "export", "--region", "r", "--from", DAY,
                       "-o", str(target), "--url", server.url)
    assert (code, one_line(err)) == (2, f"capsvc plan: cannot write {target}: no directory "
                                        f"{target.parent}")
    code, _, err = run(capsys, "export", "--region", "r", "--from", DAY,
                       "-o", str(tmp_path), "--url", server.url)
    assert code == 2 and one_line(err).endswith("it is a directory")
    assert server.requests == []
    code, _, err = run(capsys, "export", "--region", "r", "--from", DAY,
                       "-o", str(tmp_path / "x.csv"), "--url", server.url)
    assert code == 0 and (tmp_path / "x.csv").read_text() == "pool_id\n"


def _report(**extra) -> dict:
    change = {"line": 2, "slot_id": "a", "field": "capacity", "change": "lowered",
              "before": 5, "after": 4, "code": None, "detail": None}
    return {"dry_run": False, "row_count": 1,
            "summary": {"created": 0, "raised": 0, "lowered": 1, "refused": 0,
                        "unchanged_pools": 1},
            "pools": [{"pool_id": "p", "outcome": "changed", "changes": [change]}], **extra}


@pytest.mark.parametrize(
    ("status", "answer", "mode"),
    [
        pytest.param(200, _report(applied=True), "(applied)", id="applied"),
        pytest.param(409, _report(title="Capacity below reserved", detail="refused"),
                     "(REFUSED, nothing written)", id="refused whole"),
        pytest.param(503, _report(applied=False, title="Shard unavailable", detail="one pool"),
                     "(only partly applied)", id="partly applied"),
    ],
)
def test_the_report_says_applied_only_when_it_was(status, answer, mode):
    text = format_answer("plan.csv", status, answer)
    first, last = text.splitlines()[0], text.splitlines()[-1]
    assert first == f"plan.csv: 1 row, 1 pool {mode}"
    assert "1 pool unchanged" in text
    if status != 200:
        assert last == f"{answer['title']}: {answer['detail']}"
