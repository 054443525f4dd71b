"""Limits on query values that both the handlers enforce and `/openapi.json` states."""

VERSION_MAX = 2**53  # `after` (events) and `before` (timeline): a pool version, JSON-safe
BOARD_DAYS_MAX = 14  # the board: `to` at most this many days from `from` (counting both)
EXPORT_DAYS_MAX = 62  # the plan export: likewise
TIMELINE_SCAN_DEFAULT = 2000
TIMELINE_SCAN_MAX = 20_000
