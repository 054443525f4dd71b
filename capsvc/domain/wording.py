"""Counts in words, for messages people read: `counted(1, "unit")` is "1 unit",
`counted(2, "unit")` is "2 units" (every noun counted so far takes a plain "s")."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
