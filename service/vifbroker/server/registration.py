"""Who may create, complete and cancel a migration, and the destination's resume report.

Rules (DESIGN, issue 10): a controller may do everything. An agent may create a
migration as its source (the original rule); where the broker runs with
``--agent-migrations`` it may also register one as the destination of an
arriving domain, leaving ``source_host`` out: the broker takes the host that
last reported the domain running. Such a migration records who registered it
(``registered_by``), and that agent may complete or cancel it.

``POST /v1/migrations/{id}/resumed`` records when the guest resumed on the
destination; the margin (resume minus the last vif's landing) is observed
once per migration, when both are known.
"""

from __future__ import annotations

import logging

from aiohttp import web

from vifbroker.model import Migration, MigrationCreate, MigrationState, ResumedIn, VifStatus

from .auth import Principal
from .context import CTX, Context
from .errors import Forbidden, Invalid
from .media import JSON_TYPES, read_body
from .middleware import principal
from .render import json_response, migration_doc

log = logging.getLogger(__name__)


async def admit_create(
    ctx: Context, who: Principal, req: MigrationCreate
) -> tuple[MigrationCreate, str | None]:
    """The request as it will be stored, and who registers it (None: not an agent's own)."""
    if who.is_controller:
        if req.source_host is None:
            raise Invalid("source_host is required")
        return req, None
    if req.source_host is not None and req.source_host == who.host:
        return req, None  # the source announcing its own domain's move
    if not ctx.settings.agent_migrations or req.destination_host != who.host:
        raise Forbidden(f"agent {who.name!r} (host {who.host!r}) may not create this migration")
    running = await ctx.store.running_host(req.domain_uuid)
    source = req.source_host or running
    if source is None:
        raise Invalid(f"no host reported domain {req.domain_uuid} running; name source_host")
    if source == who.host:
        raise Invalid("the destination cannot be the domain's source")
    return req.model_copy(update={"source_host": source}), who.host


def may_finish(who: Principal, migration: Migration, to: MigrationState) -> None:
    """Complete: a controller or the registering agent; cancel: also the source."""
    if migration.registered_by is not None and who.host == migration.registered_by:
        return
    if to is MigrationState.CANCELLED:
        who.require_host(migration.source_host)  # the source may give up on it
    else:
        who.require_controller()


def _settled(m: Migration) -> bool:
    """Both ends of the margin are known: the resume, and every vif's landing."""
    return (
        m.timeline.resumed_at is not None
        and m.timeline.margin_seconds is not None
        and all(v.applied_generation == v.generation and v.status is not VifStatus.PENDING
                for v in m.interfaces)
    )  # fmt: skip


def observe_margin(ctx: Context, before: Migration, after: Migration) -> None:
    """Export the margin once: on the change that makes it known."""
    if _settled(after) and not _settled(before):
        margin = after.timeline.margin_seconds
        assert margin is not None
        ctx.metrics.resumed(margin)
        log.info(
            "guest resumed %.3f s after the last vif landed%s",
            margin,
            " (LATE)" if after.timeline.late else "",
            extra={"migration": after.id, "domain": after.domain_uuid},
        )


async def post_resumed(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    before = await ctx.store.get_migration(request.match_info["id"])
    principal(request).require_host(before.destination_host)
    _, body = await read_body(request, JSON_TYPES, ctx.settings)
    report = await ctx.bodies.model(body, ResumedIn)
    after = await ctx.store.record_resume(before.id, report.at, ctx.now())
    observe_margin(ctx, before, after)
    return json_response(migration_doc(after))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/migrations/{id}/resumed", post_resumed)
