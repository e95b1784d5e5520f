"""POST /v1/hosts/{host}/results: many migrations' results in one request, each on its own."""

from __future__ import annotations

from typing import Any

from api_helpers import Broker, iface, mac, problem

from vifbroker.model.migration import MAX_RESULT_MIGRATIONS


def _ok(m: dict[str, Any], n: int, status: str = "applied") -> dict[str, Any]:
    return {"id": m["id"], "results": [{"mac": mac(n), "generation": 1, "status": status}]}


async def _post(broker: Broker, host: str, body: Any, who: str) -> Any:
    return await broker.client.post(
        f"/v1/hosts/{host}/results", json=body, headers=broker.auth(who)
    )


async def _state(broker: Broker, migration_id: str) -> str:
    resp = await broker.client.get(f"/v1/migrations/{migration_id}", headers=broker.auth())
    state: str = (await resp.json())["state"]
    return state


async def test_each_migration_lands_or_is_refused_on_its_own(broker: Broker) -> None:
    landing = [await broker.create() for _ in range(2)]
    leaving = await broker.create(src="dst", dst="other")  # dst is its source
    ended = await broker.create()
    unknown_mac = await broker.create()
    for n, m in enumerate([*landing, leaving, ended, unknown_mac]):
        await broker.upload(m["domain_uuid"], iface(mac(n)))
    await broker.client.post(f"/v1/migrations/{ended['id']}/cancel", headers=broker.auth())
    body = {
        "migrations": [
            _ok(landing[0], 0),
            {"id": "no-such-migration", "results": _ok(landing[0], 0)["results"]},
            _ok(leaving, 2),
            _ok(ended, 3),
            _ok(unknown_mac, 99),
            _ok(landing[1], 1, "skipped"),
        ]
    }
    resp = await _post(broker, "dst", body, "dst")
    assert resp.status == 200, await resp.text()
    out = (await resp.json())["migrations"]
    assert [o["id"] for o in out] == [m["id"] for m in body["migrations"]]
    for landed in (out[0], out[5]):
        assert landed["state"] == "applied" and landed["revision"] > 0
    # As each migration's own post would answer: unknown, leaving (not arriving), ended,
    # naming a MAC it has no record of.
    slugs = [o["problem"]["type"].rsplit(":", 1)[1] for o in out[1:5]]
    assert slugs == ["not-found", "forbidden", "conflict", "invalid"]
    assert [o["problem"]["status"] for o in out[1:5]] == [404, 403, 409, 422]
    assert [await _state(broker, m["id"]) for m in landing] == ["applied", "applied"]
    assert await _state(broker, leaving["id"]) == "uploaded"


async def test_only_that_hosts_agent_or_a_controller(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    resp = await _post(broker, "dst", {"migrations": [_ok(m, 1)]}, "other")
    assert resp.status in (403, 404), await resp.text()
    assert await _state(broker, m["id"]) == "uploaded"
    resp = await _post(broker, "dst", {"migrations": [_ok(m, 1)]}, "controller")
    assert resp.status == 200 and (await resp.json())["migrations"][0]["state"] == "applied"


async def test_a_body_that_cannot_be_read_is_refused_whole(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    for body in (
        {"migrations": [_ok(m, 1), _ok(m, 1)]},  # the same migration twice
        {"migrations": []},
        {"migrations": [{"id": m["id"], "results": []}]},
        {"migrations": [{"id": "../x", "results": _ok(m, 1)["results"]}]},
        # more migrations than one post may name (MAX_RESULT_MIGRATIONS)
        {
            "migrations": [
                {"id": f"m{i}", "results": _ok(m, 1)["results"]}
                for i in range(MAX_RESULT_MIGRATIONS + 1)
            ]
        },
    ):
        await problem(await _post(broker, "dst", body, "dst"), 422, "invalid")
    resp = await broker.client.post(
        "/v1/hosts/dst/results",
        data=b"{",
        headers={**broker.auth("dst"), "Content-Type": "application/json"},
    )
    await problem(resp, 400, "malformed")
    assert await _state(broker, m["id"]) == "uploaded"
