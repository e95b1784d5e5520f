"""The backend plugin seam. Backends know nothing of the broker.

A backend owns one kind of local network plumbing (Open vSwitch, an
operator's command, nothing at all). The agent asks it four things:

* ``describe()``  what it is and whether it can run here (sent in heartbeats);
* ``collect()``   on the source: fill each handled interface's port data;
* ``apply()``     on the destination: write every vif of one domain at once;
* ``inspect()``   what the local port for each MAC holds now (None: no port).

Each backend declares its own options (like os-vif's ``CONFIG_OPTS``): a
:class:`BackendOptions` model whose fields are the keywords of its
constructor. The agent's command line offers every field of every installed
backend as ``--<option_prefix>-<field>``, so a backend added through the
``vifbroker.backends`` entry point is configured like a shipped one.

apply() reports what it *read back* after writing (``ApplyResult.readback``);
it does not judge it. The agent turns that into the digest it posts and the
broker compares it with what was uploaded: one owner for that rule.

Errors (tree)::

    BackendError
    ├── BackendUnavailable   the local daemon/tool is down or missing (retry)
    ├── BackendTimeout       a call ran past its timeout (retry)
    └── PortNotFound         no local port for that domain + MAC (yet)
"""

from __future__ import annotations

import abc
import enum
import shlex
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

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
    #: the port data read back from local state after the write (applied only;
    #: None when the port holds none)
    readback: str | None = None


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


class BackendOptions(BaseModel):
    """A backend's settings. Subclass it with one field per constructor keyword.

    Every field becomes a command-line option ``--<prefix>-<field-name>``
    (underscores as dashes; its ``description`` is the help text). Values
    arrive as strings from the command line and are converted by pydantic;
    a ``bool`` field is a flag.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def split_words(value: Any) -> Any:
    """A command line (``"cmd --flag 'a b'"``) as argv, split like a shell would."""
    return shlex.split(value) if isinstance(value, str) else value


def split_commas(value: Any) -> Any:
    """``"a,b"`` → ``["a", "b"]`` (a list option given on the command line)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Backend(abc.ABC):
    #: entry point name in group ``vifbroker.backends``
    name: ClassVar[str] = ""
    #: this backend's options: fields are the constructor's keywords
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    #: command-line prefix of its options (``--ovs-db``); empty: the name
    option_prefix: ClassVar[str] = ""

    @classmethod
    def cli_prefix(cls) -> str:
        return cls.option_prefix or cls.name

    @classmethod
    def from_options(cls, options: BackendOptions) -> Backend:
        """Build the backend from its validated options."""
        return cls(**dict(options))

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
