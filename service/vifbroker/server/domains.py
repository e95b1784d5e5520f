"""Interface record routes: upload one or many vifs of a domain, read them back."""

from __future__ import annotations

import logging

from aiohttp import web

from vifbroker.model import Interface, VifRecord
from vifbroker.store import Uploaded

from .access import check_reader, check_uploader, records_hidden, upload_hidden
from .auth import Principal
from .context import CTX, Context
from .errors import Invalid, Malformed, NotFound
from .media import INTERFACE_TYPES, JSON, XML, read_body
from .middleware import MEDIA, Routes, principal, produces
from .params import if_match, path_mac, path_uuid
from .render import (
    generation_response,
    json_bytes_response,
    json_response,
    record_doc,
    record_xml,
    records_json_yielding,
    records_xml,
    render_off_loop,
    xml_response,
)

log = logging.getLogger(__name__)


async def put_records(
    ctx: Context,
    who: Principal,
    domain_uuid: str,
    interfaces: list[Interface],
    if_match: dict[str, int] | None,
    *,
    source_host: str | None = None,
) -> Uploaded:
    """Store one domain's upload (access already checked), count it and log it.

    ``source_host``: the host the domain must be leaving (an agent's is its own).
    """
    # An agent may upload only as the source host: checked again inside the write.
    with upload_hidden(who, domain_uuid):
        uploaded = await ctx.store.put_interfaces(
            domain_uuid,
            interfaces,
            ctx.now(),
            if_match=if_match,
            source_host=source_host if who.is_controller else who.host,
            max_vifs=ctx.settings.max_vifs_per_migration,
        )
    ctx.metrics.uploaded(uploaded.migration_id, uploaded.generations)
    # One line per upload, not per vif (as for results): the MACs and their
    # generations are keys, comma-separated in the order sent.
    if log.isEnabledFor(logging.INFO):
        log.info(
            "vif uploaded",
            extra={
                "migration": uploaded.migration_id,
                "domain": domain_uuid,
                "mac": ",".join(mac for mac, _ in uploaded.generations),
                "generation": ",".join(str(g) for _, g in uploaded.generations),
            },
        )
    return uploaded


async def put_interface(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    domain_uuid, mac, who = path_uuid(request), path_mac(request), principal(request)
    await check_uploader(ctx, who, domain_uuid)  # before reading the body
    media, body = await read_body(request, INTERFACE_TYPES, ctx.settings)
    iface = (await ctx.bodies.interfaces(media, body, many=False)).interfaces[0]
    if iface.mac != mac:
        raise Invalid(
            f"body MAC {iface.mac} differs from path MAC {mac}",
            [{"loc": ["body", "mac"], "msg": "differs from the path MAC"}],
        )
    generation = if_match(request)
    uploaded = await put_records(
        ctx,
        who,
        domain_uuid,
        [iface],
        None if generation is None else {mac: generation},
    )
    ((mac, generation),) = uploaded.generations
    return generation_response(domain_uuid, mac, generation)


async def put_interfaces(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    domain_uuid = path_uuid(request)
    if "If-Match" in request.headers:
        # One entity tag cannot name the generations of several vifs.
        raise Malformed("If-Match applies to one interface: PUT …/interfaces/{mac}")
    await check_uploader(ctx, principal(request), domain_uuid)  # before reading the body
    media, body = await read_body(request, INTERFACE_TYPES, ctx.settings)
    doc = await ctx.bodies.interfaces(media, body, many=True)
    if doc.domain_uuid is not None and doc.domain_uuid != domain_uuid:
        raise Invalid(f"document is for domain {doc.domain_uuid}, not {domain_uuid}")
    if not doc.interfaces:
        raise Invalid("the document holds no <interface>")
    uploaded = await put_records(ctx, principal(request), domain_uuid, doc.interfaces, None)
    return json_response(
        {
            "domain_uuid": domain_uuid,
            "revision": uploaded.revision,
            "interfaces": [{"mac": m, "generation": g} for m, g in uploaded.generations],
        }
    )


async def _readable_records(
    request: web.Request, domain_uuid: str, mac: str | None
) -> list[VifRecord]:
    ctx = request.app[CTX]
    await check_reader(ctx, principal(request), domain_uuid, mac)
    with records_hidden(domain_uuid, mac):
        return await ctx.store.get_interfaces(domain_uuid, mac)


@produces(JSON, XML)
async def get_interfaces(request: web.Request) -> web.Response:
    domain_uuid = path_uuid(request)
    records = await _readable_records(request, domain_uuid, None)
    if request[MEDIA] == XML:
        text = await render_off_loop(len(records), records_xml, domain_uuid, records)
        return xml_response(text)
    return json_bytes_response(await records_json_yielding(records))


@produces(JSON, XML)
async def get_interface(request: web.Request) -> web.Response:
    domain_uuid, mac = path_uuid(request), path_mac(request)
    records = await _readable_records(request, domain_uuid, mac)
    record = records[0]
    headers = {"ETag": f'"{record.generation}"'}
    if request[MEDIA] == XML:
        text = record_xml(record)
        if text is None:
            raise NotFound(f"port data of {mac} was purged")
        return xml_response(text, headers=headers)
    return json_response(record_doc(record), headers=headers)


def add_routes(routes: Routes) -> None:
    routes.put("/v1/domains/{uuid}/interfaces/{mac}", put_interface)
    routes.put("/v1/domains/{uuid}/interfaces", put_interfaces)
    routes.get("/v1/domains/{uuid}/interfaces/{mac}", get_interface)
    routes.get("/v1/domains/{uuid}/interfaces", get_interfaces)
