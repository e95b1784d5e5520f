"""Operations: health, readiness, metrics, the OpenAPI document, request ids, 404/405."""

from __future__ import annotations

import asyncio

import yaml
from api_helpers import Broker, iface, mac, problem


async def test_healthz_and_readyz(broker: Broker) -> None:
    resp = await broker.client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    resp = await broker.client.get("/readyz")
    assert (resp.status, await resp.json()) == (200, {"status": "ready"})


async def test_readyz_is_503_when_the_store_is_down(broker: Broker) -> None:
    await broker.store.close()
    resp = await broker.client.get("/readyz")
    await problem(resp, 503, "unavailable")
    resp = await broker.client.get("/v1/migrations", headers=broker.auth())
    await problem(resp, 503, "unavailable")
    resp = await broker.client.get("/healthz")
    assert resp.status == 200


async def test_openapi_document_is_served(broker: Broker) -> None:
    resp = await broker.client.get("/openapi.yaml")
    assert resp.status == 200
    assert resp.content_type == "application/yaml"
    # Parsed off the loop: ~0.3 s of PyYAML on a loaded box trips the loop-block guard.
    doc = await asyncio.to_thread(yaml.safe_load, await resp.text())
    assert doc["openapi"].startswith("3.")
    assert "/v1/migrations" in doc["paths"]


async def test_request_id_is_echoed_or_made(broker: Broker) -> None:
    resp = await broker.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await broker.client.get("/healthz")
    made = resp.headers["X-Request-Id"]
    assert made and made != "abc-123"
    # Junk is replaced, not echoed into our logs and headers.
    resp = await broker.client.get("/healthz", headers={"X-Request-Id": "a b\tc" + "x" * 300})
    assert resp.headers["X-Request-Id"] != "a b\tc" + "x" * 300
    resp = await broker.client.get("/v1/migrations", headers={"X-Request-Id": "err-1"})
    assert resp.status == 401
    assert resp.headers["X-Request-Id"] == "err-1"


async def test_unknown_route_404_and_wrong_method_405(broker: Broker) -> None:
    resp = await broker.client.get("/nowhere")
    await problem(resp, 404, "not-found")
    resp = await broker.client.get("/v1/nowhere", headers=broker.auth())
    await problem(resp, 404, "not-found")
    resp = await broker.client.delete("/v1/migrations", headers=broker.auth())
    await problem(resp, 405, "method-not-allowed")
    assert "POST" in resp.headers["Allow"]


async def test_what_no_route_takes_is_a_problem_in_the_request_layer(broker: Broker) -> None:
    """The broker has no aiohttp middleware: its last route answers every path and
    method no other route takes, inside the same request layer (ids, auth, metrics)."""
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        headers = {"X-Request-Id": "u-1"}
        resp = await broker.client.request(method, "/nowhere/at/all", headers=headers)
        await problem(resp, 404, "not-found")
        assert resp.headers["X-Request-Id"] == "u-1"
    for path in ("/", "/v1x", "/a%0Ab", "/%00", "/healthz/more"):
        await problem(await broker.client.get(path), 404, "not-found")
    # /v1 is guarded whether a route takes the path or not.
    await problem(await broker.client.get("/v1/nowhere"), 401, "unauthorized")
    resp = await broker.client.put("/v1/migrations/x/cancel", headers=broker.auth())
    await problem(resp, 405, "method-not-allowed")
    assert resp.headers["Allow"] == "POST"
    resp = await broker.client.post("/healthz")
    await problem(resp, 405, "method-not-allowed")
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD"}
    assert (await broker.client.head("/healthz")).status == 200
    text = await (await broker.client.get("/metrics")).text()
    assert 'route="<unmatched>",status="404"' in text
    assert 'route="<unmatched>",status="405"' in text
    assert "nowhere" not in text and "{unmatched}" not in text


async def test_metrics(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    await broker.create()
    await broker.client.get("/v1/migrations/nope", headers=broker.auth())
    waiting = asyncio.create_task(broker.client.get(
        "/v1/hosts/dst/inbox", params={"after": "999999", "wait": "60"},
        headers=broker.auth("dst")))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while broker.store.hub.waiting < 1:
        assert loop.time() < deadline
        await asyncio.sleep(0.005)

    resp = await broker.client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    lines = text.splitlines()

    def value(prefix: str) -> float:
        (line,) = [ln for ln in lines if ln.startswith(prefix + " ")]
        return float(line.rsplit(" ", 1)[1])

    assert value('vifbroker_migrations{state="uploaded"}') == 1
    assert value('vifbroker_migrations{state="pending"}') == 1
    assert value('vifbroker_migrations{state="completed"}') == 0
    assert value("vifbroker_open_longpolls") == 1
    assert value("vifbroker_store_revision") >= 3
    assert value(
        'vifbroker_http_request_duration_seconds_count{method="POST",route="/v1/migrations",'
        'status="201"}'
    ) == 2
    assert value(
        'vifbroker_http_request_duration_seconds_count{method="GET",route="/v1/migrations/{id}",'
        'status="404"}'
    ) == 1
    # Route templates, never raw paths: the label set stays bounded.
    assert m["domain_uuid"] not in text
    waiting.cancel()
