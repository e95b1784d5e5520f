"""Every write of the SQLite store, in one place.

Each function runs on the writer thread inside one SAVEPOINT of a
group-committed transaction (see ``sqlite_engine``): it takes the writer's
connection and the batch's ``WriteContext`` first (the store binds the rest
with ``functools.partial``), decides through ``rules``, writes, and records in
the context the hub keys to wake and the ``Change`` for the watch cache.

A migration row carries its vif counts by outcome (``rules.Tally``), so an
upload or a result reads and writes only the vifs it names.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from vifbroker.model import (
    Host,
    HostIn,
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
)

from . import rules
from . import sqlite_rows as rows
from .base import Uploaded
from .errors import (
    Conflict,
    InvalidInput,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    WrongHost,
)
from .sqlite_cache import Pruned, change
from .sqlite_engine import WriteContext
from .sqlite_schema import TERMINAL_SQL

ACTIVE = f"state NOT IN {TERMINAL_SQL}"
RowDict = dict[str, Any]


# ------------------------------------------------------------------ migrations
def create_migration(
    c: sqlite3.Connection, ctx: WriteContext, req: MigrationCreate, mid: str, now: datetime
) -> tuple[Migration, bool]:
    """Insert the migration, or return the stored one for a repeated request."""
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
        f"SELECT id FROM migrations WHERE domain_uuid = ? AND {ACTIVE}", (req.domain_uuid,)
    ).fetchone()
    if other is not None:
        raise Conflict(f"domain {req.domain_uuid} already has active migration {other['id']}")
    t = rows.to_micros(now)
    new: RowDict = {
        "id": mid,
        "domain_uuid": req.domain_uuid,
        "domain_name": req.domain_name,
        "source_host": req.source_host,
        "destination_host": req.destination_host,
        "state": MigrationState.PENDING.value,
        "on_backend_mismatch": req.on_backend_mismatch,
        "ttl_seconds": req.ttl_seconds,
        "created_at": t,
        "updated_at": t,
        "expires_at": rows.to_micros(now + timedelta(seconds=req.ttl_seconds)),
        "revision": ctx.next_revision(),
        "vif_count": 0,
        "vifs_done": 0,
        "vifs_failed": 0,
    }
    c.execute(
        f"INSERT INTO migrations ({', '.join(new)}) VALUES ({', '.join(':' + k for k in new)})",
        new,
    )
    created = rows.migration(new, [])
    _changed(ctx, created, new, [], full=True)
    return created, True


def end_migration(
    c: sqlite3.Connection, ctx: WriteContext, migration_id: str, to: MigrationState, now: datetime
) -> Migration:
    """Move to terminal state ``to`` (a repeat changes nothing) and purge its port data."""
    row = _migration_row(c, migration_id)
    if not rules.check_transition(MigrationState(row["state"]), to):
        return rows.migration(row, _all_vifs(c, migration_id))
    return _end(c, ctx, row, to, now)


def expire_overdue(c: sqlite3.Connection, ctx: WriteContext, now: datetime) -> list[str]:
    """End every active migration past its deadline as expired; their ids."""
    due = c.execute(
        f"SELECT * FROM migrations WHERE {ACTIVE} AND expires_at <= ? ORDER BY expires_at",
        (rows.to_micros(now),),
    ).fetchall()
    for row in due:
        _end(c, ctx, dict(row), MigrationState.EXPIRED, now)
    return [row["id"] for row in due]


def prune_ended(c: sqlite3.Connection, ctx: WriteContext, older_than: datetime) -> int:
    """Delete terminal migrations last changed before ``older_than`` (no revision: gone)."""
    ids = frozenset(
        r[0]
        for r in c.execute(
            f"DELETE FROM migrations WHERE state IN {TERMINAL_SQL} AND updated_at < ? RETURNING id",
            (rows.to_micros(older_than),),
        )
    )
    if ids:
        ctx.changes.append(Pruned(ids))
    return len(ids)


# ------------------------------------------------------------------- records
def store_uploads(
    c: sqlite3.Connection,
    ctx: WriteContext,
    domain_uuid: str,
    interfaces: Sequence[Interface],
    now: datetime,
    if_match: dict[str, int] | None,
    source_host: str | None,
) -> Uploaded:
    """Store a new generation of each interface in the domain's active migration."""
    row = c.execute(
        f"SELECT * FROM migrations WHERE domain_uuid = ? AND {ACTIVE}", (domain_uuid,)
    ).fetchone()
    if row is None:
        raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
    if source_host is not None and row["source_host"] != source_host:
        raise WrongHost(f"{source_host} is not the source host of {row['id']}")
    migration = dict(row)
    mid = migration["id"]
    stored = _named_vifs(c, mid, [i.mac for i in interfaces])
    for mac, expected in (if_match or {}).items():
        have = stored[mac]["generation"] if mac in stored else 0
        if have != expected:
            raise PreconditionFailed(
                f"{mac} is at generation {have}, not {expected}", mac=mac, current_generation=have
            )
    rev = ctx.next_revision()
    tally = rows.tally(migration)
    written: list[RowDict] = []
    for iface in interfaces:
        iface_json, portdata = rows.split_interface(iface)
        old = stored.get(iface.mac)
        new: RowDict = {
            "migration_id": mid,
            "mac": iface.mac,
            "position": old["position"] if old else tally.total,
            "generation": old["generation"] + 1 if old else 1,
            "interface": iface_json,
            "portdata": portdata,
            "status": "pending",
            "applied_generation": old["applied_generation"] if old else 0,
            "detail": None,
            "digest": None,
            "revision": rev,
        }
        if old is None:
            tally.add(rules.Outcome.PENDING)
        else:
            tally.replace(rows.outcome(old), rules.Outcome.PENDING)
        written.append(new)
    _write_vifs(
        c,
        ctx,
        "INSERT INTO vifs (migration_id, mac, position, generation, interface, portdata, status,"
        " applied_generation, detail, digest, revision) VALUES (:migration_id, :mac, :position,"
        " :generation, :interface, :portdata, :status, :applied_generation, :detail, :digest,"
        " :revision) ON CONFLICT (migration_id, mac) DO UPDATE SET"
        " generation = excluded.generation, interface = excluded.interface,"
        " portdata = excluded.portdata, status = 'pending', detail = NULL, digest = NULL,"
        " revision = excluded.revision",
        (migration, tally, written),
        rev,
        now,
    )
    records = [rows.record(v, domain_uuid, i) for v, i in zip(written, interfaces, strict=True)]
    return Uploaded(mid, MigrationState(migration["state"]), rev, records)


def record_results(
    c: sqlite3.Connection,
    ctx: WriteContext,
    migration_id: str,
    results: Sequence[ResultIn],
    now: datetime,
) -> Migration:
    """Record the destination's results; a result for an old generation changes nothing."""
    migration = _migration_row(c, migration_id)
    rules.ensure_active(MigrationState(migration["state"]), "post results")
    policy = migration["on_backend_mismatch"]
    stored = _named_vifs(c, migration_id, [r.mac for r in results])
    tally = rows.tally(migration)
    written: list[RowDict] = []
    for res in results:
        if res.mac not in stored:
            raise InvalidInput(f"migration {migration_id} has no interface {res.mac}")
        old = stored[res.mac]
        update = rules.apply_result(res, old["generation"], old["portdata"], policy)
        if update is None:
            continue
        new = old | {
            "status": update.status.value,
            "applied_generation": update.applied_generation,
            "detail": update.detail,
            "digest": update.digest,
        }
        tally.replace(rows.outcome(old), rows.outcome(new))
        written.append(new)
    if not written:
        return rows.migration(migration, _all_vifs(c, migration_id))
    rev = ctx.next_revision()
    for vif in written:
        vif["revision"] = rev
    _write_vifs(
        c,
        ctx,
        "UPDATE vifs SET status = :status, applied_generation = :applied_generation,"
        " detail = :detail, digest = :digest, revision = :revision"
        " WHERE migration_id = :migration_id AND mac = :mac",
        (migration, tally, written),
        rev,
        now,
    )
    # The answer shows every vif: the destination's results call reads them all.
    return rows.migration(migration, _all_vifs(c, migration_id))


# --------------------------------------------------------------------- hosts
def record_heartbeat(
    c: sqlite3.Connection, ctx: WriteContext, name: str, info: HostIn, now: datetime
) -> Host:
    backends = json.dumps([b.model_dump(mode="json") for b in info.backends])
    c.execute(
        "INSERT INTO hosts (name, last_seen, agent_version, backends) VALUES (?,?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen,"
        " agent_version = excluded.agent_version, backends = excluded.backends",
        (name, rows.to_micros(now), info.agent_version, backends),
    )
    ctx.keys.add("hosts")
    return rows.host(c.execute("SELECT * FROM hosts WHERE name = ?", (name,)).fetchone())


# ------------------------------------------------------------------- helpers
def _migration_row(c: sqlite3.Connection, migration_id: str) -> RowDict:
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (migration_id,)).fetchone()
    if row is None:
        raise NotFound(f"no migration {migration_id}")
    return dict(row)


def _named_vifs(
    c: sqlite3.Connection, migration_id: str, macs: Sequence[str]
) -> dict[str, RowDict]:
    """The stored vifs among ``macs`` (primary-key lookups: no scan of the migration)."""
    found: dict[str, RowDict] = {}
    for start in range(0, len(macs), 500):
        chunk = macs[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for r in c.execute(
            f"SELECT * FROM vifs WHERE migration_id = ? AND mac IN ({marks})",
            (migration_id, *chunk),
        ):
            found[r["mac"]] = dict(r)
    return found


def _all_vifs(c: sqlite3.Connection, migration_id: str) -> list[sqlite3.Row]:
    return rows.fetch_vifs(c, [migration_id])[migration_id]


def _write_vifs(
    c: sqlite3.Connection,
    ctx: WriteContext,
    sql: str,
    what: tuple[RowDict, rules.Tally, list[RowDict]],
    rev: int,
    now: datetime,
) -> None:
    """Write ``vifs`` with ``sql``, then their migration's counts, state and revision."""
    migration, tally, vifs = what
    c.executemany(sql, vifs)
    _update_migration(c, migration, tally, rev, now)
    _changed_row(c, ctx, migration, vifs)


def _update_migration(
    c: sqlite3.Connection, migration: RowDict, tally: rules.Tally, rev: int, now: datetime
) -> None:
    """Store the counts, the state they imply and the revision of a change to its vifs."""
    migration.update(
        state=rules.state_of(MigrationState(migration["state"]), tally).value,
        updated_at=rows.to_micros(now),
        revision=rev,
        vif_count=tally.total,
        vifs_done=tally.done,
        vifs_failed=tally.failed,
    )
    c.execute(
        "UPDATE migrations SET state = :state, updated_at = :updated_at, revision = :revision,"
        " vif_count = :vif_count, vifs_done = :vifs_done, vifs_failed = :vifs_failed"
        " WHERE id = :id",
        migration,
    )


def _end(
    c: sqlite3.Connection, ctx: WriteContext, row: RowDict, to: MigrationState, now: datetime
) -> Migration:
    rev = ctx.next_revision()
    row.update(state=to.value, updated_at=rows.to_micros(now), revision=rev)
    c.execute(
        "UPDATE migrations SET state = :state, updated_at = :updated_at, revision = :revision"
        " WHERE id = :id",
        row,
    )
    c.execute(
        "UPDATE vifs SET portdata = NULL, revision = ? WHERE migration_id = ?", (rev, row["id"])
    )
    vifs = _all_vifs(c, row["id"])
    ended = rows.migration(row, vifs)
    _changed(ctx, ended, row, vifs, full=True)
    return ended


def _changed_row(
    c: sqlite3.Connection, ctx: WriteContext, row: RowDict, written: list[RowDict]
) -> None:
    """Report a change to some vifs of ``row``; all of them when the cache lacks it."""
    ctx.keys |= rules.hub_keys(
        row["id"], row["domain_uuid"], row["source_host"], row["destination_host"]
    )
    if ctx.cached(row["id"]):
        ctx.changes.append(change(row, written, full=False))
    else:
        ctx.changes.append(change(row, _all_vifs(c, row["id"]), full=True))


def _changed(
    ctx: WriteContext, m: Migration, row: RowDict, vifs: Sequence[rows.Row], *, full: bool
) -> None:
    ctx.keys |= rules.keys_for(m)
    ctx.changes.append(change(row, vifs, full=full))
