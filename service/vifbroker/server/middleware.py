"""The request layer every route's handler runs in: outermost first, observe → problems → guard.

* observe: request id (``X-Request-Id`` or a new one), latency histogram, a
  DEBUG access line;
* problems (:func:`problem_of`): the one place where exceptions become
  problem responses;
* guard (:func:`guard`): bearer authentication for ``/v1`` and Accept
  negotiation against what the matched handler ``produces``.

One layer, not three: each cost every request a wrapper and a coroutine. And
no aiohttp middleware: :class:`Routes` wraps each route's handler in it when
the route is added. An app with a middleware pays, on every request, aiohttp's
own middleware around each (``_fix_request_current_app``: a coroutine and five
property calls) and a cached build of the chain. A path or method no route
takes is answered by the last route, :func:`unmatched`, in the same layer.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import hdrs, web

from vifbroker.store import StoreError

from .auth import Principal
from .connections import REQUEST_ID_KEY, SERVER_NAME
from .context import CTX, Context
from .errors import (
    Internal,
    Malformed,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    from_store_error,
)
from .logs import REQUEST_ID
from .media import choose
from .render import problem_response

log = logging.getLogger(__name__)
access_log = logging.getLogger("vifbroker.server.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = Callable[..., Awaitable[web.StreamResponse]]
#: Puts a route's handler in the request layer (:func:`front_layer`).
Wrap = Callable[[Handler], Handler]


class Layer(Protocol):
    def __call__(self, request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]: ...


PRINCIPAL = web.RequestKey("vifbroker.principal", Principal)
MEDIA = web.RequestKey("vifbroker.media", str)

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_UNMATCHED = "<unmatched>"
#: The last route: every path (newlines too) and method no other route takes.
UNMATCHED_PATH = r"/{unmatched:[\s\S]*}"
_UNMATCHED_CANONICAL = "/{unmatched}"


def produces(*media: str) -> Callable[[H], H]:
    """Declare the media types a handler can answer with, by preference (→ 406 on none)."""

    def mark(handler: H) -> H:
        handler.produces = media  # type: ignore[attr-defined]
        return handler

    return mark


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def route_template(request: web.Request) -> str:
    # The layer runs inside a matched route only (what no other route takes is
    # the last one's, ``unmatched``): aiohttp's own no-match never reaches here.
    resource = request.match_info.route.resource
    if resource is None:
        return _UNMATCHED
    canonical = resource.canonical
    return _UNMATCHED if canonical == _UNMATCHED_CANONICAL else canonical


def request_ids() -> Callable[[], str]:
    """Unique ids: a random per-process prefix and a counter (uuid4 costs a syscall each)."""
    prefix = secrets.token_hex(6)
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter):x}"


def front_layer() -> Wrap:
    """What puts a route's handler in the request layer (ids are per layer:
    :func:`request_ids`)."""
    front = _front(request_ids())

    def wrap(handler: Handler) -> Handler:
        # A partial, as aiohttp builds a middleware chain: no frame of its own.
        wrapped = functools.partial(front, handler=handler)
        return functools.update_wrapper(wrapped, handler)  # (``produces`` goes along)

    return wrap


def _front(new_id: Callable[[], str]) -> Layer:
    """The layer itself: one coroutine frame between aiohttp and the handler, and
    the response headers set here rather than from an ``on_response_prepare``
    signal (a coroutine more per response): every request's await chain passes
    through these frames again each time it resumes."""

    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request.app[CTX]  # (once: the guard and the metrics below both use it)
        given = request.headers.get("X-Request-Id", "")
        request_id = given if given and _REQUEST_ID_RE.fullmatch(given) else new_id()
        request[REQUEST_ID_KEY] = request_id  # for a response prepared by its handler
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500
        try:
            try:
                guard(request, ctx)
                response = await handler(request)
            except Exception as exc:
                response = problem_response(problem_of(request, exc, request_id))
            status = response.status
            if not response.prepared:
                mark_response(response, request_id)
            return response
        finally:
            elapsed = time.perf_counter() - start
            ctx.metrics.observe(
                route_template(request),
                request.method,
                status,
                elapsed,
                # (the raw string first: ``request.query`` parses it)
                waited="wait_for" in request.query_string and "wait_for" in request.query,
            )
            if access_log.isEnabledFor(logging.DEBUG):  # (Logger.debug would ask it too)
                access_log.debug(
                    "%s %s %d %.1fms", request.method, request.path, status, elapsed * 1000
                )
            REQUEST_ID.reset(token)

    return front


class Routes:
    """Adds routes with each handler in the request layer; :meth:`close` adds the
    last one, which answers what no other route takes (404, or 405 and Allow)."""

    def __init__(self, router: web.UrlDispatcher, wrap: Wrap) -> None:
        self._router = router
        self._wrap = wrap

    def get(self, path: str, handler: Handler) -> None:
        self._router.add_get(path, self._wrap(handler))

    def put(self, path: str, handler: Handler) -> None:
        self._router.add_put(path, self._wrap(handler))

    def post(self, path: str, handler: Handler) -> None:
        self._router.add_post(path, self._wrap(handler))

    def close(self) -> None:
        self._router.add_route(hdrs.METH_ANY, UNMATCHED_PATH, self._wrap(unmatched))


async def unmatched(request: web.Request) -> web.StreamResponse:
    """No route takes this path with this method: which methods would (405), if any (404)."""
    allowed: set[str] = set()
    this = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not this:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise MethodNotAllowed(f"{request.method} not allowed here", sorted(allowed))
    raise NotFound("no such resource")


def mark_response(response: web.StreamResponse, request_id: str | None) -> None:
    """The headers every answer carries: who served it, and the request's id."""
    response.headers["Server"] = SERVER_NAME
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id


def prepare(request: web.Request, response: web.StreamResponse) -> Awaitable[object]:
    """``response.prepare`` for a handler that streams, with :func:`mark_response`'s headers."""
    mark_response(response, request.get(REQUEST_ID_KEY))
    return response.prepare(request)


def _from_http_exception(exc: web.HTTPException) -> Problem:
    # (405 comes from ``unmatched`` as a MethodNotAllowed: aiohttp's router never
    # raises it inside the layer.)
    if exc.status == 404:
        return NotFound("no such resource")
    if exc.status == 413:
        return PayloadTooLarge(exc.text or "body too large")
    if 400 <= exc.status < 500:
        return Malformed(exc.reason)
    return Internal(exc.reason)


def problem_of(request: web.Request, exc: Exception, request_id: str | None = None) -> Problem:
    """The problem a handler's exception answers (a redirect is re-raised, marked)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, StoreError):
        problem = from_store_error(exc)
        if problem.status >= 500:
            log.warning("store error on %s %s: %s", request.method, request.path, exc)
        return problem
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            mark_response(exc, request_id)
            raise exc
        return _from_http_exception(exc)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return Internal("internal error")


def guard(request: web.Request, ctx: Context) -> None:
    """Bearer authentication for ``/v1``; Accept negotiation where a route offers several types."""
    if request.path.startswith("/v1/") or request.path == "/v1":
        request[PRINCIPAL] = ctx.tokens.authenticate_header(
            request.headers.get("Authorization")
        )
    # Only routes with several representations negotiate; the others always
    # answer in their one media type, whatever Accept says (RFC 9110 12.5.1).
    offers = getattr(request.match_info.handler, "produces", None)
    if offers:
        request[MEDIA] = choose(request.headers.get("Accept"), offers)
