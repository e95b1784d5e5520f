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
from vifbroker.store.sqlite import SQLiteStore

StoreFactory = Callable[[], Awaitable[Store]]


def _sqlite(tmp_path: Path) -> Callable[[], Store]:
    return lambda: SQLiteStore(tmp_path / "vifbroker.db")


BACKENDS: dict[str, Callable[[Path], Callable[[], Store]]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    build = BACKENDS[request.param](tmp_path)
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
