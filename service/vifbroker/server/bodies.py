"""Decoding request bodies into models at a bounded cost to the event loop.

Reading a body (pydantic for JSON, lxml plus the codec for XML) is linear in
its size, but pydantic holds the GIL throughout: an 8 MiB body of small JSON
tokens took a second, during which no other request was served. So:

* a body of at most ``inline_bytes`` is decoded on the event loop (a few
  milliseconds at most, whatever its shape);
* a larger one is decoded in a worker process, so the loop keeps serving
  ``/healthz``, long-polls and barriers meanwhile;
* every decoded interface document is checked against the :class:`Limits`
  (interfaces per document, attributes, keys, vlan tags, port data bytes),
  XML during the read, before the costly part (see ``model.codec``).

The decoding functions are plain, picklable module functions: the worker
runs exactly the code the loop would, and their Problems travel back whole.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from vifbroker.model import Interface, codec
from vifbroker.model.limits import LimitExceeded, Limits

from .errors import Invalid, Malformed, PayloadTooLarge, Unavailable, invalid_from_validation

log = logging.getLogger(__name__)

JSON = "application/json"

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class InterfacesIn(BaseModel):
    # A hard ceiling for pydantic; the configured limit is checked after.
    interfaces: list[Interface] = Field(min_length=1, max_length=65536)


@dataclass(frozen=True, slots=True)
class InterfaceBody:
    interfaces: list[Interface]
    #: The domain a whole XML document names (``<domain><uuid>``, ``<interfaces domain>``).
    domain_uuid: str | None = None


# ------------------------------------------------------- pure decoding (picklable)


def json_model(body: bytes, model: type[M]) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise Malformed("body is not valid JSON") from None
        raise invalid_from_validation(exc) from None


def _too_large(exc: LimitExceeded) -> PayloadTooLarge:
    return PayloadTooLarge(str(exc))


def _codec_problem(exc: codec.XMLCodecError) -> Malformed | Invalid:
    if isinstance(exc, codec.XMLMalformed):
        return Malformed(str(exc))
    return Invalid(str(exc), [{"loc": ["body"], "msg": str(exc), "type": "xml"}])


def decode_interfaces(media: str, body: bytes, limits: Limits, many: bool) -> InterfaceBody:
    """One interface (``many=False``) or a list/domain document, within ``limits``."""
    try:
        if media == JSON:
            if many:
                interfaces = json_model(body, InterfacesIn).interfaces
            else:
                interfaces = [json_model(body, Interface)]
            limits.check_interfaces(interfaces)
            return InterfaceBody(interfaces)
        if not many:
            return InterfaceBody([codec.parse_interface(body, limits)])
        doc = codec.parse_document(body, limits)
        return InterfaceBody(list(doc.interfaces), doc.domain_uuid)
    except LimitExceeded as exc:
        raise _too_large(exc) from None
    except codec.XMLCodecError as exc:
        raise _codec_problem(exc) from None


# ------------------------------------------------------------------- the decoder


#: How much lower than the broker's a decoding worker's CPU priority is: on a
#: busy machine the event loop (health checks, long-polls) goes first.
WORKER_NICENESS = 10


def _lower_priority() -> None:
    os.nice(WORKER_NICENESS)


class BodyDecoder:
    """Decodes bodies inline when small, in a worker process when large."""

    def __init__(self, limits: Limits, inline_bytes: int, workers: int) -> None:
        self.limits = limits
        self.inline_bytes = inline_bytes
        self._workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    # Plain functions handing back ``_run``'s coroutine: a frame less to await.
    def interfaces(self, media: str, body: bytes, *, many: bool) -> Awaitable[InterfaceBody]:
        return self._run(len(body), decode_interfaces, media, body, self.limits, many)

    def model(self, body: bytes, model: type[M]) -> Awaitable[M]:
        return self._run(len(body), json_model, body, model)

    async def _run(self, size: int, func: Callable[..., T], *args: Any) -> T:
        if size <= self.inline_bytes:
            return func(*args)
        pool = self._ensure_pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, func, *args)
        except BrokenProcessPool as exc:
            # A worker died (e.g. killed for memory): start over for the next body.
            log.error("body decoding worker died; restarting the pool")
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("could not decode the body; retry") from exc

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: never fork a process that runs an event loop and threads.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
