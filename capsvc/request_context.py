"""The request id of the request a task is serving, and its way into every log line.

The router gives each request an `X-Request-Id` (or keeps the client's), sends it to the worker,
and returns it in the response. A worker sets `REQUEST_ID` while it serves the request; the
filter installed here on the process's log handlers copies it into every record logged
meanwhile, so the JSON formatter (`capsvc.logs`) writes it as the `request_id` field.
`journalctl -u capsvc -o cat | grep <id>` on every host then follows one request across
processes and hosts.

A handler filter rather than a log record factory: a factory would add the attribute before
`extra` is applied, and a call with `extra={"request_id": ...}` would then raise.
"""

from __future__ import annotations

import contextvars
import logging

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "capsvc_request_id", default=None
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def install_request_id_filter() -> None:
    """Add the filter to the root logger's handlers (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
