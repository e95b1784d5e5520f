"""Migration routes: create, list, read (with the applied barrier), complete, cancel.

Results are posted through :mod:`.results`."""

from __future__ import annotations

import logging

from aiohttp import web

from vifbroker.model import Migration, MigrationCreate, MigrationState, normalize_uuid
from vifbroker.store import Conflict as StoreConflict

from .access import Part, migration_for
from .connections import disconnected
from .context import CTX
from .errors import Conflict, Malformed
from .media import JSON_TYPES, read_body
from .middleware import Routes, principal
from .params import query_float, query_int
from .registration import admit_create
from .render import json_response, migration_doc

log = logging.getLogger(__name__)

BARRIER_DEFAULT_SECONDS = 30.0
_BARRIER_DONE = frozenset({MigrationState.APPLIED, MigrationState.FAILED})
_READERS = frozenset({Part.SOURCE, Part.DESTINATION})
_COMPLETERS = frozenset({Part.REGISTRAR})
_CANCELLERS = frozenset({Part.SOURCE, Part.REGISTRAR})


def fields(migration: Migration) -> dict[str, str]:
    """The log record keys that name a migration (JSON keys, not message text)."""
    return {"migration": migration.id, "domain": migration.domain_uuid}


def _location(migration: Migration) -> dict[str, str]:
    return {"Location": f"/v1/migrations/{migration.id}"}


async def create_migration(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    _, body = await read_body(request, JSON_TYPES, ctx.settings)
    who = principal(request)
    req, registered_by = await admit_create(
        ctx, who, await ctx.bodies.model(body, MigrationCreate)
    )
    try:
        migration, created = await ctx.store.create_migration(
            req, ctx.now(), registered_by=registered_by
        )
    except StoreConflict:
        if who.is_controller:
            raise
        # The store names the other migration: not an agent's business.
        raise Conflict("the domain has another active migration, or the id is taken") from None
    if created:
        log.info(
            "migration created %s -> %s",
            migration.source_host,
            migration.destination_host,
            extra=fields(migration),
        )
    return json_response(
        migration_doc(migration), status=201 if created else 200, headers=_location(migration)
    )


async def list_migrations(request: web.Request) -> web.Response:
    principal(request).require_controller()
    q = request.query
    state = None
    if q.get("state"):
        try:
            state = MigrationState(q["state"])
        except ValueError:
            raise Malformed(f"unknown state {q['state']!r}") from None
    domain_uuid = q.get("domain_uuid") or None
    if domain_uuid is not None:
        try:
            domain_uuid = normalize_uuid(domain_uuid)
        except ValueError as exc:
            raise Malformed(str(exc)) from None
    cursor = q.get("cursor") or None
    limit = query_int(request, "limit", 100, 1, 500)
    migrations, next_cursor = await request.app[CTX].store.list_migrations(
        state=state,
        domain_uuid=domain_uuid,
        host=q.get("host") or None,
        cursor=cursor,
        limit=limit,
    )
    return json_response(
        {"migrations": [migration_doc(m) for m in migrations], "next_cursor": next_cursor}
    )


def _barrier_reached(migration: Migration) -> bool:
    return migration.state in _BARRIER_DONE or migration.state.terminal


async def get_migration(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    migration_id = request.match_info["id"]
    migration = await migration_for(ctx, principal(request), migration_id, _READERS)
    wait_for = request.query.get("wait_for")
    if wait_for is not None:
        if wait_for != "applied":
            raise Malformed("wait_for must be 'applied'")
        limit = min(60.0, ctx.settings.longpoll_max_seconds)
        timeout = query_float(request, "timeout", min(BARRIER_DEFAULT_SECONDS, limit), 0, 60)
        if not _barrier_reached(migration):
            migration = await ctx.longpolls.poll(
                f"migration:{migration_id}",
                min(timeout, limit),
                lambda: ctx.store.get_migration(migration_id),
                _barrier_reached,
                disconnected(request),
            )
    return json_response(migration_doc(migration))


async def _finish(request: web.Request, to: MigrationState) -> web.Response:
    """Move the migration to the terminal state ``to`` (complete, cancel)."""
    ctx = request.app[CTX]
    # Complete: the agent that registered it; cancel: also its source.
    allowed = _CANCELLERS if to is MigrationState.CANCELLED else _COMPLETERS
    migration = await migration_for(ctx, principal(request), request.match_info["id"], allowed)
    migration = await ctx.store.transition(migration.id, to, ctx.now())
    log.info("migration %s", to.value, extra=fields(migration))
    return json_response(migration_doc(migration))


async def complete_migration(request: web.Request) -> web.Response:
    return await _finish(request, MigrationState.COMPLETED)


async def cancel_migration(request: web.Request) -> web.Response:
    return await _finish(request, MigrationState.CANCELLED)


def add_routes(routes: Routes) -> None:
    routes.post("/v1/migrations", create_migration)
    routes.get("/v1/migrations", list_migrations)
    routes.get("/v1/migrations/{id}", get_migration)
    routes.post("/v1/migrations/{id}/complete", complete_migration)
    routes.post("/v1/migrations/{id}/cancel", cancel_migration)
