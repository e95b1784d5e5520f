"""The SQLite store answers ``active_parties`` from memory while a migration runs.

An agent's every upload asks who takes part in the domain's migration before
its body is read; uploads and results do not change that, so they must not
cost a read on the reader thread. Ending the migration must (never a stale
answer: the contract suite checks that for every store).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from vifbroker.model import Interface, MigrationCreate, MigrationState, ResultIn
from vifbroker.store import NoActiveMigration
from vifbroker.store.sqlite import SQLiteStore

DOM = "6f1a3c2e-0000-4000-8000-000000000001"
MAC = "52:54:00:00:00:01"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


def count_reads(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-element list holding how many reads the store made on its reader thread."""
    engine = store._engine
    read = engine.read
    counted = [0]

    async def counting(fn: Callable[..., Any]) -> Any:
        counted[0] += 1
        return await read(fn)

    monkeypatch.setattr(engine, "read", counting)
    return counted


def create() -> MigrationCreate:
    return MigrationCreate(domain_uuid=DOM, source_host="src", destination_host="dst")


async def test_uploads_and_results_keep_the_parties(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, _ = await store.create_migration(create(), T0)
    reads = count_reads(store, monkeypatch)
    first = await store.active_parties(DOM)
    assert reads[0] == 1
    for generation in (1, 2, 3):
        up = await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
        assert up.generations == [(MAC, generation)]
        assert await store.active_parties(DOM) == first
    await store.post_results(m.id, [ResultIn(mac=MAC, generation=3, status="applied")], T0)
    assert await store.active_parties(DOM) == first
    assert reads[0] == 1  # nothing since the first
    await store.transition(m.id, MigrationState.CANCELLED, T0)
    with pytest.raises(NoActiveMigration):
        await store.active_parties(DOM)
    assert reads[0] == 2


async def test_a_read_across_the_end_is_answered_but_not_kept(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, _ = await store.create_migration(create(), T0)
    engine = store._engine
    read = engine.read

    async def read_then_end(fn: Callable[..., Any]) -> Any:
        found = await read(fn)
        monkeypatch.setattr(engine, "read", read)
        await store.transition(m.id, MigrationState.CANCELLED, T0)  # commits meanwhile
        return found

    monkeypatch.setattr(engine, "read", read_then_end)
    assert (await store.active_parties(DOM)).migration_id == m.id  # true when read
    with pytest.raises(NoActiveMigration):
        await store.active_parties(DOM)
