"""PostgreSQL crashes (``pg_ctl stop -m immediate``) and comes back under two live replicas.

While it is down, uploads keep coming to both replicas and must be refused
with 503 within their timeout (never hang), and ``/readyz`` says 503. Once it
is back, uploads succeed again on the same broker processes, every
acknowledged upload is stored exactly (``load.Uploader``), and every long-poll
parked on either replica before the crash answers with the records uploaded
after it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest
from agent_harness import mac
from fleet import Fleet, gather_cancelling, metric, status
from load import ParkedPoll, inbox_portdata, make_uploaders

from pg_harness import PgCluster
from testkit import wait_until
from vifbroker.model import Interface, VirtualPort

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

CLIENTS = 8
POLLS_PER_REPLICA = 10


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_database_crash_and_restart_under_load(
    fleet: Fleet, store_url: str, pg_cluster: PgCluster
) -> None:
    replicas = await fleet.start_replicas(2)
    pids = [r.proc.pid for r in replicas if r.proc is not None]
    controller = fleet.controller()
    uploaders = await make_uploaders(
        controller, [r.url for r in replicas], fleet.token("agent", "host-a"), CLIENTS
    )
    target = str(uuid.uuid4())
    await controller.create_migration(target, "host-a", "host-c")
    after = (await controller.inbox("host-c", after=0)).revision
    polls = [
        await ParkedPoll.open(r.port, "host-c", fleet.token("agent", "host-c"), after)
        for r in replicas
        for _ in range(POLLS_PER_REPLICA)
    ]
    readers = [asyncio.create_task(p.answer()) for p in polls]
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:

            async def parked() -> bool:
                counts = [await metric(session, r, "vifbroker_open_longpolls") for r in replicas]
                return min(counts) >= POLLS_PER_REPLICA

            async def ready(expected: int) -> bool:
                return all([await status(session, r.url + "/readyz") == expected for r in replicas])

            await wait_until(parked, timeout=30)
            tasks = [
                asyncio.create_task(u.run(session, stop, until_unreachable=False))
                for u in uploaders
            ]
            await wait_until(lambda: all(u.acks_total >= 5 for u in uploaders), timeout=60)

            refused = [len(u.refusals) for u in uploaders]
            down_at = time.monotonic()
            pg_cluster.stop(mode="immediate")
            try:
                # Every client's upload is refused, and so are the read-backs it keeps
                # trying (a request that hangs fails the test through its timeout);
                # no replica says it is ready.
                await wait_until(
                    lambda: (
                        any(t.done() for t in tasks)
                        or all(
                            len(u.refusals) > refused[u.index] and u.readback_refusals >= 3
                            for u in uploaders
                        )
                    ),
                    timeout=60,
                )
                await wait_until(lambda: ready(503), timeout=30)
            finally:
                pg_cluster.start()
                up_at = time.monotonic()
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            assert set().union(*(u.refusals for u in uploaders)) == {503}
            assert not any(r.done() for r in readers), "a parked poll answered during the outage"

            acked = [u.acks_total for u in uploaders]
            await wait_until(
                lambda: all(u.acks_total > acked[u.index] for u in uploaders), timeout=60
            )
            resumed_s = time.monotonic() - up_at
            await wait_until(lambda: ready(200), timeout=30)
            stop.set()
            await gather_cancelling(*tasks)
        assert [r.proc.pid for r in replicas if r.proc and r.proc.poll() is None] == pids

        for u in uploaders:
            await u.check(controller)
        vifs = {mac(900 + i): f"after the restart {i}" for i in range(2)}
        await controller.upload(
            target,
            [Interface(mac=m, virtualport=VirtualPort(type="openvswitch", portdata=pd))
             for m, pd in vifs.items()],
        )  # fmt: skip
        answers = await asyncio.wait_for(asyncio.gather(*readers), 60)
    finally:
        stop.set()
        for t in readers:
            t.cancel()
        for p in polls:
            p.close()
    for code, doc in answers:
        assert code == 200, doc
        assert inbox_portdata(doc, target) == vifs
    print(json.dumps({
        "test": "database_restart", "replicas": len(replicas), "clients": CLIENTS,
        "down_s": round(up_at - down_at, 3),
        "uploads_refused_503": sum(len(u.refusals) for u in uploaders),
        "readbacks_refused_503": sum(u.readback_refusals for u in uploaders),
        "slowest_503_s": round(max(u.slowest_refusal for u in uploaders), 3),
        "every_client_writing_again_s": round(resumed_s, 3),
        "acknowledged": sum(u.acks_total for u in uploaders),
        "parked_polls_answered": len(answers),
    }))  # fmt: skip
