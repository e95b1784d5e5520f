"""Results routes: one migration's, or many migrations' arriving on one host at once.

``POST /v1/migrations/{id}/results`` answers the whole migration.
``POST /v1/hosts/{host}/results`` carries the results of several migrations
(an evacuation's destination applies hundreds of domains together): each is
recorded exactly as its own post would be — the same access check, rules,
metrics and log line — and its outcome comes back in the answer's list, a
refused one as a problem document of its own; the others still land. The
writes share the store's group commit. The answer names each migration's
state and revision, not the whole migration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from vifbroker.model import HostResultsIn, Migration, MigrationResultsIn, ResultIn, ResultsIn
from vifbroker.store import StoreError

from .access import Part, parties_for, unknown_migration
from .auth import Principal
from .context import CTX, Context
from .errors import Problem
from .hostbatch import host_body, refused
from .media import JSON_TYPES, read_body
from .middleware import Routes, principal
from .registration import observe_results_margin
from .render import json_response, migration_doc

log = logging.getLogger(__name__)

_DESTINATION = frozenset({Part.DESTINATION})


async def _record(ctx: Context, migration_id: str, results: Sequence[ResultIn]) -> Migration:
    """Store ``results`` (access already checked); the migration after."""
    # Whether each result may land (terminal, unknown or repeated MAC, a future
    # generation) is the store's rule: rules.apply_result and friends. The store
    # tells how each vif it wrote stood before: no read of the migration first.
    recorded = await ctx.store.record_results(migration_id, results, ctx.now())
    after = recorded.migration
    ctx.metrics.results(recorded, results)
    observe_results_margin(ctx, recorded)
    # One line per post, not per vif (an evacuation posts thousands): the MACs,
    # generations and statuses are keys, comma-separated in the order posted.
    # Built only when the line is written.
    if log.isEnabledFor(logging.INFO):
        _log_results(after, results)
    return after


def _log_results(after: Migration, results: Sequence[ResultIn]) -> None:
    macs, generations, statuses = [], [], []
    for r in results:
        macs.append(r.mac)
        generations.append(str(r.generation))
        statuses.append(r.status)
    fields = {"migration": after.id, "domain": after.domain_uuid, "mac": ",".join(macs),
              "generation": ",".join(generations), "status": ",".join(statuses)}  # fmt: skip
    log.info("result %s", "/".join(sorted(set(statuses))), extra=fields)


async def post_results(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    parties = await parties_for(ctx, principal(request), request.match_info["id"], _DESTINATION)
    _, body = await read_body(request, JSON_TYPES, ctx.settings)
    results = (await ctx.bodies.model(body, ResultsIn)).results
    return json_response(migration_doc(await _record(ctx, parties.migration_id, results)))


async def post_host_results(request: web.Request) -> web.Response:
    ctx, who, host, doc = await host_body(request, HostResultsIn)
    outcomes = await asyncio.gather(*(_one(ctx, who, host, entry) for entry in doc.migrations))
    return json_response({"migrations": outcomes})


async def _one(
    ctx: Context, who: Principal, host: str, entry: MigrationResultsIn
) -> dict[str, Any]:
    try:
        parties = await parties_for(ctx, who, entry.id, _DESTINATION)
        if parties.destination_host != host:
            raise unknown_migration(entry.id)  # not arriving here: as if unknown
        after = await _record(ctx, parties.migration_id, entry.results)
    except (Problem, StoreError) as exc:
        return refused("id", entry.id, exc)
    return {"id": after.id, "state": after.state.value, "revision": after.revision}


def add_routes(routes: Routes) -> None:
    routes.post("/v1/migrations/{id}/results", post_results)
    routes.post("/v1/hosts/{host}/results", post_host_results)
