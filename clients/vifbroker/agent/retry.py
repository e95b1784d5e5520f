"""Deadlines and backoff for work that must be retried until a migration expires."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime


class Backoff:
    """Exponential delays with jitter: ``initial``, doubling each call, capped at ``maximum``."""

    def __init__(self, initial: float = 0.05, maximum: float = 1.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self._next = self.initial


def monotonic_deadline(expires_at: datetime) -> float:
    """The ``time.monotonic()`` value at which the wall-clock ``expires_at`` passes."""
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    remaining = (expires_at - datetime.now(UTC)).total_seconds()
    return time.monotonic() + remaining


def report_deadline(expires_at: datetime, margin: float = 1.0) -> float:
    """When to give up retrying so a failure can still be reported before expiry.

    At ``expires_at`` the broker expires the migration and takes no results any
    more; ``margin`` seconds earlier (at most half of what is left) the agent
    stops retrying and reports what went wrong.
    """
    end = monotonic_deadline(expires_at)
    left = end - time.monotonic()
    return end - min(margin, max(0.0, left) / 2)


def remaining(deadline: float) -> float:
    return deadline - time.monotonic()
