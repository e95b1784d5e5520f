"""The backend plugin seam. Backends know nothing of the broker.

A backend owns one kind of local network plumbing (Open vSwitch, an
operator's command, nothing at all). The agent asks it four things:

* ``describe()``  what it is and whether it can run here (sent in heartbeats);
* ``collect()``   on the source: fill each handled interface's port data;
* ``apply()``     on the destination: write every vif of one domain at once;
* ``inspect()``   what the local port for each MAC holds now (None: no port).

Errors (tree)::

    BackendError
    ├── BackendUnavailable   the local daemon/tool is down or missing (retry)
    ├── BackendTimeout       a call ran past its timeout (retry)
    └── PortNotFound         no local port for that domain + MAC (yet)
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from vifbroker.model import BackendInfo, Interface


class BackendError(Exception):
    """Root of every backend error."""


class BackendUnavailable(BackendError):
    pass


class BackendTimeout(BackendError):
    pass


class PortNotFound(BackendError):
    """No local port (yet) for one or more MACs; nothing was written. Retry later.

    ``mac`` is the first missing MAC, ``missing`` all of them.
    """

    def __init__(self, domain_uuid: str, mac: str, missing: Sequence[str] = ()) -> None:
        self.missing = tuple(missing) or (mac,)
        super().__init__(f"no local port for domain {domain_uuid} mac {', '.join(self.missing)}")
        self.domain_uuid = domain_uuid
        self.mac = mac


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    mac: str
    outcome: Outcome
    detail: str | None = None
    #: sha256 hex of the port data read back after the write (applied only)
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class LocalPort:
    """A local port that belongs to a domain's vif."""

    mac: str
    name: str
    portdata: str | None


@dataclass(frozen=True, slots=True)
class PortEvent:
    """A change seen on the local switch: a port appeared, changed or went away."""

    domain_uuid: str
    mac: str
    name: str
    portdata: str | None
    removed: bool = False


class Backend(abc.ABC):
    #: entry point name in group ``vifbroker.backends``
    name: str = ""

    @abc.abstractmethod
    async def describe(self) -> BackendInfo: ...

    @abc.abstractmethod
    def handles(self, interface: Interface) -> bool:
        """Whether this backend owns ``interface`` on this host."""

    @abc.abstractmethod
    async def collect(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[Interface]:
        """Return ``interfaces`` with port data read from local state (source side)."""

    @abc.abstractmethod
    async def apply(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[ApplyResult]:
        """Write every interface's port data in one step; one result per interface."""

    @abc.abstractmethod
    async def inspect(
        self, domain_uuid: str, macs: Sequence[str]
    ) -> dict[str, LocalPort | None]: ...

    async def watch(self) -> AsyncIterator[PortEvent]:
        """Stream local port changes; backends without a feed yield nothing."""
        return
        yield  # pragma: no cover

    async def start(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Start long-lived helpers (monitors, worker pools)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Stop them."""
