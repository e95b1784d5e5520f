"""Long-polls parked on the change hub: inbox wake-up and resume, the applied barrier, SSE."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from api_helpers import Broker, iface, mac, problem

GUARD = 30  # a hang guard only; nothing here asserts on time


async def parked(broker: Broker, count: int = 1) -> None:
    """Until ``count`` requests are parked on the hub (condition polling, not a sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD
    while broker.store.hub.waiting < count:
        assert loop.time() < deadline, "request never parked"
        await asyncio.sleep(0.005)


async def inbox(broker: Broker, host: str, **params: Any) -> dict[str, Any]:
    resp = await broker.client.get(
        f"/v1/hosts/{host}/inbox", params={k: str(v) for k, v in params.items()},
        headers=broker.auth(host),
    )
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_inbox_answers_at_once_when_there_is_something(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    incoming = await inbox(broker, "dst", after=0, wait=60)
    (item,) = incoming["items"]
    assert item["direction"] == "incoming"
    assert item["migration"]["id"] == m["id"]
    assert [r["mac"] for r in item["interfaces"]] == [mac(1)]
    assert item["interfaces"][0]["interface"]["virtualport"]["portdata"] == "pd-1"
    assert incoming["revision"] >= item["revision"]
    outgoing = await inbox(broker, "src", after=0)
    assert [i["direction"] for i in outgoing["items"]] == ["outgoing"]
    # Nothing after the current revision, and wait=0 answers at once.
    empty = await inbox(broker, "dst", after=incoming["revision"])
    assert empty == {"revision": incoming["revision"], "items": []}


async def test_waiting_inbox_wakes_on_an_upload_from_another_client(broker: Broker) -> None:
    m = await broker.create()
    start = (await inbox(broker, "dst", after=0))["revision"]
    waiting = asyncio.create_task(inbox(broker, "dst", after=start, wait=60))
    await parked(broker)
    await broker.upload(m["domain_uuid"], iface(mac(1)), who="src")
    woke = await asyncio.wait_for(waiting, GUARD)
    (item,) = woke["items"]
    assert item["revision"] > start
    assert [r["mac"] for r in item["interfaces"]] == [mac(1)]


async def test_inbox_time_up_answers_empty_with_current_revision(broker: Broker) -> None:
    m = await broker.create(src="other", dst="src")
    doc = await inbox(broker, "dst", after=m["revision"], wait=0.05)
    assert doc["items"] == []
    assert doc["revision"] >= m["revision"]


async def test_inbox_bad_parameters_are_400(broker: Broker) -> None:
    for params in ({"after": "-1"}, {"after": "x"}, {"wait": "61"}, {"wait": "nan"},
                   {"wait": "-1"}):
        resp = await broker.client.get(
            "/v1/hosts/dst/inbox", params=params, headers=broker.auth("dst")
        )
        await problem(resp, 400, "malformed")


async def test_resume_by_revision_loses_and_repeats_nothing(broker: Broker) -> None:
    domains = [str(uuid.uuid4()) for _ in range(16)]
    for d in domains:
        await broker.create(d)
    generations = 4
    final = {(d, mac(i)): generations for d in domains for i in range(2)}

    async def uploader(d: str) -> None:
        for g in range(1, generations + 1):
            await broker.upload(
                d, *(iface(mac(i), portdata=f"{d}/{i}/{g}") for i in range(2)), who="src"
            )

    latest: dict[tuple[str, str], int] = {}
    revisions: list[int] = []

    async def consumer() -> None:
        after = 0
        while latest != final:
            doc = await inbox(broker, "dst", after=after, wait=GUARD)
            for item in doc["items"]:
                revisions.append(item["revision"])
                for rec in item["interfaces"]:
                    key = (rec["domain_uuid"], rec["mac"])
                    pd = rec["interface"]["virtualport"]["portdata"]
                    assert pd == f"{key[0]}/{int(key[1][-2:], 16)}/{rec['generation']}"
                    # A vif never goes back to an older generation.
                    assert rec["generation"] >= latest.get(key, 0)
                    latest[key] = rec["generation"]
                after = max(after, item["revision"])
            after = max(after, doc["revision"]) if not doc["items"] else after

    consuming = asyncio.create_task(consumer())
    await asyncio.gather(*(uploader(d) for d in domains))
    await asyncio.wait_for(consuming, GUARD)
    assert latest == final
    # Every item handed out is newer than the last one: nothing repeated across polls.
    assert revisions == sorted(set(revisions))


async def test_barrier_waits_for_applied(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)), iface(mac(2)))
    url = f"/v1/migrations/{m['id']}"
    resp = await broker.client.get(url, params={"wait_for": "applied", "timeout": "0"},
                                   headers=broker.auth())
    assert (await resp.json())["state"] == "uploaded"

    async def barrier() -> dict[str, Any]:
        resp = await broker.client.get(url, params={"wait_for": "applied", "timeout": "60"},
                                       headers=broker.auth())
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
        return doc

    waiting = asyncio.create_task(barrier())
    await parked(broker)
    # Half the vifs applied: the barrier keeps waiting (woken, re-checked, parked again).
    await broker.results(m["id"], [{"mac": mac(1), "generation": 1, "status": "applied"}],
                         who="dst")
    await parked(broker)
    assert not waiting.done()
    await broker.results(m["id"], [{"mac": mac(2), "generation": 1, "status": "applied"}],
                         who="dst")
    doc = await asyncio.wait_for(waiting, GUARD)
    assert doc["state"] == "applied"
    assert {v["status"] for v in doc["interfaces"]} == {"applied"}


async def test_barrier_answers_on_failure_and_on_time_up(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    url = f"/v1/migrations/{m['id']}"
    resp = await broker.client.get(url, params={"wait_for": "applied", "timeout": "0.05"},
                                   headers=broker.auth())
    assert (await resp.json())["state"] == "uploaded"
    waiting = asyncio.create_task(broker.client.get(
        url, params={"wait_for": "applied"}, headers=broker.auth()))
    await parked(broker)
    await broker.results(m["id"], [{"mac": mac(1), "generation": 1, "status": "failed",
                                    "detail": "port never appeared"}])
    resp = await asyncio.wait_for(waiting, GUARD)
    doc = await resp.json()
    assert doc["state"] == "failed"
    assert doc["interfaces"][0]["detail"] == "port never appeared"
    for params in ({"wait_for": "done"}, {"wait_for": "applied", "timeout": "61"},
                   {"wait_for": "applied", "timeout": "soon"}):
        resp = await broker.client.get(url, params=params, headers=broker.auth())
        await problem(resp, 400, "malformed")


async def test_shutdown_wakes_parked_requests(broker: Broker) -> None:
    waiting = asyncio.create_task(inbox(broker, "dst", after=0, wait=60))
    await parked(broker)
    await broker.client.app.shutdown()  # what a SIGTERM does first
    doc = await asyncio.wait_for(waiting, GUARD)
    assert doc["items"] == []


async def _read_event(content: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    while True:
        line = (await content.readline()).decode("utf-8").rstrip("\n")
        if not line:
            if fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value


async def test_events_stream_and_resume(broker: Broker) -> None:
    resp = await broker.client.get("/v1/events", headers=broker.auth())
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    a = await broker.create()
    first = await asyncio.wait_for(_read_event(resp.content), GUARD)
    assert first["event"] == "migration"
    assert json.loads(first["data"])["id"] == a["id"]
    assert int(first["id"]) == a["revision"]
    b = await broker.create()
    second = await asyncio.wait_for(_read_event(resp.content), GUARD)
    assert json.loads(second["data"])["id"] == b["id"]
    resp.close()

    # Reconnect where we left off: only what came after.
    resp = await broker.client.get(
        "/v1/events", headers={**broker.auth(), "Last-Event-ID": first["id"]}
    )
    again = await asyncio.wait_for(_read_event(resp.content), GUARD)
    assert again["id"] == second["id"]
    resp.close()
    resp = await broker.client.get("/v1/events", params={"after": first["id"]},
                                   headers=broker.auth())
    again = await asyncio.wait_for(_read_event(resp.content), GUARD)
    assert again["id"] == second["id"]
    resp.close()
    resp = await broker.client.get("/v1/events", headers={**broker.auth(),
                                                          "Last-Event-ID": "abc"})
    await problem(resp, 400, "malformed")
