"""The supervisor speaks systemd's notification protocol for real: each test starts
`capsvc serve` with `NOTIFY_SOCKET` pointing at a datagram socket the test reads, as systemd
would, and checks what arrives and when."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from capsvc.supervisor.notify import Notifier
from capsvc.testing.harness import Service, wait_for

pytestmark = pytest.mark.integration


class NotifyListener:
    """What systemd would receive: every datagram, parsed, with the time it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address  # as in $NOTIFY_SOCKET: a path or @abstract
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str, value: str | None = None) -> list[dict[str, str]]:
        return [m for _, m in list(self.messages) if key in m and value in (None, m[key])]

    def wait(self, key: str, value: str = "1", after: int = 0, timeout_s: float = 30) -> dict:
        def found():
            hits = [m for _, m in list(self.messages)[after:] if m.get(key) == value]
            return hits[0] if hits else None

        return wait_for(found, timeout_s, f"{key}={value} from the supervisor")

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    # An abstract address, as systemd itself uses; also keeps clear of sun_path's length limit.
    notify = NotifyListener(f"@capsvc-test-{uuid.uuid4().hex}")
    yield notify
    notify.close()


def test_ready_only_when_ready_then_watchdog_reload_and_stopping(tmp_path, listener):
    """READY=1 is sent once /readyz answers 200 and not before; WATCHDOG=1 arrives at half
    the watchdog interval; SIGHUP gives RELOADING=1 (with MONOTONIC_USEC) then READY=1 and
    applies a new admin token; SIGTERM gives STOPPING=1 and a clean exit."""
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}
    svc = Service(tmp_path / "data", workers=2, shard_count=8, env=env)
    svc.start(ready=False)
    try:
        ready = listener.wait("READY", timeout_s=30)
        assert svc.get("/readyz")[0] == 200, "READY=1 came before the service was ready"
        assert ready["STATUS"].startswith("ready: 8 shards")
        before = [m for m in listener.with_key("STATUS") if "READY" not in m]
        assert all(m["STATUS"].startswith("starting") for m in before)
        assert not listener.with_key("READY", "0")

        count = len(listener.with_key("WATCHDOG"))
        started = time.monotonic()
        wait_for(lambda: len(listener.with_key("WATCHDOG")) - count >= 3, 5, "three pings")
        assert time.monotonic() - started < 0.6  # every 0.1 s, not merely eventually

        new_token = "reloaded-token-0123456789"
        assert svc.admin("GET", "/v1/admin/cluster")[0] == 200
        status, _, _ = svc.request("GET", "/v1/admin/cluster",
                                   headers={"Authorization": f"Bearer {new_token}"})
        assert status == 401
        config = svc.config_path.read_text()
        svc.config_path.write_text(
            config.replace("port = 0\n", "port = 1\n")  # needs a restart: kept as it is
            + f'[auth]\nadmin_tokens = ["{new_token}"]\n'
        )
        mark = len(listener.messages)
        os.kill(svc.process.pid, signal.SIGHUP)
        reloading = listener.wait("RELOADING", after=mark)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        done = listener.wait("READY", after=mark)
        assert "need a restart" in done["STATUS"]
        status, _, _ = svc.request("GET", "/v1/admin/cluster",
                                   headers={"Authorization": f"Bearer {new_token}"})
        assert status == 200, "the reloaded admin token is not accepted"
        assert svc.admin("GET", "/v1/admin/cluster")[0] == 200  # the env token still is
        assert "service.port" in svc.log_text()  # named as needing a restart

        svc.config_path.write_text(config + "[auth]\nadmin_tokens = ['short']\n")
        mark = len(listener.messages)
        os.kill(svc.process.pid, signal.SIGHUP)
        refused = listener.wait("READY", after=mark)
        assert refused["STATUS"].startswith("reload refused")
        assert svc.get("/readyz")[0] == 200
    finally:
        mark = len(listener.messages)
        assert svc.stop() == 0, svc.log_text()[-3000:]
    assert listener.wait("STOPPING", after=mark, timeout_s=1)


def test_a_shard_that_cannot_recover_holds_ready_back_until_start_timeout(tmp_path, listener):
    """Fault: a damaged shard file. READY=1 waits for it until supervisor.start_timeout_ms,
    then comes with STATUS=degraded (so systemd does not kill a host whose other shards
    serve, and the operator sees why in `systemctl status`)."""
    data = tmp_path / "data"
    (data / "shards").mkdir(parents=True)
    (data / "shards" / "001.sqlite3").write_bytes(b"not a database" * 500)
    svc = Service(data, workers=1, shard_count=4, env={"NOTIFY_SOCKET": listener.address},
                  extra_config="[supervisor]\nstart_timeout_ms = 2000\n")
    started = time.monotonic()
    svc.start(ready=False)
    try:
        ready = listener.wait("READY", timeout_s=30)
        assert time.monotonic() - started >= 2.0
        assert ready["STATUS"].startswith("degraded:")
        messages = [m for _, m in list(listener.messages)]
        first_ready = next(i for i, m in enumerate(messages) if "READY" in m)
        waiting = [m["STATUS"] for m in messages[:first_ready] if "STATUS" in m]
        assert waiting and all(s.startswith("starting") for s in waiting)
        wait_for(lambda: svc.get("/readyz")[1].get("shards_not_ready") == [1], 30,
                 "/readyz to name the damaged shard")
    finally:
        assert svc.stop() == 0, svc.log_text()[-3000:]


def test_notifier_is_a_no_op_without_systemd_and_unsets_its_variables(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier.from_environment().ready("x")
    monkeypatch.setenv("NOTIFY_SOCKET", "@nobody-listens-here")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environment()
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert notifier.watchdog_interval_s == 0.5
    assert not notifier.watchdog()  # nobody listens: reported, never raised


def test_watchdog_variables_meant_for_another_process_are_ignored(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier.from_environment().watchdog_interval_s == 0


def test_notifier_sends_to_a_socket_path(tmp_path):
    path = Path(f"/tmp/capsvc-notify-{uuid.uuid4().hex[:8]}.sock")
    listener = NotifyListener(str(path))
    try:
        notifier = Notifier(str(path))
        assert notifier.ready("all\nfine")
        message = listener.wait("READY", timeout_s=5)
        assert message["STATUS"] == "all fine"  # one line per assignment
    finally:
        listener.close()
        path.unlink(missing_ok=True)
