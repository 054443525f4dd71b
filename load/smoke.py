"""Drive the locustfile's users against a running capsvc for a few seconds, through Locust's
library API (no CLI, no reports), and print a one-line JSON summary of what they did.

    .venv/bin/python -m load.smoke --host http://127.0.0.1:8080 --seconds 3

tests/integration/test_locustfile.py runs this in a subprocess: importing Locust
monkey-patches the interpreter with gevent, which must not leak into the test process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from load.profiles import PROFILES, user_plan

START_TIMEOUT_S = 30.0  # defining the pools and starting the users


def run(host: str, admin_token: str, profile_name: str, multiplier: float,
        seconds: float) -> dict:
    import gevent
    from locust import events
    from locust.env import Environment

    from load import locustfile

    profile = PROFILES[profile_name]
    locustfile.configure(profile, multiplier, admin_token)
    env = Environment(user_classes=[locustfile.Customer, locustfile.Planner], host=host,
                      events=events)
    runner = env.create_local_runner()
    users = user_plan(profile, multiplier).users
    runner.start(users, spawn_rate=users)  # fires test_start: the pools get defined
    deadline = time.monotonic() + START_TIMEOUT_S
    while runner.user_count < users and time.monotonic() < deadline:
        gevent.sleep(0.05)
    gevent.sleep(seconds)  # `seconds` of every user running
    runner.quit()
    entries = env.stats.entries.values()
    return {
        "users": users,
        "requests": {e.name: e.num_requests for e in entries},
        "failures": env.stats.total.num_failures,
        "total": env.stats.total.num_requests,
        "errors": [f"{e.method} {e.name}: {e.error} x{e.occurrences}"
                   for e in env.stats.errors.values()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True)
    parser.add_argument("--admin-token", default=os.environ.get("CAPSVC_ADMIN_TOKEN", ""))
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--multiplier", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    summary = run(args.host.rstrip("/"), args.admin_token, args.profile, args.multiplier,
                  args.seconds)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
