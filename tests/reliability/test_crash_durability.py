"""A broker SIGKILLed while 16 clients upload as fast as they can loses nothing it acknowledged.

Each round lets the clients run until a random number of uploads has been
acknowledged, kills the broker with SIGKILL, starts it again on the same
database and checks every client's records (see ``load.Uploader``): every
acknowledged upload is there with its generation, nothing half-written is
visible, and revisions never go backwards. Bulk uploads (4 vifs in one PUT)
and single-vif uploads run side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import random

import aiohttp
import pytest
from fleet import Fleet, gather_cancelling
from load import make_uploaders

from testkit import wait_until

pytestmark = pytest.mark.reliability

ROUNDS = 5
CLIENTS = 16
#: seconds: up to about two PostgreSQL group commits on this machine
KILL_JITTER = 0.03


async def test_sigkilled_broker_keeps_every_acknowledged_upload(
    fleet: Fleet, store_url: str
) -> None:
    seed = int(os.environ.get("VIFBROKER_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    broker = await fleet.start_replica()
    controller = fleet.controller()
    token = fleet.token("agent", "host-a")
    uploaders = await make_uploaders(controller, [broker.url], token, CLIENTS)

    def acks() -> int:
        return sum(u.acks_total for u in uploaders)

    highest_revision = 0
    in_flight_kept = 0
    for round_no in range(ROUNDS):
        target = acks() + rng.randint(20, 400)
        stop = asyncio.Event()
        # A fresh session each round: keep-alive connections to the killed broker are dead.
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(u.run(session, stop)) for u in uploaders]
            await wait_until(
                lambda t=target, ts=tasks: acks() >= t or all(x.done() for x in ts), 60
            )
            assert broker.proc is not None and broker.proc.poll() is None, "broker died early"
            assert acks() >= target, f"round {round_no}: clients stopped before the kill"
            # Not a wait for anything: a random phase of the broker's next commit to kill in
            # (collecting, writing, syncing, answering), not always right after an answer.
            await asyncio.sleep(rng.uniform(0, KILL_JITTER))
            broker.kill()
            await gather_cancelling(*tasks)
        new = [r for u in uploaders for r in u.revisions]
        assert new and min(new) > highest_revision, "a revision went backwards"
        highest_revision = max(highest_revision, *new)
        for u in uploaders:
            u.revisions.clear()

        await broker.start()
        for u in uploaders:
            known = u.seq
            await u.check(controller)
            in_flight_kept += u.seq - known  # committed, but the kill cut off the answer
        inbox = await controller.inbox("host-b", after=0)
        assert inbox.revision >= highest_revision, "the restarted broker's revision went back"
        assert {item.migration.domain_uuid for item in inbox.items} == {u.domain for u in uploaders}

    print(json.dumps({
        "test": "crash_durability", "store": store_url.split(":", 1)[0], "seed": seed,
        "rounds": ROUNDS, "clients": CLIENTS, "acknowledged": acks(), "lost": 0,
        "unanswered_but_committed": in_flight_kept,
        "revision": highest_revision,
    }))  # fmt: skip
