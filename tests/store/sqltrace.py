"""What the SQLite store's writer connection runs: for tests of what a write reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vifbroker.store.sqlite import SQLiteStore


@contextmanager
def statements(store: SQLiteStore) -> Iterator[list[str]]:
    """The SQL the store's writer connection runs meanwhile."""
    conn = store._engine._wconn
    assert conn is not None
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def selects(seen: list[str]) -> list[str]:
    return [sql for sql in seen if sql.lstrip().upper().startswith("SELECT")]
