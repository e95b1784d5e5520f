"""The app factory: the one place where the broker is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from aiohttp import web

from vifbroker.store import Store, StoreError

from . import (
    domains,
    events,
    hosts,
    migrations,
    ops,
    preflight,
    registration,
    results,
    uploads,
)
from .auth import TokenRegistry
from .bodies import BodyDecoder
from .config import Settings
from .context import CTX, Context, utcnow
from .longpoll import LongPolls
from .metrics import Metrics
from .middleware import Routes, front_layer
from .tokenfile import TOKEN_WATCHER, TokenWatcher, watch_tokens

log = logging.getLogger(__name__)

#: Pruning needs no haste: at most once per this many seconds.
PRUNE_INTERVAL_SECONDS = 60.0


def create_app(
    settings: Settings,
    store: Store,
    tokens: TokenRegistry,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> web.Application:
    """The broker app. It opens ``store`` on startup and closes it on cleanup."""
    metrics = Metrics()
    ctx = Context(
        settings=settings,
        store=store,
        tokens=tokens,
        metrics=metrics,
        longpolls=LongPolls(store.hub, metrics.longpolls),
        bodies=BodyDecoder(settings.limits, settings.inline_body_bytes, settings.body_workers),
        clock=clock,
    )
    # No aiohttp middleware: every handler is put in the request layer as its
    # route is added (``middleware.Routes``), the unmatched ones last.
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[CTX] = ctx
    app[TOKEN_WATCHER] = TokenWatcher(settings.tokens_path, tokens)
    routes = Routes(app.router, front_layer())
    modules = (ops, migrations, results, uploads, domains, hosts, events, preflight, registration)
    for module in modules:
        module.add_routes(routes)
    routes.close()
    app.cleanup_ctx.append(_store_lifecycle)
    app.cleanup_ctx.append(_housekeeping)
    app.cleanup_ctx.append(watch_tokens)
    app.on_shutdown.append(_wake_longpolls)
    return app


async def _store_lifecycle(app: web.Application) -> AsyncIterator[None]:
    store = app[CTX].store
    await store.open()
    log.info("store open, revision %d", await store.current_revision())
    yield
    app[CTX].bodies.close()
    await store.close()


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(housekeeping_loop(app[CTX]), name="vifbroker-housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _wake_longpolls(app: web.Application) -> None:
    app[CTX].longpolls.stop()


async def housekeeping_loop(ctx: Context) -> None:
    """Expire overdue migrations every interval; prune old terminal ones now and then."""
    loop = asyncio.get_running_loop()
    next_prune = loop.time()
    retention = timedelta(seconds=ctx.settings.retention_seconds)
    while True:
        try:
            now = ctx.now()
            expired = await ctx.store.expire(now)
            ctx.metrics.expired(len(expired))
            for migration_id in expired:
                log.info("migration expired", extra={"migration": migration_id})
            if loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_INTERVAL_SECONDS
                pruned = await ctx.store.prune(now - retention)
                if pruned:
                    log.info("pruned %d terminal migrations", pruned)
        except StoreError as exc:
            log.warning("housekeeping: store error: %s", exc)
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(ctx.settings.expiry_interval_seconds)
