"""Interface rows as both drivers see them, and the port events their changes make.

A driver keeps a view ``{row uuid: PortRow}`` of the Interface table (name
and external_ids only) and turns each change of a row into
:class:`~vifbroker.backends.base.PortEvent` s with :func:`port_events`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from vifbroker.model import normalize_mac, normalize_uuid

from ..base import PortEvent
from .vsctl import PORTDATA_KEY

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16384)
def owner(vm_id: str, mac: str) -> tuple[str, str] | None:
    """(domain uuid, mac) normalized from a row's tags; None when the MAC is not one.

    Memoized: every change of a row (each write's echo on the monitor) asks
    again for tags that do not change, and parsing a UUID and a MAC is most
    of what turning a change into events costs.
    """
    try:
        mac = normalize_mac(mac)
    except ValueError:
        return None
    return domain_key(vm_id), mac


@functools.lru_cache(maxsize=16384)
def domain_key(vm_id: str) -> str:
    """A row's vm-id as the domain it names (a vm-id not a UUID: lower-cased, still matchable)."""
    try:
        return normalize_uuid(vm_id)
    except ValueError:
        return vm_id.lower()


@dataclass(frozen=True, slots=True)
class PortRow:
    name: str
    external_ids: dict[str, str]

    def port(self) -> tuple[str, str] | None:
        """(domain uuid, mac) when libvirt tagged this row, else None."""
        vm_id = self.external_ids.get("vm-id")
        mac = self.external_ids.get("attached-mac")
        if not vm_id or not mac:
            return None
        return owner(vm_id, mac)

    @property
    def portdata(self) -> str | None:
        return self.external_ids.get(PORTDATA_KEY)

    def tagged(self, uuid: str) -> Port | None:
        """This row as a domain's port, or None when libvirt did not tag it."""
        owner = self.port()
        if owner is None:
            return None
        tag = (self.external_ids["vm-id"], self.external_ids["attached-mac"])
        return Port(uuid, self.name, owner[0], owner[1], self.portdata, tag)


def port_events(old: PortRow | None, new: PortRow | None) -> list[PortEvent]:
    """What consumers must hear about one row going from ``old`` to ``new``."""
    before = old.port() if old else None
    after = new.port() if new else None
    events: list[PortEvent] = []
    if old and before and before != after:
        events.append(PortEvent(before[0], before[1], old.name, old.portdata, removed=True))
    if new is None or after is None:
        return events
    if old is None or before != after or old.name != new.name or old.portdata != new.portdata:
        events.append(PortEvent(after[0], after[1], new.name, new.portdata))
    return events


@dataclass(frozen=True, slots=True)
class Port:
    """An Interface row that libvirt tagged with a domain and a MAC."""

    uuid: str
    name: str
    domain: str
    mac: str
    portdata: str | None
    #: vm-id and attached-mac as the row stores them (``domain``, ``mac`` are normalized)
    tag: tuple[str, str] = ("", "")


def by_mac(ports: list[Port]) -> dict[str, Port]:
    found: dict[str, Port] = {}
    for port in sorted(ports, key=lambda p: p.name, reverse=True):
        if port.mac in found:
            # Two rows for one vif (an old port not yet deleted): one is
            # picked deterministically (lowest name) rather than writing both.
            log.warning(
                "domain %s mac %s has several ports: %s, %s",
                port.domain,
                port.mac,
                port.name,
                found[port.mac].name,
            )
        found[port.mac] = port
    return found
