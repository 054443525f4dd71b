"""The project's operational errors: things that went wrong that are nobody's business fault.

Business rejections are values (`capsvc.domain.rejections`); bugs are assertions. Everything
else raised inside capsvc is one of these, each with a stable `code`; only the HTTP layer
turns them into statuses (`capsvc.http.problems`).

    CapsvcError
    ├── BadRequest                 the request is malformed; nothing was changed
    ├── StorageError               the shard's file refused an operation
    │   ├── StorageFull            disk or quota full (writes resume once space is freed)
    │   ├── StorageUnavailable     I/O error, or the file is locked by another process
    │   │   └── FileLocked         ... by another process: a previous owner still holds it
    │   ├── ShardCorrupt           the file is damaged; the shard fails closed
    │   └── Fenced                 a newer owner's epoch is in the file; we may not append
    ├── ShardUnavailable           the shard is not owned here or not (yet) recovered
    ├── Overloaded                 a bounded queue is full; try again shortly
    ├── UpstreamTimeout            the owner did not answer within the request deadline
    │   └── DeadlinePassed         the request reached its shard too late: not applied
    └── UpstreamUnavailable        the router could not reach the owning worker
"""

from __future__ import annotations

from typing import Any


class CapsvcError(Exception):
    code = "internal_error"
    retry_after_s: int | None = None

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class BadRequest(CapsvcError):
    def __init__(self, code: str, detail: str, **fields: Any) -> None:
        super().__init__(detail, **fields)
        self.code = code


class StorageError(CapsvcError):
    code = "storage_unavailable"
    retry_after_s = 1


class StorageFull(StorageError):
    code = "storage_full"
    retry_after_s = 5


class StorageUnavailable(StorageError):
    code = "storage_unavailable"


class FileLocked(StorageUnavailable):
    """Another process holds the shard file's lock: in a cluster, a previous owner that has
    not let go (a frozen host keeps its locks until it wakes or its storage lease ends)."""


class ShardCorrupt(StorageError):
    code = "shard_corrupt"
    retry_after_s = 30


class Fenced(StorageError):
    code = "shard_fenced"


class ShardUnavailable(CapsvcError):
    code = "shard_unavailable"
    retry_after_s = 1


class Overloaded(CapsvcError):
    code = "overloaded"
    retry_after_s = 1


class UpstreamTimeout(CapsvcError):
    code = "timeout"
    retry_after_s = 1


class DeadlinePassed(UpstreamTimeout):
    """The request's deadline passed before its command was decided: it was not applied."""


class UpstreamUnavailable(CapsvcError):
    code = "upstream_unavailable"
    retry_after_s = 1
