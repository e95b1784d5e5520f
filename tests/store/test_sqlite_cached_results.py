"""The SQLite store records the destination's results as a group, planned on
what its watch cache holds.

Posts queued together (a host's results for many migrations) run as one group:
each planned in order exactly as on its own, a refused one writing nothing.
A migration the cache holds is read from memory, not SQL, and each answer is
built from the rows at hand; another process writing to the file makes those
rows untrustworthy: the next batch reads SQL again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqltrace import selects, statements

from testkit import no_loop_blocking
from vifbroker.model import Interface, Migration, MigrationCreate, MigrationState, ResultIn
from vifbroker.store import Conflict, InvalidInput, NotFound
from vifbroker.store import sqlite_writes as writes
from vifbroker.store.sqlite import SQLiteStore

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MACS = ("52:54:00:00:00:01", "52:54:00:00:00:02")


def domain(n: int) -> str:
    return f"6f1a3c2e-0000-4000-8000-{n:012d}"


async def migrating(store: SQLiteStore, n: int) -> Migration:
    """Domain ``n`` migrating src -> dst with both MACs uploaded (generation 1)."""
    m, _ = await store.create_migration(
        MigrationCreate(domain_uuid=domain(n), source_host="src", destination_host="dst"), T0
    )
    await store.put_interfaces(domain(n), [Interface(mac=mac) for mac in MACS], T0)
    return m


def applied(*macs: str, generation: int = 1) -> list[ResultIn]:
    return [ResultIn(mac=mac, generation=generation, status="applied") for mac in macs]


@contextmanager
def groups(store: SQLiteStore) -> Iterator[list[int]]:
    """The size of each group of results the store's engine runs meanwhile."""
    engine_groups = store._engine._groups
    runner = engine_groups[writes.record_results]
    sizes: list[int] = []

    def counted(c: sqlite3.Connection, ctx: Any, calls: list[dict[str, Any]]) -> list[Any]:
        sizes.append(len(calls))
        return runner(c, ctx, calls)

    engine_groups[writes.record_results] = counted
    try:
        yield sizes
    finally:
        engine_groups[writes.record_results] = runner


async def post_all(
    store: SQLiteStore, posts: list[tuple[str, list[ResultIn]]]
) -> list[Migration | BaseException]:
    """Post every results list at once (queued together: one batch)."""
    return await asyncio.gather(
        *(store.post_results(mid, results, T0) for mid, results in posts), return_exceptions=True
    )


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


async def test_results_for_held_migrations_run_as_one_group_and_select_nothing(
    store: SQLiteStore,
) -> None:
    ms = [await migrating(store, n) for n in range(3)]
    with groups(store) as sizes, statements(store) as seen:
        answers = await post_all(
            store,
            [(ms[0].id, applied(*MACS)), (ms[1].id, applied(MACS[0])), (ms[2].id, applied(*MACS))],
        )
    assert sizes == [3]
    assert selects(seen) == []
    # Each answer is what SQL holds now (nothing later touched these migrations).
    for answer, m in zip(answers, ms, strict=True):
        assert answer == await store.migration_sql(m.id)
    assert [a.state for a in answers if isinstance(a, Migration)] == [
        MigrationState.APPLIED,
        MigrationState.UPLOADED,
        MigrationState.APPLIED,
    ]
    counts = sqlite3.connect(store.path).execute(
        "SELECT vifs_done FROM migrations WHERE id IN (?, ?, ?) ORDER BY domain_uuid",
        [m.id for m in ms],
    )
    assert counts.fetchall() == [(2,), (1,), (2,)]  # planned on the cached rows
    # and the watch cache took each change: it answers as SQL does
    assert await store.inbox("dst", 0) == await store.inbox_sql("dst", 0)


async def test_a_refused_post_in_a_group_writes_nothing_and_the_others_land(
    store: SQLiteStore,
) -> None:
    ms = [await migrating(store, n) for n in range(4)]
    await store.transition(ms[1].id, MigrationState.CANCELLED, T0)
    await store.put_interfaces(domain(3), [Interface(mac=mac) for mac in MACS], T0)  # gen 2
    before = await store.current_revision()
    unknown = ResultIn(mac="52:54:00:00:00:09", generation=1, status="applied")
    with groups(store) as sizes:
        answers = await post_all(
            store,
            [
                (ms[0].id, applied(MACS[0])),
                (ms[1].id, applied(*MACS)),  # cancelled: refused
                (ms[2].id, [*applied(MACS[0]), unknown]),  # one unknown MAC: refused whole
                (ms[0].id, applied(MACS[1])),  # planned on what the first left
                ("no-such-migration", applied(MACS[0])),
                (ms[3].id, applied(*MACS)),  # superseded (generation 1): changes nothing
            ],
        )
    assert sizes == [6]
    first, cancelled, partly_unknown, second, missing, superseded = answers
    assert isinstance(cancelled, Conflict)
    assert isinstance(partly_unknown, InvalidInput)
    assert isinstance(missing, NotFound)
    assert isinstance(first, Migration) and isinstance(second, Migration)
    assert isinstance(superseded, Migration)
    # Two writes took a revision each, in order; the refusals gave theirs back.
    assert (first.revision, second.revision) == (before + 1, before + 2)
    assert await store.current_revision() == before + 2
    assert first.state is MigrationState.UPLOADED
    assert [v.status for v in first.interfaces] == ["applied", "pending"]
    assert second == await store.migration_sql(ms[0].id)
    assert second.state is MigrationState.APPLIED
    for refused in (ms[1], ms[2]):
        stored = await store.migration_sql(refused.id)
        assert [v.status for v in stored.interfaces] == ["pending", "pending"]
    assert superseded == await store.migration_sql(ms[3].id)
    assert superseded.revision == before  # its re-upload, the last write before the group
    assert await store.inbox("dst", 0) == await store.inbox_sql("dst", 0)


async def test_migrations_the_cache_lacks_are_read_from_sql_in_the_same_group(
    tmp_path: Path,
) -> None:
    async with no_loop_blocking():
        store = SQLiteStore(tmp_path / "vifbroker.db", cache_entries=2)
        await store.open()
        try:
            ms = [await migrating(store, n) for n in range(4)]  # the first two evicted
            assert store.cache.rows_of(ms[0].id) is None
            with groups(store) as sizes, statements(store) as seen:
                answers = await post_all(store, [(m.id, applied(*MACS)) for m in ms])
            assert sizes == [4]
            assert selects(seen)  # for the two the cache lacks
            for answer, m in zip(answers, ms, strict=True):
                assert answer == await store.migration_sql(m.id)
                assert isinstance(answer, Migration) and answer.state is MigrationState.APPLIED
            assert await store.inbox("dst", 0) == await store.inbox_sql("dst", 0)
        finally:
            await store.close()


async def test_a_write_by_another_process_is_read_from_sql(
    store: SQLiteStore, tmp_path: Path
) -> None:
    m = await migrating(store, 0)
    # Another process (an operator's sqlite3 shell, say) moves one vif on.
    other = sqlite3.connect(tmp_path / "vifbroker.db", isolation_level=None)
    try:
        other.execute(
            "UPDATE vifs SET generation = 7 WHERE migration_id = ? AND mac = ?", (m.id, MACS[0])
        )
    finally:
        other.close()
    with statements(store) as seen:
        # generation 7 is the latest now: the stale cached row would refuse it as unknown
        answer = await store.post_results(m.id, applied(MACS[0], generation=7), T0)
    assert selects(seen)
    assert [(v.generation, v.status) for v in answer.interfaces] == [(7, "applied"), (1, "pending")]
    assert answer == await store.migration_sql(m.id)
    assert await store.inbox("dst", 0) == await store.inbox_sql("dst", 0)
    # and the cache is trusted again for the next post
    with statements(store) as seen:
        answer = await store.post_results(m.id, applied(MACS[1]), T0)
    assert selects(seen) == []
    assert answer.state is MigrationState.APPLIED
    assert answer == await store.migration_sql(m.id)
