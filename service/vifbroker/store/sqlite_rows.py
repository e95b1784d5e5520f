"""SQLite reads shared by the store's reads and writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from vifbroker.model import Migration

from .rows import migration


def fetch_vifs(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[sqlite3.Row]]:
    """Every vif of the given migrations, in upload order, grouped by migration."""
    out: dict[str, list[sqlite3.Row]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT * FROM vifs WHERE migration_id IN ({marks}) ORDER BY migration_id, position",
            chunk,
        ):
            out[row["migration_id"]].append(row)
    return out


def stored_revision(conn: sqlite3.Connection) -> int:
    """The last revision a write stored (``meta``; 0 for a new file)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
    return int(row[0]) if row else 0


def load_migration(conn: sqlite3.Connection, migration_id: str) -> Migration | None:
    row = conn.execute("SELECT * FROM migrations WHERE id = ?", (migration_id,)).fetchone()
    if row is None:
        return None
    return migration(row, fetch_vifs(conn, [migration_id])[migration_id])
