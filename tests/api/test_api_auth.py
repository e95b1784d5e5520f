"""Who may do what: every route and every kind of caller, from one table."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from api_helpers import Broker, iface, mac, problem

Op = Callable[[Broker, dict[str, str], dict[str, Any]], Awaitable[Any]]
CALLERS = ("controller", "src", "dst", "other")


async def _setup(broker: Broker) -> dict[str, Any]:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    resp = await broker.client.put("/v1/hosts/src", json={}, headers=broker.auth())
    assert resp.status == 200
    return m


def _ops() -> dict[str, tuple[Op, set[str]]]:
    def req(method: str, url: str, **kw: Any) -> Op:
        async def run(b: Broker, headers: dict[str, str], m: dict[str, Any]) -> Any:
            return await b.client.request(
                method, url.format(**m), headers={**headers, **kw.pop("headers", {})}, **kw
            )

        return run

    new_domain = str(uuid.uuid4())
    result = {"results": [{"mac": mac(1), "generation": 1, "status": "applied"}]}
    return {
        "create": (
            req("POST", "/v1/migrations", json={
                "domain_uuid": new_domain, "source_host": "src", "destination_host": "dst"}),
            {"controller", "src"},
        ),
        "list": (req("GET", "/v1/migrations"), {"controller"}),
        "get": (req("GET", "/v1/migrations/{id}"), {"controller", "src", "dst"}),
        "barrier": (
            req("GET", "/v1/migrations/{id}?wait_for=applied&timeout=0"),
            {"controller", "src", "dst"},
        ),
        "complete": (req("POST", "/v1/migrations/{id}/complete"), {"controller"}),
        "cancel": (req("POST", "/v1/migrations/{id}/cancel"), {"controller", "src"}),
        "results": (req("POST", "/v1/migrations/{id}/results", json=result), {"controller", "dst"}),
        "put-one": (
            req("PUT", "/v1/domains/{domain_uuid}/interfaces/" + mac(1), json=iface(mac(1))),
            {"controller", "src"},
        ),
        "put-many": (
            req("PUT", "/v1/domains/{domain_uuid}/interfaces",
                json={"interfaces": [iface(mac(1))]}),
            {"controller", "src"},
        ),
        "get-many": (req("GET", "/v1/domains/{domain_uuid}/interfaces"),
                     {"controller", "src", "dst"}),
        "get-one": (req("GET", "/v1/domains/{domain_uuid}/interfaces/" + mac(1)),
                    {"controller", "src", "dst"}),
        "inbox-src": (req("GET", "/v1/hosts/src/inbox"), {"controller", "src"}),
        "inbox-dst": (req("GET", "/v1/hosts/dst/inbox"), {"controller", "dst"}),
        "heartbeat": (req("PUT", "/v1/hosts/src", json={}), {"controller", "src"}),
        "hosts": (req("GET", "/v1/hosts"), {"controller"}),
        "host": (req("GET", "/v1/hosts/src"), {"controller", "src"}),
        "events": (req("GET", "/v1/events"), {"controller"}),
    }


OPS = _ops()


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op_name", sorted(OPS))
async def test_authorization_table(broker: Broker, op_name: str, caller: str) -> None:
    op, allowed = OPS[op_name]
    m = await _setup(broker)
    resp = await op(broker, broker.auth(caller), m)
    try:
        if caller in allowed:
            assert 200 <= resp.status < 300, (resp.status, await resp.text())
        else:
            await problem(resp, 403, "forbidden")
    finally:
        resp.release()


@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwdw=="},
     {"Authorization": "Bearer"}],
    ids=["none", "wrong-token", "basic", "empty-bearer"],
)
async def test_unauthenticated_is_401(
    broker: Broker, op_name: str, headers: dict[str, str]
) -> None:
    op, _ = OPS[op_name]
    m = await _setup(broker)
    resp = await op(broker, headers, m)
    await problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_agent_upload_follows_the_active_migrations_source(broker: Broker) -> None:
    m = await broker.create(src="src", dst="dst")
    url = f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}"
    resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth("dst"))
    await problem(resp, 403, "forbidden")
    # The VM comes back: now dst is the source and src may no longer upload.
    await broker.client.post(f"/v1/migrations/{m['id']}/complete", headers=broker.auth())
    await broker.create(m["domain_uuid"], src="dst", dst="src")
    resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth("dst"))
    assert resp.status == 200
    resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth("src"))
    await problem(resp, 403, "forbidden")
    # Records of the domain are readable by the hosts of the migration they belong to.
    resp = await broker.client.get(url, headers=broker.auth("other"))
    await problem(resp, 403, "forbidden")


async def test_ops_routes_need_no_token(broker: Broker) -> None:
    for url in ("/healthz", "/readyz", "/metrics", "/openapi.yaml"):
        resp = await broker.client.get(url)
        assert resp.status == 200, url
