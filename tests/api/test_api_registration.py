"""Agent-registered migrations (``--agent-migrations``) and the resume report."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from api_helpers import Broker, iface, problem
from test_api_metrics import scrape, value

from testkit import mac
from vifbroker.model import portdata_digest

AGENT_MIGRATIONS = [{"agent_migrations": True}]


async def running(broker: Broker, host: str, *domains: str) -> None:
    resp = await broker.client.put(
        f"/v1/hosts/{host}", json={"running_domains": list(domains)}, headers=broker.auth(host)
    )
    assert resp.status == 200, await resp.text()


async def register(broker: Broker, dom: str, who: str = "dst", **extra: Any) -> Any:
    body = {"domain_uuid": dom, "destination_host": who, "id": f"reg-{dom[:8]}", **extra}
    return await broker.client.post("/v1/migrations", json=body, headers=broker.auth(who))


@pytest.mark.parametrize("settings_overrides", AGENT_MIGRATIONS)
async def test_destination_registers_and_the_broker_fills_the_source(broker: Broker) -> None:
    dom = str(uuid.uuid4())
    await running(broker, "src", dom)
    resp = await register(broker, dom)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    assert (doc["source_host"], doc["destination_host"], doc["registered_by"]) == (
        "src", "dst", "dst",
    )  # fmt: skip
    again = await register(broker, dom)  # a retried registration: the same migration
    assert again.status == 200 and (await again.json())["id"] == doc["id"]
    # The registering agent completes it; the source agent may not.
    resp = await broker.client.post(
        f"/v1/migrations/{doc['id']}/complete", headers=broker.auth("src")
    )
    await problem(resp, 403, "forbidden")
    resp = await broker.client.post(
        f"/v1/migrations/{doc['id']}/complete", headers=broker.auth("dst")
    )
    assert resp.status == 200 and (await resp.json())["state"] == "completed"


@pytest.mark.parametrize("settings_overrides", AGENT_MIGRATIONS)
async def test_the_destination_reporting_the_arriving_domain_first_still_registers(
    broker: Broker,
) -> None:
    """libvirt lists the arriving (paused) domain on the destination too: when the
    destination's heartbeat lands before its registration, the source is still the
    other host that reports it (was: 422, source and destination must differ)."""
    dom = str(uuid.uuid4())
    await running(broker, "src", dom)
    await running(broker, "dst", dom)
    resp = await register(broker, dom)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["source_host"] == "src"
    # Naming the destination itself as the source stays a refusal.
    other = str(uuid.uuid4())
    await running(broker, "dst", other)
    await problem(await register(broker, other), 422, "invalid")


@pytest.mark.parametrize("settings_overrides", AGENT_MIGRATIONS)
async def test_registration_refusals(broker: Broker) -> None:
    unknown = str(uuid.uuid4())
    await problem(await register(broker, unknown), 422, "invalid")  # nobody runs it
    dom = str(uuid.uuid4())
    await running(broker, "src", dom)
    await problem(await register(broker, dom, who="other", destination_host="dst"), 403,
                  "forbidden")  # fmt: skip
    created = await broker.create(dom)  # a controller's migration exists
    await problem(await register(broker, dom), 409, "conflict")
    got = await broker.client.get(f"/v1/migrations/{created['id']}", headers=broker.auth())
    assert (await got.json())["registered_by"] is None


async def test_without_the_switch_a_destination_may_not_register(broker: Broker) -> None:
    dom = str(uuid.uuid4())
    await running(broker, "src", dom)
    await problem(await register(broker, dom), 403, "forbidden")


async def test_resume_report_timeline_and_margin_metrics(broker: Broker) -> None:
    before = await scrape(broker)
    on_time, late = str(uuid.uuid4()), str(uuid.uuid4())
    ids = {}
    for dom in (on_time, late):
        ids[dom] = (await broker.create(dom))["id"]
        await broker.upload(dom, iface(mac(1), "pd"), iface(mac(2), "pd"))
    applied = [{"mac": mac(n), "generation": 1, "status": "applied",
                "digest": portdata_digest("pd")} for n in (1, 2)]  # fmt: skip
    await broker.results(ids[on_time], applied, who="dst")
    now = broker.clock()
    doc = await resumed(broker, ids[on_time], now + timedelta(seconds=2))
    t = doc["timeline"]
    assert t["late"] is False and 1.5 < t["margin_seconds"] < 2.5
    assert all(v["uploaded_at"] and v["applied_at"] for v in doc["interfaces"])

    doc = await resumed(broker, ids[late], now)  # nothing landed yet
    assert doc["timeline"]["late"] is True
    later = [r | {"applied_at": (now + timedelta(seconds=1)).isoformat()} for r in applied]
    doc = await broker.results(ids[late], later, who="dst")
    assert doc["timeline"]["margin_seconds"] == pytest.approx(-1.0)

    got = await broker.client.get(f"/v1/migrations/{ids[late]}", headers=broker.auth())
    assert (await got.json())["timeline"] == doc["timeline"]
    after = await scrape(broker)
    count = "vifbroker_resume_margin_seconds_count"
    assert value(after, count) - value(before, count) == 2
    late_total = "vifbroker_late_landings_total"
    assert value(after, late_total) - value(before, late_total) == 1
    resp = await broker.client.post(
        f"/v1/migrations/{ids[late]}/resumed", json={"at": now.isoformat()},
        headers=broker.auth("src"),
    )  # fmt: skip
    await problem(resp, 403, "forbidden")


async def resumed(broker: Broker, migration_id: str, at: datetime) -> Any:
    resp = await broker.client.post(
        f"/v1/migrations/{migration_id}/resumed", json={"at": at.isoformat()},
        headers=broker.auth("dst"),
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    return await resp.json()
