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
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from .base import Recorded, Uploaded
from .errors import Conflict, NotFound, StoreError
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

_COUNT_COLUMNS = (
    "id",
    "state",
    "updated_at",
    "revision",
    "vif_count",
    "vifs_done",
    "vifs_failed",
)
#: Operations that run together when they follow each other in a batch.
GROUPS: dict[Callable[..., Any], Callable[..., Awaitable[list[Any]]]] = {}
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
    """Store a new generation of each interface in the domain's active migration."""
    arguments = {
        "domain_uuid": domain_uuid,
        "interfaces": interfaces,
        "now": now,
        "if_match": if_match,
        "source_host": source_host,
        "max_vifs": max_vifs,
    }
    (done,) = await upload_group(c, ctx, [arguments])
    if isinstance(done, StoreError):
        raise done
    return done


async def upload_group(
    c: Conn, ctx: WriteContext, calls: Sequence[Mapping[str, Any]]
) -> list[Uploaded | StoreError]:
    """Run consecutive uploads of one batch together, each as ``store_uploads`` would.

    Two statements for the whole group, however many uploads and vifs: the
    active migrations of the domains named, each with its named vifs; then
    every vif row written and every migration's counts, state and revision.
    In between each upload is planned in order (``rows.plan_upload``) on what
    the uploads before it left, so a domain uploaded twice in one batch ends
    with both generations counted.
    """
    found = await c.fetch(
        "SELECT m.*, (SELECT json_agg(v) FROM vifs v WHERE v.migration_id = m.id"
        " AND v.mac = ANY($2::text[])) AS named FROM migrations m"
        f" WHERE m.domain_uuid = ANY($1::text[]) AND m.{ACTIVE}",
        sorted({call["domain_uuid"] for call in calls}),
        sorted({i.mac for call in calls for i in call["interfaces"]}),
    )
    held: dict[str, tuple[RowDict, dict[str, RowDict]]] = {}
    for row in found:
        migration = dict(row)
        named = json.loads(migration.pop("named") or "[]")
        held[migration["domain_uuid"]] = (migration, {v["mac"]: v for v in named})
    results: list[Uploaded | StoreError] = []
    written: dict[tuple[str, str], RowDict] = {}  # the last row of each vif
    for call in calls:
        try:
            results.append(await _plan_upload(ctx, held, call, written))
        except StoreError as exc:
            results.append(exc)
    ids = {mid for mid, _ in written}
    touched = [m for m, _ in held.values() if m["id"] in ids]
    if touched:
        await _write_vifs(
            c,
            f"INSERT INTO vifs ({', '.join(_VIF_COLUMNS)}) SELECT * FROM unnest($8::text[],"
            " $9::text[], $10::int[], $11::int[], $12::text[], $13::text[], $14::text[],"
            " $15::int[], $16::text[], $17::text[], $18::bigint[], $19::bigint[])"
            " ON CONFLICT (migration_id, mac) DO UPDATE SET generation = excluded.generation,"
            " interface = excluded.interface, portdata = excluded.portdata, status = 'pending',"
            " detail = NULL, digest = NULL, revision = excluded.revision,"
            " uploaded_at = excluded.uploaded_at",
            _columns(list(written.values()), _VIF_COLUMNS),
            touched,
        )
    return results


async def _plan_upload(
    ctx: WriteContext,
    held: rows.HeldUploads,
    call: Mapping[str, Any],
    written: dict[tuple[str, str], RowDict],
) -> Uploaded:
    """One upload of a group, planned on ``held`` (updated in place); refusals raise."""
    migration, stored = rows.upload_target(held, call)
    before = ctx.revision
    rev = await ctx.next_revision()
    try:
        vifs, uploaded = rows.take_upload(migration, stored, call, rev)
    except StoreError:
        ctx.revision = before
        raise
    for vif in vifs:
        written[(migration["id"], vif["mac"])] = vif
    _changed(ctx, migration)
    return uploaded


async def record_results(
    c: Conn,
    ctx: WriteContext,
    migration_id: str,
    results: Sequence[ResultIn],
    now: datetime,
) -> Recorded:
    """Record the destination's results; a result for an old generation changes nothing."""
    migration, stored = await _locked_with_vifs(
        c, "m.id = $1", migration_id, [r.mac for r in results]
    )
    if migration is None:
        raise NotFound(f"no migration {migration_id}")
    rules.ensure_active(MigrationState(migration["state"]), "post results")
    written, tally, prior = rows.plan_results(migration, stored, results, now)
    if written:
        rev = await ctx.next_revision()
        for vif in written:
            vif["revision"] = rev
        rows.settle(migration, tally, rev, now)
        _changed(ctx, migration)
        await _write_vifs(
            c,
            "UPDATE vifs SET status = r.status, applied_generation = r.applied_generation,"
            " detail = r.detail, digest = r.digest, revision = r.revision,"
            " applied_at = r.applied_at FROM unnest($8::text[], $9::text[], $10::int[],"
            " $11::text[], $12::text[], $13::bigint[], $14::bigint[])"
            " AS r(mac, status, applied_generation, detail, digest, revision, applied_at)"
            " WHERE vifs.migration_id = ANY($1::text[]) AND vifs.mac = r.mac",
            _columns(written, _RESULT_COLUMNS),
            [migration],
        )
    # The answer shows every vif: the destination's results call reads them all.
    return Recorded(rows.migration(migration, await all_vifs(c, migration_id)), prior)


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
    c: Conn, vifs_sql: str, arrays: list[list[Any]], migrations: Sequence[RowDict]
) -> None:
    """Run ``vifs_sql`` (its arrays from $8) and store each migration's counts, state and
    revision (already settled), in one statement."""
    await c.execute(
        f"WITH written AS ({vifs_sql}) UPDATE migrations m SET state = u.state,"
        " updated_at = u.updated_at, revision = u.revision, vif_count = u.vif_count,"
        " vifs_done = u.vifs_done, vifs_failed = u.vifs_failed"
        " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::int[],"
        " $6::int[], $7::int[])"
        " AS u(id, state, updated_at, revision, vif_count, vifs_done, vifs_failed)"
        " WHERE m.id = u.id",
        *_columns(migrations, _COUNT_COLUMNS),
        *arrays,
    )


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


GROUPS[store_uploads] = upload_group
