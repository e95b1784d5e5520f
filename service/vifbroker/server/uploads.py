"""``POST /v1/hosts/{host}/uploads``: the records of several domains leaving one host at once.

An evacuation's source collects hundreds of leaving domains together, and one
``PUT /v1/domains/{uuid}/interfaces`` per domain costs both ends an HTTP
request each. This route carries up to ``MAX_UPLOAD_DOMAINS`` of those uploads
in one request: each domain is uploaded exactly as its own PUT would be — the
same access check, limits, store rules (all of its vifs or none), metrics and
log line — and its outcome comes back in the answer's list, a refused one as a
problem document of its own; the others still land. The writes share the
store's group commit. A domain not leaving ``host`` answers as unknown (404),
as it would to that host's agent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from vifbroker.model import DomainInterfacesIn, HostUploadsIn
from vifbroker.model.limits import LimitExceeded
from vifbroker.store import StoreError, WrongHost

from .access import check_uploader, no_upload
from .auth import Principal
from .context import Context
from .domains import put_records
from .errors import PayloadTooLarge, Problem
from .hostbatch import host_body, refused
from .middleware import Routes
from .render import json_response


async def post_host_uploads(request: web.Request) -> web.Response:
    ctx, who, host, doc = await host_body(request, HostUploadsIn)
    outcomes = await asyncio.gather(*(_one(ctx, who, host, entry) for entry in doc.domains))
    return json_response({"domains": outcomes})


async def _one(
    ctx: Context, who: Principal, host: str, entry: DomainInterfacesIn
) -> dict[str, Any]:
    domain_uuid = entry.domain_uuid
    try:
        await check_uploader(ctx, who, domain_uuid)
        ctx.bodies.limits.check_interfaces(entry.interfaces)
        uploaded = await put_records(
            ctx, who, domain_uuid, entry.interfaces, None, source_host=host
        )
    except LimitExceeded as exc:
        return refused("domain_uuid", domain_uuid, PayloadTooLarge(str(exc)))
    except WrongHost:  # a controller naming a domain that is not leaving host
        return refused("domain_uuid", domain_uuid, no_upload(domain_uuid))
    except (Problem, StoreError) as exc:
        return refused("domain_uuid", domain_uuid, exc)
    return {
        "domain_uuid": domain_uuid,
        "revision": uploaded.revision,
        "interfaces": [{"mac": m, "generation": g} for m, g in uploaded.generations],
    }



def add_routes(routes: Routes) -> None:
    routes.post("/v1/hosts/{host}/uploads", post_host_uploads)
