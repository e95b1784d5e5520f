"""Check real responses against openapi.yaml.

:class:`SpecChecker` answers one question per response: does the contract
allow this status, this content type and (for JSON) this body for this request?
It returns violation strings instead of raising, so a test can gather every
violation of a whole session and assert the list is empty at the end.

What it checks, given method, path, query, status, content type, body (and
optionally the response headers):

* the request matches a documented path template and method; a request that
  matches none may only be answered with one of ``x-unrouted-responses``
  (401/403/404/405 problems): any other answer means an undocumented route;
* the status is documented for the operation, and the content type for the status;
* a JSON body (``application/json``, ``application/problem+json``) validates
  against its schema, including ``format: date-time``; other media types
  (XML, text, event streams, YAML) are only checked by content type;
* documented headers marked ``required`` are present and match their schema;
* on a 2xx, the path parameters and the documented query parameters the
  request carried satisfy their schemas: the server accepted what the
  contract says it must refuse.

:func:`conformance_middleware` runs the checker on every response of an
aiohttp app. Install it outermost so it sees what the client sees::

    app.middlewares.insert(0, conformance_middleware(SpecChecker.load(), violations))
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from openapi_schema_validator import OAS31Validator

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
#: Per response, report at most this many schema errors (the first ones by path).
MAX_SCHEMA_ERRORS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def media_type(content_type: str | None) -> str:
    """``text/plain; version=0.0.4`` → ``text/plain``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(mtype: str) -> bool:
    return mtype == "application/json" or mtype.endswith("+json")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: Mapping[str, Any]
    parameters: tuple[Mapping[str, Any], ...]


class SpecChecker:
    """Response conformance against one OpenAPI 3.1 document."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        # keyed by id(); the schema is kept too so a recycled id cannot alias
        self._validators: dict[int, tuple[Mapping[str, Any], OAS31Validator]] = {}
        self._routes: list[tuple[re.Pattern[str], str]] = sorted(
            ((self._compile(t), t) for t in spec.get("paths", {})),
            # literal segments win over templated ones at the same place
            key=lambda route: route[1].count("{"),
        )

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> SpecChecker:
        with path.open(encoding="utf-8") as fh:
            return cls(yaml.safe_load(fh))

    # ------------------------------------------------------------ lookup

    @staticmethod
    def _compile(template: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}/]+\})", template)
        regex = "".join(
            f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts
        )
        return re.compile(f"^{regex}$")

    def resolve(self, node: Any) -> Any:
        """Follow local ``$ref`` chains of non-schema objects (responses, parameters, …)."""
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise ValueError(f"only local references are supported: {ref!r}")
            target: Any = self.spec
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def match_path(self, path: str) -> tuple[str, dict[str, str]] | None:
        for regex, template in self._routes:
            m = regex.match(path)
            if m:
                return template, m.groupdict()
        return None

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The documented operation for a request (HEAD falls back to GET)."""
        matched = self.match_path(path)
        if matched is None:
            return None
        template, path_params = matched
        item = self.spec["paths"][template]
        verb = method.lower()
        if verb not in item and verb == "head":
            verb = "get"
        if verb not in item or verb not in METHODS:
            return None
        op = item[verb]
        merged: dict[tuple[str, str], Mapping[str, Any]] = {}
        for raw in [*item.get("parameters", ()), *op.get("parameters", ())]:
            param = self.resolve(raw)
            merged[(param["name"], param["in"])] = param
        return Operation(verb, template, op, tuple(merged.values())), path_params

    # -------------------------------------------------------- validation

    @cached_property
    def _components(self) -> Mapping[str, Any]:
        return self.spec.get("components", {})

    def schema_errors(self, schema: Mapping[str, Any], instance: Any) -> list[str]:
        """Validate ``instance``; local ``#/components/...`` references resolve."""
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            validator = cached[1]
        else:
            # A root holding ``components`` lets "#/components/schemas/X" resolve.
            root = {**schema, "components": self._components}
            validator = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
            self._validators[id(schema)] = (schema, validator)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        out = []
        for err in errors[:MAX_SCHEMA_ERRORS]:
            where = "$" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path
            )
            out.append(f"{where}: {err.message}")
        if len(errors) > MAX_SCHEMA_ERRORS:
            out.append(f"... and {len(errors) - MAX_SCHEMA_ERRORS} more schema errors")
        return out

    def check(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        status: int,
        content_type: str | None,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Every way this response breaks the contract; empty when it conforms."""
        prefix = f"{method.upper()} {path} -> {status}"
        found = self.find(method, path)
        if found is None:
            unrouted = self.spec.get("x-unrouted-responses", {})
            if str(status) not in unrouted:
                return [f"{prefix}: undocumented route (no operation for this method and path)"]
            response = self.resolve(unrouted[str(status)])
            params: list[str] = []
        else:
            op, path_params = found
            response = self.resolve(op.spec.get("responses", {}).get(str(status)))
            if response is None:
                return [f"{prefix}: status {status} not documented for {op.method} {op.template}"]
            params = self._parameter_errors(op, path_params, query) if status < 300 else []
        skip_body = method.upper() == "HEAD"
        problems = [
            *params,
            *self._body_errors(response, content_type, None if skip_body else body),
            *self._header_errors(response, headers),
        ]
        return [f"{prefix}: {p}" for p in problems]

    def _body_errors(
        self, response: Mapping[str, Any], content_type: str | None, body: bytes | None
    ) -> list[str]:
        content: Mapping[str, Any] = response.get("content", {})
        mtype = media_type(content_type)
        if not content:
            return [] if not body else [f"body of {len(body)} bytes where none is documented"]
        if mtype not in content:
            return [f"content type {mtype or '(none)'!r} not documented (have {sorted(content)})"]
        if body is None or not is_json(mtype):
            return []
        try:
            instance = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return [f"{mtype} body is not JSON: {exc}"]
        schema = content[mtype].get("schema")
        return self.schema_errors(schema, instance) if schema is not None else []

    def _header_errors(
        self, response: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> list[str]:
        if headers is None:
            return []
        lowered = {k.lower(): v for k, v in headers.items()}
        out = []
        for name, raw in response.get("headers", {}).items():
            header = self.resolve(raw)
            value = lowered.get(name.lower())
            if value is None:
                if header.get("required"):
                    out.append(f"required header {name} missing")
                continue
            out += [f"header {name}: {e}" for e in self.schema_errors(header["schema"], value)]
        return out

    def _parameter_errors(
        self, op: Operation, path_params: Mapping[str, str], query: Mapping[str, str]
    ) -> list[str]:
        out = []
        for param in op.parameters:
            name, where = param["name"], param["in"]
            if where == "path":
                raw = path_params.get(name)
            elif where == "query":
                raw = query.get(name)
            else:
                continue  # headers are the client's side of the request
            if not raw:  # absent, or `?name=`: the server may take either as the default
                continue
            schema = param["schema"]
            value = _coerce(raw, self.resolve(schema).get("type"))
            errors = self.schema_errors(schema, value)
            out += [f"accepted {where} parameter {name}={raw!r} ({e})" for e in errors]
        return out


def _coerce(raw: str, declared: Any) -> Any:
    """A query/path string as the JSON value its schema type describes (or unchanged)."""
    try:
        if declared == "integer":
            return int(raw)
        if declared == "number":
            return float(raw)
    except ValueError:
        return raw
    return raw


def _response_body(response: web.StreamResponse) -> bytes | None:
    """The bytes of a plain ``web.Response``; None for streams already sent."""
    if not isinstance(response, web.Response):
        return None
    body = response.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    value = getattr(body, "_value", None)  # aiohttp payloads built from bytes
    return bytes(value) if isinstance(value, bytes | bytearray) else None


def check_response(
    checker: SpecChecker, request: web.Request, response: web.StreamResponse, check_headers: bool
) -> list[str]:
    return checker.check(
        request.method,
        request.path,
        request.query,
        response.status,
        response.headers.get("Content-Type", response.content_type),
        _response_body(response),
        response.headers if check_headers else None,
    )


def conformance_middleware(
    checker: SpecChecker, violations: list[str], *, check_headers: bool = True
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware appending every contract violation to ``violations``.

    Responses raised as ``web.HTTPException`` are checked and re-raised. With
    ``check_headers`` the documented required headers (X-Request-Id, Location,
    ETag, WWW-Authenticate) must already be on the response when it passes
    this middleware: install it outermost, or turn header checks off when the
    app adds headers later (e.g. in ``on_response_prepare``).
    """

    @web.middleware
    async def conformance(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            violations.extend(check_response(checker, request, exc, check_headers))
            raise
        violations.extend(check_response(checker, request, response, check_headers))
        return response

    return conformance
