"""Operations routes (no auth): liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from aiohttp import web

from vifbroker.store import StoreError

from .context import CTX
from .errors import NotFound, Unavailable
from .metrics import CONTENT_TYPE_LATEST
from .middleware import Routes
from .render import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready means "this replica can take a write now": a real, tiny write, in time."""
    ctx = request.app[CTX]
    try:
        await ctx.store.probe_write(ctx.settings.readiness_timeout_seconds)
    except StoreError as exc:
        raise Unavailable(f"the store cannot take a write: {exc}") from exc
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await ctx.metrics.render(ctx.store, ctx.now())
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def find_openapi() -> Path | None:
    """``openapi.yaml`` beside this package (a wheel), else at the repository root."""
    packaged = Path(str(importlib.resources.files(__package__ or "vifbroker.server")))
    repo_root = Path(__file__).resolve().parents[3]
    for candidate in (packaged / "openapi.yaml", repo_root / "openapi.yaml"):
        if candidate.is_file():
            return candidate
    return None


async def openapi(request: web.Request) -> web.Response:
    path = find_openapi()
    if path is None:
        raise NotFound("openapi.yaml is not installed")
    return web.Response(body=path.read_bytes(), content_type="application/yaml", charset="utf-8")


def add_routes(routes: Routes) -> None:
    routes.get("/healthz", healthz)
    routes.get("/readyz", readyz)
    routes.get("/metrics", metrics)
    routes.get("/openapi.yaml", openapi)
