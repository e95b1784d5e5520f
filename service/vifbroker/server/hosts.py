"""Host routes: heartbeat, list, read, and the inbox long-poll."""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Callable

from aiohttp import web

from vifbroker.model import HostIn
from vifbroker.model.wire import InboxPage

from .connections import disconnected
from .context import CTX
from .errors import PayloadTooLarge
from .media import JSON_TYPES, read_body
from .middleware import Routes, principal
from .params import path_host, query_float, query_int
from .render import host_doc, json_bytes_response, json_response

log = logging.getLogger(__name__)

#: An inbox page's items: true when it has any (what a long-poll waits for).
_ITEMS: Callable[[InboxPage], object] = operator.attrgetter("items")

_MAX_REVISION = 2**63 - 1


async def heartbeat(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = path_host(request)
    principal(request).require_host(name)
    _, body = await read_body(request, JSON_TYPES, ctx.settings)
    info = await ctx.bodies.model(body, HostIn)
    limit = ctx.settings.max_running_domains
    if len(info.running_domains) > limit:
        raise PayloadTooLarge(f"running_domains: more than {limit}")
    host = await ctx.store.heartbeat(name, info, ctx.now())
    log.debug("heartbeat", extra={"host": name, "agent_version": info.agent_version})
    return json_response(host_doc(host))


async def list_hosts(request: web.Request) -> web.Response:
    principal(request).require_controller()
    hosts = await request.app[CTX].store.list_hosts()
    return json_response({"hosts": [host_doc(h) for h in hosts]})


async def get_host(request: web.Request) -> web.Response:
    name = path_host(request)
    principal(request).require_host(name)
    return json_response(host_doc(await request.app[CTX].store.get_host(name)))


async def inbox(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = path_host(request)
    principal(request).require_host(name)
    after = query_int(request, "after", 0, 0, _MAX_REVISION)
    wait = query_float(request, "wait", 0.0, 0.0, 60.0)
    wait = min(wait, ctx.settings.longpoll_max_seconds)

    # The store answers in wire form: the SQLite watch cache keeps each record
    # and migration rendered once per change, whichever host asks for it. (A
    # partial and an attrgetter, not a lambda and a function: no Python frame
    # of their own on a woken poll's way to its answer.)
    page = await ctx.longpolls.poll(
        f"host:{name}",
        wait,
        functools.partial(ctx.store.inbox_page, name, after),
        _ITEMS,  # has items
        disconnected(request),
    )
    return json_bytes_response(page.json())


def add_routes(routes: Routes) -> None:
    routes.put("/v1/hosts/{host}", heartbeat)
    routes.get("/v1/hosts", list_hosts)
    routes.get("/v1/hosts/{host}", get_host)
    routes.get("/v1/hosts/{host}/inbox", inbox)
