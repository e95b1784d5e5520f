"""Diskless test guests and the OVS rows libvirt makes for their NICs (no I/O here)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from testkit import mac as mac

BRIDGE = "br-int"


@dataclass(frozen=True)
class OvsNic:
    """``<interface type='bridge'>`` on br-int with an openvswitch virtualport."""

    mac: str
    interfaceid: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: e1000 lets the NIC become ``type='user'`` on the destination (``migrate
    #: --xml``): virtio-net's state needs a tap with vnet_hdr on both sides
    model: str = "virtio"


@dataclass(frozen=True)
class UserNic:
    """``<interface type='user'>`` (QEMU slirp): a NIC that is not Open vSwitch."""

    mac: str


Nic = OvsNic | UserNic


@dataclass(frozen=True)
class Guest:
    name: str
    uuid: str
    nics: tuple[Nic, ...]

    @property
    def ovs_nics(self) -> tuple[OvsNic, ...]:
        return tuple(n for n in self.nics if isinstance(n, OvsNic))


def _interface_xml(nic: Nic) -> str:
    if isinstance(nic, UserNic):
        return (
            f"<interface type='user'><mac address={quoteattr(nic.mac)}/>"
            "<model type='virtio'/></interface>"
        )
    return (
        f"<interface type='bridge'><source bridge='{BRIDGE}'/>"
        "<virtualport type='openvswitch'>"
        f"<parameters interfaceid={quoteattr(nic.interfaceid)}/></virtualport>"
        f"<mac address={quoteattr(nic.mac)}/><model type={quoteattr(nic.model)}/></interface>"
    )


def domain_xml(guest: Guest) -> str:
    """The recipe's minimal diskless guest: 64 MiB, TCG, no disk/video/balloon."""
    nics = "\n    ".join(_interface_xml(n) for n in guest.nics)
    return f"""<domain type='qemu'>
  <name>{guest.name}</name>
  <uuid>{guest.uuid}</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
    {nics}
  </devices>
</domain>
"""


@dataclass(frozen=True)
class OvsPort:
    """One OVSDB Interface row that libvirt created for a guest NIC."""

    uuid: str
    name: str
    external_ids: dict[str, str]

    @property
    def portdata(self) -> str | None:
        return self.external_ids.get("PortData")


def new_guest(nics: Sequence[Nic], name: str | None = None) -> Guest:
    vm_uuid = str(uuid.uuid4())
    return Guest(name or f"vb-{vm_uuid[:8]}", vm_uuid, tuple(nics))

