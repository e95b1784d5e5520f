"""HTTP to one of several broker replicas, with retries; aiohttp ends here.

A request goes to the replica that answered last. When it cannot be reached,
or answers 5xx, the next URL is tried at once; when every URL failed, the
round is repeated after an exponential, jittered backoff. Every API request the
client sends is safe to repeat: uploads create a new generation with the same
content (the destination applies the latest), results for a generation already
recorded change nothing, and ``create_migration`` always sends an ``id`` (one
it generates when the caller gives none), so a retried create answers the same
migration instead of 409.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from .errors import BadResponse, ClientError, ProblemError, TransportError, problem_from

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving up on a request."""

    #: rounds over all broker URLs (1 = no retry)
    attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 2.0
    #: per-request timeout when the caller gives none (seconds)
    timeout: float = 10.0

    def delay(self, round_no: int) -> float:
        """Backoff before round ``round_no`` (1-based), full jitter on the upper half."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (round_no - 1)))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _decode(resp: Response) -> object:
    if not resp.body:
        return None
    if resp.content_type.endswith("json"):
        try:
            return json.loads(resp.body)
        except ValueError:
            return resp.body.decode("utf-8", "replace")
    return resp.body.decode("utf-8", "replace")


class _Retryable(Exception):
    """Internal: this URL failed in a way another replica (or later) may not."""

    def __init__(self, reason: str, error: ClientError) -> None:
        super().__init__(reason)
        self.error = error


def check_broker_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError unless it is an http(s) base URL.

    A malformed URL is a configuration error: it fails here, at once, and is
    never retried like an unreachable broker.
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed broker URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"malformed broker URL {url!r}: expected http(s)://HOST[:PORT]")
    try:
        parsed.port  # noqa: B018 - a port out of range raises here
    except ValueError as exc:
        raise ValueError(f"malformed broker URL {url!r}: {exc}") from exc
    if parsed.query_string or parsed.fragment:
        raise ValueError(f"malformed broker URL {url!r}: no query or fragment allowed")
    return url.rstrip("/")


def tls_context(
    ca_file: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext | None:
    """A client TLS context: trust ``ca_file`` (else the system's CAs), present
    ``cert``/``key`` when the broker asks for a client certificate. None when
    nothing is given (https:// URLs then use the system's defaults)."""
    if ca_file is None and cert is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError("--cert and --key go together")
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


class Transport:
    """Sends requests to the first broker URL that answers.

    Each logical request carries one ``X-Request-Id`` (kept across retries and
    fail-over), so the broker's log lines and the caller's join on it.
    """

    def __init__(
        self,
        urls: Sequence[str],
        token: str,
        *,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self.urls = [check_broker_url(u) for u in urls]
        self.retry = retry or RetryPolicy()
        self._token = token
        self._tls = tls
        self._session = session
        self._own_session = session is None
        self._preferred = 0

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A long-poll holds a connection; keep enough for an evacuation's
            # worth of concurrent result posts next to it.
            connector = aiohttp.TCPConnector(
                limit=256, ttl_dns_cache=60, ssl=self._tls if self._tls is not None else True
            )
            self._session = aiohttp.ClientSession(connector=connector)
            self._own_session = True
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline_s: float | None = None,
    ) -> Response:
        """Send, fail over, retry; return a 2xx/3xx/4xx answer, raise otherwise.

        4xx answers are returned, not raised: the caller knows which it expects.
        """
        hdrs = self._headers(headers)
        last: ClientError | None = None
        for round_no in range(1, self.retry.attempts + 1):
            if round_no > 1:
                await asyncio.sleep(self.retry.delay(round_no - 1))
            for offset in range(len(self.urls)):
                index = (self._preferred + offset) % len(self.urls)
                try:
                    resp = await self._send(
                        method, self.urls[index], path, params, json_body, data, hdrs, deadline_s
                    )
                except _Retryable as exc:
                    log.debug(
                        "broker %s: %s %s failed: %s",
                        self.urls[index],
                        method,
                        path,
                        exc,
                        extra={"request_id": hdrs["X-Request-Id"]},
                    )
                    last = exc.error
                    continue
                self._preferred = index
                return resp
        assert last is not None
        raise last

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        hdrs = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "X-Request-Id": secrets.token_hex(8),
        }
        if extra:
            hdrs.update(extra)
        return hdrs

    async def lines(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        idle_timeout: float = 60.0,
    ) -> AsyncIterator[str]:
        """GET a streaming answer (Server-Sent Events) and yield it line by line.

        The first URL that answers 200 is read until the broker ends the stream;
        ``idle_timeout`` bounds the silence between two lines (the broker sends
        keepalives). TransportError when no URL answers or the stream breaks
        (the caller resumes from what it saw), a ProblemError for a 4xx answer.
        """
        hdrs = self._headers({"Accept": "text/event-stream"})
        limit = aiohttp.ClientTimeout(
            total=None, sock_connect=self.retry.timeout, sock_read=idle_timeout
        )
        last: ClientError | None = None
        for offset in range(len(self.urls)):
            index = (self._preferred + offset) % len(self.urls)
            url = self.urls[index] + path
            try:
                async with self._get_session().get(
                    url, params=params, headers=hdrs, timeout=limit
                ) as r:
                    if r.status != 200:
                        resp = Response(r.status, dict(r.headers), await r.read(), url)
                        last = problem_from(resp.status, _decode(resp))
                        if resp.status >= 500:
                            continue
                        raise last
                    self._preferred = index
                    async for raw in r.content:
                        yield raw.decode("utf-8", "replace").rstrip("\r\n")
                    return
            except TimeoutError as exc:
                raise TransportError(f"GET {url}: nothing for {idle_timeout:g}s") from exc
            except aiohttp.ClientError as exc:
                last = TransportError(f"GET {url}: {type(exc).__name__}: {exc}")
                if isinstance(exc, aiohttp.ClientConnectorError):
                    continue  # never connected: the next replica may answer
                raise last from exc
        assert last is not None
        raise last

    async def _send(
        self,
        method: str,
        base: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: bytes | None,
        headers: dict[str, str],
        deadline_s: float | None,
    ) -> Response:
        url = base + path
        limit = aiohttp.ClientTimeout(
            total=deadline_s if deadline_s is not None else self.retry.timeout
        )
        try:
            async with self._get_session().request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                timeout=limit,
            ) as r:
                body = await r.read()
                resp = Response(r.status, dict(r.headers), body, url)
        except TimeoutError as exc:
            raise _Retryable(
                "timed out", TransportError(f"{method} {url}: timed out after {limit.total}s")
            ) from exc
        except aiohttp.ClientError as exc:
            raise _Retryable(
                str(exc), TransportError(f"{method} {url}: {type(exc).__name__}: {exc}")
            ) from exc
        if resp.status >= 500:
            err = problem_from(resp.status, _decode(resp))
            raise _Retryable(f"{resp.status}", err)
        return resp


def raise_for_problem(resp: Response) -> None:
    if resp.status >= 400:
        raise problem_from(resp.status, _decode(resp))


def decode_json(resp: Response) -> Any:
    body = _decode(resp)
    if not isinstance(body, dict | list):
        raise BadResponse(f"{resp.url}: expected a JSON document, got {resp.content_type!r}")
    return body


__all__ = [
    "ProblemError",
    "Response",
    "RetryPolicy",
    "Transport",
    "check_broker_url",
    "decode_json",
]
