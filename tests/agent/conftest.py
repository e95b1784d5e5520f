"""Fixtures for agent tests: one real broker process, hosts with real ovsdb-servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from agent_harness import BrokerProcess, Host, terminate

from ovs_harness import OvsDb
from vifbroker.client import BrokerClient, RetryPolicy


@pytest.fixture
async def broker_proc(tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path / "broker")
    await broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def controller(broker_proc: BrokerProcess) -> AsyncIterator[BrokerClient]:
    client = BrokerClient(
        broker_proc.url, broker_proc.token("controller"),
        retry=RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.5),
    )  # fmt: skip
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def hosts(
    tmp_path: Path, ovsdb_factory: Callable[[], OvsDb]
) -> AsyncIterator[tuple[Host, Host]]:
    """Host A (source) and host B (destination); agents are started by the test."""
    a = Host("host-a", ovsdb_factory(), tmp_path / "host-a")
    b = Host("host-b", ovsdb_factory(), tmp_path / "host-b")
    try:
        yield a, b
    finally:
        for h in (a, b):
            await h.stop_agent()
            if h.proc is not None:
                terminate(h.proc)
