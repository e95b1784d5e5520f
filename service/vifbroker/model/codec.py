"""XML encoding of :class:`~vifbroker.model.interface.Interface` (libvirt's spelling).

XML and JSON are two encodings of one model: ``parse(to_xml(i)) == i`` for
every valid ``Interface``. Ingest reads a single ``<interface>``, an
``<interfaces>`` list or a whole libvirt ``<domain>``; anything outside the
subset is ignored, anything inside it that is wrong raises
:class:`XMLCodecError` (a ``ValueError``) naming the place, and a document
past one of its :class:`~vifbroker.model.limits.Limits` raises
:class:`LimitExceeded` (also a ``ValueError``) before the costly part of
reading it — never anything else, whatever the bytes. Reading costs time
linear in the document: children the codec does not read are skipped by lxml
in C, and attributes are counted before they are read.

Two decisions outside libvirt's own format (``<portdata>`` is ours):

* port data that XML 1.0 cannot carry (control characters, U+FFFE/U+FFFF) is
  written as ``<portdata encoding='base64'>`` of its UTF-8 bytes, so JSON's
  whole string range survives a trip through XML;
* in lists and domains, a ``<teaming type='transient'>`` member is dropped:
  libvirt unplugs that VF before migration, and it shares its MAC with the
  persistent virtio member that does carry the port.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree
from pydantic import ValidationError

from .ids import normalize_mac, normalize_uuid
from .interface import Interface, Rate
from .limits import DEFAULT_LIMITS, LimitExceeded, Limits
from .xmldoc import (
    XMLCodecError,
    XMLMalformed,
    attributes,
    child_text,
    children,
    one,
    parse_xml,
    required_attr,
    singletons,
    tag_name,
    uint,
    yes_no,
)
from .xmlsafe import is_xml_text

__all__ = [
    "DocumentKind",
    "InterfaceDocument",
    "LimitExceeded",
    "Limits",
    "XMLCodecError",
    "XMLMalformed",
    "interface_from_element",
    "interface_to_element",
    "interface_to_xml",
    "interfaces_to_xml",
    "parse_document",
    "parse_interface",
    "parse_interfaces",
]

DocumentKind = Literal["interface", "interfaces", "domain"]

_RATE_FIELDS = ("average", "peak", "burst", "floor")
# Children of <interface> we read; each may appear at most once.
_SINGLETONS = (
    "mac",
    "source",
    "target",
    "model",
    "virtualport",
    "vlan",
    "mtu",
    "link",
    "bandwidth",
)


@dataclass(frozen=True)
class InterfaceDocument:
    """What an ingested document held."""

    kind: DocumentKind
    interfaces: tuple[Interface, ...]
    #: ``<domain><uuid>``, or ``<interfaces domain='…'>``; normalised.
    domain_uuid: str | None = None
    domain_name: str | None = None


# ---------------------------------------------------------------- parsing


def parse_document(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> InterfaceDocument:
    """Read ``<interface>``, ``<interfaces>`` or ``<domain>`` into interfaces."""
    root = parse_xml(data)
    if root.tag == "interface":
        return InterfaceDocument("interface", (interface_from_element(root, limits),))
    if root.tag == "interfaces":
        if len(root) > limits.max_interfaces:  # len() counts in C; junk children too
            raise LimitExceeded(f"<interfaces>: more than {limits.max_interfaces} children")
        items = children(root)
        unknown = sorted({str(c.tag) for c in items if c.tag != "interface"})
        if unknown:
            raise XMLCodecError(f"<interfaces> may only hold <interface>, not <{unknown[0]}>")
        return InterfaceDocument(
            "interfaces",
            _interfaces_of(items, limits),
            domain_uuid=_uuid_or_none(root.get("domain"), "<interfaces domain>"),
        )
    if root.tag == "domain":
        devices = one(root, "devices", "domain")
        items = (
            [] if devices is None else children(devices, "interface", limit=limits.max_interfaces)
        )
        return InterfaceDocument(
            "domain",
            _interfaces_of(items, limits),
            domain_uuid=_uuid_or_none(child_text(root, "uuid"), "<domain><uuid>"),
            domain_name=child_text(root, "name"),
        )
    raise XMLCodecError(
        f"expected <interface>, <interfaces> or <domain> as the root, not <{tag_name(root)}>"
    )


def parse_interfaces(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> list[Interface]:
    """The interfaces of any accepted document (see :func:`parse_document`)."""
    return list(parse_document(data, limits).interfaces)


def parse_interface(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Interface:
    """Exactly one ``<interface>`` element as the root."""
    root = parse_xml(data)
    if root.tag != "interface":
        raise XMLCodecError(f"expected <interface> as the root, not <{tag_name(root)}>")
    return interface_from_element(root, limits)


def interface_from_element(el: etree._Element, limits: Limits = DEFAULT_LIMITS) -> Interface:
    """Read one ``<interface>`` element (from a tree the caller already holds)."""
    children_of = singletons(el, _SINGLETONS, "interface")
    mac_el = children_of.get("mac")
    if mac_el is None:
        raise XMLCodecError("<interface> has no <mac address='…'/>")
    mac = required_attr(mac_el, "address", "mac")
    try:
        mac = normalize_mac(mac)
    except ValueError as exc:
        raise XMLCodecError(f"<mac address>: {exc}") from exc
    where = f"interface {mac}"
    fields: dict[str, Any] = {"mac": mac}
    if (itype := el.get("type")) is not None:
        fields["type"] = itype
    if (source := children_of.get("source")) is not None:
        fields["source"] = _source(source, where, limits)
    if (target := children_of.get("target")) is not None and target.get("dev") is not None:
        fields["target_dev"] = target.get("dev")
    if (model := children_of.get("model")) is not None and model.get("type") is not None:
        fields["model"] = model.get("type")
    if (vport := children_of.get("virtualport")) is not None:
        fields["virtualport"] = _virtualport(vport, where, limits)
    if (vlan := children_of.get("vlan")) is not None:
        fields["vlan"] = _vlan(vlan, where, limits)
    if (mtu := children_of.get("mtu")) is not None:
        fields["mtu"] = uint(required_attr(mtu, "size", f"{where}: mtu"), f"{where}: <mtu size>")
    if (link := children_of.get("link")) is not None:
        fields["link_state"] = required_attr(link, "state", f"{where}: link")
    if (bandwidth := children_of.get("bandwidth")) is not None:
        fields["bandwidth"] = _bandwidth(bandwidth, where)
    try:
        iface = Interface.model_validate(fields)
    except ValidationError as exc:
        raise XMLCodecError(f"{where}: {_summarise(exc)}") from exc
    limits.check_interface(iface)
    return iface


def _interfaces_of(items: Iterable[etree._Element], limits: Limits) -> tuple[Interface, ...]:
    # A MAC named twice is kept as given: refusing an upload that names a vif
    # twice is the store's rule (store/rules.py), the same for JSON and XML.
    result: list[Interface] = []
    for index, item in enumerate(items):
        try:
            teaming = one(item, "teaming", "interface")
            if teaming is not None and teaming.get("type") == "transient":
                continue
            iface = interface_from_element(item, limits)
        except XMLCodecError as exc:
            raise XMLCodecError(f"<interface> #{index + 1}: {exc}") from exc
        result.append(iface)
    return tuple(result)


def _source(el: etree._Element, where: str, limits: Limits) -> dict[str, Any]:
    fields: dict[str, Any] = attributes(el, limits.max_attributes)
    address = one(el, "address", f"{where}: source")
    if address is not None:
        if "address" in fields:
            raise XMLCodecError(f"{where}: <source> has both an address attribute and <address>")
        fields["address"] = attributes(address, limits.max_attributes)
    return fields


def _virtualport(el: etree._Element, where: str, limits: Limits) -> dict[str, Any]:
    found = singletons(el, ("parameters", "portdata"), f"{where}: virtualport")
    fields: dict[str, Any] = {"type": el.get("type")}
    if (params := found.get("parameters")) is not None:
        fields["parameters"] = attributes(params, limits.max_attributes)
    if (portdata := found.get("portdata")) is not None:
        fields["portdata"] = _portdata(portdata, where)
    return fields


def _portdata(el: etree._Element, where: str) -> str:
    if len(el):  # comments and PIs are gone: any child is an element
        raise XMLCodecError(f"{where}: <portdata> holds text only, not elements")
    text = el.text or ""
    encoding = el.get("encoding")
    if encoding is None:
        return text
    if encoding != "base64":
        raise XMLCodecError(f"{where}: <portdata encoding={encoding!r}> is not 'base64'")
    try:
        return base64.b64decode("".join(text.split()), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise XMLCodecError(f"{where}: <portdata> is not base64 of UTF-8: {exc}") from exc


def _vlan(el: etree._Element, where: str, limits: Limits) -> dict[str, Any]:
    fields: dict[str, Any] = {"tags": []}
    if (trunk := el.get("trunk")) is not None:
        fields["trunk"] = yes_no(trunk, f"{where}: <vlan trunk>")
    for tag in children(el, "tag", limit=limits.max_vlan_tags):
        item: dict[str, Any] = {
            "id": uint(required_attr(tag, "id", f"{where}: vlan tag"), f"{where}: <tag id>")
        }
        if (native := tag.get("nativeMode")) is not None:
            item["native_mode"] = native
        fields["tags"].append(item)
    return fields


def _bandwidth(el: etree._Element, where: str) -> dict[str, Any]:
    children = singletons(el, ("inbound", "outbound"), f"{where}: bandwidth")
    fields: dict[str, Any] = {}
    for direction, rate_el in children.items():
        fields[direction] = {
            name: uint(value, f"{where}: <{direction} {name}>")
            for name in _RATE_FIELDS
            if (value := rate_el.get(name)) is not None
        }
    return fields


def _uuid_or_none(value: str | None, where: str) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return normalize_uuid(value)
    except ValueError as exc:
        raise XMLCodecError(f"{where}: {exc}") from exc


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
    return "; ".join(parts)


# ---------------------------------------------------------------- writing


def interface_to_element(iface: Interface) -> etree._Element:
    """``iface`` as an ``<interface>`` element (for callers that add attributes)."""
    root = etree.Element("interface", type=iface.type)
    etree.SubElement(root, "mac", address=iface.mac)
    if iface.source is not None:
        source = etree.SubElement(root, "source", iface.source.attributes())
        if isinstance(iface.source.address, dict):
            etree.SubElement(source, "address", iface.source.address)
        elif iface.source.address is not None:
            source.set("address", iface.source.address)
    if iface.target_dev is not None:
        etree.SubElement(root, "target", dev=iface.target_dev)
    if iface.model is not None:
        etree.SubElement(root, "model", type=iface.model)
    if (vp := iface.virtualport) is not None:
        vport = etree.SubElement(root, "virtualport")
        if vp.type is not None:
            vport.set("type", vp.type)
        if vp.parameters:
            etree.SubElement(vport, "parameters", vp.parameters)
        if vp.portdata is not None:
            _write_portdata(etree.SubElement(vport, "portdata"), vp.portdata)
    if (vlan := iface.vlan) is not None:
        vlan_el = etree.SubElement(root, "vlan")
        if vlan.trunk is not None:
            vlan_el.set("trunk", "yes" if vlan.trunk else "no")
        for tag in vlan.tags:
            tag_el = etree.SubElement(vlan_el, "tag", id=str(tag.id))
            if tag.native_mode is not None:
                tag_el.set("nativeMode", tag.native_mode)
    if iface.mtu is not None:
        etree.SubElement(root, "mtu", size=str(iface.mtu))
    if iface.link_state is not None:
        etree.SubElement(root, "link", state=iface.link_state)
    if (bw := iface.bandwidth) is not None:
        bw_el = etree.SubElement(root, "bandwidth")
        for direction, rate in (("inbound", bw.inbound), ("outbound", bw.outbound)):
            if rate is not None:
                etree.SubElement(bw_el, direction, _rate_attributes(rate))
    return root


def interface_to_xml(iface: Interface, *, pretty: bool = True) -> str:
    """One ``<interface>`` document (no XML declaration; encode as UTF-8)."""
    return _serialise(interface_to_element(iface), pretty)


def interfaces_to_xml(
    ifaces: Iterable[Interface], *, domain_uuid: str | None = None, pretty: bool = True
) -> str:
    """An ``<interfaces>`` list, optionally naming its domain."""
    root = etree.Element("interfaces")
    if domain_uuid is not None:
        root.set("domain", normalize_uuid(domain_uuid))
    root.extend(interface_to_element(iface) for iface in ifaces)
    return _serialise(root, pretty)


def _write_portdata(el: etree._Element, portdata: str) -> None:
    if is_xml_text(portdata):
        el.text = portdata
    else:
        el.set("encoding", "base64")
        el.text = base64.b64encode(portdata.encode("utf-8")).decode("ascii")


def _rate_attributes(rate: Rate) -> dict[str, str]:
    return {name: str(value) for name in _RATE_FIELDS if (value := getattr(rate, name)) is not None}


def _serialise(root: etree._Element, pretty: bool) -> str:
    # pretty_print only indents between elements: libxml2 leaves elements
    # with text (our <portdata>) byte-for-byte alone.
    return etree.tostring(root, encoding="unicode", pretty_print=pretty)
