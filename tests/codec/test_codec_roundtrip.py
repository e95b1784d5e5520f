"""XML and JSON are two encodings of one model: each survives a trip through the other."""

from __future__ import annotations

from typing import Any

import pytest
from codec_samples import EXAMPLE_MODEL, STRICT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import ValidationError

from vifbroker.model import Interface, Source
from vifbroker.model.codec import (
    interface_to_element,
    interface_to_xml,
    interfaces_to_xml,
    parse_document,
    parse_interface,
)
from vifbroker.model.xmlsafe import is_xml_text

# Deterministic in CI (a red build must be reproducible); exploring elsewhere.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=STRICT,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text XML can carry as it is; port data is any Unicode scalar value.
xml_text = st.text(
    st.characters(exclude_categories=["Cs"]).filter(lambda c: is_xml_text(c)), max_size=12
)
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9._-]{0,10}", fullmatch=True).filter(
    lambda n: n[:3].lower() != "xml"
)
opt = st.none


def sources() -> st.SearchStrategy[Source]:
    attrs = st.dictionaries(names.filter(lambda n: n != "address"), xml_text, max_size=4)
    address = opt() | xml_text | st.dictionaries(names, xml_text, max_size=4)

    def build(a: dict[str, str], addr: Any) -> Source:
        return Source.model_validate({**a, "address": addr} if addr is not None else a)

    return st.builds(build, attrs, address)


def interfaces() -> st.SearchStrategy[Interface]:
    # unicast, never all-zero: the locally administered bit set, the group bit clear
    mac = st.binary(min_size=6, max_size=6).map(
        lambda b: ":".join(f"{x:02x}" for x in bytes([(b[0] & 0xFC) | 0x02]) + b[1:])
    )
    rate = st.fixed_dictionaries(
        {},
        optional={k: st.integers(0, 2**40) for k in ("average", "peak", "burst", "floor")},
    )
    fields = st.fixed_dictionaries(
        {"mac": mac},
        optional={
            "type": st.sampled_from(["bridge", "network", "direct", "hostdev", "vhostuser"])
            | xml_text,
            "source": sources(),
            "target_dev": xml_text,
            "model": xml_text,
            "virtualport": st.fixed_dictionaries(
                {},
                optional={
                    "type": opt() | st.sampled_from(["openvswitch", "802.1Qbg", "midonet"]),
                    "parameters": st.dictionaries(names, xml_text, max_size=4),
                    "portdata": opt() | any_text,
                },
            ),
            "vlan": st.fixed_dictionaries(
                {
                    "tags": st.lists(
                        st.fixed_dictionaries(
                            {"id": st.integers(0, 4095)},
                            optional={"native_mode": st.sampled_from(["tagged", "untagged"])},
                        ),
                        min_size=1,
                        max_size=4,
                    )
                },
                optional={"trunk": st.booleans()},
            ),
            "mtu": st.integers(68, 65535),
            "link_state": st.sampled_from(["up", "down"]),
            "bandwidth": st.fixed_dictionaries({}, optional={"inbound": rate, "outbound": rate}),
        },
    )
    return fields.map(Interface.model_validate)


@PROPERTY
@given(interfaces())
def test_model_to_xml_and_back_is_identity(iface: Interface) -> None:
    assert parse_interface(interface_to_xml(iface)) == iface
    assert parse_interface(interface_to_xml(iface, pretty=False)) == iface


@PROPERTY
@given(interfaces())
def test_json_to_xml_to_json_is_identity(iface: Interface) -> None:
    wire = iface.model_dump_json()
    through_xml = parse_interface(interface_to_xml(Interface.model_validate_json(wire)))
    assert through_xml.model_dump_json() == wire


@PROPERTY
@given(interfaces())
def test_xml_to_json_to_xml_is_identity(iface: Interface) -> None:
    xml = interface_to_xml(iface)
    through_json = Interface.model_validate_json(parse_interface(xml).model_dump_json())
    assert interface_to_xml(through_json) == xml


@settings(PROPERTY, max_examples=60)  # each example is up to five interfaces
@given(st.lists(interfaces(), max_size=5, unique_by=lambda i: i.mac))
def test_lists_round_trip_in_order(ifaces: list[Interface]) -> None:
    parsed = parse_document(
        interfaces_to_xml(ifaces, domain_uuid="DCF47DBD46D14D5BB442262A806A333A")
    )
    assert parsed.domain_uuid == "dcf47dbd-46d1-4d5b-b442-262a806a333a"
    assert list(parsed.interfaces) == ifaces


def test_design_example_writes_the_expected_document() -> None:
    # Pinned: the exec backend hands exactly this to operator scripts on stdin.
    assert interface_to_xml(EXAMPLE_MODEL) == (
        '<interface type="bridge">\n'
        '  <mac address="52:54:00:12:34:56"/>\n'
        '  <source bridge="br-int"/>\n'
        '  <target dev="vnet0"/>\n'
        '  <model type="virtio"/>\n'
        '  <virtualport type="openvswitch">\n'
        '    <parameters interfaceid="09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f" profileid="gold"/>\n'
        "    <portdata>any UTF-8 text, XML-escaped</portdata>\n"
        "  </virtualport>\n"
        '  <vlan trunk="yes">\n'
        '    <tag id="42"/>\n'
        '    <tag id="48" nativeMode="untagged"/>\n'
        "  </vlan>\n"
        '  <mtu size="9000"/>\n'
        '  <link state="up"/>\n'
        "  <bandwidth>\n"
        '    <inbound average="1000" peak="5000" burst="1024"/>\n'
        "  </bandwidth>\n"
        "</interface>\n"
    )


@pytest.mark.parametrize(
    ("portdata", "marker"),
    [
        ('{"a": "<b>&\'"}', '<portdata>{"a": "&lt;b&gt;&amp;\'"}</portdata>'),
        ("line1\r\nline2\n", "<portdata>line1&#13;\nline2\n</portdata>"),
        ("nul\x00 and \x1b[0m", '<portdata encoding="base64">bnVsACBhbmQgG1swbQ==</portdata>'),
        ("\ufffe", '<portdata encoding="base64">77++</portdata>'),
        ("", "<portdata></portdata>"),
    ],
)
def test_portdata_is_written_readably_and_base64_only_when_needed(
    portdata: str, marker: str
) -> None:
    iface = EXAMPLE_MODEL.with_portdata(portdata)
    xml = interface_to_xml(iface)
    assert marker in xml
    assert parse_interface(xml).portdata == portdata


def test_source_address_forms_are_written_as_libvirt_does() -> None:
    hostdev = Interface.model_validate(
        {"mac": "52:54:00:00:00:01", "type": "hostdev", "source": {"address": {"type": "pci"}}}
    )
    udp = Interface.model_validate(
        {"mac": "52:54:00:00:00:02", "type": "udp", "source": {"address": "10.0.0.1", "port": "7"}}
    )
    assert '<source>\n    <address type="pci"/>\n  </source>' in interface_to_xml(hostdev)
    assert '<source port="7" address="10.0.0.1"/>' in interface_to_xml(udp)


def test_callers_may_decorate_the_element_and_parsing_ignores_it() -> None:
    el = interface_to_element(EXAMPLE_MODEL)
    el.set("generation", "7")
    assert parse_interface(etree.tostring(el)) == EXAMPLE_MODEL


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "virtio\x01"},
        {"target_dev": "vnet\ufffe"},
        {"type": "bridge\x00"},
        {"source": {"xmlns": "urn:evil"}},
        {"source": {"bad name": "x"}},
        {"source": {"bridge": "br\x0b"}},
        {"source": {"address": {"b:us": "0x01"}}},
        {"virtualport": {"parameters": {"XmlFoo": "1"}}},
        {"virtualport": {"parameters": {"ok": "\x7f\x08"}}},
        {"virtualport": {"portdata": "lone \ud800 surrogate"}},
    ],
)
def test_values_xml_cannot_carry_are_refused_when_the_model_is_built(
    fields: dict[str, Any],
) -> None:
    # Caught at ingest in either encoding, so a stored record can always be served as XML.
    with pytest.raises(ValidationError):
        Interface.model_validate({"mac": "52:54:00:00:00:01", **fields})


def test_interfaces_to_xml_without_domain_and_compact() -> None:
    xml = interfaces_to_xml([EXAMPLE_MODEL], pretty=False)
    assert xml.startswith('<interfaces><interface type="bridge">') and "\n" not in xml
    assert parse_document(xml).domain_uuid is None
