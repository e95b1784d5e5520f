"""Who may touch a migration, and what an agent learns when it may not.

A controller may do everything. An agent is a *party* to a migration when
its host is the source or the destination; the agent that registered it is
its *registrar*. For an agent, anything about a migration it is not a party
to answers exactly as something that does not exist: 404, the same problem
type, the same detail text (built from the request only, never from what the
store holds). A party whose part does not allow the action gets 403.

Every check here happens before a body is read, so a caller with no business
with a migration costs the broker one indexed read.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from vifbroker.model import Migration
from vifbroker.store import NoActiveMigration, Parties, WrongHost
from vifbroker.store import NotFound as StoreNotFound

from .auth import Principal
from .context import Context
from .errors import Forbidden, NotFound


class Part(enum.Enum):
    SOURCE = "source"
    DESTINATION = "destination"
    REGISTRAR = "registrar"


def parts_of(migration: Migration | Parties, host: str | None) -> frozenset[Part]:
    """The parts ``host`` plays in ``migration`` (empty: not a party)."""
    if host is None:
        return frozenset()
    found = set()
    if migration.source_host == host:
        found.add(Part.SOURCE)
    if migration.destination_host == host:
        found.add(Part.DESTINATION)
    if migration.registered_by == host:
        found.add(Part.REGISTRAR)
    return frozenset(found)


def unknown_migration(migration_id: str) -> NotFound:
    """What an unknown migration, or one the caller is no party to, answers."""
    return NotFound(f"no migration {migration_id}")


def check_part(
    who: Principal,
    migration: Migration | Parties,
    allowed: frozenset[Part],
    hide: Callable[[], NotFound],
) -> None:
    """Pass a controller or an agent playing one of ``allowed``; ``hide()`` for a
    non-party (made only then: a refusal is the rare case)."""
    if who.is_controller:
        return
    parts = parts_of(migration, who.host)
    if not parts:
        raise hide()
    if not parts & allowed:
        names = " or ".join(sorted(p.value for p in allowed))
        raise Forbidden(f"only the migration's {names} may do this")


_Read = TypeVar("_Read", Migration, Parties)


async def _checked(
    read: Awaitable[_Read], who: Principal, migration_id: str, allowed: frozenset[Part]
) -> _Read:
    try:
        found = await read
    except StoreNotFound:
        raise unknown_migration(migration_id) from None
    check_part(who, found, allowed, functools.partial(unknown_migration, migration_id))
    return found


async def migration_for(
    ctx: Context, who: Principal, migration_id: str, allowed: frozenset[Part]
) -> Migration:
    """The migration, when ``who`` may act on it in one of the ``allowed`` parts."""
    return await _checked(ctx.store.get_migration(migration_id), who, migration_id, allowed)


async def parties_for(
    ctx: Context, who: Principal, migration_id: str, allowed: frozenset[Part]
) -> Parties:
    """:func:`migration_for`'s check and refusals, reading only who takes part
    (the same cost however many vifs the migration holds)."""
    return await _checked(ctx.store.parties(migration_id), who, migration_id, allowed)


def _no_records(domain_uuid: str, mac: str | None) -> NotFound:
    what = f"interface {mac} of domain {domain_uuid}" if mac else f"domain {domain_uuid}"
    return NotFound(f"no records for {what}")


async def check_reader(ctx: Context, who: Principal, domain_uuid: str, mac: str | None) -> None:
    """A reader of the domain's records: a controller, or a party to its latest migration."""
    if who.is_controller:
        return
    hide = functools.partial(_no_records, domain_uuid, mac)
    try:
        owner = await ctx.store.latest_migration(domain_uuid)
    except StoreNotFound:
        raise hide() from None
    check_part(who, owner, frozenset({Part.SOURCE, Part.DESTINATION}), hide)


@contextmanager
def records_hidden(domain_uuid: str, mac: str | None) -> Iterator[None]:
    """Answer the store's "no such record" with the detail a hidden one gets."""
    try:
        yield
    except StoreNotFound:
        raise _no_records(domain_uuid, mac) from None


def no_upload(domain_uuid: str) -> NotFound:
    """What a domain the caller may not upload for (or with nothing to upload to) answers."""
    return NotFound(f"no active migration of domain {domain_uuid} to upload to")


_SOURCE = frozenset({Part.SOURCE})


async def check_uploader(ctx: Context, who: Principal, domain_uuid: str) -> None:
    """An uploader: a controller, or the source of the domain's active migration."""
    if who.is_controller:
        return
    try:
        # Who takes part, not the whole migration: the same cost however many vifs it has.
        active = await ctx.store.active_parties(domain_uuid)
    except NoActiveMigration:
        raise no_upload(domain_uuid) from None
    if active.source_host != who.host:  # the one part allowed: checked without building more
        check_part(who, active, _SOURCE, functools.partial(no_upload, domain_uuid))


class upload_hidden:
    """For an agent, the store's own checks (made again inside the write, where a
    concurrent change may have moved the migration) answer as a hidden one.

    A class, not ``@contextmanager``: every upload enters it, and a generator's
    enter and exit cost three times as much."""

    __slots__ = ("domain_uuid", "who")

    def __init__(self, who: Principal, domain_uuid: str) -> None:
        self.who, self.domain_uuid = who, domain_uuid

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if isinstance(exc, NoActiveMigration | WrongHost) and not self.who.is_controller:
            raise no_upload(self.domain_uuid) from None
