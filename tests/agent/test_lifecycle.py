"""Lifecycle event decoding, and libvirt-python as a domain source (test driver)."""

from __future__ import annotations

import uuid

import pytest

from testkit import STRICT, require_binary
from vifbroker.agent.errors import DomainNotFound
from vifbroker.agent.lifecycle import event_from_codes, parse_virsh_event
from vifbroker.agent.wiring import libvirt_python_available

TEST_URI = "test:///default"  # libvirt's in-process test driver: no daemon
TEST_DOMAIN = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_virsh_event_lines() -> None:
    assert parse_virsh_event("event 'lifecycle' for domain 'vm-1': Resumed Migrated\n") == (
        "vm-1",
        "resumed",
        "migrated",
    )
    assert parse_virsh_event("event 'lifecycle' for domain 'x': Started Booted") == (
        "x",
        "started",
        "booted",
    )
    assert parse_virsh_event("events received: 3") is None


def test_event_codes() -> None:
    dom = str(uuid.uuid4())
    ev = event_from_codes(dom.upper(), 4, 1)
    assert (ev.domain_uuid, ev.event, ev.detail, ev.resumed) == (dom, "resumed", "migrated", True)
    started = event_from_codes(dom, 2, 1)
    assert (started.event, started.detail, started.resumed) == ("started", "migrated", False)
    assert event_from_codes(dom, 42, 7).event == "event-42"


def _require_libvirt_python() -> None:
    if not libvirt_python_available():
        msg = "libvirt-python is not installed (the test extra installs it)"
        if STRICT:
            pytest.fail(msg)
        pytest.skip(msg)


async def test_libvirt_source_reads_the_live_domain_interfaces() -> None:
    _require_libvirt_python()
    require_binary("virsh")  # the test driver ships with the client library
    from vifbroker.agent.libvirtapi import LibvirtSource

    source = LibvirtSource(TEST_URI)
    try:
        interfaces = await source.interfaces(TEST_DOMAIN)
        assert [(i.mac, i.type, i.target_dev) for i in interfaces] == [
            ("aa:bb:cc:dd:ee:ff", "network", "testnet0")
        ]
        with pytest.raises(DomainNotFound):
            await source.interfaces(str(uuid.uuid4()))
    finally:
        await source.close()
