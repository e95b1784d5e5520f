"""openapi.yaml is a valid, self-consistent contract, and the checker enforces it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from lxml import etree
from openapi_spec_validator import validate

from openapi_check import SPEC_PATH, SpecChecker, conformance_middleware
from vifbroker import model as vm

CHECKER = SpecChecker.load()
EXAMPLES = CHECKER.spec["components"]["examples"]
NOW = datetime(2025, 11, 27, 8, 50, tzinfo=UTC)
UUID = "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
RID = {"X-Request-Id": "req-1"}
# fmt: off
SLUGS = {
    "malformed": 400, "unauthorized": 401, "forbidden": 403, "not-found": 404,
    "method-not-allowed": 405, "not-acceptable": 406, "request-timeout": 408,
    "conflict": 409, "no-active-migration": 409, "precondition-failed": 412,
    "payload-too-large": 413, "unsupported-media-type": 415, "invalid": 422,
    "headers-too-large": 431, "unavailable": 503,
}
# fmt: on


@pytest.fixture
def checker() -> SpecChecker:
    return CHECKER


def full_interface() -> vm.Interface:
    return vm.Interface(
        mac="52-54-00-12-34-56",
        type="bridge",
        source=vm.Source(bridge="br-int", portgroup="web"),  # type: ignore[call-arg]
        target_dev="vnet0",
        model="virtio",
        virtualport=vm.VirtualPort(
            type="openvswitch",
            parameters={"interfaceid": "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f", "profileid": "gold"},
            portdata='{"port_security": true}\n\x01',
        ),
        vlan=vm.Vlan(
            trunk=True, tags=[vm.VlanTag(id=42), vm.VlanTag(id=48, native_mode="untagged")]
        ),
        mtu=9000,
        link_state="up",
        bandwidth=vm.Bandwidth(
            inbound=vm.Rate(average=1000, peak=5000, burst=1024),
            outbound=vm.Rate(average=500, floor=100),
        ),
    )


def migration(**changes: Any) -> vm.Migration:
    """The spec's "applied" example, read by the model (so the example is one it can hold)."""
    base = vm.Migration.model_validate(EXAMPLES["MigrationApplied"]["value"])
    return base.model_copy(update=changes)


def dump(model: Any, exclude_none: bool = False) -> Any:
    return model.model_dump(mode="json", exclude_none=exclude_none)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def problem(slug: str, **extra: Any) -> bytes:
    urn = f"urn:vifbroker:problem:{slug}"
    return body(dict(type=urn, title=slug, status=SLUGS[slug], detail="because", **extra))


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def operations(checker: SpecChecker) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in checker.spec["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                yield path, method, op


# ----------------------------------------------------------- the document


def test_spec_validates(checker: SpecChecker) -> None:
    validate(checker.spec)
    assert checker.spec["openapi"].startswith("3.1")


def test_every_component_is_referenced_and_every_reference_resolves(checker: SpecChecker) -> None:
    used = set(refs(checker.spec))
    for ref in used:
        assert checker.resolve({"$ref": ref}) is not None, ref
    defined = {
        f"#/components/{section}/{name}"
        for section, entries in checker.spec["components"].items()
        if section != "securitySchemes"
        for name in entries
    }
    assert len(defined) > 60
    assert sorted(defined - used) == []


def test_problem_types_are_the_stable_urns(checker: SpecChecker) -> None:
    enum = checker.spec["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
    assert sorted(enum) == sorted(f"urn:vifbroker:problem:{s}" for s in SLUGS)


def test_problem_responses_carry_their_own_status_and_type(checker: SpecChecker) -> None:
    seen = set()
    for path, method, op in operations(checker):
        for code, raw in op["responses"].items():
            content = checker.resolve(raw).get("content", {})
            if "application/problem+json" not in content:
                continue
            narrowed = content["application/problem+json"]["schema"]["allOf"][1]["properties"]
            # One-value enums, not const: openapi-python-client cannot merge a const
            # into the Problem schema and would drop the response.
            (urn,) = narrowed["type"]["enum"]
            slug = urn.rsplit(":", 1)[1]
            (status,) = narrowed["status"]["enum"]
            assert status == SLUGS[slug] == int(code), (path, method, code)
            seen.add(slug)
    # 405 and 431 are documented as unrouted (431: answered by the HTTP layer)
    assert seen == set(SLUGS) - {"method-not-allowed", "headers-too-large"}


def test_route_rules(checker: SpecChecker) -> None:
    ops = list(operations(checker))
    assert len(ops) == 23
    for path, method, op in ops:
        codes = set(op["responses"])
        assert "500" not in codes, (path, method)
        if path.startswith("/v1/"):
            assert {"401", "403", "503"} <= codes, (path, method)
            assert "security" not in op, (path, method)
        else:
            assert op["security"] == [], (path, method)
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= codes, (path, method)
        for code, raw in op["responses"].items():
            headers = checker.resolve(raw).get("headers", {})
            assert "X-Request-Id" in headers, (path, method, code)
    assert checker.spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_server_problem_classes_match_the_spec() -> None:
    errors = pytest.importorskip("vifbroker.server.errors")
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.Problem) and c.slug != "internal"
    ]
    assert {c.slug: c.status for c in classes} == SLUGS


# ------------------------------------------------------------- examples


def test_examples_validate_against_their_schemas(checker: SpecChecker) -> None:
    checked = 0
    for name, schema in checker.spec["components"]["schemas"].items():
        for example in schema.get("examples", []):
            ref = {"$ref": f"#/components/schemas/{name}"}
            assert checker.schema_errors(ref, example) == [], name
            checked += 1
    media: list[tuple[str, dict[str, Any]]] = []
    for path, method, op in operations(checker):
        body_content = checker.resolve(op.get("requestBody", {})).get("content", {})
        media += [(f"{method} {path} request", m) for m in body_content.items()]
        for code, raw in op["responses"].items():
            content = checker.resolve(raw).get("content", {}).items()
            media += [(f"{method} {path} {code}", m) for m in content]
    for where, (mtype, obj) in media:
        values = [checker.resolve(e)["value"] for e in obj.get("examples", {}).values()]
        values += [obj["example"]] if "example" in obj else []
        for value in values:
            if mtype == "application/xml":
                assert etree.fromstring(value.encode()).tag in {"interface", "interfaces"}
            assert checker.schema_errors(obj["schema"], value) == [], where
            checked += 1
    assert checked >= 14


def test_xml_example_is_the_json_example(checker: SpecChecker) -> None:
    codec = pytest.importorskip("vifbroker.model.codec")
    examples = checker.spec["components"]["examples"]
    from_xml = codec.parse_interface(examples["InterfaceXml"]["value"])
    assert from_xml == vm.Interface.model_validate(examples["InterfaceOpenvswitch"]["value"])
    listed = codec.parse_document(examples["InterfacesXml"]["value"])
    assert listed.domain_uuid == UUID and len(listed.interfaces) == 2


# ------------------------------------------------- schemas versus the model


@pytest.mark.parametrize("exclude_none", [True, False])
def test_interface_schema_accepts_model_dumps(checker: SpecChecker, exclude_none: bool) -> None:
    ref = {"$ref": "#/components/schemas/Interface"}
    hostdev = vm.Interface(
        mac="001122334455", type="hostdev", source=vm.Source(address={"type": "pci", "bus": "0x03"})
    )
    udp = vm.Interface(
        mac="52:54:00:00:00:01", type="udp", source=vm.Source(address="127.0.0.1", port="5511")
    )  # type: ignore[call-arg]
    for iface in (full_interface(), hostdev, udp, vm.Interface(mac="52:54:00:00:00:02")):
        assert checker.schema_errors(ref, dump(iface, exclude_none)) == []
    assert dump(full_interface(), True)["source"] == {"bridge": "br-int", "portgroup": "web"}


@pytest.mark.parametrize("exclude_none", [True, False])
def test_response_schemas_accept_model_dumps(checker: SpecChecker, exclude_none: bool) -> None:
    iface = full_interface()
    result = vm.VifResult(status="applied", applied_generation=2, digest=vm.portdata_digest("x"))
    record = vm.VifRecord(
        domain_uuid=UUID, mac=iface.mac, generation=2, interface=iface, revision=5, result=result
    )
    purged = record.model_copy(update={"interface": None})
    item = {"revision": 7, "direction": "incoming", "migration": migration()}
    inbox = vm.Inbox(revision=7, items=[vm.InboxItem(**item, interfaces=[record, purged])])
    ovs = {"name": "openvswitch", "interface_types": ["bridge"], "virtualport_types": ["ovs"]}
    host = vm.Host(name="hv-b", last_seen=NOW, backends=[vm.BackendInfo(**ovs)])
    cases = {"Migration": migration(domain_name="web"), "Record": purged, "Inbox": inbox}
    cases["Host"] = host
    for name, model in cases.items():
        ref = {"$ref": f"#/components/schemas/{name}"}
        assert checker.schema_errors(ref, dump(model, exclude_none)) == [], name


def test_schemas_reject_what_the_model_rejects(checker: SpecChecker) -> None:
    def errors(name: str, value: Any) -> list[str]:
        return checker.schema_errors({"$ref": f"#/components/schemas/{name}"}, value)

    good = dump(full_interface())
    assert errors("Interface", {**good, "mtu": 67})
    assert errors("Interface", {**good, "mac": "52:54:00:12:34"})
    assert errors("Interface", {**good, "colour": "blue"})
    assert errors("Interface", {**good, "source": {"xmlns": "x"}})
    assert errors("Migration", {**dump(migration()), "created_at": "2025-11-27T08:50:00"})
    assert errors("Migration", {**dump(migration()), "domain_uuid": UUID.upper()})
    assert errors("ResultIn", {"mac": "52:54:00:12:34:56", "generation": 1, "status": "pending"})


# ------------------------------------------------------------ the checker


def test_checker_matches_templates(checker: SpecChecker) -> None:
    def template(method: str, path: str) -> str | None:
        found = checker.find(method, path)
        return found[0].template if found else None

    assert template("GET", "/v1/hosts/hv-a/inbox") == "/v1/hosts/{host}/inbox"
    assert template("GET", "/v1/hosts/hv-a") == "/v1/hosts/{host}"
    assert template("POST", "/v1/migrations/m/complete") == "/v1/migrations/{id}/complete"
    assert template("HEAD", "/healthz") == "/healthz"
    assert template("DELETE", "/v1/migrations/m") is None
    assert template("GET", "/v1/migrations/m/extra/bits") is None


PJ = "application/problem+json"
IFACE_PATH = f"/v1/domains/{UUID}/interfaces/52:54:00:12:34:56"


@pytest.mark.parametrize(
    ("method", "path", "status", "ctype", "kind"),
    [
        ("GET", "/v1/migrations/mig-1", 200, "application/json", "migration"),
        ("GET", "/v1/migrations/x", 404, PJ, "not-found"),
        ("PUT", IFACE_PATH, 412, PJ, "stale"),
        ("GET", "/nope", 404, PJ, "not-found"),  # unrouted, answered with a problem
        ("DELETE", "/v1/hosts/h", 405, PJ, "method-not-allowed"),
        ("GET", f"/v1/domains/{UUID}/interfaces", 200, "application/xml; charset=utf-8", "<x"),
        ("GET", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8", "# HELP"),
        ("GET", "/v1/events", 200, "text/event-stream", None),
        ("HEAD", "/healthz", 200, "application/json", ""),
    ],
)
def test_checker_passes_a_right_response(
    checker: SpecChecker, method: str, path: str, status: int, ctype: str, kind: str | None
) -> None:
    bodies = {
        "migration": body(dump(migration())),
        "stale": problem("precondition-failed", current_generation=3, mac="52:54:00:12:34:56"),
        **{slug: problem(slug) for slug in SLUGS},
    }
    data = None if kind is None else bodies.get(kind, kind.encode())
    assert checker.check(method, path, {}, status, ctype, data) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (("GET", "/v1/migrations/m", 200, "application/json", "no-state"), "'state' is a required"),
        (("GET", "/v1/migrations/m", 418, "application/json", "{}"), "status 418 not documented"),
        (("GET", "/v1/migrations/m", 200, "text/html", "{}"), "'text/html' not documented"),
        (("GET", "/v1/migrations/m", 200, "application/json", "{"), "not JSON"),
        (("GET", "/v1/migrations/m", 404, "application/problem+json", "409"), "not one of [404]"),
        (
            ("PUT", "/v1/domains/x/interfaces", 409, "application/problem+json", "conflict"),
            "is not one of ['urn:vifbroker:problem:no-active-migration']",
        ),
        (("GET", "/v1/debug", 200, "application/json", "{}"), "undocumented route"),
        (("DELETE", "/v1/migrations/m", 200, "application/json", "{}"), "undocumented route"),
        (("GET", "/v1/migrations", 422, "application/problem+json", "invalid"), "not documented"),
    ],
)
def test_checker_catches_a_wrong_response(
    checker: SpecChecker, case: tuple[str, str, int, str, str], expected: str
) -> None:
    method, path, status, ctype, kind = case
    bodies = {
        "no-state": body({k: v for k, v in dump(migration()).items() if k != "state"}),
        "409": body({**json.loads(problem("not-found")), "status": 409}),
        "conflict": problem("conflict"),
        "invalid": problem("invalid", errors=[{"msg": "bad"}]),
    }
    violations = checker.check(method, path, {}, status, ctype, bodies.get(kind, kind.encode()))
    assert len(violations) >= 1
    assert any(expected in v for v in violations), violations
    assert violations[0].startswith(f"{method} {path} -> {status}: ")


def test_checker_headers(checker: SpecChecker) -> None:
    ok = body(dump(migration()))
    loc = {**RID, "Location": "/v1/migrations/mig-1"}
    assert checker.check("POST", "/v1/migrations", {}, 201, "application/json", ok, loc) == []
    missing = checker.check("POST", "/v1/migrations", {}, 201, "application/json", ok, RID)
    assert missing == ["POST /v1/migrations -> 201: required header Location missing"]
    path = IFACE_PATH
    up = body({"domain_uuid": UUID, "mac": "52:54:00:12:34:56", "generation": 2})
    bad = checker.check("PUT", path, {}, 200, "application/json", up, {**RID, "ETag": "2"})
    assert len(bad) == 1 and "header ETag" in bad[0]
    assert checker.check("PUT", path, {}, 200, "application/json", up, {**RID, "ETag": '"2"'}) == []
    unauth = problem("unauthorized")
    no_challenge = checker.check("GET", "/v1/hosts", {}, 401, PJ, unauth, RID)
    assert no_challenge == ["GET /v1/hosts -> 401: required header WWW-Authenticate missing"]


def test_checker_flags_accepted_bad_parameters(checker: SpecChecker) -> None:
    page = body({"migrations": [], "next_cursor": None})
    for query in ({"limit": "0"}, {"limit": "ten"}, {"state": "running"}, {"host": "-x"}):
        found = checker.check("GET", "/v1/migrations", query, 200, "application/json", page)
        assert len(found) == 1 and "accepted query parameter" in found[0], query
    fine = {"limit": "500", "state": "applied", "domain_uuid": UUID.replace("-", "").upper()}
    fine["cursor"] = ""
    assert checker.check("GET", "/v1/migrations", fine, 200, "application/json", page) == []
    refused = problem("malformed")
    assert checker.check("GET", "/v1/migrations", {"limit": "0"}, 400, PJ, refused) == []
    empty = body({"interfaces": []})
    found = checker.check("GET", "/v1/domains/xyz/interfaces", {}, 200, "application/json", empty)
    assert len(found) == 1 and "accepted path parameter uuid='xyz'" in found[0]


# --------------------------------------------------------- the middleware


async def test_middleware_records_violations(aiohttp_client: Any) -> None:
    violations: list[str] = []

    async def get_migration(request: web.Request) -> web.StreamResponse:
        which = request.match_info["id"]
        if which == "gone":
            raise web.HTTPNotFound(headers=RID)  # aiohttp's text/plain, not a problem
        if which == "absent":
            raise web.HTTPNotFound(
                text=problem("not-found").decode(),
                headers=RID,
                content_type="application/problem+json",
            )
        data = dump(migration(id=which))
        if which == "bad":
            data["state"] = "flying"
        return web.json_response(data, headers=RID)

    async def events(request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(headers={**RID, "Content-Type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(b"id: 3\nevent: migration\ndata: {}\n\n")
        return stream

    async def debug(request: web.Request) -> web.StreamResponse:
        return web.json_response({}, headers=RID)

    app = web.Application()
    app.router.add_get("/v1/migrations/{id}", get_migration)
    app.router.add_get("/v1/events", events)
    app.router.add_get("/v1/debug", debug)
    app.middlewares.insert(0, conformance_middleware(SpecChecker.load(SPEC_PATH), violations))
    client = await aiohttp_client(app)

    for path in ("/v1/migrations/good", "/v1/migrations/absent", "/v1/events"):
        assert (await client.get(path)).status in (200, 404)
    assert violations == []
    for path in ("/v1/migrations/bad", "/v1/migrations/gone", "/v1/debug", "/v1/nowhere"):
        await client.get(path)
    assert len(violations) == 5, violations
    assert re.search(r"bad -> 200: \$\.state: 'flying' is not one of", violations[0])
    assert "gone -> 404: content type 'text/plain' not documented" in violations[1]
    assert violations[2].endswith("undocumented route (no operation for this method and path)")
    assert "/v1/nowhere -> 404: content type 'text/plain'" in violations[3]
    assert violations[4] == "GET /v1/nowhere -> 404: required header X-Request-Id missing"
