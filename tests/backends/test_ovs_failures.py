"""Open vSwitch backend: a missing, stopped or hung ovsdb-server gives typed errors."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from backend_helpers import DOMAIN, mac, ovs_backend, ovs_iface

from ovs_harness import OvsDb
from vifbroker.backends import BackendTimeout, BackendUnavailable, Outcome
from vifbroker.backends.openvswitch import OpenVSwitchBackend


async def test_stopped_server_is_unavailable_until_it_is_back(
    ovsdb: OvsDb, ovs_driver: str
) -> None:
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1))
    # The native driver's connection retries 1 s apart (the ovs package's
    # floor): the apply after the restart may wait for one retry.
    timeout = 1 if ovs_driver == "vsctl" else 3
    async with ovs_backend(ovsdb, driver=ovs_driver, timeout=timeout) as backend:
        await backend.inspect(DOMAIN, [mac(1)])
        ovsdb.stop()
        with pytest.raises((BackendUnavailable, BackendTimeout)):
            await backend.apply(DOMAIN, [ovs_iface(1, "while down")])
        info = await backend.describe()
        assert info.available is False and info.detail
        ovsdb.start()  # same database file: the port is still there
        [result] = await backend.apply(DOMAIN, [ovs_iface(1, "after restart")])
        assert (await backend.describe()).available is True
    assert result.outcome is Outcome.APPLIED
    assert ovsdb.get_portdata("vnet1") == "after restart"


async def test_hung_server_times_out(ovsdb: OvsDb, ovs_driver: str) -> None:
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1))
    assert ovsdb.pid is not None
    os.kill(ovsdb.pid, signal.SIGSTOP)
    try:
        async with ovs_backend(ovsdb, driver=ovs_driver, timeout=1) as backend:
            with pytest.raises(BackendTimeout):
                await backend.apply(DOMAIN, [ovs_iface(1, "x")])
    finally:
        os.kill(ovsdb.pid, signal.SIGCONT)
    assert ovsdb.get_portdata("vnet1") is None


@pytest.mark.parametrize(
    ("options", "why"),
    [
        pytest.param({"vsctl": "/nonexistent/ovs-vsctl"}, "/nonexistent/ovs-vsctl", id="no-vsctl"),
        pytest.param({"driver": "native", "timeout": 0.5}, "unreachable", id="native-no-server"),
    ],
)
async def test_unusable_backend_is_unavailable(
    tmp_path: Path, options: dict[str, object], why: str
) -> None:
    """A missing ovs-vsctl, or no OVSDB server for the native driver: unavailable, and why."""
    backend = OpenVSwitchBackend(db=f"unix:{tmp_path / 'none.sock'}", no_wait=True, **options)
    try:
        with pytest.raises(BackendUnavailable):
            await backend.inspect(DOMAIN, [mac(1)])
        info = await backend.describe()
    finally:
        await backend.close()
    assert info.available is False
    assert info.detail is not None and why in info.detail


def test_unknown_driver_is_refused() -> None:
    with pytest.raises(ValueError, match="native"):
        OpenVSwitchBackend(driver="telepathy")


async def test_closed_backend_refuses_work(ovsdb: OvsDb, ovs_driver: str) -> None:
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        pass
    with pytest.raises(BackendUnavailable):
        await backend.inspect(DOMAIN, [mac(1)])
