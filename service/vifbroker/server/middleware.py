"""The request middleware: one layer doing, outermost first, observe → problems → guard.

* observe: request id (``X-Request-Id`` or a new one), latency histogram, a
  DEBUG access line;
* problems (:func:`problem_of`): the one place where exceptions become
  problem responses;
* guard (:func:`guard`): bearer authentication for ``/v1`` and Accept
  negotiation against what the matched handler ``produces``.

One middleware, not three: each layer cost every request a wrapper and a
coroutine (aiohttp's ``_fix_request_current_app`` around each).
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

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

PRINCIPAL = web.RequestKey("vifbroker.principal", Principal)
MEDIA = web.RequestKey("vifbroker.media", str)

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_UNMATCHED = "<unmatched>"


def produces(*media: str) -> Callable[[H], H]:
    """Declare the media types a handler can answer with, by preference (→ 406 on none)."""

    def mark(handler: H) -> H:
        handler.produces = media  # type: ignore[attr-defined]
        return handler

    return mark


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return _UNMATCHED
    return resource.canonical


def request_ids() -> Callable[[], str]:
    """Unique ids: a random per-process prefix and a counter (uuid4 costs a syscall each)."""
    prefix = secrets.token_hex(6)
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter):x}"


def front_middleware() -> Middleware:
    """The app's one middleware (ids are per app: :func:`request_ids`).

    One coroutine frame between aiohttp and the handler (it was three: a
    wrapper, the front and the guard), and the response headers set here rather
    than from an ``on_response_prepare`` signal (a coroutine more per response):
    every request's await chain passes through these frames again each time
    it resumes.
    """
    new_id = request_ids()

    @web.middleware
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
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"{exc.method} not allowed here", sorted(exc.allowed_methods))
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
    if offers and request.match_info.http_exception is None:
        request[MEDIA] = choose(request.headers.get("Accept"), offers)
