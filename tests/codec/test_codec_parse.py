"""Reading the ``<interface>`` subset: what is kept, what is ignored, what is refused."""

from __future__ import annotations

import pytest
from codec_samples import EXAMPLE, EXAMPLE_MODEL

from vifbroker.model import Bandwidth, Interface, Rate, VirtualPort, Vlan, VlanTag
from vifbroker.model.codec import (
    XMLCodecError,
    parse_document,
    parse_interface,
    parse_interfaces,
)

DOMAIN = "dcf47dbd-46d1-4d5b-b442-262a806a333a"


def iface(body: str, attrs: str = "type='bridge'") -> str:
    return f"<interface {attrs}><mac address='52:54:00:00:00:01'/>{body}</interface>"


def test_design_example_reads_into_every_field() -> None:
    assert parse_interface(EXAMPLE) == EXAMPLE_MODEL


def test_bytes_and_str_input_agree() -> None:
    assert parse_interface(EXAMPLE.encode()) == parse_interface(EXAMPLE)


def test_encoding_declaration_is_honoured_for_bytes_and_ignored_for_str() -> None:
    text = "<?xml version='1.0' encoding='ISO-8859-1'?>" + iface(
        "<virtualport><portdata>caf\u00e9</portdata></virtualport>"
    )
    assert parse_interface(text.encode("iso-8859-1")).portdata == "caf\u00e9"
    assert parse_interface(text).portdata == "caf\u00e9"


def test_mac_is_normalised_and_required() -> None:
    doc = "<interface type='bridge'><mac address='52-54-00-AB-CD-EF'/></interface>"
    assert parse_interface(doc).mac == "52:54:00:ab:cd:ef"
    with pytest.raises(XMLCodecError, match="no <mac"):
        parse_interface("<interface type='bridge'><target dev='vnet0'/></interface>")
    with pytest.raises(XMLCodecError, match="needs a address attribute"):
        parse_interface("<interface type='bridge'><mac/></interface>")
    with pytest.raises(XMLCodecError, match="not a MAC"):
        parse_interface("<interface type='bridge'><mac address='52:54:00'/></interface>")


def test_type_defaults_like_json_and_unknown_types_are_kept() -> None:
    assert parse_interface(iface("", attrs="")).type == "bridge"
    assert parse_interface(iface("", attrs="type='mcast'")).type == "mcast"


def test_elements_and_attributes_outside_the_subset_are_ignored() -> None:
    doc = iface(
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>"
        "<alias name='ua-net0'/><driver name='vhost' queues='4'/><rom bar='off'/>"
        "<x:custom xmlns:x='urn:x'><mac address='00:00:00:00:00:09'/></x:custom>"
        "<target dev='vnet3' managed='no'/><model type='virtio'/>",
        attrs="type='network' managed='yes' trustGuestRxFilters='yes'",
    )
    assert parse_interface(doc) == Interface(
        mac="52:54:00:00:00:01", type="network", target_dev="vnet3", model="virtio"
    )


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        ("<mac address='52:54:00:00:00:02'/>", "mac"),
        ("<source bridge='a'/><source bridge='b'/>", "source"),
        ("<mtu size='1500'/><mtu size='9000'/>", "mtu"),
        ("<virtualport/><virtualport/>", "virtualport"),
    ],
)
def test_a_repeated_subset_element_is_refused_not_guessed(body: str, repeated: str) -> None:
    with pytest.raises(XMLCodecError, match=f"more than one <{repeated}>"):
        parse_interface(iface(body))


def test_hostdev_source_address_becomes_a_mapping() -> None:
    doc = iface(
        "<source><address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x1'/>"
        "</source>",
        attrs="type='hostdev' managed='yes'",
    )
    source = parse_interface(doc).source
    assert source is not None
    assert source.address == {
        "type": "pci",
        "domain": "0x0000",
        "bus": "0x03",
        "slot": "0x07",
        "function": "0x1",
    }
    assert source.attributes() == {}


def test_udp_source_address_attribute_stays_a_string() -> None:
    doc = iface(
        "<source address='127.0.0.1' port='11111'><local address='127.0.0.1' port='22'/></source>",
        attrs="type='udp'",
    )
    source = parse_interface(doc).source
    assert source is not None
    assert source.address == "127.0.0.1"
    assert source.attributes() == {"port": "11111"}


def test_source_with_address_attribute_and_child_is_ambiguous() -> None:
    doc = iface("<source address='1.2.3.4'><address type='pci' bus='0x01'/></source>")
    with pytest.raises(XMLCodecError, match="both an address attribute and <address>"):
        parse_interface(doc)


def test_namespaced_source_attributes_are_not_ours() -> None:
    doc = iface("<source xmlns:x='urn:x' bridge='br0' x:color='blue'/>")
    source = parse_interface(doc).source
    assert source is not None and source.attributes() == {"bridge": "br0"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<portdata>  two\n lines \n</portdata>", "  two\n lines \n"),
        ("<portdata>a&#13;\nb\tc</portdata>", "a\r\nb\tc"),
        ("<portdata/>", ""),
        ("<portdata></portdata>", ""),
        ("<portdata>&lt;x a=&quot;1&quot;&gt; &amp; ]]&gt;</portdata>", '<x a="1"> & ]]>'),
        ("<portdata><![CDATA[<raw> & ]]>tail</portdata>", "<raw> & tail"),
        ("<portdata>ab<!-- note -->cd<?pi x?>ef</portdata>", "abcdef"),
        ('<portdata>{"k": [1, "\u00e9\U0001f600"]}</portdata>', '{"k": [1, "\u00e9\U0001f600"]}'),
        ("<portdata encoding='base64'>AAEC\n 4oKs </portdata>", "\x00\x01\x02\u20ac"),
    ],
)
def test_portdata_text_is_exact(body: str, expected: str) -> None:
    assert parse_interface(iface(f"<virtualport>{body}</virtualport>")).portdata == expected


def test_absent_portdata_is_none_not_empty() -> None:
    vport = parse_interface(iface("<virtualport type='openvswitch'/>")).virtualport
    assert vport == VirtualPort(type="openvswitch")
    assert vport.portdata is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<portdata>a<b/>c</portdata>", "text only"),
        ("<portdata encoding='hex'>00</portdata>", "not 'base64'"),
        ("<portdata encoding='base64'>not*base64</portdata>", "not base64"),
        ("<portdata encoding='base64'>/w==</portdata>", "not base64 of UTF-8"),
        ("<portdata>a</portdata><portdata>b</portdata>", "more than one <portdata>"),
        ("<parameters a='1'/><parameters b='2'/>", "more than one <parameters>"),
    ],
)
def test_bad_portdata_is_refused(body: str, message: str) -> None:
    with pytest.raises(XMLCodecError, match=message):
        parse_interface(iface(f"<virtualport>{body}</virtualport>"))


def test_untyped_virtualport_keeps_its_parameters() -> None:
    doc = iface("<virtualport><parameters instanceid='i' interfaceid='j'/></virtualport>")
    assert parse_interface(doc).virtualport == VirtualPort(
        parameters={"instanceid": "i", "interfaceid": "j"}
    )


def test_vlan_trunk_tags_and_native_mode() -> None:
    doc = iface("<vlan trunk='no'><tag id=' 7 '/><tag id='4095' nativeMode='tagged'/></vlan>")
    assert parse_interface(doc).vlan == Vlan(
        trunk=False, tags=[VlanTag(id=7), VlanTag(id=4095, native_mode="tagged")]
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<vlan trunk='maybe'><tag id='1'/></vlan>", "neither 'yes' nor 'no'"),
        ("<vlan><tag id='4096'/></vlan>", "less than or equal to 4095"),
        ("<vlan><tag id='-1'/></vlan>", "not an unsigned integer"),
        ("<vlan><tag id='4_2'/></vlan>", "not an unsigned integer"),
        ("<vlan><tag id='+4'/></vlan>", "not an unsigned integer"),
        ("<vlan><tag id='0x10'/></vlan>", "not an unsigned integer"),
        ("<vlan><tag id='" + "9" * 5000 + "'/></vlan>", "not an unsigned integer"),
        ("<vlan><tag/></vlan>", "needs a id attribute"),
        ("<vlan><tag id='1' nativeMode='sometimes'/></vlan>", "native_mode"),
        ("<vlan trunk='yes'/>", "tags"),
        ("<mtu size='jumbo'/>", "not an unsigned integer"),
        ("<mtu size='67'/>", "greater than or equal to 68"),
        ("<mtu/>", "needs a size attribute"),
        ("<link state='sideways'/>", "link_state"),
        ("<link/>", "needs a state attribute"),
        ("<bandwidth><inbound average='-5'/></bandwidth>", "not an unsigned integer"),
        ("<bandwidth><inbound/><inbound/></bandwidth>", "more than one <inbound>"),
    ],
)
def test_invalid_values_name_their_place(body: str, message: str) -> None:
    with pytest.raises(XMLCodecError, match=message) as info:
        parse_interface(iface(body))
    assert "52:54:00:00:00:01" in str(info.value)


def test_bandwidth_keeps_floor_and_ignores_unknown_rate_attributes() -> None:
    doc = iface(
        "<bandwidth><inbound average='1000' floor='200' colour='red'/>"
        "<outbound peak='5'/></bandwidth>"
    )
    assert parse_interface(doc).bandwidth == Bandwidth(
        inbound=Rate(average=1000, floor=200), outbound=Rate(peak=5)
    )


# ------------------------------------------------------------ documents


def test_interfaces_list_with_domain() -> None:
    doc = (
        f"<interfaces domain='{DOMAIN.upper()}'>"
        "<interface type='bridge'><mac address='52:54:00:00:00:01'/></interface>"
        "<interface type='direct'><mac address='52:54:00:00:00:02'/></interface>"
        "</interfaces>"
    )
    parsed = parse_document(doc)
    assert parsed.kind == "interfaces"
    assert parsed.domain_uuid == DOMAIN
    assert [(i.mac, i.type) for i in parsed.interfaces] == [
        ("52:54:00:00:00:01", "bridge"),
        ("52:54:00:00:00:02", "direct"),
    ]


def test_empty_interfaces_list_is_empty() -> None:
    parsed = parse_document("<interfaces/>")
    assert (parsed.kind, parsed.interfaces, parsed.domain_uuid) == ("interfaces", (), None)


def test_interfaces_list_refuses_strangers_and_bad_domain() -> None:
    with pytest.raises(XMLCodecError, match="only hold <interface>, not <disk>"):
        parse_document("<interfaces><disk/></interfaces>")
    with pytest.raises(XMLCodecError, match="not a UUID"):
        parse_document("<interfaces domain='nope'/>")


def test_domain_yields_every_devices_interface_with_uuid_and_name() -> None:
    doc = f"""<domain type='kvm'>
      <name> guest-1 </name><uuid>{DOMAIN}</uuid>
      <interface type='bridge'><mac address='52:54:00:00:00:99'/></interface>
      <devices>
        <disk type='file'/>
        <interface type='network'><mac address='52:54:00:00:00:01'/></interface>
        <hostdev mode='subsystem'/>
        <interface type='bridge'><mac address='52:54:00:00:00:02'/></interface>
      </devices>
    </domain>"""
    parsed = parse_document(doc)
    assert (parsed.kind, parsed.domain_uuid, parsed.domain_name) == ("domain", DOMAIN, "guest-1")
    # the stray top-level <interface> is not a device
    assert [i.mac for i in parsed.interfaces] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]


def test_domain_without_devices_or_uuid() -> None:
    parsed = parse_document("<domain type='kvm'><name>x</name></domain>")
    assert (parsed.interfaces, parsed.domain_uuid, parsed.domain_name) == ((), None, "x")
    with pytest.raises(XMLCodecError, match="not a UUID"):
        parse_document("<domain><uuid>123</uuid></domain>")


def test_error_in_a_list_names_the_interface_position() -> None:
    doc = (
        "<interfaces><interface><mac address='52:54:00:00:00:01'/></interface>"
        "<interface><mac address='52:54:00:00:00:02'/><mtu size='1'/></interface></interfaces>"
    )
    with pytest.raises(XMLCodecError, match=r"^<interface> #2: interface 52:54:00:00:00:02: mtu"):
        parse_document(doc)


def test_repeated_mac_in_a_list_is_kept_for_the_store_to_refuse() -> None:
    # One owner for "an upload names each vif once": the store (tests/store).
    doc = (
        "<interfaces><interface><mac address='52:54:00:00:00:01'/></interface>"
        "<interface><mac address='52:54:00:00:00:02'/></interface>"
        "<interface><mac address='52-54-00-00-00-01'/></interface></interfaces>"
    )
    macs = [i.mac for i in parse_document(doc).interfaces]
    assert macs == ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:01"]


def test_transient_teaming_member_is_dropped_from_lists_but_not_from_a_single_read() -> None:
    persistent = (
        "<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
        "<teaming type='persistent'/><alias name='ua-backup0'/></interface>"
    )
    transient = (
        "<interface type='hostdev'><mac address='52:54:00:00:00:01'/>"
        "<teaming type='transient' persistent='ua-backup0'/></interface>"
    )
    assert [
        i.type for i in parse_interfaces(f"<interfaces>{persistent}{transient}</interfaces>")
    ] == ["bridge"]
    assert parse_interface(transient).type == "hostdev"


def test_single_read_wants_an_interface_root() -> None:
    with pytest.raises(XMLCodecError, match="expected <interface> as the root, not <interfaces>"):
        parse_interface("<interfaces/>")
    assert parse_interfaces(EXAMPLE) == [EXAMPLE_MODEL]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("<network><name>n</name></network>", "not <network>"),
        (
            "<interface xmlns='urn:other'><mac address='52:54:00:00:00:01'/></interface>",
            r"not <\{urn:other\}interface>",
        ),
        ("<qemu-migration><domain/></qemu-migration>", "not <qemu-migration>"),
    ],
)
def test_unknown_roots_are_refused(doc: str, message: str) -> None:
    with pytest.raises(XMLCodecError, match=message):
        parse_document(doc)
