"""``GET /v1/events``: Server-Sent Events of migration changes, resumable by revision."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .connections import disconnected
from .context import CTX
from .middleware import Routes, prepare, principal
from .params import query_int, revision_header

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
_BATCH = 500


def _start_after(request: web.Request) -> int:
    last = revision_header(request, "Last-Event-ID")
    if last is not None:
        return last
    return query_int(request, "after", 0, 0, 2**63 - 1)


async def events(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    principal(request).require_controller()
    after = _start_after(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await prepare(request, response)
    loop = asyncio.get_running_loop()
    gone = disconnected(request)
    try:
        await response.write(b": stream open\n\n")
        keepalive_at = loop.time() + KEEPALIVE_SECONDS
        while not ctx.longpolls.stopping and not (gone is not None and gone.done()):
            seen = ctx.longpolls.revision
            # Each migration as its JSON text (from the watch cache: rendered once
            # per change, the text its inbox items carry too).
            batch = await ctx.store.events_page(after, limit=_BATCH)
            if batch:  # one write for the batch (was one per migration)
                await response.write(
                    "".join(
                        f"id: {revision}\nevent: migration\ndata: {data}\n\n"
                        for revision, data in batch
                    ).encode("utf-8")
                )
                after = max(after, *(revision for revision, _ in batch))
            if len(batch) >= _BATCH or ctx.longpolls.revision != seen:
                continue
            woke = await ctx.longpolls.park("*", keepalive_at - loop.time(), gone)
            if not woke and loop.time() >= keepalive_at:
                await response.write(b": keepalive\n\n")
                keepalive_at = loop.time() + KEEPALIVE_SECONDS
    except ConnectionResetError:
        log.debug("event stream closed by the client")
    return response


def add_routes(routes: Routes) -> None:
    routes.get("/v1/events", events)
