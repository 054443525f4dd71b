"""The systemd units in `systemd/` pass `systemd-analyze verify` exactly as shipped.

The units name the paths of an installed host (/opt/capsvc/venv/bin/capsvc, ...), which do
not exist here; so the check runs with `--root` on a throw-away root holding the units where
they are installed, stand-ins for the programs they start, and this machine's own system
units (for the default dependencies). Any output at all counts as a failure: systemd-analyze
reports unknown keys and bad values as warnings with exit code 0.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
PROGRAMS = (  # what the units execute, as installed
    "opt/capsvc/venv/bin/capsvc",
    "bin/kill",
    "usr/share/zookeeper/bin/zkServer.sh",
)


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None and shutil.which("apt-get") is not None:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "systemd"], check=False,
                       capture_output=True)
        found = shutil.which("systemd-analyze")
    if found is None or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd-analyze cannot be installed here")
    return found


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    etc = root / "etc/systemd/system"
    (etc / "capsvc.service.d").mkdir(parents=True)
    shutil.copy(UNITS / "capsvc.service", etc)
    shutil.copy(UNITS / "zookeeper.service", etc)
    shutil.copy(UNITS / "capsvc.service.d/cluster.conf", etc / "capsvc.service.d")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for program in PROGRAMS:
        path = root / program
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", ["capsvc.service", "zookeeper.service"])
def test_unit_verifies_without_a_single_warning(root, unit):
    result = subprocess.run(
        [_systemd_analyze(), "verify", f"--root={root}", "--man=no",
         f"/etc/systemd/system/{unit}"],
        capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_does_catch_a_misspelt_key(root, tmp_path):
    """The check above is worth something: a typo in the drop-in is reported."""
    dropin = root / "etc/systemd/system/capsvc.service.d/cluster.conf"
    good = dropin.read_text()
    dropin.write_text(good + "ReadWritePath=/srv/capsvc\n")
    try:
        result = subprocess.run(
            [_systemd_analyze(), "verify", f"--root={root}", "--man=no",
             "/etc/systemd/system/capsvc.service"],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        dropin.write_text(good)
    assert "ReadWritePath" in result.stdout + result.stderr


def test_capsvc_unit_has_what_operations_rely_on():
    """The settings the runbook relies on, spelled out."""
    text = (UNITS / "capsvc.service").read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["KillMode"] == "mixed"  # SIGTERM to the supervisor only: ordered drain
    assert settings["Restart"] == "on-failure"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key in ("WatchdogSec", "TimeoutStopSec", "User", "StateDirectory", "LimitNOFILE",
                "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                "ReadWritePaths"):
        assert key in settings, key
    assert settings["ProtectSystem"] == "strict"
    # Drain: workers then router, each up to drain_timeout_ms (15 s by default).
    assert int(settings["TimeoutStopSec"]) > 2 * 15
    # Start-up may take start_timeout_ms (60 s) before a degraded READY=1.
    assert int(settings["TimeoutStartSec"]) > 60
