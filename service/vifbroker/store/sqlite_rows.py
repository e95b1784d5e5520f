"""SQLite rows <-> models (no connection handling here; the schema is in sqlite_schema)."""

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

from .rules import Outcome, Tally, vif_outcome


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


def outcome(vif: Row) -> Outcome:
    return vif_outcome(VifStatus(vif["status"]), vif["generation"], vif["applied_generation"])


def tally(migration: Row) -> Tally:
    """The vif counts kept on a migration row."""
    return Tally(migration["vif_count"], migration["vifs_done"], migration["vifs_failed"])


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
