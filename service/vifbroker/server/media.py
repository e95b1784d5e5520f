"""Content negotiation and request bodies: media types, size limits, decoding.

JSON bodies are decoded and validated in one pass by pydantic; unparseable
JSON or XML is ``Malformed`` (400), well-formed but wrong content ``Invalid``
(422). Port data over the configured limit is ``PayloadTooLarge`` (413).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from vifbroker.model import Interface, codec

from .config import Settings
from .errors import (
    Invalid,
    Malformed,
    NotAcceptable,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    invalid_from_validation,
)

JSON = "application/json"
XML = "application/xml"
TEXT_XML = "text/xml"
JSON_TYPES = (JSON,)
#: Content codings of a request body that the HTTP layer decodes (RFC 9110 8.4).
CONTENT_ENCODINGS = frozenset({"identity", "gzip", "deflate"})
INTERFACE_TYPES = (JSON, XML, TEXT_XML)

M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------- Accept


def _parse_accept(header: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    return ranges


def _quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    kind = offer.split("/")[0]
    best, specificity = 0.0, -1
    for media, q in ranges:
        if media == offer:
            rank = 2
        elif media == f"{kind}/*":
            rank = 1
        elif media == "*/*":
            rank = 0
        else:
            continue
        if rank > specificity:
            best, specificity = q, rank
    return best


def choose(accept: str | None, offers: Sequence[str]) -> str:
    """The offer ``accept`` likes best (the first offer on ties); NotAcceptable if none."""
    if not accept or not accept.strip():
        return offers[0]
    ranges = _parse_accept(accept)
    best, best_q = None, 0.0
    for offer in offers:
        q = _quality(offer, ranges)
        if q > best_q:
            best, best_q = offer, q
    if best is None:
        raise NotAcceptable(f"can only produce {', '.join(offers)}")
    return best


# ---------------------------------------------------------------- bodies


async def read_body(
    request: web.Request, accepted: Iterable[str], settings: Settings
) -> tuple[str, bytes]:
    """(media type, bytes) of the body; 415 for other types or codings, 413 past
    the size limit, 408 when it does not arrive within the body timeout."""
    max_bytes = settings.max_body_bytes
    media = request.content_type.lower()
    accepted = tuple(accepted)
    if media not in accepted:
        raise UnsupportedMediaType(f"Content-Type not accepted here; use {' or '.join(accepted)}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        # aiohttp decodes these; anything else would be read as plain bytes.
        raise UnsupportedMediaType(
            f"Content-Encoding not supported; use {', '.join(sorted(CONTENT_ENCODINGS))}"
        )
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"body of {length} bytes exceeds {max_bytes}")
    try:
        if request.content.is_eof():
            # The whole body came with the headers (the usual small upload):
            # nothing left to wait for, so no timer to arm and cancel.
            body = await request.read()
        else:
            async with asyncio.timeout(settings.body_timeout_seconds):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body exceeds {max_bytes} bytes") from exc
    except TimeoutError as exc:
        raise RequestTimeout(
            f"body not received within {settings.body_timeout_seconds:g} s"
        ) from exc
    return media, body


def json_model(body: bytes, model: type[M]) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise Malformed("body is not valid JSON") from exc
        raise invalid_from_validation(exc) from exc


class InterfacesIn(BaseModel):
    interfaces: list[Interface] = Field(min_length=1, max_length=4096)


def _codec_problem(exc: codec.XMLCodecError) -> Malformed | Invalid:
    if isinstance(exc, codec.XMLMalformed):
        return Malformed(str(exc))
    return Invalid(str(exc), [{"loc": ["body"], "msg": str(exc), "type": "xml"}])


def check_portdata(interfaces: Iterable[Interface], limit: int) -> None:
    for iface in interfaces:
        portdata = iface.portdata
        if portdata is not None and len(portdata.encode("utf-8", "surrogatepass")) > limit:
            raise PayloadTooLarge(f"port data of {iface.mac} exceeds {limit} bytes")


def one_interface(media: str, body: bytes) -> Interface:
    if media == JSON:
        return json_model(body, Interface)
    try:
        return codec.parse_interface(body)
    except codec.XMLCodecError as exc:
        raise _codec_problem(exc) from exc


def many_interfaces(media: str, body: bytes, domain_uuid: str | None) -> list[Interface]:
    """Interfaces of a JSON list, ``<interfaces>`` or ``<domain>`` document; with
    ``domain_uuid``, a document naming another domain is refused."""
    if media == JSON:
        interfaces = json_model(body, InterfacesIn).interfaces
    else:
        try:
            doc = codec.parse_document(body)
        except codec.XMLCodecError as exc:
            raise _codec_problem(exc) from exc
        if domain_uuid is not None and doc.domain_uuid not in (None, domain_uuid):
            raise Invalid(f"document is for domain {doc.domain_uuid}, not {domain_uuid}")
        interfaces = list(doc.interfaces)
        if not interfaces:
            raise Invalid("the document holds no <interface>")
    # A MAC named twice is refused by the store (its rule, one owner).
    return interfaces
