"""What README.md promises a newcomer: `make run PORT=N` listens on N, every route of the
route table is in its API table, and the capsvc commands it shows run as written after
`make` (the command is `.venv/bin/capsvc`)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from capsvc.http.routes import ROUTES
from capsvc.testing.harness import REPO

README = (REPO / "README.md").read_text()


def _make_run(*args: str) -> str:
    done = subprocess.run(["make", "-n", "run", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return next(line for line in done.stdout.splitlines() if "capsvc serve" in line)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_passes_the_port_through():
    assert _make_run("PORT=8081").split() == [
        ".venv/bin/capsvc", "serve", "--config", "config.toml", "--port", "8081"]
    assert "--port" not in _make_run()  # without PORT: service.port from config.toml
    assert "make run PORT=8081" in README


def _api_table() -> set[tuple[str, str]]:
    """(method, path) of every route the README's API table names; a row may name several
    paths after one method (`GET /healthz`, `/readyz`)."""
    section = README.split("## The API", 1)[1].split("\n## ", 1)[0]
    named = set()
    for row in re.findall(r"^\| (`.*?) \|", section, re.MULTILINE):
        method = None
        for span in re.findall(r"`([^`]+)`", row):
            words = span.split()
            if len(words) == 2:
                method, path = words
            else:
                path = words[0]
            named.add((method, re.split(r"[?\[]", path)[0]))
    return named


def test_the_api_table_lists_every_route():
    routes = {(route.method, route.path) for route in ROUTES}
    assert routes - _api_table() == set()


def test_the_capsvc_commands_shown_run_after_make():
    blocks = re.findall(r"```(?:sh)?\n(.*?)```", README, re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    bare = [line for line in lines if re.match(r"(\S+=\S+ )*capsvc( |$)", line)]
    assert bare == [], "use .venv/bin/capsvc"
    inline = re.findall(r"`(capsvc [^`]*--[^`]*)`", README.replace("\n", " "))  # with options
    assert inline == [], "use .venv/bin/capsvc"
