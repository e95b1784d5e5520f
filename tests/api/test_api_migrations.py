"""Migrations: create, idempotency, conflicts, list and paging, complete/cancel, results, expiry."""

from __future__ import annotations

import uuid

from api_helpers import Broker, iface, mac, problem


async def test_create_returns_201_location_and_the_migration(broker: Broker) -> None:
    domain = str(uuid.uuid4()).upper()
    resp = await broker.client.post(
        "/v1/migrations",
        json={
            "domain_uuid": domain,
            "source_host": "src",
            "destination_host": "dst",
            "domain_name": "vm1",
            "ttl_seconds": 120,
            "on_backend_mismatch": "fail",
        },
        headers=broker.auth(),
    )
    assert resp.status == 201
    doc = await resp.json()
    assert resp.headers["Location"] == f"/v1/migrations/{doc['id']}"
    assert doc["domain_uuid"] == domain.lower()
    assert doc["state"] == "pending"
    assert doc["on_backend_mismatch"] == "fail"
    assert doc["domain_name"] == "vm1"
    assert doc["interfaces"] == []
    assert doc["revision"] >= 1


async def test_same_id_and_body_is_idempotent_other_body_conflicts(broker: Broker) -> None:
    body = {
        "id": "mig-1",
        "domain_uuid": str(uuid.uuid4()),
        "source_host": "src",
        "destination_host": "dst",
    }
    first = await broker.client.post("/v1/migrations", json=body, headers=broker.auth())
    again = await broker.client.post("/v1/migrations", json=body, headers=broker.auth())
    assert (first.status, again.status) == (201, 200)
    assert (await first.json()) == (await again.json())
    assert again.headers["Location"] == "/v1/migrations/mig-1"
    other = await broker.client.post(
        "/v1/migrations", json={**body, "destination_host": "other"}, headers=broker.auth()
    )
    await problem(other, 409, "conflict")


async def test_second_active_migration_for_a_domain_conflicts(broker: Broker) -> None:
    m = await broker.create()
    resp = await broker.client.post(
        "/v1/migrations",
        json={"domain_uuid": m["domain_uuid"], "source_host": "src", "destination_host": "dst"},
        headers=broker.auth(),
    )
    await problem(resp, 409, "conflict")
    # Once the first is over, a new one may start.
    resp = await broker.client.post(f"/v1/migrations/{m['id']}/cancel", headers=broker.auth())
    assert resp.status == 200
    again = await broker.create(m["domain_uuid"])
    assert again["id"] != m["id"]


async def test_create_validation_errors_are_422(broker: Broker) -> None:
    good = {"domain_uuid": str(uuid.uuid4()), "source_host": "src", "destination_host": "dst"}
    for bad in (
        {**good, "domain_uuid": "not-a-uuid"},
        {**good, "ttl_seconds": 0},
        {**good, "ttl_seconds": 604801},
        {**good, "on_backend_mismatch": "maybe"},
        {**good, "source_host": "bad host!"},
        {**good, "unexpected": 1},
        {"source_host": "src", "destination_host": "dst"},
        [good],
    ):
        resp = await broker.client.post("/v1/migrations", json=bad, headers=broker.auth())
        doc = await problem(resp, 422, "invalid")
        assert doc["errors"], doc


async def test_create_malformed_json_is_400_and_wrong_type_415(broker: Broker) -> None:
    resp = await broker.client.post(
        "/v1/migrations",
        data=b'{"domain_uuid": ',
        headers={**broker.auth(), "Content-Type": "application/json"},
    )
    await problem(resp, 400, "malformed")
    resp = await broker.client.post(
        "/v1/migrations", data=b"x=1", headers={**broker.auth(), "Content-Type": "text/plain"}
    )
    await problem(resp, 415, "unsupported-media-type")


async def test_get_and_404(broker: Broker) -> None:
    m = await broker.create()
    resp = await broker.client.get(f"/v1/migrations/{m['id']}", headers=broker.auth())
    assert resp.status == 200
    assert (await resp.json())["id"] == m["id"]
    resp = await broker.client.get("/v1/migrations/nope", headers=broker.auth())
    await problem(resp, 404, "not-found")


async def test_list_filters_and_pages_without_loss(broker: Broker) -> None:
    created = [await broker.create() for _ in range(5)]
    mover = await broker.create(src="other", dst="src")
    resp = await broker.client.post(f"/v1/migrations/{created[0]['id']}/complete",
                                    headers=broker.auth())
    assert resp.status == 200

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        resp = await broker.client.get("/v1/migrations", params=params, headers=broker.auth())
        assert resp.status == 200
        doc = await resp.json()
        assert len(doc["migrations"]) <= 2
        seen += [m["id"] for m in doc["migrations"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in [*created, mover]][::-1]  # newest first

    async def ids(**params: str) -> list[str]:
        resp = await broker.client.get("/v1/migrations", params=params, headers=broker.auth())
        assert resp.status == 200, await resp.text()
        return [m["id"] for m in (await resp.json())["migrations"]]

    assert await ids(state="completed") == [created[0]["id"]]
    assert await ids(host="other") == [mover["id"]]
    assert await ids(domain_uuid=created[2]["domain_uuid"]) == [created[2]["id"]]
    assert len(await ids(host="src")) == 6


async def test_list_bad_query_is_400(broker: Broker) -> None:
    for params in (
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"state": "dancing"},
        {"domain_uuid": "xyz"},
        {"cursor": "not-a-cursor"},
    ):
        resp = await broker.client.get("/v1/migrations", params=params, headers=broker.auth())
        await problem(resp, 400, "malformed")


async def test_complete_and_cancel_transitions(broker: Broker) -> None:
    a = await broker.create()
    for _ in range(2):  # idempotent
        resp = await broker.client.post(f"/v1/migrations/{a['id']}/complete",
                                        headers=broker.auth())
        assert resp.status == 200
        assert (await resp.json())["state"] == "completed"
    resp = await broker.client.post(f"/v1/migrations/{a['id']}/cancel", headers=broker.auth())
    await problem(resp, 409, "conflict")

    b = await broker.create()
    for _ in range(2):
        resp = await broker.client.post(f"/v1/migrations/{b['id']}/cancel", headers=broker.auth())
        assert resp.status == 200
        assert (await resp.json())["state"] == "cancelled"
    resp = await broker.client.post(f"/v1/migrations/{b['id']}/complete", headers=broker.auth())
    await problem(resp, 409, "conflict")
    resp = await broker.client.post("/v1/migrations/missing/complete", headers=broker.auth())
    await problem(resp, 404, "not-found")


async def test_terminal_migration_purges_port_data_but_keeps_outcomes(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    await broker.results(m["id"], [{"mac": mac(1), "generation": 1, "status": "applied"}])
    resp = await broker.client.post(f"/v1/migrations/{m['id']}/complete", headers=broker.auth())
    assert resp.status == 200
    resp = await broker.client.get(f"/v1/domains/{m['domain_uuid']}/interfaces",
                                   headers=broker.auth())
    assert resp.status == 200
    (record,) = (await resp.json())["interfaces"]
    # The store keeps the interface description for audit but drops its port data.
    assert record["interface"] is None or "portdata" not in record["interface"]["virtualport"]
    assert record["result"]["status"] == "applied"


async def test_results_drive_the_state(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)), iface(mac(2)))
    done = await broker.results(
        m["id"],
        [
            {"mac": mac(1), "generation": 1, "status": "applied"},
            {"mac": mac(2), "generation": 1, "status": "skipped", "detail": "no OVS here"},
        ],
        who="dst",
    )
    assert done["state"] == "applied"
    by_mac = {v["mac"]: v for v in done["interfaces"]}
    assert by_mac[mac(2)]["status"] == "skipped"
    assert by_mac[mac(2)]["detail"] == "no OVS here"
    # A newer generation moves it back to uploaded.
    await broker.upload(m["domain_uuid"], iface(mac(1), portdata="pd-2"))
    resp = await broker.client.get(f"/v1/migrations/{m['id']}", headers=broker.auth())
    assert (await resp.json())["state"] == "uploaded"


async def test_results_errors(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    url = f"/v1/migrations/{m['id']}/results"
    resp = await broker.client.post(
        url, json={"results": [{"mac": mac(9), "generation": 1, "status": "applied"}]},
        headers=broker.auth(),
    )
    await problem(resp, 422, "invalid")
    dup = {"mac": mac(1), "generation": 1, "status": "applied"}
    resp = await broker.client.post(url, json={"results": [dup, dup]}, headers=broker.auth())
    await problem(resp, 422, "invalid")
    resp = await broker.client.post(url, json={"results": []}, headers=broker.auth())
    await problem(resp, 422, "invalid")
    resp = await broker.client.post(
        url, json={"results": [{**dup, "status": "pending"}]}, headers=broker.auth()
    )
    await problem(resp, 422, "invalid")
    resp = await broker.client.post(
        "/v1/migrations/missing/results", json={"results": [dup]}, headers=broker.auth()
    )
    await problem(resp, 404, "not-found")
    await broker.client.post(f"/v1/migrations/{m['id']}/cancel", headers=broker.auth())
    resp = await broker.client.post(url, json={"results": [dup]}, headers=broker.auth())
    await problem(resp, 409, "conflict")


async def test_expiry_by_the_background_task(broker: Broker) -> None:
    m = await broker.create(ttl_seconds=30)
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    broker.clock.advance(31)
    # The housekeeping task runs every 50 ms; the barrier wakes on the expiry commit.
    resp = await broker.client.get(
        f"/v1/migrations/{m['id']}", params={"wait_for": "applied", "timeout": "30"},
        headers=broker.auth(),
    )
    doc = await resp.json()
    assert doc["state"] == "expired"
    resp = await broker.client.post(f"/v1/migrations/{m['id']}/complete", headers=broker.auth())
    await problem(resp, 409, "conflict")
    resp = await broker.client.put(
        f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}", json=iface(mac(1)),
        headers=broker.auth(),
    )
    await problem(resp, 409, "no-active-migration")
