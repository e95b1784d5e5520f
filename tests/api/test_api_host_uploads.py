"""POST /v1/hosts/{host}/uploads: many domains' uploads in one request, each on its own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from api_helpers import Broker, iface, mac, problem

from vifbroker.model.migration import MAX_UPLOAD_DOMAINS


def _entry(domain_uuid: str, *macs: int, portdata: str = "pd") -> dict[str, Any]:
    return {"domain_uuid": domain_uuid, "interfaces": [iface(mac(n), portdata) for n in macs]}


async def _post(broker: Broker, host: str, body: Any, who: str) -> Any:
    return await broker.client.post(
        f"/v1/hosts/{host}/uploads", json=body, headers=broker.auth(who)
    )


async def _records(broker: Broker, domain_uuid: str) -> dict[str, tuple[int, str | None]]:
    """MAC → (generation, port data) of the domain's records."""
    resp = await broker.client.get(f"/v1/domains/{domain_uuid}/interfaces", headers=broker.auth())
    if resp.status == 404:
        return {}
    assert resp.status == 200, await resp.text()
    return {
        r["mac"]: (r["generation"], r["interface"]["virtualport"].get("portdata"))
        for r in (await resp.json())["interfaces"]
    }


async def test_each_domain_lands_or_is_refused_on_its_own(broker: Broker) -> None:
    leaving = [await broker.create() for _ in range(2)]
    arriving = await broker.create(src="dst", dst="src")  # src is its destination
    ended = await broker.create()
    await broker.client.post(f"/v1/migrations/{ended['id']}/cancel", headers=broker.auth())
    strangers = await broker.create(src="other", dst="dst")
    again = await broker.create()
    await broker.upload(again["domain_uuid"], iface(mac(7), "old"))
    body = {
        "domains": [
            _entry(leaving[0]["domain_uuid"], 0, 1),
            _entry(str(uuid.uuid4()), 2),  # no migration at all
            _entry(arriving["domain_uuid"], 3),
            _entry(ended["domain_uuid"], 4),
            _entry(strangers["domain_uuid"], 5),
            {"domain_uuid": leaving[1]["domain_uuid"], "interfaces": [iface(mac(6))] * 2},
            _entry(again["domain_uuid"], 7, 8, portdata="new"),
        ]
    }
    resp = await _post(broker, "src", body, "src")
    assert resp.status == 200, await resp.text()
    out = (await resp.json())["domains"]
    assert [o["domain_uuid"] for o in out] == [d["domain_uuid"] for d in body["domains"]]
    assert [m["generation"] for m in out[0]["interfaces"]] == [1, 1]
    assert {m["mac"]: m["generation"] for m in out[6]["interfaces"]} == {mac(7): 2, mac(8): 1}
    assert out[0]["revision"] > 0 and out[6]["revision"] > 0
    # As each domain's own upload by src's agent would answer: nothing to upload to
    # (hidden), src is the destination, ended, someone else's, a MAC named twice.
    slugs = [o["problem"]["type"].rsplit(":", 1)[1] for o in out[1:6]]
    assert slugs == ["not-found", "forbidden", "not-found", "not-found", "invalid"]
    assert [o["problem"]["status"] for o in out[1:6]] == [404, 403, 404, 404, 422]
    assert await _records(broker, leaving[0]["domain_uuid"]) == {
        mac(0): (1, "pd"),
        mac(1): (1, "pd"),
    }
    assert await _records(broker, again["domain_uuid"]) == {mac(7): (2, "new"), mac(8): (1, "new")}
    for refused in (arriving, strangers, leaving[1]):
        assert await _records(broker, refused["domain_uuid"]) == {}


async def test_the_same_answers_as_each_domains_own_upload(broker: Broker) -> None:
    """The grouped route and the per-domain PUT agree, refusal for refusal."""
    arriving = await broker.create(src="dst", dst="src")
    strangers = await broker.create(src="other", dst="dst")
    for m in (arriving, strangers):
        own = await broker.client.put(
            f"/v1/domains/{m['domain_uuid']}/interfaces",
            json={"interfaces": [iface(mac(1))]},
            headers=broker.auth("src"),
        )
        grouped = await _post(broker, "src", {"domains": [_entry(m["domain_uuid"], 1)]}, "src")
        entry = (await grouped.json())["domains"][0]["problem"]
        assert (entry["status"], entry["type"]) == (own.status, (await own.json())["type"])


async def test_a_controller_may_upload_only_what_leaves_that_host(broker: Broker) -> None:
    mine = await broker.create()
    elsewhere = await broker.create(src="other", dst="dst")
    body = {"domains": [_entry(mine["domain_uuid"], 1), _entry(elsewhere["domain_uuid"], 2)]}
    resp = await _post(broker, "src", body, "controller")
    assert resp.status == 200, await resp.text()
    out = (await resp.json())["domains"]
    assert out[0]["interfaces"] == [{"mac": mac(1), "generation": 1}]
    assert out[1]["problem"]["status"] == 404
    assert await _records(broker, elsewhere["domain_uuid"]) == {}
    # and an agent acts only for its own host
    resp = await _post(broker, "src", {"domains": [_entry(mine["domain_uuid"], 3)]}, "other")
    await problem(resp, 403, "forbidden")
    assert mac(3) not in await _records(broker, mine["domain_uuid"])


@pytest.mark.parametrize("settings_overrides", [{"max_interfaces_per_document": 2}])
async def test_a_domain_past_a_limit_is_refused_alone(broker: Broker) -> None:
    small, large = await broker.create(), await broker.create()
    body = {"domains": [_entry(small["domain_uuid"], 1, 2), _entry(large["domain_uuid"], 3, 4, 5)]}
    resp = await _post(broker, "src", body, "src")
    assert resp.status == 200, await resp.text()
    out = (await resp.json())["domains"]
    assert len(out[0]["interfaces"]) == 2
    assert out[1]["problem"]["status"] == 413
    assert await _records(broker, large["domain_uuid"]) == {}


async def test_a_body_that_cannot_be_read_is_refused_whole(broker: Broker) -> None:
    m = await broker.create()
    dom = m["domain_uuid"]
    for body in (
        {"domains": [_entry(dom, 1), _entry(dom.upper(), 2)]},  # the same domain twice
        {"domains": []},
        {"domains": [{"domain_uuid": dom, "interfaces": []}]},
        {"domains": [{"domain_uuid": "not-a-uuid", "interfaces": [iface(mac(1))]}]},
        {"domains": [_entry(str(uuid.uuid4()), 1) for _ in range(MAX_UPLOAD_DOMAINS + 1)]},
    ):
        await problem(await _post(broker, "src", body, "src"), 422, "invalid")
    resp = await broker.client.post(
        "/v1/hosts/src/uploads",
        data=b"{",
        headers={**broker.auth("src"), "Content-Type": "application/json"},
    )
    await problem(resp, 400, "malformed")
    assert await _records(broker, dom) == {}
