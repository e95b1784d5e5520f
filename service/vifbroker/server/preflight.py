"""``POST /v1/hosts/{host}/preflight``: can that host honour these vifs? Stores nothing.

The verdicts come from :func:`vifbroker.model.preflight.preflight` (pure); this
handler only reads the body, the host as last reported, and the policy.
"""

from __future__ import annotations

import logging

from aiohttp import web

from vifbroker.model.preflight import preflight
from vifbroker.store import NotFound as HostNotFound

from .auth import Principal
from .config import Settings
from .context import CTX
from .errors import Forbidden, Invalid, Malformed
from .media import INTERFACE_TYPES, read_body
from .middleware import Routes, principal
from .params import path_host
from .render import json_response

log = logging.getLogger(__name__)


def may_create_to(who: Principal, settings: Settings) -> None:
    """Who may ask: whoever may create a migration to the host — a controller, or an
    agent where agents register migrations themselves (``--agent-migrations``)."""
    if who.is_controller:
        return
    if not settings.agent_migrations:
        raise Forbidden("only a controller may ask (the broker runs without --agent-migrations)")


async def post_preflight(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = path_host(request)
    may_create_to(principal(request), ctx.settings)
    policy = request.query.get("on_backend_mismatch", "skip")
    if policy not in ("skip", "fail"):
        raise Malformed("on_backend_mismatch must be skip or fail")
    media, body = await read_body(request, INTERFACE_TYPES, ctx.settings)
    doc = await ctx.bodies.interfaces(media, body, many=True)
    if not doc.interfaces:
        raise Invalid("the document holds no <interface>")
    interfaces = doc.interfaces
    try:
        host = await ctx.store.get_host(name)
    except HostNotFound:
        host = None
    answer = preflight(
        name,
        host,
        interfaces,
        now=ctx.now(),
        heartbeat_interval=ctx.settings.heartbeat_interval_seconds,
        on_backend_mismatch="fail" if policy == "fail" else "skip",
    )
    failed = sum(v.verdict == "fail" for v in answer.verdicts)
    log.info("preflight host=%s vifs=%d fail=%d", name, len(answer.verdicts), failed)
    return json_response(answer.model_dump(mode="json"))


def add_routes(routes: Routes) -> None:
    routes.post("/v1/hosts/{host}/preflight", post_preflight)
