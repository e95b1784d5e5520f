"""The seam between the Open vSwitch backend and the way it reaches OVSDB.

Two drivers: ``vsctl`` (short-lived processes: ``ovsdb-client query`` and
``transact``, ``ovs-vsctl``, ``ovsdb-client monitor``; the default) and
``native`` (one persistent OVSDB connection through the ``ovs``
package's IDL). The backend owns the rules (which vifs to write, what a read
back must show, retry on a stale row); a driver only finds, writes and
watches rows.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..base import BackendError, PortEvent
from .rows import Port

DRIVERS = ("vsctl", "native")


class StalePort(BackendError):
    """A row the write named is gone (a port deleted since the lookup): look up and retry."""


class OvsdbError(BackendError):
    """The database refused the transaction itself: not worth a retry as is."""


@dataclass(frozen=True, slots=True)
class Write:
    """Set (``portdata`` a string) or remove (None) the PortData of one Interface row.

    ``tag``: the vm-id and attached-mac (as stored) the row must still carry
    for the write to happen; a driver that can check it inside the
    transaction raises :class:`StalePort` instead of writing a re-plugged row.
    """

    uuid: str
    portdata: str | None
    tag: tuple[str, str] | None = None


class OvsDriver(abc.ABC):
    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the database answers; raise a BackendError when it does not."""

    async def bridges(self) -> list[str] | None:
        """The names of the bridges, sorted; None when this driver cannot tell."""
        return None

    @abc.abstractmethod
    async def ports(self, domain: str) -> dict[str, Port]:
        """This domain's ports by MAC as the database holds them now (empty: none)."""

    def seen_ports(self, domain: str) -> dict[str, Port] | None:
        """This domain's ports as last seen, without asking the database; None: unknown.

        Maybe stale: good only to name rows for a write that checks them
        (:attr:`Write.tag`), never to answer what a port holds.
        """
        return None

    @abc.abstractmethod
    async def write(self, writes: Sequence[Write]) -> dict[str, Port]:
        """Apply ``writes`` in ONE transaction; the tagged rows read back, by row UUID.

        Raises :class:`StalePort` when a named row no longer exists (nothing
        written).
        """

    def refuse(self, portdata: str) -> str | None:
        """Why this driver cannot write ``portdata`` (beyond the backend's own checks)."""
        return None

    @abc.abstractmethod
    def watch(self) -> AsyncIterator[PortEvent]:
        """Every tagged port once, then each change, across reconnects, until closed."""

    @abc.abstractmethod
    async def close(self) -> None: ...
