"""Bounds on every dimension of an interface document that a client controls.

A document inside these bounds costs a small, known amount to read, store,
render as XML and apply; one outside them is refused as a whole before the
costly part of reading it (:class:`LimitExceeded`, a ``ValueError``). The
broker takes the numbers from its settings; the defaults suit any real
libvirt domain with room to spare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .interface import PORTDATA_DEFAULT_MAX, Interface


class LimitExceeded(ValueError):
    """A document is larger, in some dimension, than the limits allow."""


@dataclass(frozen=True, slots=True)
class Limits:
    #: ``<interface>`` elements (or JSON interfaces) in one document.
    max_interfaces: int = 256
    #: Attributes on any one XML element that the codec reads.
    max_attributes: int = 64
    #: Keys in ``source``, ``source.address`` and ``virtualport.parameters``.
    max_keys: int = 16
    #: ``<tag>`` elements in one ``<vlan>``.
    max_vlan_tags: int = 64
    #: UTF-8 bytes of one vif's port data.
    max_portdata_bytes: int = PORTDATA_DEFAULT_MAX

    def check_count(self, what: str, count: int, limit: int) -> None:
        if count > limit:
            raise LimitExceeded(f"{what}: more than {limit}")

    def check_interface(self, iface: Interface) -> None:
        """Refuse an interface (already validated) that exceeds a limit."""
        mac = iface.mac
        if (source := iface.source) is not None:
            self._check_vif(mac, "keys in source", len(source.attributes()), self.max_keys)
            if isinstance(source.address, dict):
                self._check_vif(mac, "keys in source address", len(source.address), self.max_keys)
        if (vport := iface.virtualport) is not None:
            self._check_vif(mac, "virtualport parameters", len(vport.parameters), self.max_keys)
            # A character is at most 4 bytes in UTF-8: only port data that may be
            # near the limit is encoded to be measured.
            if vport.portdata is not None and 4 * len(vport.portdata) > self.max_portdata_bytes:
                size = len(vport.portdata.encode("utf-8", "surrogatepass"))
                self._check_vif(mac, "bytes of port data", size, self.max_portdata_bytes)
        if iface.vlan is not None:
            self._check_vif(mac, "vlan tags", len(iface.vlan.tags), self.max_vlan_tags)

    def _check_vif(self, mac: str, what: str, count: int, limit: int) -> None:
        if count > limit:  # the text only for a refusal (every upload passes here)
            raise LimitExceeded(f"interface {mac}: {what}: more than {limit}")

    def check_interfaces(self, interfaces: Iterable[Interface]) -> None:
        for count, iface in enumerate(interfaces, 1):
            self.check_count("interfaces in one document", count, self.max_interfaces)
            self.check_interface(iface)


DEFAULT_LIMITS = Limits()
