"""SQLite schema and row <-> model conversions (no connection handling here)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from vifbroker.model import (
    BackendInfo,
    Host,
    Interface,
    Migration,
    MigrationState,
    VifRecord,
    VifResult,
    VifStatus,
    VifSummary,
)

from .rules import VifRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS migrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    domain_uuid TEXT NOT NULL,
    domain_name TEXT,
    source_host TEXT NOT NULL,
    destination_host TEXT NOT NULL,
    state TEXT NOT NULL,
    on_backend_mismatch TEXT NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revision INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active ON migrations(domain_uuid)
    WHERE state NOT IN ('completed', 'cancelled', 'expired');
CREATE INDEX IF NOT EXISTS migrations_revision ON migrations(revision);
CREATE INDEX IF NOT EXISTS migrations_source ON migrations(source_host, revision);
CREATE INDEX IF NOT EXISTS migrations_destination ON migrations(destination_host, revision);
CREATE INDEX IF NOT EXISTS migrations_expiry ON migrations(expires_at)
    WHERE state NOT IN ('completed', 'cancelled', 'expired');
CREATE TABLE IF NOT EXISTS vifs (
    migration_id TEXT NOT NULL REFERENCES migrations(id) ON DELETE CASCADE,
    mac TEXT NOT NULL,
    position INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    interface TEXT NOT NULL,
    portdata TEXT,
    status TEXT NOT NULL,
    applied_generation INTEGER NOT NULL,
    detail TEXT,
    digest TEXT,
    revision INTEGER NOT NULL,
    PRIMARY KEY (migration_id, mac)
);
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    agent_version TEXT,
    backends TEXT NOT NULL
);
"""

TERMINAL_SQL = "('completed', 'cancelled', 'expired')"


def to_micros(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def split_interface(iface: Interface) -> tuple[str, str | None]:
    """Store port data in its own column so purging it is one UPDATE."""
    return iface.without_portdata().model_dump_json(exclude_none=True), iface.portdata


def join_interface(interface_json: str, portdata: str | None) -> Interface:
    iface = Interface.model_validate_json(interface_json)
    return iface.with_portdata(portdata) if portdata is not None else iface


# Rows were validated on the way in, so models are built from them with
# model_construct (no re-validation): it is most of the cost of a write.
Row = Mapping[str, Any] | sqlite3.Row


def vif_row(row: Row) -> VifRow:
    return VifRow(
        row["mac"], row["generation"], VifStatus(row["status"]), row["applied_generation"]
    )


def summary(row: Row) -> VifSummary:
    return VifSummary.model_construct(
        mac=row["mac"],
        generation=row["generation"],
        status=VifStatus(row["status"]),
        applied_generation=row["applied_generation"],
        detail=row["detail"],
    )


def record(row: Row, domain_uuid: str, interface: Interface | None = None) -> VifRecord:
    """The record of a vif row; pass ``interface`` when it is at hand to skip parsing."""
    return VifRecord.model_construct(
        domain_uuid=domain_uuid,
        mac=row["mac"],
        generation=row["generation"],
        interface=interface or join_interface(row["interface"], row["portdata"]),
        result=VifResult.model_construct(
            status=VifStatus(row["status"]),
            applied_generation=row["applied_generation"],
            detail=row["detail"],
            digest=row["digest"],
        ),
        revision=row["revision"],
    )


def migration(row: Row, vifs: Iterable[Row]) -> Migration:
    return Migration.model_construct(
        id=row["id"],
        domain_uuid=row["domain_uuid"],
        domain_name=row["domain_name"],
        source_host=row["source_host"],
        destination_host=row["destination_host"],
        state=MigrationState(row["state"]),
        on_backend_mismatch=row["on_backend_mismatch"],
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
        expires_at=from_micros(row["expires_at"]),
        revision=row["revision"],
        interfaces=[summary(v) for v in vifs],
    )


def host(row: Row) -> Host:
    return Host(
        name=row["name"],
        last_seen=from_micros(row["last_seen"]),
        agent_version=row["agent_version"],
        backends=[BackendInfo.model_validate(b) for b in json.loads(row["backends"])],
    )


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


def load_migration(conn: sqlite3.Connection, migration_id: str) -> Migration | None:
    row = conn.execute("SELECT * FROM migrations WHERE id = ?", (migration_id,)).fetchone()
    if row is None:
        return None
    return migration(row, fetch_vifs(conn, [migration_id])[migration_id])
