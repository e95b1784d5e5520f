"""The per-vif record: a generic subset of libvirt's ``<interface>`` element.

The JSON field names below are the wire contract; ``codec`` maps them to and
from libvirt's XML spelling. Everything here is pure data: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .ids import Mac
from .xmlsafe import PortDataText, XmlName, XmlText

#: the one default cap on port data (bytes, UTF-8): the broker's upload limit and
#: the Open vSwitch backend's write limit
PORTDATA_DEFAULT_MAX = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(BaseModel):
    """``<source>``: its attributes as they are (bridge, network, dev, mode, ...).

    hostdev interfaces carry a child ``<address>``; it is kept as a mapping.
    udp/mcast/server/client interfaces carry an ``address`` *attribute*; it is
    kept as a string. libvirt never uses both on one ``<source>``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[XmlName, XmlText] = Field(init=False)

    address: dict[XmlName, XmlText] | XmlText | None = None

    def attributes(self) -> dict[str, str]:
        return dict(self.__pydantic_extra__ or {})


class VirtualPort(_Strict):
    # Parameters are kept as given, whatever the type: libvirt validates them
    # per virtualport type, and a backend reads only the ones it knows.
    type: XmlText | None = None
    parameters: dict[XmlName, XmlText] = Field(default_factory=dict)
    portdata: PortDataText | None = None


class VlanTag(_Strict):
    id: int = Field(ge=0, le=4095)
    native_mode: Literal["tagged", "untagged"] | None = None


class Vlan(_Strict):
    trunk: bool | None = None
    tags: list[VlanTag] = Field(min_length=1, max_length=4096)


class Rate(_Strict):
    average: int | None = Field(default=None, ge=0)
    peak: int | None = Field(default=None, ge=0)
    burst: int | None = Field(default=None, ge=0)
    floor: int | None = Field(default=None, ge=0)


class Bandwidth(_Strict):
    inbound: Rate | None = None
    outbound: Rate | None = None


class Interface(_Strict):
    """One virtual NIC, keyed by ``mac`` within a domain."""

    mac: Mac
    type: XmlText = "bridge"
    source: Source | None = None
    target_dev: XmlText | None = None
    model: XmlText | None = None
    virtualport: VirtualPort | None = None
    vlan: Vlan | None = None
    mtu: int | None = Field(default=None, ge=68, le=65535)
    link_state: Literal["up", "down"] | None = None
    bandwidth: Bandwidth | None = None

    @property
    def portdata(self) -> str | None:
        return self.virtualport.portdata if self.virtualport else None

    @property
    def virtualport_type(self) -> str | None:
        return self.virtualport.type if self.virtualport else None

    def with_portdata(self, portdata: str | None) -> Interface:
        """A copy whose ``<virtualport>`` carries ``portdata``."""
        vp = self.virtualport or VirtualPort(type=None)
        return self.model_copy(update={"virtualport": vp.model_copy(update={"portdata": portdata})})

    def without_portdata(self) -> Interface:
        if self.virtualport is None or self.virtualport.portdata is None:
            return self
        return self.with_portdata(None)
