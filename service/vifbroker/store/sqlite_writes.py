"""Every write of the SQLite store, in one place.

Each function runs on the writer thread inside a group-committed transaction
(see ``sqlite_engine``): it takes the writer's connection and the batch's
``WriteContext`` first (the store binds the rest with ``functools.partial``),
decides through ``rules`` — and refuses (a StoreError) before it writes
anything: there is no savepoint to roll back to — writes, and records in the
context the hub keys to wake and the ``Change`` for the watch cache.

A migration row carries its vif counts by outcome (``rules.Tally``), so an
upload or a result reads and writes only the vifs it names. Uploads live in
``sqlite_uploads`` and results in ``sqlite_results`` (consecutive ones of each
run as one group); the store finds every write here by name.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vifbroker.model import (
    Host,
    HostIn,
    Migration,
    MigrationCreate,
    MigrationState,
)

from . import rows, rules
from . import sqlite_rows as sqlrows
from .errors import (
    Conflict,
    NotFound,
)
from .sqlite_cache import Pruned, change
from .sqlite_engine import GroupRunner, WriteContext
from .sqlite_results import record_results, results_group
from .sqlite_schema import ACTIVE_SQL, TERMINAL_SQL
from .sqlite_uploads import store_uploads, upload_group

ACTIVE = ACTIVE_SQL
#: Operations that run together when consecutive in a batch (see ``sqlite_engine``).
GROUPS: dict[Callable[..., Any], GroupRunner] = {
    store_uploads: upload_group,
    record_results: results_group,
}
#: A batch naming at most this many vifs may run its statements on the event loop.
INLINE_VIFS = 256
RowDict = rows.RowDict


# ------------------------------------------------------------------ migrations
def create_migration(
    c: sqlite3.Connection,
    ctx: WriteContext,
    req: MigrationCreate,
    mid: str,
    now: datetime,
    registered_by: str | None = None,
) -> tuple[Migration, bool]:
    """Insert the migration, or return the stored one for a repeated request."""
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
    if row is not None:
        stored = rows.stored_request(row)
        if not rules.same_request(req, stored):
            raise Conflict(f"migration {mid} exists with a different request")
        existing = sqlrows.load_migration(c, mid)
        assert existing is not None
        return existing, False
    other = c.execute(
        f"SELECT id FROM migrations WHERE domain_uuid = ? AND {ACTIVE}", (req.domain_uuid,)
    ).fetchone()
    if other is not None:
        raise Conflict(f"domain {req.domain_uuid} already has active migration {other['id']}")
    new = rows.new_migration(req, mid, now, ctx.next_revision(), registered_by)
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
def record_resume(
    c: sqlite3.Connection, ctx: WriteContext, migration_id: str, at: datetime, now: datetime
) -> Migration:
    """Note when the guest resumed on the destination (the first report counts)."""
    row = _migration_row(c, migration_id)
    if row["resumed_at"] is not None:
        return rows.migration(row, _all_vifs(c, migration_id))
    rules.ensure_active(MigrationState(row["state"]), "report the resume")
    row.update(resumed_at=rows.to_micros(at), updated_at=rows.to_micros(now),
               revision=ctx.next_revision())  # fmt: skip
    c.execute(
        "UPDATE migrations SET resumed_at = :resumed_at, updated_at = :updated_at,"
        " revision = :revision WHERE id = :id",
        row,
    )
    vifs = _all_vifs(c, migration_id)
    resumed = rows.migration(row, vifs)
    _changed(ctx, resumed, row, vifs, full=True)
    return resumed


# --------------------------------------------------------------------- hosts
def record_heartbeat(
    c: sqlite3.Connection, ctx: WriteContext, name: str, info: HostIn, now: datetime
) -> Host:
    backends = json.dumps([b.model_dump(mode="json") for b in info.backends])
    running = json.dumps(sorted(set(info.running_domains)))
    c.execute(
        "INSERT INTO hosts (name, last_seen, agent_version, backends, running_domains)"
        " VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen,"
        " agent_version = excluded.agent_version, backends = excluded.backends,"
        " running_domains = excluded.running_domains",
        (name, rows.to_micros(now), info.agent_version, backends, running),
    )
    ctx.keys.add("hosts")
    return rows.host(c.execute("SELECT * FROM hosts WHERE name = ?", (name,)).fetchone())


def probe(c: sqlite3.Connection, ctx: WriteContext) -> None:
    """A tiny real write for readiness (no revision: nobody is woken)."""
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('probe', 1)"
        " ON CONFLICT (key) DO UPDATE SET value = value + 1"
    )


# ------------------------------------------------------------------- helpers
def _migration_row(c: sqlite3.Connection, migration_id: str) -> RowDict:
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (migration_id,)).fetchone()
    if row is None:
        raise NotFound(f"no migration {migration_id}")
    return dict(row)


def _all_vifs(c: sqlite3.Connection, migration_id: str) -> list[sqlite3.Row]:
    return sqlrows.fetch_vifs(c, [migration_id])[migration_id]


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


def _changed(
    ctx: WriteContext, m: Migration, row: RowDict, vifs: Sequence[rows.Row], *, full: bool
) -> None:
    ctx.keys |= rules.keys_for(m)
    ctx.changes.append(change(row, vifs, full=full))


#: Writes whose cost is bounded by the vifs they name (not by their migration's size).
_INLINE = frozenset({create_migration, store_uploads, record_results, record_heartbeat, probe})


def runs_inline(ops: Sequence[Callable[..., Any]]) -> bool:
    """Whether a batch is small enough to run its statements on the event loop."""
    vifs = 0
    for op in ops:
        if getattr(op, "func", op) not in _INLINE:
            return False
        named = getattr(op, "keywords", {})
        vifs += len(named.get("interfaces", ())) + len(named.get("results", ()))
    return vifs <= INLINE_VIFS
