"""The Store protocol: everything the broker keeps, with no notion of HTTP.

Every implementation runs the same contract suite (tests/store/). Each write is
durable before it returns, and only then published on ``hub`` so a long-poll
never hands out anything not yet on disk.

Hub keys published for a change to migration M: ``migration:<M.id>``,
``host:<M.source_host>``, ``host:<M.destination_host>``, ``domain:<M.domain_uuid>``;
for a heartbeat: ``hosts``. Every publish also wakes ``*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vifbroker.model import (
    Host,
    HostIn,
    Inbox,
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
    VifRecord,
    VifStatus,
)
from vifbroker.model.wire import InboxPage

from .hub import ChangeHub


@dataclass(frozen=True, slots=True)
class Parties:
    """Who takes part in a migration: what an authorization check needs, and no more."""

    migration_id: str
    source_host: str
    destination_host: str
    registered_by: str | None


@dataclass(frozen=True, slots=True)
class Prior:
    """A vif a results post wrote, as it stood before that post."""

    status: VifStatus
    applied_generation: int
    applied_at: datetime | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a results post did: the migration after it, and each vif it wrote as it
    stood before (by MAC; a result for an older generation writes nothing).

    What the broker needs to tell which results changed a vif, with no read before the write.
    """

    migration: Migration
    prior: dict[str, Prior]


@dataclass(frozen=True, slots=True)
class Uploaded:
    """What an upload did: the new generation of each vif written, and where
    their migration stands after it.

    Not the whole migration, nor the records (the caller sent them): an upload
    costs the same however many vifs its migration already holds.
    """

    migration_id: str
    state: MigrationState
    revision: int
    #: ``(mac, generation)`` of each vif written, in the order they were sent.
    generations: list[tuple[str, int]]


class Store(Protocol):
    hub: ChangeHub

    async def open(self) -> None:
        """Connect, create or migrate the schema, start background writers."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    async def probe_write(self, timeout: float) -> None:  # noqa: ASYNC109
        """Make a real (tiny) write within ``timeout`` seconds, else raise StoreUnavailable.

        What readiness means: this replica can take writes now (and, with
        several replicas, hears the others' commits).
        """

    async def current_revision(self) -> int: ...

    async def count_by_state(self) -> dict[MigrationState, int]:
        """Number of migrations in each state (for metrics)."""

    # migrations
    async def create_migration(
        self, req: MigrationCreate, now: datetime, *, registered_by: str | None = None
    ) -> tuple[Migration, bool]:
        """Create (True) or, for the same ``id`` and body, return the existing one (False).

        Conflict when another active migration exists for the domain or the id is
        taken with a different body. ``registered_by``: the host of the agent that
        registers it (None: a controller). ``req.source_host`` must be set.
        """

    async def get_migration(self, migration_id: str) -> Migration:
        """NotFound when unknown."""

    async def parties(self, migration_id: str) -> Parties:
        """Who takes part in the migration (no vif read), or NotFound when unknown."""

    async def list_migrations(
        self,
        *,
        state: MigrationState | None = None,
        domain_uuid: str | None = None,
        host: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Migration], str | None]:
        """Newest first; the second element is the cursor of the next page, if any."""

    async def transition(self, migration_id: str, to: MigrationState, now: datetime) -> Migration:
        """Move to a terminal state (completed, cancelled) and purge port data.

        Repeating the same terminal transition is a no-op; any other move out of a
        terminal state is InvalidTransition.
        """

    async def expire(self, now: datetime) -> list[str]:
        """Expire active migrations past ``expires_at``; return their ids."""

    async def prune(self, older_than: datetime) -> int:
        """Delete terminal migrations last updated before ``older_than``."""

    # records
    async def active_migration(self, domain_uuid: str) -> Migration:
        """The domain's active migration, or NoActiveMigration."""

    async def active_parties(self, domain_uuid: str) -> Parties:
        """Who takes part in the domain's active migration (one indexed read, whatever
        the migration holds), or NoActiveMigration."""

    async def put_interfaces(
        self,
        domain_uuid: str,
        interfaces: Sequence[Interface],
        now: datetime,
        *,
        if_match: dict[str, int] | None = None,
        source_host: str | None = None,
        max_vifs: int | None = None,
    ) -> Uploaded:
        """Store new generations of these vifs in the active migration, atomically.

        ``if_match`` maps MAC to the generation the writer last saw
        (PreconditionFailed when it is not the current one; 0 = must not exist).
        ``source_host``, when given, must be the migration's source (else WrongHost):
        the check and the write happen in one transaction. A MAC named twice
        is InvalidInput. ``max_vifs``, when given, bounds the vifs the
        migration may hold after the write (else TooManyVifs, nothing written).
        """

    async def latest_migration(self, domain_uuid: str) -> Migration:
        """The domain's active migration, else its newest one; NotFound when none."""

    async def get_interfaces(self, domain_uuid: str, mac: str | None = None) -> list[VifRecord]:
        """Records of the domain's active migration (else its latest one)."""

    async def post_results(
        self, migration_id: str, results: Sequence[ResultIn], now: datetime
    ) -> Migration:
        """Record destination results; a result for an old generation changes nothing."""

    async def record_results(
        self, migration_id: str, results: Sequence[ResultIn], now: datetime
    ) -> Recorded:
        """:meth:`post_results`, also telling how each vif written stood before."""

    async def record_resume(self, migration_id: str, at: datetime, now: datetime) -> Migration:
        """Note that the guest resumed on the destination at ``at`` (the first report
        counts; later ones change nothing). Conflict when the migration is terminal."""

    # inbox
    async def inbox(self, host: str, after: int, limit: int = 500) -> Inbox:
        """Items of migrations where ``host`` is source or destination, changed after ``after``."""

    async def inbox_page(self, host: str, after: int, limit: int = 500) -> InboxPage:
        """:meth:`inbox` in wire form (what the inbox route answers)."""

    async def events(self, after: int, limit: int = 500) -> list[Migration]:
        """Migrations changed after ``after``, by revision."""

    async def events_page(self, after: int, limit: int = 500) -> list[tuple[int, str]]:
        """:meth:`events` in wire form: each migration's revision and JSON text."""

    # hosts
    async def heartbeat(self, name: str, info: HostIn, now: datetime) -> Host: ...

    async def get_host(self, name: str) -> Host: ...

    async def list_hosts(self) -> list[Host]: ...

    async def running_hosts(self, domain_uuid: str) -> list[Host]:
        """The hosts whose last report names ``domain_uuid`` running, most recent first
        (during a migration both ends may: the destination's domain exists, paused)."""
