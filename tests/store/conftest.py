"""Store factories for the contract suite: every Store implementation runs it unchanged.

A factory opens a store on one persistent location; calling it again opens a
second store on the same data (a restarted broker, or another replica).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from testkit import no_loop_blocking
from vifbroker.store import Store
from vifbroker.store.postgres import PostgresStore
from vifbroker.store.sqlite import SQLiteStore

StoreFactory = Callable[[], Awaitable[Store]]


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    return lambda: SQLiteStore(tmp_path / "vifbroker.db")


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    dsn: str = request.getfixturevalue("pg_dsn")  # a fresh database (tests/pg_harness.py)
    return lambda: PostgresStore(dsn)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Callable[[], Store]]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(BACKENDS))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    build = BACKENDS[request.param](request, tmp_path)
    opened: list[Store] = []

    async def factory() -> Store:
        store = build()
        await store.open()
        opened.append(store)
        return store

    async with no_loop_blocking():
        yield factory
        for store in reversed(opened):
            await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """One SQLite store, for what only it does (its caches, its engine)."""
    async with no_loop_blocking():
        opened = SQLiteStore(tmp_path / "vifbroker.db")
        await opened.open()
        yield opened
        await opened.close()
