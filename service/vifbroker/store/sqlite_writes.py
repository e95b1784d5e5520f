"""The SQLite store's write operations, each run by the writer thread inside
one SAVEPOINT of a group-committed transaction (see ``sqlite_engine``).

Each function takes the writer's connection and batch context first; the store
binds the rest with ``functools.partial``. Each records the hub keys to wake and
the watch-cache change of what it wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from vifbroker.model import (
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
    VifRecord,
)

from . import rules
from . import sqlite_rows as rows
from .errors import (
    Conflict,
    InvalidInput,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    WrongHost,
)
from .sqlite_cache import change
from .sqlite_engine import WriteContext

ACTIVE = f"state NOT IN {rows.TERMINAL_SQL}"


def create(
    c: sqlite3.Connection, ctx: WriteContext, req: MigrationCreate, mid: str, now: datetime
) -> tuple[Migration, bool]:
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
    if row is not None:
        stored = MigrationCreate(
            domain_uuid=row["domain_uuid"],
            source_host=row["source_host"],
            destination_host=row["destination_host"],
            domain_name=row["domain_name"],
            ttl_seconds=row["ttl_seconds"],
            on_backend_mismatch=row["on_backend_mismatch"],
        )
        if not rules.same_request(req, stored):
            raise Conflict(f"migration {mid} exists with a different request")
        existing = rows.load_migration(c, mid)
        assert existing is not None
        return existing, False
    other = c.execute(
        f"SELECT id FROM migrations WHERE domain_uuid = ? AND {ACTIVE}",
        (req.domain_uuid,),
    ).fetchone()
    if other is not None:
        raise Conflict(f"domain {req.domain_uuid} already has active migration {other['id']}")
    rev = ctx.next_revision()
    t = rows.to_micros(now)
    c.execute(
        "INSERT INTO migrations (id, domain_uuid, domain_name, source_host,"
        " destination_host, state, on_backend_mismatch, ttl_seconds, created_at,"
        " updated_at, expires_at, revision) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            mid,
            req.domain_uuid,
            req.domain_name,
            req.source_host,
            req.destination_host,
            MigrationState.PENDING.value,
            req.on_backend_mismatch,
            req.ttl_seconds,
            t,
            t,
            rows.to_micros(now + timedelta(seconds=req.ttl_seconds)),
            rev,
        ),
    )
    new_row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
    created = rows.migration(new_row, [])
    ctx.keys |= rules.keys_for(created)
    ctx.changes.append(change(new_row, []))
    return created, True


def put(
    c: sqlite3.Connection,
    ctx: WriteContext,
    domain_uuid: str,
    interfaces: Sequence[Interface],
    prepared: list[tuple[str, str, str | None]],
    now: datetime,
    if_match: dict[str, int] | None,
    source_host: str | None,
) -> tuple[Migration, list[VifRecord]]:
    row = c.execute(
        f"SELECT * FROM migrations WHERE domain_uuid = ? AND {ACTIVE}", (domain_uuid,)
    ).fetchone()
    if row is None:
        raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
    if source_host is not None and row["source_host"] != source_host:
        raise WrongHost(f"{source_host} is not the source host of {row['id']}")
    mid = row["id"]
    # Work on the vifs in memory: read once, write the changes, derive the
    # state and the answer from what is already at hand.
    vifs = {
        r["mac"]: dict(r)
        for r in c.execute("SELECT * FROM vifs WHERE migration_id = ? ORDER BY position", (mid,))
    }
    for mac, expected in (if_match or {}).items():
        have = vifs[mac]["generation"] if mac in vifs else 0
        if have != expected:
            raise PreconditionFailed(
                f"{mac} is at generation {have}, not {expected}",
                mac=mac,
                current_generation=have,
            )
    rev = ctx.next_revision()
    position = max((v["position"] for v in vifs.values()), default=-1)
    inserts, updates = [], []
    for mac, iface_json, portdata in prepared:
        old = vifs.get(mac)
        if old is None:
            position += 1
            new = {
                "migration_id": mid,
                "mac": mac,
                "position": position,
                "generation": 1,
                "interface": iface_json,
                "portdata": portdata,
                "status": "pending",
                "applied_generation": 0,
                "detail": None,
                "digest": None,
                "revision": rev,
            }
            vifs[mac] = new
            inserts.append(new)
        else:
            old.update(
                generation=old["generation"] + 1,
                interface=iface_json,
                portdata=portdata,
                status="pending",
                detail=None,
                digest=None,
                revision=rev,
            )
            updates.append(old)
    if inserts:
        c.executemany(
            "INSERT INTO vifs (migration_id, mac, position, generation, interface,"
            " portdata, status, applied_generation, revision) VALUES (:migration_id,"
            " :mac, :position, :generation, :interface, :portdata, :status,"
            " :applied_generation, :revision)",
            inserts,
        )
    if updates:
        c.executemany(
            "UPDATE vifs SET generation = :generation, interface = :interface,"
            " portdata = :portdata, status = 'pending', detail = NULL, digest = NULL,"
            " revision = :revision WHERE migration_id = :migration_id AND mac = :mac",
            updates,
        )
    updated = update_migration(c, ctx, dict(row), list(vifs.values()), rev, now)
    recs = [rows.record(vifs[i.mac], domain_uuid, i) for i in interfaces]
    return updated, recs


def post_results(
    c: sqlite3.Connection,
    ctx: WriteContext,
    migration_id: str,
    results: Sequence[ResultIn],
    now: datetime,
) -> Migration:
    current = rows.load_migration(c, migration_id)
    if current is None:
        raise NotFound(f"no migration {migration_id}")
    rules.ensure_active(current.state, "post results")
    stored = {
        r["mac"]: r for r in c.execute("SELECT * FROM vifs WHERE migration_id = ?", (migration_id,))
    }
    updates = []
    for res in results:
        if res.mac not in stored:
            raise InvalidInput(f"migration {migration_id} has no interface {res.mac}")
        row = stored[res.mac]
        update = rules.apply_result(
            res, row["generation"], row["portdata"], current.on_backend_mismatch
        )
        if update is not None:
            updates.append((res.mac, update))
    if not updates:
        return current
    rev = ctx.next_revision()
    for mac, ch in updates:
        c.execute(
            "UPDATE vifs SET status = ?, applied_generation = ?, detail = ?, digest = ?,"
            " revision = ? WHERE migration_id = ? AND mac = ?",
            (
                ch.status.value,
                ch.applied_generation,
                ch.detail,
                ch.digest,
                rev,
                migration_id,
                mac,
            ),
        )
    return touch(c, ctx, migration_id, rev, now)


def touch(c: sqlite3.Connection, ctx: WriteContext, mid: str, rev: int, now: datetime) -> Migration:
    """Re-derive the state of migration ``mid`` after its vifs changed at ``rev``."""
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
    vifs = rows.fetch_vifs(c, [mid])[mid]
    return update_migration(c, ctx, dict(row), vifs, rev, now)


def update_migration(
    c: sqlite3.Connection,
    ctx: WriteContext,
    row: dict[str, Any],
    vifs: Sequence[rows.Row],
    rev: int,
    now: datetime,
) -> Migration:
    """Store the state implied by ``vifs`` (already written) and answer the migration."""
    state = rules.derive_state(MigrationState(row["state"]), (rows.vif_row(v) for v in vifs))
    row.update(state=state.value, updated_at=rows.to_micros(now), revision=rev)
    c.execute(
        "UPDATE migrations SET state = :state, updated_at = :updated_at, revision = :revision"
        " WHERE id = :id",
        row,
    )
    updated = rows.migration(row, vifs)
    ctx.keys |= rules.keys_for(updated)
    ctx.changes.append(change(row, vifs))
    return updated


def finish(
    c: sqlite3.Connection, ctx: WriteContext, current: Migration, to: MigrationState, now: datetime
) -> Migration:
    """Move to terminal state ``to`` and purge the port data (outcomes stay)."""
    rev = ctx.next_revision()
    c.execute(
        "UPDATE migrations SET state = ?, updated_at = ?, revision = ? WHERE id = ?",
        (to.value, rows.to_micros(now), rev, current.id),
    )
    c.execute(
        "UPDATE vifs SET portdata = NULL, revision = ? WHERE migration_id = ?", (rev, current.id)
    )
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (current.id,)).fetchone()
    vifs = rows.fetch_vifs(c, [current.id])[current.id]
    updated = rows.migration(row, vifs)
    ctx.keys |= rules.keys_for(updated)
    ctx.changes.append(change(row, vifs))
    return updated
