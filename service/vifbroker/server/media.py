"""Content negotiation and reading request bodies: media types, codings, size, time.

Decoding what was read is ``bodies``' job.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable, Sequence

from aiohttp import web

from .config import Settings
from .connections import abandon_body
from .errors import (
    Malformed,
    NotAcceptable,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

JSON = "application/json"
XML = "application/xml"
TEXT_XML = "text/xml"
JSON_TYPES = (JSON,)
#: Content codings of a request body that the HTTP layer decodes (RFC 9110 8.4).
CONTENT_ENCODINGS = frozenset({"identity", "gzip", "deflate"})
INTERFACE_TYPES = (JSON, XML, TEXT_XML)


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
    accepted = tuple(accepted)
    media = request.headers.get("Content-Type", "")
    if media not in accepted:  # not spelled exactly as accepted: parse it
        media = request.content_type.lower()
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
        abandon_body(request)
        raise PayloadTooLarge(f"body of {length} bytes exceeds {max_bytes}")
    try:
        if request.content.is_eof():
            # The whole body came with the headers (the usual small upload):
            # nothing left to wait for, so it is taken as buffered, with no
            # timer to arm and cancel and no read coroutine.
            body = request.content.read_nowait()
            if len(body) > max_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(body))
        else:
            async with asyncio.timeout(settings.body_timeout_seconds):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        abandon_body(request)
        raise PayloadTooLarge(f"body exceeds {max_bytes} bytes") from exc
    except TimeoutError as exc:
        abandon_body(request)
        raise RequestTimeout(
            f"body not received within {settings.body_timeout_seconds:g} s"
        ) from exc
    if encoding != "identity":
        body = inflate(body, encoding, max_bytes)
    return media, body


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode a gzip or deflate body, stopping as soon as it exceeds ``limit`` bytes.

    The HTTP layer hands bodies over still compressed (``auto_decompress``
    off): aiohttp inflated a whole gzip bomb in one call on the event loop.
    """
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        if encoding != "deflate":
            raise Malformed("the body is not valid gzip") from None
        try:  # "deflate" is zlib-wrapped by the RFC, raw by some clients
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise Malformed("the body is not valid deflate") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decoded body exceeds {limit} bytes")
    if not inflater.eof:
        raise Malformed(f"the {encoding} body is truncated")
    return out
