"""A thousand parked long-polls, half of them never read, break nothing while uploads run.

The upload *rate* beside 1,000 parked polls is a performance figure: it lives
in ``bench/bench_stuck_clients.py``. Here: every poll stays parked while 16
clients upload to other hosts, every upload acknowledged is stored exactly,
and every poll (read or stuck) answers with the record that finally concerns
its host.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from fleet import Fleet, gather_cancelling, metric
from load import ParkedPoll, inbox_portdata, make_uploaders

from testkit import wait_until

pytestmark = pytest.mark.reliability

POLLS = 1000
CLIENTS = 16
UPLOADS = 1500


async def test_thousand_parked_polls_keep_uploads_and_wakes_exact(
    fleet: Fleet, store_url: str
) -> None:
    broker = await fleet.start_replica()
    controller = fleet.controller()
    token = fleet.token("agent", "host-a")
    uploaders = await make_uploaders(controller, [broker.url], token, CLIENTS)

    after = (await controller.inbox("host-c", after=0)).revision
    polls = [
        await ParkedPoll.open(broker.port, "host-c", fleet.token("agent", "host-c"), after)
        for _ in range(POLLS)
    ]
    # The odd half is read as it comes; the even half is stuck until the very end.
    readers = [asyncio.create_task(p.answer()) for p in polls[1::2]]
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until(lambda: _parked(session, fleet, POLLS), timeout=60, interval=0.1)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(u.run(session, stop)) for u in uploaders]
            await wait_until(
                lambda: (
                    sum(u.acks_total for u in uploaders) >= UPLOADS or all(t.done() for t in tasks)
                ),
                timeout=90,
            )
            stop.set()
            await gather_cancelling(*tasks)
            assert sum(u.acks_total for u in uploaders) >= UPLOADS
            assert not any(r.done() for r in readers), "a poll for an idle host answered early"
            assert await metric(session, broker, "vifbroker_open_longpolls") >= POLLS

        for u in uploaders:
            await u.check(controller)
            assert u.seq == u.acked and u.refusals == []

        # Now something arrives for host-c: every parked poll answers with it.
        domain = str(uuid.uuid4())
        await controller.create_migration(domain, "host-a", "host-c")
        answers = await asyncio.wait_for(
            asyncio.gather(*readers, *(p.answer() for p in polls[0::2])), 60
        )
    finally:
        for t in readers:
            t.cancel()
        for p in polls:
            p.close()
    assert len(answers) == POLLS
    for status, doc in answers:
        assert status == 200, doc
        assert [i["migration"]["domain_uuid"] for i in doc["items"]] == [domain]
        assert inbox_portdata(doc, domain) == {}


async def _parked(session: aiohttp.ClientSession, fleet: Fleet, count: int) -> bool:
    return await metric(session, fleet.replicas[0], "vifbroker_open_longpolls") >= count
