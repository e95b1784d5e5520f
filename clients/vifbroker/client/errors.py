"""Everything the broker client raises.

Errors (tree)::

    ClientError                     root of every client-side error
    ├── TransportError              no broker URL answered (connection refused,
    │                               reset, timed out) before the retries ran out
    ├── BadResponse                 a broker answered something that is not the
    │                               API (unparseable JSON, wrong shape)
    └── ProblemError                the broker answered with a problem document;
        │                           carries ``type``, ``slug``, ``status``,
        │                           ``title``, ``detail``
        ├── Unauthorized            401 unauthorized
        ├── Forbidden               403 forbidden
        ├── NotFound                404 not-found
        ├── Conflict                409 conflict
        │   └── NoActiveMigration   409 no-active-migration
        ├── PreconditionFailed      412 precondition-failed (``current_generation``)
        ├── InvalidRequest          400 malformed, 413, 415, 422 invalid
        └── Unavailable             503 unavailable (after the retries ran out)

aiohttp's exceptions never leave this package: the transport translates them
here, ``raise … from exc``.
"""

from __future__ import annotations

from typing import Any

PROBLEM_PREFIX = "urn:vifbroker:problem:"


class ClientError(Exception):
    """Root of every broker-client error."""


class TransportError(ClientError):
    """No broker answered: every URL failed to connect or timed out."""


class BadResponse(ClientError):
    """The broker's answer could not be understood."""


class ProblemError(ClientError):
    """An RFC 9457 problem document from the broker."""

    def __init__(
        self,
        status: int,
        type: str,
        title: str = "",
        detail: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {slug_of(type)}: {detail or title}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.extra = dict(extra or {})

    @property
    def slug(self) -> str:
        return slug_of(self.type)


class Unauthorized(ProblemError):
    pass


class Forbidden(ProblemError):
    pass


class NotFound(ProblemError):
    pass


class Conflict(ProblemError):
    pass


class NoActiveMigration(Conflict):
    pass


class PreconditionFailed(ProblemError):
    @property
    def current_generation(self) -> int | None:
        value = self.extra.get("current_generation")
        return value if isinstance(value, int) else None


class InvalidRequest(ProblemError):
    pass


class Unavailable(ProblemError):
    pass


_BY_SLUG: dict[str, type[ProblemError]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not-found": NotFound,
    "conflict": Conflict,
    "no-active-migration": NoActiveMigration,
    "precondition-failed": PreconditionFailed,
    "payload-too-large": InvalidRequest,
    "unsupported-media-type": InvalidRequest,
    "malformed": InvalidRequest,
    "invalid": InvalidRequest,
    "unavailable": Unavailable,
}

_BY_STATUS: dict[int, type[ProblemError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    503: Unavailable,
}


def slug_of(problem_type: str) -> str:
    if problem_type.startswith(PROBLEM_PREFIX):
        return problem_type[len(PROBLEM_PREFIX) :]
    return problem_type


def problem_from(status: int, body: object) -> ProblemError:
    """Build the typed error for an error answer (a problem document or not)."""
    doc: dict[str, Any] = body if isinstance(body, dict) else {}
    ptype = doc.get("type")
    if not isinstance(ptype, str) or not ptype:
        ptype = "about:blank"
    title = doc.get("title")
    detail = doc.get("detail")
    if not isinstance(detail, str):
        detail = body if isinstance(body, str) and body else None
    extra = {k: v for k, v in doc.items() if k not in ("type", "title", "status", "detail")}
    cls = _BY_SLUG.get(slug_of(ptype)) or _BY_STATUS.get(status) or ProblemError
    return cls(status, ptype, title if isinstance(title, str) else "", detail, extra)
