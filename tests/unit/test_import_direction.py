"""The layers import one way (docs/ARCHITECTURE.md, "Code layout"): domain imports nothing of
ours, storage nothing above it, the shard nothing of the processes around it; no production
module imports the tests, and only the places that wire parts together know the test faults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_domain_is_pure import imported_modules

ROOT = Path(__file__).resolve().parents[2]

# package -> the capsvc packages and modules it may import (besides itself)
ALLOWED = {
    "capsvc.domain": set(),
    "capsvc.storage": {"capsvc.domain", "capsvc.errors"},
    "capsvc.shard": {"capsvc.domain", "capsvc.errors", "capsvc.storage"},
    "capsvc.cluster": {"capsvc.errors", "capsvc.config"},
    "capsvc.planning": {"capsvc.domain", "capsvc.errors", "capsvc.storage", "capsvc.http"},
}
# the only modules that may import capsvc.testing: they wire parts together
WIRING = {"capsvc.cli", "capsvc.worker.main"}


def _modules(folder: str) -> list[tuple[str, list[str]]]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out.append((name, imported_modules(path.read_text(), package)))
    return out


def _ours(names: list[str]) -> set[str]:
    """capsvc modules imported, cut to package level (capsvc.x for capsvc.x.y...)."""
    return {".".join(n.split(".")[:2]) for n in names if n.startswith("capsvc.")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(package):
    for name, imports in _modules(package.replace(".", "/")):
        stray = _ours(imports) - ALLOWED[package] - {package, "capsvc"}
        assert not stray, f"{name} imports {sorted(stray)}"


def test_planning_stays_free_of_aiohttp():
    """Run in a fresh interpreter: importing every planning module loads no aiohttp."""
    modules = [name for name, _ in _modules("capsvc/planning")]
    code = f"import sys; import {', '.join(modules)}; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("folder", ["capsvc", "load"])
def test_nothing_outside_tests_imports_the_tests(folder):
    for name, imports in _modules(folder):
        assert not [n for n in imports if n.split(".")[0] == "tests"], name


def test_only_the_wiring_knows_the_test_faults():
    for name, imports in _modules("capsvc"):
        if name.startswith("capsvc.testing") or name in WIRING:
            continue
        assert not [n for n in imports if n.startswith("capsvc.testing")], name
