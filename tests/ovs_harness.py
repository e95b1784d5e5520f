"""Throwaway ovsdb-servers as pytest fixtures (the servers: backends/openvswitch/sandbox.py).

Usage in tests::

    async def test_x(ovsdb):            # one server, started, stopped afterwards
        ovsdb.add_port("br-int", "vnet0", vm_id=UUID, mac="52:54:00:00:00:01")

    def test_y(ovsdb_factory):           # several: host A and host B
        a, b = ovsdb_factory(), ovsdb_factory()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testkit import require_binary
from vifbroker.backends.openvswitch.sandbox import REQUIRED
from vifbroker.backends.openvswitch.sandbox import OvsSandbox as OvsDb
from vifbroker.backends.openvswitch.sandbox import sandboxes as ovsdb_servers

__all__ = ["REQUIRED", "OvsDb", "ovsdb", "ovsdb_factory", "ovsdb_servers"]


@pytest.fixture
def ovsdb_factory() -> Iterator[Callable[[], OvsDb]]:
    """Make any number of throwaway servers (host A, host B, ...)."""
    require_binary(*REQUIRED)
    with ovsdb_servers() as make:
        yield make


@pytest.fixture
def ovsdb(ovsdb_factory: Callable[[], OvsDb]) -> OvsDb:
    """One started throwaway ovsdb-server."""
    return ovsdb_factory()
