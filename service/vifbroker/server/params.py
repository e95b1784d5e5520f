"""Path segments, query parameters and request headers, read strictly.

Every pattern is a full match (``$`` would also match before a trailing
newline), and numbers are ASCII digits only: ``str.isdigit`` accepts ``²``,
which ``int`` refuses, and ``int`` accepts ``٣`` and ``1_000``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from vifbroker.model import normalize_mac, normalize_uuid
from vifbroker.model.migration import HOST_PATTERN

from .errors import Invalid, Malformed

N = TypeVar("N", int, float)

_HOST_RE = re.compile(HOST_PATTERN.removeprefix("^").removesuffix("$"))
_INT_RE = re.compile(r"-?[0-9]{1,20}")
_FLOAT_RE = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")
# One strong entity tag holding a generation: "3". A weak tag W/"3" is
# recognised so that it can be refused by comparison (it never matches).
_ETAG_RE = re.compile(r'(W/)?"([0-9]{1,19})"')


def _path_problem(name: str, msg: str) -> Invalid:
    return Invalid(msg, [{"loc": ["path", name], "msg": msg}])


def path_uuid(request: web.Request, name: str = "uuid") -> str:
    try:
        return normalize_uuid(request.match_info[name])
    except ValueError as exc:
        raise _path_problem(name, str(exc)) from exc


def path_mac(request: web.Request, name: str = "mac") -> str:
    try:
        return normalize_mac(request.match_info[name])
    except ValueError as exc:
        raise _path_problem(name, str(exc)) from exc


def path_host(request: web.Request, name: str = "host") -> str:
    host = request.match_info[name]
    if not _HOST_RE.fullmatch(host):
        raise _path_problem(name, "not a host name")
    return host


def _query_number(
    request: web.Request,
    name: str,
    default: N,
    bounds: tuple[N, N],
    pattern: re.Pattern[str],
    convert: Callable[[str], N],
    kind: str,
) -> N:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not pattern.fullmatch(raw):
        raise Malformed(f"query parameter {name!r} must be {kind} in ASCII digits")
    value = convert(raw)
    lo, hi = bounds
    if not lo <= value <= hi:
        raise Malformed(f"query parameter {name!r} must be within {lo}..{hi}")
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    return _query_number(request, name, default, (lo, hi), _INT_RE, int, "an integer")


def query_float(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
    return _query_number(request, name, default, (lo, hi), _FLOAT_RE, float, "a number")


def revision_header(request: web.Request, header: str) -> int | None:
    """A revision in ``header`` (e.g. ``Last-Event-ID``); None when absent or empty."""
    raw = request.headers.get(header, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", raw) or int(raw) > 2**63 - 1:
        raise Malformed(f"{header} must be a revision in ASCII digits")
    return int(raw)


#: What :func:`if_match` answers for a weak entity tag: a generation no vif
#: ever has, so the store's strong comparison fails with 412 and tells the
#: current generation (RFC 9110 13.1.1: If-Match never matches a weak tag).
NEVER_MATCHES = -1


def if_match(request: web.Request) -> int | None:
    """The generation of ``If-Match: "<generation>"``; None without the header."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    found = _ETAG_RE.fullmatch(raw.strip())
    if found is None:
        raise Malformed('If-Match must be one entity tag holding a generation, e.g. "3"')
    if found.group(1):
        return NEVER_MATCHES
    return int(found.group(2))
