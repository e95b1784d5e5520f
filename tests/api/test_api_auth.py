"""Issue 8, findings 3 and 4: the authorization matrix, existence hiding, agent creates.

Every route by every kind of caller, with the expected status of each cell
written down. The broker runs with ``--agent-migrations``. The scene: a
controller's migration M of domain DOM from host ``src`` to host ``dst``
with one vif uploaded; host ``runner`` (no party to M) reports DOM running;
host ``src`` reports domain NEW running (the subject of the create cell).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from api_helpers import Broker, iface, mac, problem

# Callers: no token, a wrong token, the controller, the agents of M's source and
# destination, of an unrelated host, and of a host that reported DOM running.
CALLERS = ("none", "wrong", "controller", "src", "dst", "other", "runner")
Scene = dict[str, str]
Op = Callable[[Broker, dict[str, str], Scene], Awaitable[Any]]

AGENT_MIGRATIONS = {"agent_migrations": True}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(AGENT_MIGRATIONS)


def headers_of(broker: Broker, caller: str) -> dict[str, str]:
    if caller == "none":
        return {}
    if caller == "wrong":
        return {"Authorization": "Bearer not-a-token"}
    return broker.auth(caller)


async def heartbeat(broker: Broker, host: str, *domains: str) -> None:
    resp = await broker.client.put(f"/v1/hosts/{host}", json={"running_domains": list(domains)},
                                   headers=broker.auth(host))
    assert resp.status == 200, await resp.text()


async def scene(broker: Broker) -> Scene:
    m = await broker.create(src="src", dst="dst")
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    new = str(uuid.uuid4())
    await heartbeat(broker, "src", new)
    await heartbeat(broker, "runner", m["domain_uuid"])
    return {"id": m["id"], "dom": m["domain_uuid"], "new": new, "mac": mac(1)}


def req(method: str, url: str, **kw: Any) -> Op:
    async def run(b: Broker, headers: dict[str, str], s: Scene) -> Any:
        extra = {k: (v(s) if callable(v) else v) for k, v in kw.items()}
        return await b.client.request(method, url.format(**s), headers=headers, **extra)

    return run


RESULT = {"results": [{"mac": mac(1), "generation": 1, "status": "applied"}]}
NOW = datetime.now(UTC).isoformat()

# route: (operation, expected status for each caller in CALLERS order after the
# two unauthenticated ones, which are always 401 on /v1 and 200 on the ops routes)
#                                                 ctrl  src  dst  other runner
MATRIX: dict[str, tuple[Op, tuple[int, int, int, int, int]]] = {
    "create": (req("POST", "/v1/migrations", json=lambda s: {
        "domain_uuid": s["new"], "source_host": "src", "destination_host": "dst"}),
                                                 (201, 201, 201, 403, 403)),
    "list": (req("GET", "/v1/migrations"),       (200, 403, 403, 403, 403)),
    "get": (req("GET", "/v1/migrations/{id}"),   (200, 200, 200, 404, 404)),
    "barrier": (req("GET", "/v1/migrations/{id}?wait_for=applied&timeout=0"),
                                                 (200, 200, 200, 404, 404)),
    "complete": (req("POST", "/v1/migrations/{id}/complete"),
                                                 (200, 403, 403, 404, 404)),
    "cancel": (req("POST", "/v1/migrations/{id}/cancel"),
                                                 (200, 200, 403, 404, 404)),
    "results": (req("POST", "/v1/migrations/{id}/results", json=RESULT),
                                                 (200, 403, 200, 404, 404)),
    "resumed": (req("POST", "/v1/migrations/{id}/resumed", json={"at": NOW}),
                                                 (200, 403, 200, 404, 404)),
    "put-one": (req("PUT", "/v1/domains/{dom}/interfaces/{mac}", json=iface(mac(1))),
                                                 (200, 200, 403, 404, 404)),
    "put-many": (req("PUT", "/v1/domains/{dom}/interfaces",
                     json={"interfaces": [iface(mac(1))]}),
                                                 (200, 200, 403, 404, 404)),
    "get-many": (req("GET", "/v1/domains/{dom}/interfaces"),
                                                 (200, 200, 200, 404, 404)),
    "get-one": (req("GET", "/v1/domains/{dom}/interfaces/{mac}"),
                                                 (200, 200, 200, 404, 404)),
    "get-unknown-mac": (req("GET", "/v1/domains/{dom}/interfaces/52:54:00:ff:ff:ff"),
                                                 (404, 404, 404, 404, 404)),
    "inbox": (req("GET", "/v1/hosts/src/inbox"), (200, 200, 403, 403, 403)),
    "heartbeat": (req("PUT", "/v1/hosts/src", json={}),
                                                 (200, 200, 403, 403, 403)),
    "hosts": (req("GET", "/v1/hosts"),           (200, 403, 403, 403, 403)),
    "host": (req("GET", "/v1/hosts/src"),        (200, 200, 403, 403, 403)),
    "preflight": (req("POST", "/v1/hosts/dst/preflight", json={"interfaces": [iface(mac(1))]}),
                                                 (200, 200, 200, 200, 200)),
    "events": (req("GET", "/v1/events"),         (200, 403, 403, 403, 403)),
}
OPS_ROUTES = ("/healthz", "/readyz", "/metrics", "/openapi.yaml")


def expected(route: str, caller: str) -> int:
    if caller in ("none", "wrong"):
        return 401
    return MATRIX[route][1][CALLERS.index(caller) - 2]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(MATRIX))
async def test_authorization_matrix(broker: Broker, route: str, caller: str) -> None:
    s = await scene(broker)
    resp = await MATRIX[route][0](broker, headers_of(broker, caller), s)
    try:
        want = expected(route, caller)
        if want >= 400:
            slug = {401: "unauthorized", 403: "forbidden", 404: "not-found"}[want]
            await problem(resp, want, slug)
        else:
            assert resp.status == want, (resp.status, await resp.text())
    finally:
        resp.release()


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", OPS_ROUTES)
async def test_ops_routes_answer_anyone(broker: Broker, path: str, caller: str) -> None:
    resp = await broker.client.get(path, headers=headers_of(broker, caller))
    assert resp.status == 200, path


MATRIX_CELLS = len(MATRIX) * len(CALLERS) + len(OPS_ROUTES) * len(CALLERS)


# ------------------------------------------------- finding 4: nothing to learn


async def _body(resp: Any) -> dict[str, Any]:
    doc: dict[str, Any] = await resp.json(content_type=None)
    return {"status": resp.status, **doc}


@pytest.mark.parametrize("who", ["other", "runner"])
async def test_a_foreign_migration_is_answered_like_a_missing_one(
    broker: Broker, who: str
) -> None:
    s = await scene(broker)
    missing_id, missing_dom = "no-such-migration", str(uuid.uuid4())
    h = broker.auth(who)
    pairs = [
        ("GET", "/v1/migrations/{}", s["id"], missing_id, None),
        ("POST", "/v1/migrations/{}/cancel", s["id"], missing_id, None),
        ("POST", "/v1/migrations/{}/results", s["id"], missing_id, RESULT),
        ("GET", "/v1/domains/{}/interfaces", s["dom"], missing_dom, None),
        ("PUT", "/v1/domains/{}/interfaces", s["dom"], missing_dom,
         {"interfaces": [iface(mac(1))]}),
    ]
    for method, template, real, missing, body in pairs:
        a = await broker.client.request(method, template.format(real), json=body, headers=h)
        b = await broker.client.request(method, template.format(missing), json=body, headers=h)
        got_a, got_b = await _body(a), await _body(b)
        assert got_a["status"] == got_b["status"] == 404, (template, got_a, got_b)
        assert got_a["detail"].replace(real, "X") == got_b["detail"].replace(missing, "X")
        assert {**got_a, "detail": ""} == {**got_b, "detail": ""}


async def test_macs_of_a_foreign_domain_cannot_be_enumerated(broker: Broker) -> None:
    s = await scene(broker)
    known = f"/v1/domains/{s['dom']}/interfaces/{mac(1)}"
    unknown = f"/v1/domains/{s['dom']}/interfaces/{mac(2)}"
    a = await _body(await broker.client.get(known, headers=broker.auth("other")))
    b = await _body(await broker.client.get(unknown, headers=broker.auth("other")))
    assert a["status"] == b["status"] == 404
    assert a["detail"].replace(mac(1), "X") == b["detail"].replace(mac(2), "X")
    # A party still tells them apart.
    assert (await broker.client.get(known, headers=broker.auth("dst"))).status == 200


async def test_an_agents_conflict_names_no_other_migration(broker: Broker) -> None:
    s = await scene(broker)
    # runner reports DOM running and registers it as arriving there: DOM is taken by M.
    resp = await broker.client.post("/v1/migrations", json={
        "domain_uuid": s["dom"], "source_host": "runner", "destination_host": "other"},
        headers=broker.auth("runner"))
    doc = await problem(resp, 409, "conflict")
    assert s["id"] not in str(doc)
    resp = await broker.client.post("/v1/migrations", json={
        "domain_uuid": s["dom"], "source_host": "src", "destination_host": "other"},
        headers=broker.auth())
    assert s["id"] in (await problem(resp, 409, "conflict"))["detail"]  # a controller may know


async def test_a_party_lacking_the_role_gets_403(broker: Broker) -> None:
    s = await scene(broker)
    url = f"/v1/domains/{s['dom']}/interfaces/{mac(1)}"
    resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth("dst"))
    await problem(resp, 403, "forbidden")
    # The VM comes back: now dst is the source and src may no longer upload.
    await broker.client.post(f"/v1/migrations/{s['id']}/complete", headers=broker.auth())
    await broker.create(s["dom"], src="dst", dst="src")
    resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth("dst"))
    assert resp.status == 200
    resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth("src"))
    await problem(resp, 403, "forbidden")


# ----------------------------------------------------- finding 3: agent creates


def _create(dom: str, src: str | None, dst: str) -> dict[str, Any]:
    body: dict[str, Any] = {"domain_uuid": dom, "destination_host": dst}
    if src is not None:
        body["source_host"] = src
    return body


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_without_agent_migrations_no_agent_creates(broker: Broker) -> None:
    dom = str(uuid.uuid4())
    await heartbeat(broker, "src", dom)
    for who, body in (("src", _create(dom, "src", "dst")), ("dst", _create(dom, None, "dst"))):
        resp = await broker.client.post("/v1/migrations", json=body, headers=broker.auth(who))
        await problem(resp, 403, "forbidden")
    # The controller's own create for the domain is not blocked by anybody.
    resp = await broker.client.post("/v1/migrations", json=_create(dom, "src", "dst"),
                                    headers=broker.auth())
    assert resp.status == 201


async def test_an_agent_creates_only_for_a_domain_its_host_runs(broker: Broker) -> None:
    foreign, own = str(uuid.uuid4()), str(uuid.uuid4())
    await heartbeat(broker, "other", foreign)
    await heartbeat(broker, "src", own)
    # Taking over a domain another host runs (or nobody reported): refused.
    for dom in (foreign, str(uuid.uuid4())):
        resp = await broker.client.post("/v1/migrations", json=_create(dom, "src", "dst"),
                                        headers=broker.auth("src"))
        await problem(resp, 403, "forbidden")
    resp = await broker.client.post("/v1/migrations", json=_create(foreign, "src", "dst"),
                                    headers=broker.auth())
    assert resp.status == 201  # the controller's create was not blocked
    resp = await broker.client.post("/v1/migrations", json=_create(own, "src", "dst"),
                                    headers=broker.auth("src"))
    assert resp.status == 201, await resp.text()


async def test_a_stale_report_does_not_count(broker: Broker) -> None:
    dom = str(uuid.uuid4())
    await heartbeat(broker, "src", dom)
    broker.clock.advance(3 * 15 + 1)  # three heartbeat intervals (15 s) without one
    resp = await broker.client.post("/v1/migrations", json=_create(dom, "src", "dst"),
                                    headers=broker.auth("src"))
    await problem(resp, 403, "forbidden")
    resp = await broker.client.post("/v1/migrations", json=_create(dom, None, "dst"),
                                    headers=broker.auth("dst"))
    await problem(resp, 422, "invalid")
    await heartbeat(broker, "src", dom)  # fresh again
    resp = await broker.client.post("/v1/migrations", json=_create(dom, None, "dst"),
                                    headers=broker.auth("dst"))
    assert resp.status == 201 and (await resp.json())["source_host"] == "src"


async def test_a_destination_cannot_name_another_source(broker: Broker) -> None:
    dom = str(uuid.uuid4())
    await heartbeat(broker, "src", dom)
    resp = await broker.client.post("/v1/migrations", json=_create(dom, "other", "dst"),
                                    headers=broker.auth("dst"))
    await problem(resp, 422, "invalid")


@pytest.mark.parametrize("who", ["controller", "src"])
async def test_source_and_destination_must_differ(broker: Broker, who: str) -> None:
    dom = str(uuid.uuid4())
    await heartbeat(broker, "src", dom)
    resp = await broker.client.post("/v1/migrations", json=_create(dom, "src", "src"),
                                    headers=broker.auth(who))
    await problem(resp, 422, "invalid")
