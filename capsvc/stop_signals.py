"""SIGTERM and SIGINT for every capsvc process: the first one asks for a drain, any later one
changes nothing.

Why the second half: Ctrl-C reaches every process of the group at once, and the supervisor
then sends its own SIGTERM to each child in drain order. Left to the event loop, a handler
falls back to the default (death) when the loop closes, so a signal in that last moment
turned a clean exit into -15 and the supervisor reported an unclean stop. A stuck drain is
still ended: the supervisor kills what does not stop within its timeout.
"""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: asyncio.Event) -> None:
    """The first stop signal sets `stop` (installed first thing: a stop during start-up is
    honoured once the process is up, not fatal halfway)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)


def ignore_further_stops() -> None:
    """Stopping already: later stop signals are ignored, to the end of the process."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
