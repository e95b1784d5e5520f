"""Fixtures for the reliability suite: real broker, agent and PostgreSQL processes.

The suite reuses the agent tests' process harness (``tests/agent/agent_harness``)
and the throwaway servers of ``ovs_harness`` and ``pg_harness``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from fleet import Fleet


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each store the broker supports: a fresh database every time.

    A test for one store only: ``@pytest.mark.parametrize("store_url", ["postgresql"],
    indirect=True)``.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
async def fleet(tmp_path: Path, store_url: str) -> AsyncIterator[Fleet]:
    """Brokers and agents started by the test on ``store_url``, all stopped afterwards."""
    f = Fleet(tmp_path, db=store_url)
    try:
        yield f
    finally:
        await f.aclose()
