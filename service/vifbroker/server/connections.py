"""The HTTP connection layer under the app: reaping, capacity, parser errors.

aiohttp's defaults suit a friendly network: an idle keep-alive connection
lives for an hour, nothing bounds the time a client takes to send its
headers, any number of connections may be open, and its own parser errors
answer text/plain that may echo what the client sent. The broker sits on the
critical path of every migration, so here:

* a connection whose request headers are not complete ``header_timeout``
  seconds after its first byte (or after it opened) is answered 408 and closed;
* a keep-alive connection idle for ``keepalive_timeout`` seconds is closed;
* past ``max_connections`` open connections a new one is answered 503 and closed;
* a request parked on the change hub learns at once that its client is gone
  (:func:`disconnected`), so it stops waiting instead of holding its socket,
  its hub waiter and the open-long-polls gauge until its wait runs out;
* a request the HTTP parser refuses is answered ``application/problem+json``
  (431 for an oversized or excessive header, 415 for a content coding it
  cannot decode, else 400), naming nothing the client sent.

:class:`BrokerRunner` is an ``AppRunner`` that serves through these.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .errors import (
    PROBLEM_CONTENT_TYPE,
    HeadersTooLarge,
    Internal,
    Malformed,
    Problem,
    RequestTimeout,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

#: What every response names as its server (no versions: they help attackers only).
SERVER_NAME = "vifbroker"
#: The request's id, echoed on its response (set by the app's middleware).
REQUEST_ID_KEY = web.RequestKey("vifbroker.request_id", str)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_connections: int = 12_000


def _canned(problem: Problem) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    body = json.dumps(problem.body(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {problem.status} {problem.title}\r\n"
        f"Server: {SERVER_NAME}\r\nContent-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _parse_problem(status: int, exc: BaseException | None) -> Problem:
    if isinstance(exc, LineTooLong) or "too many headers" in str(exc).lower():
        return HeadersTooLarge("a request header line is too long or there are too many")
    if isinstance(exc, ContentEncodingError):
        return UnsupportedMediaType("the request's Content-Encoding cannot be decoded")
    if status == 504:
        return Unavailable("the request took too long")
    if status >= 500:
        return Internal("internal error")
    return Malformed("the HTTP request could not be parsed")


class _Handler(RequestHandler):
    """One client connection: aiohttp's handler plus reaping and problem answers."""

    def __init__(self, manager: _Server, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._server = manager
        #: When the request being received began (its first byte, or the
        #: connection's opening), until its headers are complete; else None.
        self.head_since: float | None = None
        self._armed_at_count = 0
        self._gone: asyncio.Future[None] | None = None

    @property
    def gone(self) -> asyncio.Future[None]:
        """Done once the connection is lost (created on first use)."""
        if self._gone is None:
            self._gone = self._loop.create_future()
            if self.transport is None:
                self._gone.set_result(None)
        return self._gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._server.over_capacity():
            log.warning("refusing a connection: %d open", self._server.open_connections)
            self._refuse(Unavailable("too many open connections; retry later"))
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.head_since is None and self._waiter is not None and data:
            self._await_head()  # the first byte of the next request
        super().data_received(data)
        if self.head_since is not None and self._request_count != self._armed_at_count:
            self._head_done()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_done()
        super().connection_lost(exc)
        # Only parked waits watch this: a handler in the middle of a store
        # write is never cancelled (aiohttp's handler_cancellation stays off).
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _await_head(self) -> None:
        self._armed_at_count = self._request_count
        self.head_since = self._loop.time()
        self._server.awaiting_head(self)

    def _head_done(self) -> None:
        if self.head_since is not None:
            self.head_since = None
            self._server.head_done(self)

    def head_overdue(self) -> None:
        """Called by the server's sweep once ``head_since`` is past the header timeout."""
        self._head_done()
        if self._request_count == self._armed_at_count and self.transport is not None:
            log.debug("closing a connection: request headers incomplete in time")
            self._refuse(RequestTimeout("request headers not received in time"))

    def abandon_body(self) -> None:
        self._lingering_time = 0.0
        self.keep_alive(False)

    def _refuse(self, problem: Problem) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_canned(problem))
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Never log or echo ``message``: it quotes what the client sent.
        problem = _parse_problem(status, exc)
        if problem.status >= 500 and status != 504:
            log.error("error handling a request", exc_info=exc)
        else:
            log.debug("refused a request: %s (%s)", problem.status, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response = web.Response(
            status=problem.status,
            body=json.dumps(problem.body(), separators=(",", ":")).encode(),
            headers={"Server": SERVER_NAME, **problem.headers()},
            content_type=PROBLEM_CONTENT_TYPE,
        )
        if (request_id := request.get(REQUEST_ID_KEY)) is not None:
            response.headers["X-Request-Id"] = request_id
        response.force_close()
        return response


def abandon_body(request: web.BaseRequest) -> None:
    """Close the connection once the answer is sent, reading no more of the body.

    aiohttp would otherwise keep reading (and, for a compressed body,
    decompressing on the event loop) what is left of a refused body for up to
    its lingering time: a gzip bomb refused at 8 MiB then cost half a second
    of loop time inflating the rest.
    """
    if isinstance(request.protocol, _Handler):
        request.protocol.abandon_body()


def disconnected(request: web.BaseRequest) -> asyncio.Future[None] | None:
    """A future done once ``request``'s client connection is lost (None if unknown)."""
    if isinstance(request.protocol, _Handler):
        return request.protocol.gone
    return None


class _Server(web.Server):
    """The connections: their cap, and one sweep for overdue request headers.

    A timer per request (armed at its first byte, cancelled once its headers
    are in) cost every request a ``call_later`` and a ``cancel``. Instead the
    connections receiving headers are kept in a set, and one sweep, due every
    quarter of the header timeout while the set is not empty, refuses those
    whose headers are overdue: each is answered 408 between 1 and 1.25 header
    timeouts after its request began.
    """

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._heads: set[_Handler] = set()
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def over_capacity(self) -> bool:
        return len(self._connections) > self._limits.max_connections

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, limits=self._limits, **self._kwargs)

    def awaiting_head(self, handler: _Handler) -> None:
        self._heads.add(handler)
        if self._sweep is None:
            self._sweep = self._loop.call_later(self._limits.header_timeout / 4, self._sweep_heads)

    def head_done(self, handler: _Handler) -> None:
        self._heads.discard(handler)

    def _sweep_heads(self) -> None:
        self._sweep = None
        due = self._loop.time() - self._limits.header_timeout
        for handler in [h for h in self._heads if h.head_since is None or h.head_since <= due]:
            handler.head_overdue()
        if self._heads:
            self._sweep = self._loop.call_later(self._limits.header_timeout / 4, self._sweep_heads)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        await super().shutdown(timeout)


class BrokerRunner(web.AppRunner):
    """``AppRunner`` whose connections follow :class:`ConnectionLimits`."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        # Bodies stay compressed: media.inflate decodes them within the size limit.
        kwargs.setdefault("auto_decompress", False)
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        return _Server(
            base.request_handler,
            request_factory=base.request_factory,
            loop=asyncio.get_running_loop(),
            limits=self._limits,
            **self._kwargs,
        )
