"""Who may create, complete and cancel a migration, and the destination's resume report.

Rules (DESIGN, issues 8 and 10): a controller may do everything. An agent may
create a migration only where the broker runs with ``--agent-migrations``: as
the source of a domain its own host reports running, or as the destination
of an arriving domain, leaving ``source_host`` out: the broker takes the host
that reports the domain running. Such a migration records who registered it
(``registered_by``), and that agent may complete or cancel it (server/access.py).

``POST /v1/migrations/{id}/resumed`` records when the guest resumed on the
destination; the margin (resume minus the last vif's landing) is observed
once per migration, when both are known.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from vifbroker.model import Migration, MigrationCreate, ResumedIn, VifStatus, timeline_of
from vifbroker.store import Recorded

from .access import Part, migration_for
from .auth import Principal
from .context import CTX, Context
from .errors import Forbidden, Invalid
from .media import JSON_TYPES, read_body
from .middleware import Routes, principal
from .render import json_response, migration_doc

log = logging.getLogger(__name__)


async def admit_create(
    ctx: Context, who: Principal, req: MigrationCreate
) -> tuple[MigrationCreate, str | None]:
    """The request as it will be stored, and who registers it (None: not an agent's own).

    A controller may create any migration. An agent only where the broker runs
    with ``--agent-migrations``, and only for a domain a host reports running
    (heartbeats, fresh within three intervals): as the source, for a domain its
    own host runs; as the destination of an arriving domain, where the source
    is the host that runs it (``source_host`` may be left out). Source and
    destination always differ.
    """
    if who.is_controller:
        if req.source_host is None:
            raise Invalid("source_host is required")
        _distinct(req.source_host, req.destination_host)
        return req, None
    if not ctx.settings.agent_migrations:
        raise Forbidden("agents may not create migrations (no --agent-migrations)")
    running = await running_hosts(ctx, req.domain_uuid)
    if req.destination_host == who.host and req.source_host != who.host:
        # The arriving domain exists here too (paused): the source is the other
        # host that reports it running, whichever of the two reported last.
        others = [name for name in running if name != who.host]
        source = req.source_host or (others[0] if others else None)
        if source is None:
            raise Invalid(
                f"no other host reports domain {req.domain_uuid} running; cannot register it"
            )
        if source not in others:
            raise Invalid(f"domain {req.domain_uuid} is not reported running on {source}")
        _distinct(source, req.destination_host)
        return req.model_copy(update={"source_host": source}), who.host
    if req.source_host is not None and req.source_host == who.host:
        _distinct(req.source_host, req.destination_host)
        if who.host not in running:
            raise Forbidden(f"host {who.host} has not reported domain {req.domain_uuid} running")
        return req, None
    raise Forbidden("an agent may create a migration only as its source or its destination")


def _distinct(source: str, destination: str) -> None:
    if source == destination:
        raise Invalid(
            "source_host and destination_host must differ",
            [{"loc": ["body", "destination_host"], "msg": "equals source_host"}],
        )


async def running_hosts(ctx: Context, domain_uuid: str) -> list[str]:
    """The hosts whose fresh heartbeat (within three intervals) reports the domain
    running, most recent first."""
    stale = timedelta(seconds=3 * ctx.settings.heartbeat_interval_seconds)
    now = ctx.now()
    return [
        host.name
        for host in await ctx.store.running_hosts(domain_uuid)
        if now - host.last_seen <= stale
    ]


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


def observe_results_margin(ctx: Context, recorded: Recorded) -> None:
    """:func:`observe_margin` for a results post, whose migration before is the one
    after with the vifs it wrote as they stood (a results post does not move the
    resume). Built only when the margin is known after it: the rare case."""
    after = recorded.migration
    if not _settled(after):
        return
    vifs = [
        v.model_copy(update={"status": was.status, "applied_generation": was.applied_generation,
                             "applied_at": was.applied_at})
        if (was := recorded.prior.get(v.mac)) is not None else v
        for v in after.interfaces
    ]  # fmt: skip
    timeline = timeline_of(vifs, after.timeline.resumed_at)
    observe_margin(ctx, after.model_copy(update={"interfaces": vifs, "timeline": timeline}), after)


async def post_resumed(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    before = await migration_for(
        ctx, principal(request), request.match_info["id"], frozenset({Part.DESTINATION})
    )
    _, body = await read_body(request, JSON_TYPES, ctx.settings)
    report = await ctx.bodies.model(body, ResumedIn)
    after = await ctx.store.record_resume(before.id, report.at, ctx.now())
    observe_margin(ctx, before, after)
    return json_response(migration_doc(after))


def add_routes(routes: Routes) -> None:
    routes.post("/v1/migrations/{id}/resumed", post_resumed)
