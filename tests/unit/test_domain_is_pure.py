"""Specifies that capsvc.domain is pure: it imports no I/O, clock or randomness, nor other capsvc."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import capsvc.domain

DOMAIN_DIR = Path(capsvc.domain.__file__).parent
DOMAIN_FILES = sorted(DOMAIN_DIR.glob("*.py"))
FORBIDDEN = {
    "asyncio",
    "aiohttp",
    "aiosqlite",
    "sqlite3",
    "os",
    "time",
    "random",
    "secrets",
    "socket",
    "kazoo",
    "datetime",
}


def imported_modules(source: str, package: str) -> list[str]:
    """Every module a source file imports, relative imports resolved against `package`."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def _in_domain(name: str) -> bool:
    return name == "capsvc.domain" or name.startswith("capsvc.domain.")


def impurities(names: list[str]) -> list[str]:
    bad = []
    for name in names:
        root = name.split(".")[0]
        if root in FORBIDDEN:
            bad.append(name)
        elif name.startswith("capsvc.") and not _in_domain(name):
            bad.append(name)
    return bad


def test_the_domain_has_modules_to_check():
    assert {p.name for p in DOMAIN_FILES} >= {"decide.py", "evolve.py", "pool.py", "events.py"}


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
def test_a_domain_module_imports_nothing_impure(path):
    names = imported_modules(path.read_text(encoding="utf-8"), "capsvc.domain")
    assert impurities(names) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("import os.path", ["os.path"], id="import os.path"),
        pytest.param("from time import monotonic", ["time", "time.monotonic"], id="from time"),
        pytest.param("import datetime as dt", ["datetime"], id="aliased"),
        pytest.param("def f():\n    import random", ["random"], id="inside a function"),
        pytest.param(
            "from capsvc.storage import codec",
            ["capsvc.storage", "capsvc.storage.codec"],
            id="other capsvc package",
        ),
        pytest.param("from .. import errors", ["capsvc.errors"], id="relative, up one"),
        pytest.param(
            "from ..shard.shard import Shard",
            ["capsvc.shard.shard", "capsvc.shard.shard.Shard"],
            id="relative into shard",
        ),
        pytest.param("from capsvc import config", ["capsvc.config"], id="capsvc root"),
        pytest.param("import capsvc.domainx", ["capsvc.domainx"], id="lookalike of domain"),
        pytest.param("from . import ids\nfrom .pool import Pool", [], id="relative, in domain"),
        pytest.param(
            "from capsvc.domain.pool import Pool\nimport dataclasses, typing", [], id="allowed"
        ),
    ],
)
def test_the_checker_catches_impure_imports(source, expected):
    assert impurities(imported_modules(source, "capsvc.domain")) == expected
