"""Responses: JSON documents, problem documents, XML interface documents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from vifbroker.model import Host, Inbox, Migration, VifRecord, codec, wire

from .errors import PROBLEM_CONTENT_TYPE, Problem

T = TypeVar("T")


#: One encoder for every answer (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(doc: Any) -> bytes:
    return _ENCODER.encode(doc).encode("utf-8")


def json_response(
    doc: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_dumps(doc), status=status, headers=headers, content_type="application/json"
    )


def generation_response(domain_uuid: str, mac: str, generation: int) -> web.Response:
    """A single-vif upload's answer: its new generation, as the body and the ETag.

    Written out rather than encoded: the UUID and MAC are normalized (hex
    digits, dashes, colons), nothing to escape; the bytes ``json_response``
    would give.
    """
    body = f'{{"domain_uuid":"{domain_uuid}","mac":"{mac}","generation":{generation:d}}}'
    headers = {"Content-Type": "application/json", "ETag": f'"{generation:d}"'}
    return web.Response(body=body.encode(), headers=headers)


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        body=_dumps(problem.body()),
        status=problem.status,
        headers=problem.headers(),
        content_type=PROBLEM_CONTENT_TYPE,
    )


def migration_doc(migration: Migration) -> dict[str, Any]:
    return migration.model_dump(mode="json")


def record_doc(record: VifRecord) -> dict[str, Any]:
    iface = record.interface
    return {
        "domain_uuid": record.domain_uuid,
        "mac": record.mac,
        "generation": record.generation,
        # Unset optional members are left out rather than sent as null.
        "interface": iface.model_dump(mode="json", exclude_none=True) if iface else None,
        "result": record.result.model_dump(mode="json"),
        "revision": record.revision,
    }


def inbox_json(inbox: Inbox) -> bytes:
    """The inbox as JSON bytes, with no dicts in between (the long-poll's answer).

    pydantic writes each model straight to JSON; the same documents, keys and
    compact form as ``migration_doc``/``record_doc`` give (tests/api/test_render.py).
    """
    return wire.page_of(inbox).json()


async def inbox_json_yielding(inbox: Inbox) -> bytes:
    """:func:`inbox_json`, letting the event loop serve other requests between
    batches of records (no thread: no GIL to wait for). For large answers."""
    return (await wire.page_yielding(inbox)).json()


def records_json(records: Iterable[VifRecord]) -> bytes:
    """``{"interfaces": [record_doc, …]}`` as JSON bytes, one pydantic call per record."""
    return f'{{"interfaces":[{",".join(wire.record_json(r) for r in records)}]}}'.encode()


async def records_json_yielding(records: Sequence[VifRecord]) -> bytes:
    """:func:`records_json`, yielding to the event loop between batches of records."""
    return f'{{"interfaces":[{",".join(await wire.records_yielding(records))}]}}'.encode()


#: Answers holding more records than this are rendered in a worker thread.
#: The work is many short calls (one per record or element), so the event
#: loop gets the GIL back between them and keeps answering meanwhile.
INLINE_RECORDS = 32


async def render_off_loop(records: int, render: Callable[..., T], *args: Any) -> T:
    """``render(*args)``, in a thread when it covers more than INLINE_RECORDS records."""
    if records <= INLINE_RECORDS:
        return render(*args)
    return await asyncio.to_thread(render, *args)


def json_bytes_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def host_doc(host: Host) -> dict[str, Any]:
    return host.model_dump(mode="json")


def xml_response(text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=text.encode("utf-8"), headers=headers, content_type="application/xml", charset="utf-8"
    )


def records_xml(domain_uuid: str, records: Iterable[VifRecord]) -> str:
    ifaces = [r.interface for r in records if r.interface is not None]
    return codec.interfaces_to_xml(ifaces, domain_uuid=domain_uuid)


def record_xml(record: VifRecord) -> str | None:
    return codec.interface_to_xml(record.interface) if record.interface is not None else None
