"""Every write of the PostgreSQL store, in one place (the twin of ``sqlite_writes``).

Each function runs inside a group-committed transaction that holds the write
lock (see ``postgres_engine``), and must refuse (raise a StoreError) before it
writes anything: the batch runs without savepoints. It takes the connection and the
batch's ``WriteContext`` first (the store binds the rest with
``functools.partial``), decides through ``rules`` and ``rows`` (shared with
SQLite), writes, and adds the hub keys to wake. The database enforces what it
can by itself: one active migration per domain (a partial unique index),
primary keys, and the compare-and-set on a vif's generation, which runs in the
transaction that writes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from vifbroker.model import (
    Host,
    HostIn,
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
)

from . import rows, rules
from .base import Uploaded
from .errors import Conflict, NoActiveMigration, NotFound, WrongHost
from .postgres_engine import Conn, WriteContext
from .postgres_schema import TERMINAL_SQL

ACTIVE = f"state NOT IN {TERMINAL_SQL}"
RowDict = rows.RowDict
_VIF_COLUMNS = (
    "migration_id",
    "mac",
    "position",
    "generation",
    "interface",
    "portdata",
    "status",
    "applied_generation",
    "detail",
    "digest",
    "revision",
    "uploaded_at",
)

_RESULT_COLUMNS = (
    "mac",
    "status",
    "applied_generation",
    "detail",
    "digest",
    "revision",
    "applied_at",
)


# ------------------------------------------------------------------ migrations
async def create_migration(
    c: Conn,
    ctx: WriteContext,
    req: MigrationCreate,
    mid: str,
    now: datetime,
    registered_by: str | None = None,
) -> tuple[Migration, bool]:
    """Insert the migration, or return the stored one for a repeated request."""
    row = await c.fetchrow("SELECT * FROM migrations WHERE id = $1", mid)
    if row is not None:
        if not rules.same_request(req, rows.stored_request(row)):
            raise Conflict(f"migration {mid} exists with a different request")
        return rows.migration(row, await all_vifs(c, mid)), False
    new = rows.new_migration(req, mid, now, await ctx.next_revision(), registered_by)
    columns = list(new)
    try:
        async with c.transaction():
            await c.execute(
                f"INSERT INTO migrations ({', '.join(columns)})"
                f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
                *new.values(),
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "migrations_one_active":
            raise
        other = await c.fetchval(
            f"SELECT id FROM migrations WHERE domain_uuid = $1 AND {ACTIVE}", req.domain_uuid
        )
        raise Conflict(f"domain {req.domain_uuid} already has active migration {other}") from exc
    created = rows.migration(new, [])
    _changed(ctx, new)
    return created, True


async def end_migration(
    c: Conn, ctx: WriteContext, migration_id: str, to: MigrationState, now: datetime
) -> Migration:
    """Move to terminal state ``to`` (a repeat changes nothing) and purge its port data."""
    row = await _migration_row(c, migration_id)
    if not rules.check_transition(MigrationState(row["state"]), to):
        return rows.migration(row, await all_vifs(c, migration_id))
    return await _end(c, ctx, row, to, now)


async def expire_overdue(c: Conn, ctx: WriteContext, now: datetime) -> list[str]:
    """End every active migration past its deadline as expired; their ids."""
    due = await c.fetch(
        f"SELECT * FROM migrations WHERE {ACTIVE} AND expires_at <= $1 ORDER BY expires_at"
        " FOR UPDATE",
        rows.to_micros(now),
    )
    for row in due:
        await _end(c, ctx, dict(row), MigrationState.EXPIRED, now)
    return [row["id"] for row in due]


async def prune_ended(c: Conn, ctx: WriteContext, older_than: datetime) -> int:
    """Delete terminal migrations last changed before ``older_than`` (no revision: gone)."""
    gone = await c.fetch(
        f"DELETE FROM migrations WHERE state IN {TERMINAL_SQL} AND updated_at < $1 RETURNING id",
        rows.to_micros(older_than),
    )
    return len(gone)


# ------------------------------------------------------------------- records
async def store_uploads(
    c: Conn,
    ctx: WriteContext,
    domain_uuid: str,
    interfaces: Sequence[Interface],
    now: datetime,
    if_match: dict[str, int] | None,
    source_host: str | None,
    max_vifs: int | None = None,
) -> Uploaded:
    """Store a new generation of each interface in the domain's active migration.

    Two round trips whatever the size: the migration (locked) with the named
    vifs, then one statement writing the vifs and the migration's counts.
    """
    migration, stored = await _locked_with_vifs(
        c, "m.domain_uuid = $1 AND m." + ACTIVE, domain_uuid, [i.mac for i in interfaces]
    )
    if migration is None:
        raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
    if source_host is not None and migration["source_host"] != source_host:
        raise WrongHost(f"{source_host} is not the source host of {migration['id']}")
    rev = await ctx.next_revision()
    written, tally = rows.plan_upload(migration, stored, interfaces, if_match, rev, now, max_vifs)
    await _write_vifs(
        c,
        ctx,
        f"INSERT INTO vifs ({', '.join(_VIF_COLUMNS)}) SELECT * FROM unnest($8::text[],"
        " $9::text[], $10::int[], $11::int[], $12::text[], $13::text[], $14::text[],"
        " $15::int[], $16::text[], $17::text[], $18::bigint[], $19::bigint[])"
        " ON CONFLICT (migration_id, mac) DO UPDATE SET generation = excluded.generation,"
        " interface = excluded.interface, portdata = excluded.portdata, status = 'pending',"
        " detail = NULL, digest = NULL, revision = excluded.revision,"
        " uploaded_at = excluded.uploaded_at",
        _columns(written, _VIF_COLUMNS),
        (migration, tally, now),
    )
    records = [rows.record(v, domain_uuid, i) for v, i in zip(written, interfaces, strict=True)]
    return Uploaded(migration["id"], MigrationState(migration["state"]), rev, records)


async def record_results(
    c: Conn,
    ctx: WriteContext,
    migration_id: str,
    results: Sequence[ResultIn],
    now: datetime,
) -> Migration:
    """Record the destination's results; a result for an old generation changes nothing."""
    migration, stored = await _locked_with_vifs(
        c, "m.id = $1", migration_id, [r.mac for r in results]
    )
    if migration is None:
        raise NotFound(f"no migration {migration_id}")
    rules.ensure_active(MigrationState(migration["state"]), "post results")
    written, tally = rows.plan_results(migration, stored, results, now)
    if written:
        rev = await ctx.next_revision()
        for vif in written:
            vif["revision"] = rev
        await _write_vifs(
            c,
            ctx,
            "UPDATE vifs SET status = r.status, applied_generation = r.applied_generation,"
            " detail = r.detail, digest = r.digest, revision = r.revision,"
            " applied_at = r.applied_at FROM unnest($8::text[], $9::text[], $10::int[],"
            " $11::text[], $12::text[], $13::bigint[], $14::bigint[])"
            " AS r(mac, status, applied_generation, detail, digest, revision, applied_at)"
            " WHERE vifs.migration_id = $1 AND vifs.mac = r.mac",
            _columns(written, _RESULT_COLUMNS),
            (migration, tally, now),
        )
    # The answer shows every vif: the destination's results call reads them all.
    return rows.migration(migration, await all_vifs(c, migration_id))


async def record_resume(
    c: Conn, ctx: WriteContext, migration_id: str, at: datetime, now: datetime
) -> Migration:
    """Note when the guest resumed on the destination (the first report counts)."""
    row = await _migration_row(c, migration_id, lock=True)
    if row["resumed_at"] is not None:
        return rows.migration(row, await all_vifs(c, migration_id))
    rules.ensure_active(MigrationState(row["state"]), "report the resume")
    row.update(resumed_at=rows.to_micros(at), updated_at=rows.to_micros(now),
               revision=await ctx.next_revision())  # fmt: skip
    await c.execute(
        "UPDATE migrations SET resumed_at = $2, updated_at = $3, revision = $4 WHERE id = $1",
        row["id"],
        row["resumed_at"],
        row["updated_at"],
        row["revision"],
    )
    _changed(ctx, row)
    return rows.migration(row, await all_vifs(c, migration_id))


# --------------------------------------------------------------------- hosts
async def record_heartbeat(
    c: Conn, ctx: WriteContext, name: str, info: HostIn, now: datetime
) -> Host:
    backends = json.dumps([b.model_dump(mode="json") for b in info.backends])
    running = json.dumps(sorted(set(info.running_domains)))
    row = await c.fetchrow(
        "INSERT INTO hosts (name, last_seen, agent_version, backends, running_domains)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET"
        " last_seen = excluded.last_seen, agent_version = excluded.agent_version,"
        " backends = excluded.backends, running_domains = excluded.running_domains RETURNING *",
        name,
        rows.to_micros(now),
        info.agent_version,
        backends,
        running,
    )
    assert row is not None  # INSERT … RETURNING gives the row
    ctx.keys.add("hosts")
    return rows.host(row)


# --------------------------------------------------------------------- reads
async def fetch_vifs(c: Conn, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
    """Every vif of the given migrations, in upload order, grouped by migration."""
    out: dict[str, list[asyncpg.Record]] = {i: [] for i in ids}
    if ids:
        for row in await c.fetch(
            "SELECT * FROM vifs WHERE migration_id = ANY($1::text[])"
            " ORDER BY migration_id, position",
            list(ids),
        ):
            out[row["migration_id"]].append(row)
    return out


async def all_vifs(c: Conn, migration_id: str) -> list[asyncpg.Record]:
    return (await fetch_vifs(c, [migration_id]))[migration_id]


async def load_migration(c: Conn, migration_id: str) -> Migration | None:
    row = await c.fetchrow("SELECT * FROM migrations WHERE id = $1", migration_id)
    return None if row is None else rows.migration(row, await all_vifs(c, migration_id))


# ------------------------------------------------------------------- helpers
async def _migration_row(c: Conn, migration_id: str, lock: bool = True) -> RowDict:
    row = await c.fetchrow(
        "SELECT * FROM migrations WHERE id = $1" + (" FOR UPDATE" if lock else ""), migration_id
    )
    if row is None:
        raise NotFound(f"no migration {migration_id}")
    return dict(row)


async def _locked_with_vifs(
    c: Conn, where: str, key: str, macs: Sequence[str]
) -> tuple[RowDict | None, dict[str, RowDict]]:
    """The migration matching ``where`` and its vifs among ``macs``, in one round trip
    (index lookups: no scan of the migration's vifs). No row lock: the batch holds
    the write lock, so nothing else writes until it commits (and a FOR UPDATE
    would write a lock mark into the row: WAL for nothing)."""
    row = await c.fetchrow(
        "SELECT m.*, (SELECT json_agg(v) FROM vifs v WHERE v.migration_id = m.id"
        f" AND v.mac = ANY($2::text[])) AS named FROM migrations m WHERE {where}",
        key,
        list(macs),
    )
    if row is None:
        return None, {}
    migration = dict(row)
    named = migration.pop("named")
    return migration, {v["mac"]: v for v in json.loads(named or "[]")}


def _columns(vifs: Sequence[RowDict], names: Sequence[str]) -> list[list[Any]]:
    """Rows as one array per column (what ``unnest`` takes: one round trip for many)."""
    return [[v[name] for v in vifs] for name in names]


async def _write_vifs(
    c: Conn,
    ctx: WriteContext,
    vifs_sql: str,
    arrays: list[list[Any]],
    what: tuple[RowDict, rules.Tally, datetime],
) -> None:
    """Run ``vifs_sql`` (its arrays from $8) and store the migration's counts, state and
    revision, in one statement."""
    migration, tally, now = what
    rows.settle(migration, tally, ctx.revision, now)
    await c.execute(
        f"WITH written AS ({vifs_sql}) UPDATE migrations SET state = $2, updated_at = $3,"
        " revision = $4, vif_count = $5, vifs_done = $6, vifs_failed = $7 WHERE id = $1",
        *(migration[k] for k in ("id", "state", "updated_at", "revision", "vif_count")),
        migration["vifs_done"],
        migration["vifs_failed"],
        *arrays,
    )
    _changed(ctx, migration)


async def _end(
    c: Conn, ctx: WriteContext, row: RowDict, to: MigrationState, now: datetime
) -> Migration:
    rev = await ctx.next_revision()
    row.update(state=to.value, updated_at=rows.to_micros(now), revision=rev)
    await c.execute(
        "UPDATE migrations SET state = $2, updated_at = $3, revision = $4 WHERE id = $1",
        row["id"],
        row["state"],
        row["updated_at"],
        rev,
    )
    await c.execute(
        "UPDATE vifs SET portdata = NULL, revision = $2 WHERE migration_id = $1", row["id"], rev
    )
    _changed(ctx, row)
    return rows.migration(row, await all_vifs(c, row["id"]))


def _changed(ctx: WriteContext, row: RowDict) -> None:
    ctx.keys |= rules.hub_keys(
        row["id"], row["domain_uuid"], row["source_host"], row["destination_host"]
    )
