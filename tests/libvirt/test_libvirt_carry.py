"""Baseline: what libvirt 9.0's own in-band PortData carry does, with no vifbroker.

Real libvirtd + QEMU + Open vSwitch on hosts A and B (see ``libvirt_harness.py``); each
test live-migrates a diskless guest and records, per destination port (found
by vm-id + attached-mac), the PortData it holds, when that value landed in the
destination OVSDB and when the guest resumed there. The tables are printed
even under ``-q``.

Run alone: ``.venv/bin/python -m pytest tests/libvirt -q -m libvirt``.
"""

from __future__ import annotations

import pytest
from libvirt_fixtures import GuestFactory, require_binary
from libvirt_harness import Guest, Host, OvsNic, Testbed, UserNic, mac, migrate
from libvirt_timing import MigrationTimer, PortTiming, format_table

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]

BINARIES = ("libvirtd", "virsh", "qemu-system-x86_64", "ovsdb-server", "ovs-vswitchd")


def migrate_and_time(guest: Guest, src: Host, dst: Host) -> tuple[list[PortTiming], list[str]]:
    """Migrate; return per-OVS-NIC timings and libvirt's own PortData log lines."""
    offsets = {h: h.log_offset() for h in (src, dst)}
    with MigrationTimer(dst) as timer:
        migrate(guest, src, dst)
        timings = timer.collect(guest)
    evidence = [f"{h.name}: {line}" for h in (src, dst) for line in h.portdata_log(offsets[h])]
    assert dst.domstate(guest.name) == "running"
    assert not src.has_domain(guest.name), "--undefinesource left the domain on the source"
    for nic in guest.ovs_nics:
        assert src.ovs_port(guest.uuid, nic.mac) is None, f"source port of {nic.mac} not deleted"
        port = dst.ovs_port(guest.uuid, nic.mac)
        assert port is not None
        assert port.external_ids.get("iface-id") == nic.interfaceid
    return timings, evidence


def show(
    capsys: pytest.CaptureFixture[str],
    title: str,
    sent: dict[str, str],
    result: tuple[list[PortTiming], list[str]],
) -> None:
    rows, evidence = result
    with capsys.disabled():
        print("\n" + format_table(title, sent, rows))
        for line in evidence:
            print(f"    libvirt log {line}")


def test_one_ovs_nic_portdata_is_carried(
    testbed: Testbed,
    guests: GuestFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The harness works: libvirt's own carry moves one NIC's PortData A → B → A."""
    require_binary(*BINARIES)
    a, b = testbed.a, testbed.b
    nic = OvsNic(mac(0x0A01))
    guest = guests([nic])
    # Quotes, braces, spaces and non-ASCII: libvirt copies the value through
    # ovs-vsctl get/set, which must keep it byte-exact.
    value = 'vni=5001 {"ofport": 7} état'
    a.set_portdata(guest, nic.mac, value)
    assert a.ovs_port(guest.uuid, nic.mac).portdata == value  # type: ignore[union-attr]

    there = migrate_and_time(guest, a, b)
    show(capsys, f"A -> B, one OVS NIC ({guest.name})", {nic.mac: value}, there)
    assert [t.portdata for t in there[0]] == [value]
    assert there[0][0].landed_at is not None

    back = migrate_and_time(guest, b, a)
    show(capsys, f"B -> A, one OVS NIC ({guest.name})", {nic.mac: value}, back)
    assert [t.portdata for t in back[0]] == [value]


def test_user_nic_before_two_ovs_nics(
    testbed: Testbed,
    guests: GuestFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A non-OVS NIC first shifts libvirt's position-based pairing.

    Observed on libvirt 9.0.0 / OVS 3.1 here, as DESIGN.md says: after A → B
    neither destination port holds any PortData (libvirt's cookie lists the
    user NIC's empty slot first, and the destination pairs entries with its
    NICs by index, so the OVS NICs get nothing). The guest still migrates, and
    back again: A → B → A works, with the values lost on the way.
    """
    require_binary(*BINARIES)
    a, b = testbed.a, testbed.b
    user, first, second = UserNic(mac(0x0B00)), OvsNic(mac(0x0B01)), OvsNic(mac(0x0B02))
    guest = guests([user, first, second])
    sent = {first.mac: "port-data-first", second.mac: "port-data-second"}
    for nic_mac, value in sent.items():
        a.set_portdata(guest, nic_mac, value)

    there = migrate_and_time(guest, a, b)
    show(capsys, f"A -> B, user NIC + two OVS NICs ({guest.name})", sent, there)
    assert {t.mac: t.portdata for t in there[0]} == {first.mac: None, second.mac: None}

    back = migrate_and_time(guest, b, a)
    show(capsys, f"B -> A, user NIC + two OVS NICs ({guest.name})", sent, back)
    assert {t.mac: t.portdata for t in back[0]} == {first.mac: None, second.mac: None}
