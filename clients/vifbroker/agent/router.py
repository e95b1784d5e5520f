"""Which local backend owns which interface."""

from __future__ import annotations

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


def describe_interface(interface: Interface) -> str:
    vp = interface.virtualport_type
    return f"type={interface.type}" + (f" virtualport={vp}" if vp else "")
