"""Migrations, per-vif records and their results, hosts, inbox items."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .ids import DomainUUID, Mac
from .interface import Interface

HOST_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"


class MigrationState(enum.StrEnum):
    PENDING = "pending"
    UPLOADED = "uploaded"
    APPLIED = "applied"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {MigrationState.COMPLETED, MigrationState.CANCELLED, MigrationState.EXPIRED}
)


class VifStatus(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"


OnMismatch = Literal["skip", "fail"]


def portdata_digest(portdata: str | None) -> str:
    """sha256 hex of the UTF-8 port data (the empty string when absent)."""
    return hashlib.sha256((portdata or "").encode("utf-8")).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MigrationCreate(_Model):
    domain_uuid: DomainUUID
    #: None: an agent registering an arriving domain leaves it to the broker, which
    #: takes the host that last reported the domain running
    source_host: str | None = Field(default=None, pattern=HOST_PATTERN)
    destination_host: str = Field(pattern=HOST_PATTERN)
    domain_name: str | None = Field(default=None, max_length=1024)
    ttl_seconds: int = Field(default=3600, ge=1, le=7 * 86400)
    on_backend_mismatch: OnMismatch = "skip"
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class VifResult(_Model):
    """The destination's outcome for one vif."""

    status: VifStatus = VifStatus.PENDING
    applied_generation: int = 0
    detail: str | None = None
    digest: str | None = None


class VifSummary(_Model):
    """A vif as shown inside a migration, with its timeline."""

    mac: Mac
    generation: int
    status: VifStatus
    applied_generation: int
    detail: str | None = None
    #: when the broker took the upload of ``generation``
    uploaded_at: datetime | None = None
    #: when the destination read back ``applied_generation`` (as it reported)
    applied_at: datetime | None = None


class Timeline(_Model):
    """When the guest resumed on the destination, against when its port data landed."""

    #: as the destination's agent reported it (libvirt's lifecycle event)
    resumed_at: datetime | None = None
    #: the latest ``applied_at`` of the vifs applied at their latest generation
    last_applied_at: datetime | None = None
    #: resumed_at - last_applied_at (negative: port data landed after the guest ran)
    margin_seconds: float | None = None
    #: some vif's port data was not (yet) applied when the guest resumed
    late: bool | None = None


def has_landed(status: str, generation: int, applied_generation: int, applied_at: object) -> bool:
    """A vif's data is on the destination: applied at its latest generation, at a known time
    (the same rule for models and for stored rows, whose times are integers)."""
    return (
        status == VifStatus.APPLIED and applied_generation == generation and applied_at is not None
    )


def timeline_of(vifs: Sequence[VifSummary], resumed_at: datetime | None) -> Timeline:
    """The migration's timeline from its vifs (pure; the store and tests share it)."""
    landed = [
        v.applied_at
        for v in vifs
        if v.applied_at is not None  # (narrows the type for max)
        and has_landed(v.status, v.generation, v.applied_generation, v.applied_at)
    ]
    last = max(landed) if landed else None
    if resumed_at is None:
        return Timeline(last_applied_at=last)
    pending = any(
        v.applied_generation != v.generation or v.status is VifStatus.PENDING for v in vifs
    )
    margin = (resumed_at - last).total_seconds() if last is not None else None
    late = pending or (margin is not None and margin < 0)
    return Timeline(
        resumed_at=resumed_at, last_applied_at=last, margin_seconds=margin, late=late
    )


class Migration(_Model):
    id: str
    domain_uuid: DomainUUID
    domain_name: str | None = None
    source_host: str
    destination_host: str
    state: MigrationState
    on_backend_mismatch: OnMismatch
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    revision: int
    interfaces: list[VifSummary] = Field(default_factory=list)
    #: the agent (host) that registered the migration (None: a controller did)
    registered_by: str | None = None
    timeline: Timeline = Field(default_factory=Timeline)


class VifRecord(_Model):
    """One stored record: the interface (port data purged when terminal) and its result."""

    domain_uuid: DomainUUID
    mac: Mac
    generation: int
    interface: Interface | None
    result: VifResult
    revision: int = 0


class ResultIn(_Model):
    mac: Mac
    generation: int = Field(ge=1)
    status: Literal["applied", "skipped", "failed"]
    detail: str | None = Field(default=None, max_length=4096)
    digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: when the destination read the value back (default: when the broker takes it)
    applied_at: datetime | None = None


class ResultsIn(_Model):
    results: list[ResultIn] = Field(min_length=1, max_length=4096)


#: migrations one host's results post may name (``POST /v1/hosts/{host}/results``)
MAX_RESULT_MIGRATIONS = 500


class MigrationResultsIn(ResultsIn):
    """One migration's results inside a host's batch."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class HostResultsIn(_Model):
    """Results for several migrations arriving on one host, in one request."""

    migrations: list[MigrationResultsIn] = Field(min_length=1, max_length=MAX_RESULT_MIGRATIONS)

    @model_validator(mode="after")
    def _once_each(self) -> HostResultsIn:
        _named_once([m.id for m in self.migrations], "migration")
        return self


def _named_once(keys: list[str], what: str) -> None:
    """A host's batch names each of its keys once (two entries for one would race)."""
    if len(set(keys)) != len(keys):
        raise ValueError(f"a {what} is named more than once")


#: domains one host's upload may name (``POST /v1/hosts/{host}/uploads``)
MAX_UPLOAD_DOMAINS = 500


class DomainInterfacesIn(_Model):
    """One domain's records inside a host's batch: what its own bulk upload would carry."""

    domain_uuid: DomainUUID
    # A hard ceiling for pydantic; the configured limits are checked per domain after.
    interfaces: list[Interface] = Field(min_length=1, max_length=65536)


class HostUploadsIn(_Model):
    """The records of several domains leaving one host, in one request."""

    domains: list[DomainInterfacesIn] = Field(min_length=1, max_length=MAX_UPLOAD_DOMAINS)

    @model_validator(mode="after")
    def _once_each(self) -> HostUploadsIn:
        _named_once([d.domain_uuid for d in self.domains], "domain")
        return self


class BackendInfo(_Model):
    """What a host's backend can do (sent in heartbeats, used for preflight).

    A backend handles an interface whose virtualport type is in
    ``virtualport_types`` or whose interface type is in ``interface_types``
    (``"*"``: any); both empty: none.
    """

    name: str = Field(max_length=128)
    #: whether the backend's local daemon/tool answered when the agent asked
    available: bool = True
    interface_types: list[str] = Field(default_factory=list, max_length=64)
    virtualport_types: list[str] = Field(default_factory=list, max_length=64)
    detail: str | None = Field(default=None, max_length=4096)
    #: the bridges that exist on the backend's switch (None: it has no such notion)
    bridges: list[str] | None = Field(default=None, max_length=4096)
    #: the largest port data (bytes, UTF-8) it writes (None: no limit of its own)
    max_portdata: int | None = Field(default=None, ge=0)


class HostIn(_Model):
    agent_version: str | None = Field(default=None, max_length=128)
    backends: list[BackendInfo] = Field(default_factory=list, max_length=64)
    #: UUIDs of the domains running on the host now (agent-registered migrations
    #: take their source host from these)
    running_domains: list[DomainUUID] = Field(default_factory=list, max_length=65536)


class Host(_Model):
    name: str
    last_seen: datetime
    agent_version: str | None = None
    backends: list[BackendInfo] = Field(default_factory=list)
    running_domains: list[str] = Field(default_factory=list)


class ResumedIn(_Model):
    """The destination agent's report that the guest resumed on its host."""

    at: datetime


class InboxItem(_Model):
    revision: int
    direction: Literal["incoming", "outgoing"]
    migration: Migration
    interfaces: list[VifRecord] = Field(default_factory=list)


class Inbox(_Model):
    revision: int
    items: list[InboxItem] = Field(default_factory=list)
