"""The destination's results for the SQLite store: consecutive posts of a batch
run as one group (an evacuation's destination posts hundreds of migrations' at once).

Like every write of ``sqlite_writes`` these run on the writer thread inside a
group-committed transaction and refuse (a StoreError) before writing anything.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from vifbroker.model import MigrationState, ResultIn

from . import rows, rules
from . import sqlite_group as group
from . import sqlite_rows as sqlrows
from .base import Prior, Recorded
from .errors import NotFound, StoreError
from .sqlite_engine import WriteContext

RowDict = rows.RowDict
#: By id: a migration's row and every vif (by MAC, in upload order), planned on in place.
Held = dict[str, tuple[RowDict, dict[str, RowDict]]]

_RECORD_VIF = (
    "UPDATE vifs SET status = :status, applied_generation = :applied_generation,"
    " detail = :detail, digest = :digest, revision = :revision, applied_at = :applied_at"
    " WHERE migration_id = :migration_id AND mac = :mac"
)


def record_results(
    c: sqlite3.Connection,
    ctx: WriteContext,
    migration_id: str,
    results: Sequence[ResultIn],
    now: datetime,
) -> Recorded:
    """Record the destination's results; a result for an old generation changes nothing."""
    call = {"migration_id": migration_id, "results": results, "now": now}
    return group.alone(results_group, c, ctx, call)


def results_group(
    c: sqlite3.Connection, ctx: WriteContext, calls: Sequence[Mapping[str, Any]]
) -> list[Recorded | StoreError]:
    """Run consecutive results posts of one batch together, each as ``record_results`` would.

    The migrations and their vifs come from the watch cache where it holds
    them, else from two SELECTs for the whole group; each post is planned in
    order (``rows.plan_results``) on what the ones before it left, a refused
    one (a StoreError) writing nothing; then one executemany writes every vif
    row and one or two settle the migrations. Each answer is the whole
    migration, built from the rows at hand as they stand after that post, and
    how each vif it wrote stood before.
    """
    held = _held_results(c, ctx, [call["migration_id"] for call in calls])
    states = {mid: migration["state"] for mid, (migration, _) in held.items()}
    answers: list[Recorded | StoreError] = []
    planned: list[tuple[RowDict, list[RowDict]]] = []  # each write's migration and vifs
    written: dict[tuple[str, str], RowDict] = {}  # the last row of each vif
    for call in calls:
        try:
            migration, vifs, prior = _plan_results(ctx, held, call)
        except StoreError as exc:
            answers.append(exc)
            continue
        if vifs:
            planned.append((dict(migration), vifs))
            written |= {(migration["id"], vif["mac"]): vif for vif in vifs}
        # The answer shows every vif: the destination's results call reads them all.
        after = rows.migration(migration, held[migration["id"]][1].values())
        answers.append(Recorded(after, prior))
    if not planned:
        return answers
    c.executemany(_RECORD_VIF, list(written.values()))
    touched = dict.fromkeys(mid for mid, _ in written)
    group.settle(c, ctx, [held[mid][0] for mid in touched], states)
    group.report(ctx, planned, lambda mid: held[mid][1].values())
    return answers


def _plan_results(
    ctx: WriteContext, held: Held, call: Mapping[str, Any]
) -> tuple[RowDict, list[RowDict], dict[str, Prior]]:
    """One post of a group planned on ``held`` (its migration settled and its vifs
    replaced in place): the migration, the vif rows to write and how they stood
    before; refusals raise."""
    mid = call["migration_id"]
    if mid not in held:
        raise NotFound(f"no migration {mid}")
    migration, stored = held[mid]
    rules.ensure_active(MigrationState(migration["state"]), "post results")
    vifs, tally, prior = rows.plan_results(migration, stored, call["results"], call["now"])
    if vifs:
        rev = ctx.next_revision()
        for vif in vifs:
            vif["revision"] = rev
            stored[vif["mac"]] = vif
        rows.settle(migration, tally, rev, call["now"])
    return migration, vifs, prior


def _held_results(c: sqlite3.Connection, ctx: WriteContext, ids: Sequence[str]) -> Held:
    """The migrations ``ids`` name that exist, with every vif: the watch cache's
    rows where it holds them (copied: planning changes them), else SQL's."""
    found, lacking = group.from_cache(dict.fromkeys(ids), ctx.rows_of)
    held = {mid: (row, dict(vifs)) for mid, (row, vifs) in found.items()}
    if lacking:
        held |= _select_held(c, lacking)
    return held


def _select_held(c: sqlite3.Connection, ids: Sequence[str]) -> Held:
    """``_held_results`` from SQL (the vifs of active migrations only: the others refuse)."""
    held: Held = {}
    for start in range(0, len(ids), group.CHUNK):
        chunk = ids[start : start + group.CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in c.execute(f"SELECT * FROM migrations WHERE id IN ({marks})", chunk):
            held[row["id"]] = (dict(row), {})
    active = [mid for mid, (row, _) in held.items() if not MigrationState(row["state"]).terminal]
    for mid, vifs in sqlrows.fetch_vifs(c, active).items():
        held[mid][1].update((vif["mac"], dict(vif)) for vif in vifs)
    return held
