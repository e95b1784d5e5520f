"""Which local backend owns which interface."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from vifbroker.backends import Backend
from vifbroker.model import Interface


class Router:
    """The first backend (in command-line order) whose ``handles()`` says yes."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)

    def owner(self, interface: Interface) -> Backend | None:
        for backend in self.backends:
            if backend.handles(interface):
                return backend
        return None

    def group(
        self, interfaces: Sequence[Interface]
    ) -> tuple[dict[str, tuple[Backend, list[Interface]]], list[Interface]]:
        """Split into {backend name: (backend, its interfaces)} and the unowned ones."""
        owned: dict[str, tuple[Backend, list[Interface]]] = {}
        unowned: list[Interface] = []
        for iface in interfaces:
            backend = self.owner(iface)
            if backend is None:
                unowned.append(iface)
            else:
                owned.setdefault(backend.name, (backend, []))[1].append(iface)
        return owned, unowned

    async def collect(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[Interface]:
        """``interfaces`` with the port data their owning backends read (source side).

        Each backend collects its own interfaces in one call, all backends at
        once; interfaces no backend owns come back as they are (the
        destination reports them). Backend errors propagate.
        """
        owned, _ = self.group(interfaces)
        filled: dict[str, Interface] = {}
        for collected in await asyncio.gather(
            *(backend.collect(domain_uuid, ifaces) for backend, ifaces in owned.values())
        ):
            filled.update((i.mac, i) for i in collected)
        return [filled.get(i.mac, i) for i in interfaces]


def describe_interface(interface: Interface) -> str:
    vp = interface.virtualport_type
    return f"type={interface.type}" + (f" virtualport={vp}" if vp else "")
