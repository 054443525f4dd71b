"""The systemd notification protocol (sd_notify), with the standard library only.

systemd passes `$NOTIFY_SOCKET` (a path, or an abstract address starting with `@`) to a
`Type=notify` service; the service sends it datagrams of newline-separated `KEY=VALUE`
assignments: `READY=1` when start-up (or a reload) is complete, `RELOADING=1` with
`MONOTONIC_USEC=` when a reload begins, `STOPPING=1` when the drain begins, `STATUS=` lines for
`systemctl status`, and `WATCHDOG=1` at least every `$WATCHDOG_USEC` microseconds when the unit
has `WatchdogSec=`.

The environment variables are read once and removed from `os.environ`, like
`sd_notify(unset_environment=1)`: the workers and the router inherit the environment, and a
notification from them would at best be ignored (`NotifyAccess=main`).

Sending never raises and never blocks: a lost notification must not stop the service (systemd
then times the start out, which is the visible failure we want).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

ENV_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"


def _address(raw: str) -> str | None:
    """The `$NOTIFY_SOCKET` value as an AF_UNIX address; None for what we do not support."""
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # vsock: and relative paths are not for us


def _watchdog_usec(pid_raw: str | None, usec_raw: str | None) -> int:
    """The watchdog interval meant for this process, 0 when there is none."""
    if not usec_raw:
        return 0
    if pid_raw and pid_raw.strip() != str(os.getpid()):
        return 0  # the variables were meant for another process (our parent)
    try:
        usec = int(usec_raw)
    except ValueError:
        return 0
    return max(usec, 0)


class Notifier:
    """One process's channel to systemd; a no-op when not started by a `Type=notify` unit."""

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, unset: bool = True) -> Notifier:
        raw = os.environ.get(ENV_SOCKET, "")
        watchdog = _watchdog_usec(
            os.environ.get(ENV_WATCHDOG_PID), os.environ.get(ENV_WATCHDOG_USEC)
        )
        if unset:
            for name in (ENV_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID):
                os.environ.pop(name, None)
        address = _address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET %r is not supported; not notifying systemd", raw)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float:
        """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else 0.0

    def send(self, **fields: str | int) -> bool:
        """Send one datagram, e.g. `send(READY=1, STATUS="serving")`. True when sent."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one assignment per line, STATUS included
            lines.append(f"{key}={text}")
        payload = ("\n".join(lines) + "\n").encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
        except OSError as e:
            if not self._warned:  # once: systemd going away must not flood the log
                log.warning("cannot notify systemd at %r: %s", self.address.lstrip("\0"), e)
                self._warned = True
            return False
        return True

    # -- the assignments we use --------------------------------------------------------------
    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def reloading(self, status: str = "reloading the configuration") -> bool:
        # MONOTONIC_USEC lets systemd >= 253 match this RELOADING=1 to the reload it asked for.
        return self.send(
            RELOADING=1,
            MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
            STATUS=status,
        )

    def stopping(self, status: str = "draining") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
