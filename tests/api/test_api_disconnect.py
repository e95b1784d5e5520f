"""A parked request whose client hung up stops waiting at once (reliability finding).

aiohttp does not cancel a handler when its client disconnects, so before the
fix a closed long-poll stayed parked (socket, hub waiter, gauge) until its wait
ran out. Each test parks requests over raw sockets with a 60 s wait, closes the
sockets, and waits (with a deadline far below 60 s) until the open-long-polls
gauge and the hub are back where they were.
"""

from __future__ import annotations

import asyncio

from api_helpers import Broker, iface, mac
from prometheus_client.parser import text_string_to_metric_families

from testkit import wait_until

GAUGE = "vifbroker_open_longpolls"
N = 20
# Far below every wait parked here (60 s; the event stream's 15 s keepalive):
# before the fix these conditions could not be met in time.
DEADLINE = 10.0


async def open_longpolls(broker: Broker) -> float:
    resp = await broker.client.get("/metrics")
    assert resp.status == 200
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == GAUGE:
                return sample.value
    raise AssertionError(f"{GAUGE} missing from /metrics")


async def park_raw(broker: Broker, target: str, who: str, count: int) -> list[asyncio.StreamWriter]:
    """``count`` raw connections, each with a GET of ``target`` parked on the hub."""
    server = broker.client.server
    token = broker.tokens[who]
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: broker\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        writers.append(writer)
    return writers


async def hang_up_and_settle(
    broker: Broker, writers: list[asyncio.StreamWriter], before: float
) -> None:
    hub = broker.store.hub
    await wait_until(lambda: hub.waiting >= len(writers), DEADLINE)
    assert await open_longpolls(broker) == before + len(writers)
    for writer in writers:
        writer.close()
    for writer in writers:
        await writer.wait_closed()

    async def settled() -> bool:
        return hub.waiting == 0 and await open_longpolls(broker) == before

    await wait_until(settled, DEADLINE)


async def test_closed_inbox_long_polls_leave_at_once(broker: Broker) -> None:
    before = await open_longpolls(broker)
    writers = await park_raw(broker, "/v1/hosts/dst/inbox?after=0&wait=60", "dst", N)
    await hang_up_and_settle(broker, writers, before)
    # The server still serves, and wakes a live long-poll as before.
    m = await broker.create()
    waiting = asyncio.create_task(
        broker.client.get(
            "/v1/hosts/dst/inbox", params={"after": m["revision"], "wait": "60"},
            headers=broker.auth("dst"),
        )
    )
    await wait_until(lambda: broker.store.hub.waiting >= 1, DEADLINE)
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    resp = await asyncio.wait_for(waiting, DEADLINE)
    assert resp.status == 200
    assert [i["migration"]["id"] for i in (await resp.json())["items"]] == [m["id"]]


async def test_closed_barrier_waits_leave_at_once(broker: Broker) -> None:
    m = await broker.create()
    before = await open_longpolls(broker)
    target = f"/v1/migrations/{m['id']}?wait_for=applied&timeout=60"
    writers = await park_raw(broker, target, "dst", N)
    await hang_up_and_settle(broker, writers, before)


async def test_closed_event_streams_leave_at_once(broker: Broker) -> None:
    before = await open_longpolls(broker)
    writers = await park_raw(broker, "/v1/events?after=0", "controller", N)
    await hang_up_and_settle(broker, writers, before)
