"""TransactBatcher and VsctlPool: who hears which failure when transactions share a process.

The real server is exercised in test_ovs_batching.py; a failure of the commit
itself (one no operation owns) cannot be provoked with the operations the
backend sends, so here the batcher runs over a scripted stand-in for
:class:`OvsdbClient` (our own seam: the process runner).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from vifbroker.backends.base import BackendUnavailable
from vifbroker.backends.openvswitch.batcher import TooLarge, TransactBatcher
from vifbroker.backends.openvswitch.pool import VsctlPool
from vifbroker.backends.openvswitch.transact import OpFailed, OvsdbClient
from vifbroker.backends.openvswitch.vsctl import (
    Command,
    Transaction,
    VsctlConfig,
    VsctlError,
    VsctlRunner,
)


class ScriptedClient(OvsdbClient):
    """Answers each transaction as ovsdb-server would, failing where told to."""

    def __init__(self, *, op_error: str | None = None, commit_error: str | None = None) -> None:
        super().__init__()
        self.op_error = op_error  # an operation commenting this fails
        self.commit_error = commit_error  # a transaction holding this fails at commit
        self.runs: list[list[str]] = []

    async def transact(self, text: str, *, read_only: bool = False) -> list[Any]:
        ops = json.loads(text)[1:]
        names = [op["comment"] for op in ops]
        self.runs.append(names)
        await asyncio.sleep(0)
        results: list[Any] = []
        for name in names:
            if name == self.op_error:
                return [*results, {"error": "timed out", "details": "wait"}]
            results.append({})
        if self.commit_error in names:
            return [*results, {"error": "constraint violation"}]
        return results


def job(name: str) -> list[dict[str, Any]]:
    return [{"op": "comment", "comment": name}]


async def run_all(batcher: TransactBatcher, names: list[str]) -> list[Any]:
    return await asyncio.gather(*(batcher.run(job(n)) for n in names), return_exceptions=True)


async def test_a_failed_operation_fails_its_caller_alone_and_the_rest_run_again_once() -> None:
    client = ScriptedClient(op_error="c")
    batcher = TransactBatcher(client, workers=1)
    try:
        outcomes = await run_all(batcher, ["a", "b", "c", "d"])
    finally:
        await batcher.close()
    assert client.runs == [["a", "b", "c", "d"], ["a", "b", "d"]]
    assert isinstance(outcomes[2], OpFailed) and outcomes[2].index == 0
    assert [outcomes[i] for i in (0, 1, 3)] == [[{}], [{}], [{}]]


async def test_a_failed_commit_is_split_until_its_transaction_fails_alone() -> None:
    client = ScriptedClient(commit_error="c")
    batcher = TransactBatcher(client, workers=1)
    try:
        outcomes = await run_all(batcher, ["a", "b", "c", "d"])
    finally:
        await batcher.close()
    assert client.runs[0] == ["a", "b", "c", "d"]
    assert ["c"] in client.runs  # it failed alone in the end...
    assert len(client.runs) <= 5  # ...after halving, not one run per transaction
    assert isinstance(outcomes[2], OpFailed) and "constraint" in str(outcomes[2])
    assert [outcomes[i] for i in (0, 1, 3)] == [[{}], [{}], [{}]]


async def test_a_transaction_too_large_for_one_argument_is_refused() -> None:
    client = ScriptedClient()
    batcher = TransactBatcher(client, max_bytes=200)
    try:
        with pytest.raises(TooLarge):
            await batcher.run(job("x" * 300))
        assert not batcher.fits(job("x" * 300))
        assert await batcher.run(job("small")) == [{}]
    finally:
        await batcher.close()
    assert client.runs == [["small"]]


# ----------------------------------------------- VsctlPool, on the same workers


class ScriptedRunner(VsctlRunner):
    """Runs nothing: a run naming ``bad`` fails as ovs-vsctl would, whole."""

    def __init__(self, bad: str) -> None:
        super().__init__(VsctlConfig())
        self.bad = bad
        self.runs: list[list[str]] = []

    async def run(self, commands: Sequence[Command]) -> None:
        names = [c.args[0] for c in commands]
        self.runs.append(names)
        await asyncio.sleep(0)
        if self.bad in names:
            raise VsctlError(f"no row {self.bad}", returncode=1)


def vsctl_job(name: str) -> Transaction:
    txn = Transaction()
    txn.add(Command("get", (name, "external_ids")))
    return txn


async def test_a_failed_merged_vsctl_run_is_split_until_its_transaction_fails_alone() -> None:
    runner = ScriptedRunner(bad="c")
    pool = VsctlPool(runner, workers=1)
    try:
        outcomes = await asyncio.gather(
            *(pool.run(vsctl_job(n)) for n in ["a", "b", "c", "d"]), return_exceptions=True
        )
    finally:
        await pool.close()
    assert runner.runs[0] == ["a", "b", "c", "d"]
    assert ["c"] in runner.runs and len(runner.runs) <= 5
    assert isinstance(outcomes[2], VsctlError)
    assert [outcomes[i] for i in (0, 1, 3)] == [None, None, None]


async def test_a_closed_pool_refuses_and_fails_what_waits() -> None:
    pool = VsctlPool(ScriptedRunner(bad="-"), workers=1)
    await pool.close()
    with pytest.raises(BackendUnavailable):
        await pool.run(vsctl_job("a"))
