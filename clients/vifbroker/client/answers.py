"""What the client's calls answer: small values, and the validation of the broker's documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vifbroker.model import Migration, MigrationState

from .errors import BadResponse, ProblemError, problem_from
from .transport import Response, decode_json

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class UploadResult:
    domain_uuid: str
    revision: int
    #: MAC → the generation the upload created
    generations: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MigrationPage:
    migrations: list[Migration]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ResultsTaken:
    """One migration's outcome in a host's results post: taken (its state and
    revision), or refused with the error its own post would have raised."""

    migration_id: str
    state: MigrationState | None = None
    revision: int | None = None
    error: ProblemError | None = None


@dataclass(frozen=True, slots=True)
class UploadTaken:
    """One domain's outcome in a host's upload: its upload's answer, or refused with
    the error its own upload would have raised."""

    domain_uuid: str
    result: UploadResult | None = None
    error: ProblemError | None = None


def upload_result(doc: dict[str, Any]) -> UploadResult:
    """An upload's answer (KeyError, TypeError or ValueError when it is not one)."""
    gens = {str(r["mac"]): int(r["generation"]) for r in doc["interfaces"]}
    return UploadResult(str(doc["domain_uuid"]), int(doc["revision"]), gens)


def upload_taken(entry: dict[str, Any]) -> UploadTaken:
    domain_uuid = str(entry["domain_uuid"])
    if "problem" in entry:
        doc = entry["problem"]
        return UploadTaken(domain_uuid, error=problem_from(int(doc["status"]), doc))
    return UploadTaken(domain_uuid, upload_result(entry))


def taken(entry: dict[str, Any]) -> ResultsTaken:
    mid = str(entry["id"])
    if "problem" in entry:
        doc = entry["problem"]
        return ResultsTaken(mid, error=problem_from(int(doc["status"]), doc))
    return ResultsTaken(mid, MigrationState(entry["state"]), int(entry["revision"]))


def parse(model: type[M], doc: Any, what: str) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise BadResponse(f"{what}: not a {model.__name__}: {exc}") from exc


def parse_text(model: type[M], text: str, what: str) -> M:
    """A JSON document (text) as ``model``, validated straight from the text."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BadResponse(f"{what}: unreadable JSON: {exc}") from exc
        raise BadResponse(f"{what}: not a {model.__name__}: {exc}") from exc


def parse_body(model: type[M], resp: Response, what: str) -> M:
    """The JSON answer as ``model``, validated straight from its bytes (no dicts
    in between: a quarter faster on a large inbox than ``json.loads`` first)."""
    if not resp.body or not resp.content_type.endswith("json"):
        return parse(model, decode_json(resp), what)  # says what came instead
    try:
        return model.model_validate_json(resp.body)
    except ValidationError as exc:
        raise BadResponse(f"{what}: not a {model.__name__}: {exc}") from exc
