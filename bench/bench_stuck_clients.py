"""Upload rate beside 1,000 parked long-polls (half of them never read) vs without them.

One broker process; 64 connections upload single vifs as fast as it answers
(``bench_upload``'s load). Phases alternate: without parked polls, with 1,000
long-polls parked on an idle host's inbox (never read: stuck clients), without
again, … (``--cycles`` phases with polls). Each phase with polls is compared
with the mean of the phases without just before and after it, so drift over
the run cancels out; the figure is the median of those ratios.

Prints one JSON line. Target: ratio ≥ 0.8 (within 20%).
Usage: python bench/bench_stuck_clients.py [--seconds 3] [--cycles 3] [--polls 1000]
       [--db sqlite|postgresql|URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from bench_upload import (
    Conn,
    add_tokens,
    free_port,
    load,
    spawn_broker,
    store_url,
    upload_requests,
    wait_healthy,
)


async def park(port: int, token: str, after: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` long-polls on host ``idle``'s inbox; returns their writers (to close)."""
    writers = []
    request = (
        f"GET /v1/hosts/idle/inbox?after={after}&wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        writers.append(writer)
    return writers


async def parked(port: int) -> int:
    conn = await Conn.open(port)
    _, body = await conn.request("GET", "/metrics")
    conn.close()
    for line in body.decode().splitlines():
        if line.startswith("vifbroker_open_longpolls "):
            return int(float(line.split()[1]))
    raise SystemExit("vifbroker_open_longpolls missing from /metrics")


async def wait_parked(port: int, count: int, at_least: bool) -> None:
    deadline = time.monotonic() + 60
    while (await parked(port) >= count) != at_least:
        if time.monotonic() > deadline:
            raise SystemExit(f"parked long-polls never went {'up' if at_least else 'down'}")
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp, store_url(args.db) as db:
        state = Path(tmp) / "state"
        tokens = add_tokens(state, "src", "idle")
        admin = {"Authorization": f"Bearer {tokens['controller']}"}
        port = free_port()
        proc = spawn_broker(state, port, db)
        try:
            await wait_healthy(port, "/healthz", proc)
            make = await upload_requests(port, tokens["controller"], tokens["src"],
                                         args.connections)  # fmt: skip
            without = [await load(port, args.seconds, args.connections, make)]
            with_polls, still = [], []
            conn = await Conn.open(port)
            for _ in range(args.cycles):
                _, body = await conn.request("GET", "/v1/hosts/idle/inbox", headers=admin)
                after = json.loads(body)["revision"]
                writers = await park(port, tokens["idle"], after, args.polls)
                await wait_parked(port, args.polls, at_least=True)
                with_polls.append(await load(port, args.seconds, args.connections, make))
                still.append(await parked(port))
                # Wake them all (a migration to the idle host): a parked request whose client
                # merely went away would stay parked on the server until its wait ends.
                status, body = await conn.request(
                    "POST", "/v1/migrations",
                    json.dumps({"domain_uuid": str(uuid.uuid4()), "source_host": "src",
                                "destination_host": "idle"}).encode(),
                    {**admin, "Content-Type": "application/json"},
                )  # fmt: skip
                assert status == 201, body
                await wait_parked(port, 1, at_least=False)
                for w in writers:
                    w.close()
                without.append(await load(port, args.seconds, args.connections, make))
            conn.close()
        finally:
            proc.terminate()
            proc.wait()
    # Each phase with polls against the mean of the phases without just before and after it.
    ratios = [w / ((a + b) / 2) for w, a, b in zip(with_polls, without, without[1:], strict=False)]
    print(json.dumps({
        "bench": "stuck_clients",
        "db": args.db.split(":", 1)[0],
        "connections": args.connections,
        "parked_polls": args.polls,
        "cycles": args.cycles,
        "still_parked_after": min(still),
        "uploads_per_s": round(statistics.mean(with_polls), 1),
        "anchor_per_s": round(statistics.mean(without), 1),
        "ratio": round(statistics.median(ratios), 3),
        "cycle_ratios": [round(r, 3) for r in ratios],
        "target_ratio": 0.8,
        "cpus": os.cpu_count(),
    }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql, or a store URL")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
