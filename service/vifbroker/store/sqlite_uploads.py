"""Uploads for the SQLite store: consecutive uploads of a batch run as one group.

Like every write of ``sqlite_writes`` these run on the writer thread inside a
group-committed transaction and refuse (a StoreError) before writing anything.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from vifbroker.model import Interface

from . import rows
from . import sqlite_group as group
from . import sqlite_rows as sqlrows
from .base import Uploaded
from .errors import StoreError
from .sqlite_engine import WriteContext
from .sqlite_schema import ACTIVE_SQL

RowDict = rows.RowDict

# Parameters by position, taken out of each row by an itemgetter (see sqlite_group).
_VIF_COLUMNS = (
    "migration_id", "mac", "position", "generation", "interface", "portdata", "status",
    "applied_generation", "detail", "digest", "revision", "uploaded_at",
)  # fmt: skip
_UPSERT_VIF = (
    f"INSERT INTO vifs ({', '.join(_VIF_COLUMNS)}) VALUES ({', '.join('?' * len(_VIF_COLUMNS))})"
    " ON CONFLICT (migration_id, mac) DO UPDATE"
    " SET generation = excluded.generation, interface = excluded.interface,"
    " portdata = excluded.portdata, status = 'pending', detail = NULL, digest = NULL,"
    " revision = excluded.revision, uploaded_at = excluded.uploaded_at"
)
_UPSERT_VIF_ARGS = operator.itemgetter(*_VIF_COLUMNS)
# A vif stored before its group: a plain primary-key UPDATE (the same columns).
_UPDATE_VIF = (
    "UPDATE vifs SET generation = ?, interface = ?, portdata = ?, status = 'pending',"
    " detail = NULL, digest = NULL, revision = ?, uploaded_at = ?"
    " WHERE migration_id = ? AND mac = ?"
)
_UPDATE_VIF_ARGS = operator.itemgetter(
    "generation", "interface", "portdata", "revision", "uploaded_at", "migration_id", "mac"
)
_CHUNK = group.CHUNK


def store_uploads(
    c: sqlite3.Connection,
    ctx: WriteContext,
    domain_uuid: str,
    interfaces: Sequence[Interface],
    now: datetime,
    if_match: dict[str, int] | None,
    source_host: str | None,
    max_vifs: int | None = None,
) -> Uploaded:
    """Store a new generation of each interface in the domain's active migration."""
    call = {"domain_uuid": domain_uuid, "interfaces": interfaces, "now": now,
            "if_match": if_match, "source_host": source_host, "max_vifs": max_vifs}  # fmt: skip
    return group.alone(upload_group, c, ctx, call)


def upload_group(
    c: sqlite3.Connection, ctx: WriteContext, calls: Sequence[Mapping[str, Any]]
) -> list[Uploaded | StoreError]:
    """Run consecutive uploads of one batch together, each as ``store_uploads`` would.

    A few statements for the whole group, however many uploads: the active
    migrations of the domains named, their named vifs, then every vif row
    written and each migration's counts, state and revision once. In between
    each upload is planned in order (``rows.plan_upload``) on what the ones
    before it left; a refused upload (a StoreError) writes nothing.
    """
    held = _held_uploads(c, ctx, calls)
    # As read before the group: each migration's state, and the vifs already stored.
    states: dict[str, str] = {}
    stored_before: set[tuple[str, str]] = set()
    for migration, stored in held.values():
        states[migration["id"]] = migration["state"]
        for mac in stored:
            stored_before.add((migration["id"], mac))
    results: list[Uploaded | StoreError] = []
    planned: list[tuple[RowDict, list[RowDict]]] = []  # each upload's migration and vifs
    written: dict[tuple[str, str], RowDict] = {}  # the last row of each vif
    touched: dict[str, RowDict] = {}  # by id: each migration uploaded to, as settled
    for call in calls:
        before = ctx.revision
        try:
            migration, stored = rows.upload_target(held, call)
            vifs, uploaded = rows.take_upload(migration, stored, call, ctx.next_revision())
        except StoreError as exc:
            ctx.revision = before  # a refused upload takes no revision
            results.append(exc)
            continue
        results.append(uploaded)
        mid = migration["id"]
        planned.append((dict(migration), vifs))
        touched[mid] = migration
        for vif in vifs:
            written[(mid, vif["mac"])] = vif
    if not planned:
        return results
    _write_vifs(c, written, stored_before)
    group.settle(c, ctx, list(touched.values()), states)
    group.report(ctx, planned, lambda mid: sqlrows.fetch_vifs(c, [mid])[mid])
    return results


def _write_vifs(
    c: sqlite3.Connection, written: Mapping[tuple[str, str], RowDict], stored: set[tuple[str, str]]
) -> None:
    """Write the vif rows: an UPDATE of those stored before the group (a primary-key
    write, without the failed INSERT and the foreign-key probe an upsert pays), an
    upsert of the new ones."""
    again: list[RowDict] = []
    new: list[RowDict] = []
    for key, row in written.items():
        (again if key in stored else new).append(row)
    if again:
        updated = c.executemany(_UPDATE_VIF, map(_UPDATE_VIF_ARGS, again)).rowcount
        if updated != len(again):  # the rows planned on were not the stored ones
            raise sqlite3.IntegrityError(f"{len(again) - updated} vif rows were not stored")
    if new:
        c.executemany(_UPSERT_VIF, map(_UPSERT_VIF_ARGS, new))


def _held_uploads(
    c: sqlite3.Connection, ctx: WriteContext, calls: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[RowDict, dict[str, RowDict]]]:
    """By domain: its active migration's row and the stored vifs the calls name.

    What the watch cache holds is as committed and needs no SELECT (a handoff's
    upload, most of an upload storm's). The row is copied, as planning settles
    it; vif rows are only read (planning writes new ones).
    """
    named: dict[str, set[str]] = {}
    for call in calls:
        macs = named.get(call["domain_uuid"])
        if macs is None:
            macs = named[call["domain_uuid"]] = set()
        for iface in call["interfaces"]:
            macs.add(iface.mac)
    found, lacking = group.from_cache(named, ctx.active)
    held: dict[str, tuple[RowDict, dict[str, RowDict]]] = {}
    for domain, (row, vifs) in found.items():  # (loops: no comprehension's call per domain)
        stored: dict[str, RowDict] = {}
        for mac in named[domain]:
            if mac in vifs:
                stored[mac] = vifs[mac]
        held[domain] = (row, stored)
    if lacking:
        held |= _select_held(c, {domain: named[domain] for domain in lacking})
    return held


def _select_held(
    c: sqlite3.Connection, named: Mapping[str, set[str]]
) -> dict[str, tuple[RowDict, dict[str, RowDict]]]:
    """``_held_uploads`` from SQL, for the domains (and their MACs) in ``named``."""
    held: dict[str, tuple[RowDict, dict[str, RowDict]]] = {}
    domains = sorted(named)
    for start in range(0, len(domains), _CHUNK):
        chunk = domains[start : start + _CHUNK]
        for row in c.execute(
            f"SELECT * FROM migrations WHERE {ACTIVE_SQL} AND domain_uuid IN"
            f" ({','.join('?' * len(chunk))})",
            chunk,
        ):
            held[row["domain_uuid"]] = (dict(row), {})
    by_id = {migration["id"]: stored for migration, stored in held.values()}
    keys = sorted((held[d][0]["id"], mac) for d in held for mac in named[d])
    if keys and keys[0][0] == keys[-1][0]:  # one migration (a handoff's): a plain IN
        mid = keys[0][0]
        for start in range(0, len(keys), _CHUNK):
            macs = [mac for _, mac in keys[start : start + _CHUNK]]
            marks = ",".join("?" * len(macs))
            sql = f"SELECT * FROM vifs WHERE migration_id = ? AND mac IN ({marks})"
            for row in c.execute(sql, [mid, *macs]):
                by_id[mid][row["mac"]] = dict(row)
        return held
    for start in range(0, len(keys), _CHUNK // 2):
        pairs = keys[start : start + _CHUNK // 2]
        for row in c.execute(
            f"WITH k(m, mac) AS (VALUES {','.join(['(?,?)'] * len(pairs))}) SELECT v.* FROM k"
            " JOIN vifs v ON v.migration_id = k.m AND v.mac = k.mac",
            [part for key in pairs for part in key],
        ):
            by_id[row["migration_id"]][row["mac"]] = dict(row)
    return held
