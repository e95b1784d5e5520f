"""Open vSwitch backend: what gets written, where, and byte for byte."""

from __future__ import annotations

import pytest
from backend_helpers import DOMAIN, OTHER_DOMAIN, mac, ovs_backend, ovs_iface

from ovs_harness import OvsDb
from vifbroker.backends import Outcome, PortNotFound
from vifbroker.model import PORTDATA_DEFAULT_MAX, Interface, VirtualPort

# Everything a JSON or shell layer could mangle, plus a value near the cap.
VALUES = [
    "double \"quotes\" and 'single'",
    "back\\slash \\\\ \\n \\u0041",
    "new\nlines\n",
    "\ttabs\tand\r\ncarriage",
    "--",
    "-- set Interface x external_ids:y=z",
    "key=value=more",
    "{}",
    '{"json": [1, 2, {"nested": null}]}',
    "non-ASCII: héllo wörld, 中文, ελληνικά",
    "emoji 😀🎉👩‍👩‍👧",
    "",
    '"leading quote',
    "identifier_like",
    "123",
    "true",
    " surrounding spaces ",
    "\x01\x1f control \x7f",
    "x" * (60 * 1024),
]


async def test_every_value_round_trips_byte_exactly(ovsdb: OvsDb, ovs_driver: str) -> None:
    for n in range(len(VALUES)):
        ovsdb.add_port("br-int", f"tap{n}", vm_id=DOMAIN, mac=mac(n))
    vifs = [ovs_iface(n, value) for n, value in enumerate(VALUES)]
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        results = await backend.apply(DOMAIN, vifs)
        collected = await backend.collect(DOMAIN, [ovs_iface(n) for n in range(len(VALUES))])
    for n, value in enumerate(VALUES):
        assert results[n].outcome is Outcome.APPLIED, (n, results[n])
        assert results[n].readback == value
        # An independent reader (the harness's own find) sees the same bytes.
        assert ovsdb.get_portdata(f"tap{n}") == value, n
        assert collected[n].portdata == value, n


async def test_collect_reads_values_written_by_someone_else(ovsdb: OvsDb, ovs_driver: str) -> None:
    for n, value in enumerate(VALUES):
        ovsdb.add_port("br-int", f"tap{n}", vm_id=DOMAIN, mac=mac(n))
        ovsdb.set_portdata(f"tap{n}", value)
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        collected = await backend.collect(DOMAIN, [ovs_iface(n) for n in range(len(VALUES))])
    assert [i.portdata for i in collected] == VALUES


async def test_port_is_found_by_vm_id_and_mac_never_by_name(ovsdb: OvsDb, ovs_driver: str) -> None:
    # libvirt may write the MAC in upper case; the tap name is unrelated to
    # the record's target dev; a same-MAC port of another VM must not be hit.
    ovsdb.add_port("br-int", "vnet7", vm_id=DOMAIN, mac=mac(1).upper())
    ovsdb.add_port("br-int", "vnet0", vm_id=OTHER_DOMAIN, mac=mac(1))
    vif = ovs_iface(1, "mine").model_copy(update={"target_dev": "vnet0"})
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        [result] = await backend.apply(DOMAIN, [vif])
        ports = await backend.inspect(DOMAIN, [mac(1).upper()])
    assert result.outcome is Outcome.APPLIED
    assert ovsdb.get_portdata("vnet7") == "mine"
    assert ovsdb.get_portdata("vnet0") is None
    port = ports[mac(1).upper()]
    assert port is not None and port.name == "vnet7" and port.portdata == "mine"


async def test_none_removes_the_key(ovsdb: OvsDb, ovs_driver: str) -> None:
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1), portdata="old")
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        [result] = await backend.apply(DOMAIN, [ovs_iface(1, None)])
    assert result.outcome is Outcome.APPLIED
    assert result.readback is None
    assert ovsdb.get_portdata("vnet1") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("y" * (PORTDATA_DEFAULT_MAX + 1), "limit"),
        ("nul\x00inside", "NUL"),
    ],
    ids=["above-cap", "nul"],
)
async def test_unwritable_value_fails_that_vif_only(
    ovsdb: OvsDb, value: str, reason: str, ovs_driver: str
) -> None:
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1), portdata="untouched")
    ovsdb.add_port("br-int", "vnet2", vm_id=DOMAIN, mac=mac(2))
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        bad, good = await backend.apply(DOMAIN, [ovs_iface(1, value), ovs_iface(2, "fine")])
    assert bad.outcome is Outcome.FAILED
    assert bad.detail is not None and reason in bad.detail
    assert bad.readback is None
    assert good.outcome is Outcome.APPLIED
    assert ovsdb.get_portdata("vnet1") == "untouched"
    assert ovsdb.get_portdata("vnet2") == "fine"


async def test_value_above_one_argv_element_needs_the_native_driver(
    ovsdb: OvsDb, ovs_driver: str
) -> None:
    # Under the byte cap, but six times larger once JSON-escaped: above what
    # Linux accepts as one argv element. Only ovs-vsctl has argv elements.
    value = "\x01" * 30_000
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1), portdata="untouched")
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        [result] = await backend.apply(DOMAIN, [ovs_iface(1, value)])
    if ovs_driver == "vsctl":
        assert result.outcome is Outcome.FAILED
        assert result.detail is not None and "too large for one ovs-vsctl argument" in result.detail
        assert ovsdb.get_portdata("vnet1") == "untouched"
    else:
        assert result.outcome is Outcome.APPLIED
        assert ovsdb.get_portdata("vnet1") == value


async def test_max_portdata_is_configurable(ovsdb: OvsDb, ovs_driver: str) -> None:
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1))
    async with ovs_backend(ovsdb, driver=ovs_driver, max_portdata=8) as backend:
        [over] = await backend.apply(DOMAIN, [ovs_iface(1, "123456789")])
        [at] = await backend.apply(DOMAIN, [ovs_iface(1, "12345678")])
    assert over.outcome is Outcome.FAILED
    assert at.outcome is Outcome.APPLIED
    assert ovsdb.get_portdata("vnet1") == "12345678"


async def test_missing_port_writes_nothing(ovsdb: OvsDb, ovs_driver: str) -> None:
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1), portdata="before")
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        with pytest.raises(PortNotFound) as caught:
            await backend.apply(DOMAIN, [ovs_iface(1, "after"), ovs_iface(2, "x"), ovs_iface(3)])
        with pytest.raises(PortNotFound):
            await backend.collect(DOMAIN, [ovs_iface(1), ovs_iface(2)])
    assert caught.value.missing == (mac(2), mac(3))
    assert ovsdb.get_portdata("vnet1") == "before"


async def test_port_replugged_after_lookup_is_found_again(ovsdb: OvsDb, ovs_driver: str) -> None:
    # The backend remembers row UUIDs from its last lookup; a port deleted and
    # re-created under the same name gets a new UUID, which apply must follow.
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1))
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        assert (await backend.inspect(DOMAIN, [mac(1)]))[mac(1)] is not None
        ovsdb.del_port("vnet1")
        ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1))
        [result] = await backend.apply(DOMAIN, [ovs_iface(1, "fresh")])
    assert result.outcome is Outcome.APPLIED
    assert ovsdb.get_portdata("vnet1") == "fresh"


async def test_midonet_and_other_virtualports_are_not_ours(ovsdb: OvsDb, ovs_driver: str) -> None:
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        vif = Interface(mac=mac(1), virtualport=VirtualPort(type="midonet", portdata="m"))
        assert backend.handles(vif) is False
        [result] = await backend.apply(DOMAIN, [vif])
        info = await backend.describe()
    assert result.outcome is Outcome.SKIPPED
    assert info.virtualport_types == ["openvswitch"]
    assert info.interface_types == []  # a plain bridge NIC is not ours


async def test_describe_reports_reachability_bridges_and_the_cap(
    ovsdb: OvsDb, ovs_driver: str
) -> None:
    ovsdb.add_bridge("br-int")
    ovsdb.add_bridge("br-ex")
    async with ovs_backend(ovsdb, driver=ovs_driver, max_portdata=4096, timeout=1) as backend:
        up = await backend.describe()
        ovsdb.stop()
        down = await backend.describe()
    assert (up.available, up.bridges, up.max_portdata) == (True, ["br-ex", "br-int"], 4096)
    assert down.available is False and down.bridges is None and down.detail
