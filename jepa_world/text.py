"""Small helpers for the lines commands print."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``count(1, "episode")`` -> "1 episode", ``count(4, "episode")`` -> "4 episodes"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
