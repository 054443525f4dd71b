"""The header names our processes exchange, and the connection limits that must agree between
a server and its clients: spelled once, with their relations asserted here.

Header names are written as sent; lean code compares the lower-case bytes (`wire`).
"""

from __future__ import annotations

REQUEST_ID = "X-Request-Id"
IDEMPOTENCY_KEY = "Idempotency-Key"
CLUSTER_TOKEN = "X-Capsvc-Cluster-Token"  # the cluster secret, on requests between hosts
ACTOR = "X-Capsvc-Actor"  # the admin token's name, from the router to the worker
NOT_APPLIED = "X-Capsvc-Not-Applied"  # the worker applied nothing: safe to resend elsewhere
EPOCH = "X-Capsvc-Epoch"  # the shard's owner epoch when a command was decided
VERSION = "X-Capsvc-Version"  # the pool's version after it
# When the router stops waiting for an answer (Unix epoch milliseconds): a command still
# undecided then is never applied, however late it reaches its shard (a frozen host wakes).
DEADLINE = "X-Capsvc-Deadline"


def deadline_value(deadline_s: float) -> str:
    """The `DEADLINE` header's value for a wall-clock time (seconds)."""
    return str(int(deadline_s * 1000))


def deadline_of(value: str | bytes | None) -> float | None:
    """A `DEADLINE` header's wall-clock time in seconds; None when absent or unreadable (then
    the worker's own request timeout is all there is)."""
    if value is None or not value.isdigit() or len(value) > 15:
        return None
    return int(value) / 1000


def wire(name: str) -> bytes:
    """A header name as the lean fronts and raw clients look it up (httptools: lower case)."""
    return name.lower().encode()


# A server closes a keep-alive connection idle this long (LeanProtocol; aiohttp's default too).
SERVER_KEEPALIVE_S = 75.0
# Our clients (the router's pool to its workers, the fronts' relay to aiohttp) close their
# idle connections sooner, so they never send on a connection the server is closing.
CLIENT_IDLE_CLOSE_S = 30.0
assert CLIENT_IDLE_CLOSE_S < SERVER_KEEPALIVE_S
