"""The benchmark and load tools run by hand, never in the suite: at least they must import, so
a refactor of what they share with the tests cannot break them unseen."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import load

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(load.__path__, "load.")
    # __main__ runs the command; the locustfile is imported by test_locustfile, with its setup
    if not m.name.endswith(".__main__") and m.name != "load.locustfile"
)


def test_the_load_tools_are_found():
    assert {
        "load.service",
        "load.bench.run",
        "load.bench.recovery",
        "load.run_locust",
        "load.bench.systems",
        "load.bench.redis_server",
        "load.bench.classical.redis_store",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_load_module_imports(name):
    importlib.import_module(name)
