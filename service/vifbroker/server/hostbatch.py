"""What the routes carrying many keys for one host share.

``POST /v1/hosts/{host}/uploads`` and ``POST /v1/hosts/{host}/results`` take
one body naming many domains or migrations of that host; each is handled as
its own request would be, and a refused one answers a problem document of its
own in the list while the others still land.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from vifbroker.store import StoreError

from .auth import Principal
from .context import CTX, Context
from .errors import Problem, from_store_error
from .media import JSON_TYPES, read_body
from .middleware import principal
from .params import path_host

M = TypeVar("M", bound=BaseModel)


async def host_body(request: web.Request, model: type[M]) -> tuple[Context, Principal, str, M]:
    """The context, the caller (allowed to act for the path's host), the host and the body."""
    ctx = request.app[CTX]
    host = path_host(request)
    who = principal(request)
    who.require_host(host)
    _, body = await read_body(request, JSON_TYPES, ctx.settings)
    return ctx, who, host, await ctx.bodies.model(body, model)


def refused(field: str, key: str, exc: Problem | StoreError) -> dict[str, Any]:
    """One key's entry in the answer's list when it was refused."""
    problem = exc if isinstance(exc, Problem) else from_store_error(exc)
    return {field: key, "problem": problem.body()}
