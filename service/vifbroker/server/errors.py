"""Server errors, each knowing its HTTP status and RFC 9457 problem type.

    ServerError                      root of everything the server raises on purpose
    └── Problem                      an HTTP-facing error: status + slug + title
        ├── Unauthorized             401 unauthorized (adds WWW-Authenticate: Bearer)
        ├── Forbidden                403 forbidden
        ├── NotFound                 404 not-found
        ├── MethodNotAllowed         405 method-not-allowed
        ├── NotAcceptable            406 not-acceptable
        ├── Conflict                 409 conflict
        ├── NoActiveMigration        409 no-active-migration
        ├── RequestTimeout           408 request-timeout (headers or body too slow)
        ├── PreconditionFailed       412 precondition-failed (+ current_generation)
        ├── PayloadTooLarge          413 payload-too-large
        ├── UnsupportedMediaType     415 unsupported-media-type
        ├── HeadersTooLarge          431 headers-too-large
        ├── Malformed                400 malformed (unparseable JSON/XML, bad query)
        ├── Invalid                  422 invalid (+ errors list)
        ├── Unavailable              503 unavailable
        └── Internal                 500 internal (a bug; never on purpose)

Store errors are translated at the boundary by :func:`from_store_error`; the one
place that turns any of these into a response is ``middleware.problem_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from vifbroker.store import errors as store_errors

PROBLEM_PREFIX = "urn:vifbroker:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class ServerError(Exception):
    """Root of every error the server raises."""


class Problem(ServerError):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra

    @property
    def type(self) -> str:
        return PROBLEM_PREFIX + self.slug

    def headers(self) -> Mapping[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Unauthorized"

    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="vifbroker"'}


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(Problem):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"

    def __init__(self, detail: str, allowed: list[str]) -> None:
        super().__init__(detail)
        self.allowed = allowed

    def headers(self) -> Mapping[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class NotAcceptable(Problem):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict"


class NoActiveMigration(Problem):
    status, slug, title = 409, "no-active-migration", "No active migration"


class RequestTimeout(Problem):
    status, slug, title = 408, "request-timeout", "Request timeout"


class PreconditionFailed(Problem):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(Problem):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class HeadersTooLarge(Problem):
    status, slug, title = 431, "headers-too-large", "Request header fields too large"


class Malformed(Problem):
    status, slug, title = 400, "malformed", "Malformed request"


class Invalid(Problem):
    status, slug, title = 422, "invalid", "Invalid request"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail, errors=errors if errors is not None else [{"msg": detail}])


class Unavailable(Problem):
    status, slug, title = 503, "unavailable", "Service unavailable"


class Internal(Problem):
    pass


def invalid_from_validation(exc: ValidationError, where: str = "body") -> Invalid:
    """A 422 listing pydantic's errors, without echoing the (possibly huge) input."""
    errors = [
        {
            "loc": [where, *(str(p) for p in err["loc"])],
            "msg": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = errors[0] if errors else {"loc": [where], "msg": "invalid"}
    detail = "{}: {}".format(".".join(str(p) for p in first["loc"]), first["msg"])
    return Invalid(detail, errors)


#: The one table from store errors to problems. Looked up along the error's
#: class hierarchy, so a subclass without a row of its own takes its parent's.
STORE_PROBLEMS: Mapping[type[store_errors.StoreError], type[Problem]] = {
    store_errors.NotFound: NotFound,
    store_errors.NoActiveMigration: NoActiveMigration,
    store_errors.Conflict: Conflict,
    store_errors.InvalidTransition: Conflict,
    store_errors.PreconditionFailed: PreconditionFailed,
    store_errors.BadCursor: Malformed,
    store_errors.TooManyVifs: PayloadTooLarge,
    store_errors.InvalidInput: Invalid,
    store_errors.WrongHost: Forbidden,
    store_errors.StoreUnavailable: Unavailable,
}


def from_store_error(exc: store_errors.StoreError) -> Problem:
    """Translate a store error into its HTTP problem (see ``STORE_PROBLEMS``)."""
    problem = next(
        (STORE_PROBLEMS[cls] for cls in type(exc).__mro__ if cls in STORE_PROBLEMS), Internal
    )
    return problem(str(exc) or type(exc).__name__, **exc.details())
