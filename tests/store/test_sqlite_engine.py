"""The SQLite engine's batches: no savepoints, yet each operation stands alone.

An operation refuses (a StoreError) before it writes; any other failure may
come after a write, so the engine rolls the batch back and runs it again
without that operation: the others commit, the failed one's writes do not.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from testkit import no_loop_blocking
from vifbroker.store import NotFound, StoreUnavailable
from vifbroker.store.hub import ChangeHub
from vifbroker.store.sqlite_engine import Engine, WriteContext
from vifbroker.store.sqlite_schema import upgrade


@pytest.fixture(params=[False, True], ids=["thread", "inline"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    """Statements on the writer thread, or on the event loop (a small batch)."""
    async with no_loop_blocking():
        opened = Engine(
            str(tmp_path / "vifbroker.db"),
            ChangeHub(),
            lambda c: upgrade(c, allow=True, url="sqlite://test"),
            lambda events: None,
            lambda mid: False,
            inline=lambda ops: bool(request.param),
        )
        await opened.open()
        yield opened
        await opened.close()


def put(key: str, fail: BaseException | None = None):  # type: ignore[no-untyped-def]
    def op(c: sqlite3.Connection, ctx: WriteContext) -> int:
        revision = ctx.next_revision()
        c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, revision))
        if fail is not None:
            raise fail
        return revision

    return op


def refuse(c: sqlite3.Connection, ctx: WriteContext) -> None:
    ctx.next_revision()
    raise NotFound("refused before writing")


async def test_a_failed_operation_leaves_no_write_and_the_others_commit(engine: Engine) -> None:
    outcomes = await asyncio.gather(
        engine.write(put("a")),
        engine.write(put("bad", RuntimeError("after its write"))),
        engine.write(refuse),
        engine.write(put("c")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[2], NotFound)
    # Revisions taken by the failed and the refused operation were given back.
    assert outcomes[0] == 1 and outcomes[3] == 2
    stored = await engine.read(
        lambda c: dict(c.execute("SELECT key, value FROM meta WHERE key IN ('a', 'bad', 'c')"))
    )
    assert stored == {"a": 1, "c": 2}


def _hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    """Another process's writer: hold the file's write lock until released (5 s at most)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    release.wait(5)
    conn.execute("COMMIT")
    conn.close()


@asynccontextmanager
async def write_lock_held(path: Path) -> AsyncIterator[None]:
    """Another process's writer holds the file's write lock inside the block."""
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, locked, release))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 10)
        yield
    finally:
        release.set()
        await asyncio.to_thread(holder.join)


async def test_a_write_waiting_for_another_writers_lock_leaves_the_loop_free(
    engine: Engine, tmp_path: Path
) -> None:
    async with write_lock_held(tmp_path / "vifbroker.db"):
        write = asyncio.ensure_future(engine.write(put("x")))
        for _ in range(10):  # the loop keeps turning while the writer waits for the lock
            await asyncio.sleep(0.02)
        assert not write.done()
    assert await asyncio.wait_for(write, 30) == 1


async def test_closing_answers_the_batch_under_way_and_fails_what_waits(
    engine: Engine, tmp_path: Path
) -> None:
    # The first batch waits on the writer thread for another writer's lock; a
    # second write queues behind it; then the store closes.
    async with write_lock_held(tmp_path / "vifbroker.db"):
        first = asyncio.ensure_future(engine.write(put("first")))
        await asyncio.sleep(0)  # its batch is under way (on the writer thread)
        second = asyncio.ensure_future(engine.write(put("second")))
        closing = asyncio.ensure_future(engine.close())
        await asyncio.sleep(0)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(second, 30)  # never run: told so at once
        assert not closing.done()  # it waits for the commit under way
    # What committed is answered as committed, not as a failure.
    assert await asyncio.wait_for(first, 30) == 1
    await asyncio.wait_for(closing, 30)
    keys = sqlite3.connect(tmp_path / "vifbroker.db").execute("SELECT key FROM meta")
    assert "first" in {k for (k,) in keys} and not engine.alive
    with pytest.raises(StoreUnavailable):
        engine.write(put("late"))


async def test_statement_journals_are_kept_in_memory(engine: Engine) -> None:
    # A file-backed statement journal (the default) costs an UPDATE that moves a
    # migration's state a 64 KiB buffer allocated, faulted in and freed per row.
    def temp_store(c: sqlite3.Connection, ctx: WriteContext | None = None) -> int:
        return int(c.execute("PRAGMA temp_store").fetchone()[0])

    assert await engine.write(temp_store) == 2  # MEMORY
    assert await engine.read(temp_store) == 2


async def test_two_closes_during_a_commit_both_return(engine: Engine, tmp_path: Path) -> None:
    async with write_lock_held(tmp_path / "vifbroker.db"):
        first = asyncio.ensure_future(engine.write(put("first")))
        await asyncio.sleep(0)  # its batch is under way (on the writer thread)
        closes = [asyncio.ensure_future(engine.close()) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(c.done() for c in closes)
    assert await asyncio.wait_for(first, 30) == 1
    await asyncio.wait_for(asyncio.gather(*closes), 30)
