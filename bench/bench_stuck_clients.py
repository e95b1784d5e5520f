"""Upload rate beside 1,000 parked long-polls (half of them never read) vs without them.

One broker process; 64 connections upload single vifs as fast as it answers
(``bench_upload``'s load). The rate is measured without parked polls, with
1,000 long-polls parked on an idle host's inbox (the odd half read by tasks,
the even half never read: stuck clients), and without them again; the anchor
is the mean of the two runs without, so drift over the run cancels out.

Prints one JSON line. Target: ratio ≥ 0.8 (within 20%).
Usage: python bench/bench_stuck_clients.py [--seconds 4] [--polls 1000] [--db sqlite|postgresql|URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
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


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp, store_url(args.db) as db:
        state = Path(tmp) / "state"
        tokens = add_tokens(state, "src", "idle")
        port = free_port()
        proc = spawn_broker(state, port, db)
        try:
            await wait_healthy(port, "/healthz", proc)
            make = await upload_requests(port, tokens["controller"], tokens["src"],
                                         args.connections)  # fmt: skip
            before = await load(port, args.seconds, args.connections, make)
            conn = await Conn.open(port)
            _, body = await conn.request(
                "GET", "/v1/hosts/idle/inbox",
                headers={"Authorization": f"Bearer {tokens['controller']}"},
            )  # fmt: skip
            conn.close()
            writers = await park(port, tokens["idle"], json.loads(body)["revision"], args.polls)
            deadline = time.monotonic() + 60
            while await parked(port) < args.polls:
                if time.monotonic() > deadline:
                    raise SystemExit("the long-polls never all parked")
                await asyncio.sleep(0.05)
            with_polls = await load(port, args.seconds, args.connections, make)
            still = await parked(port)
            for w in writers:
                w.close()
            after = await load(port, args.seconds, args.connections, make)
        finally:
            proc.terminate()
            proc.wait()
    anchor = (before + after) / 2
    print(json.dumps({
        "bench": "stuck_clients",
        "db": args.db.split(":", 1)[0],
        "connections": args.connections,
        "parked_polls": args.polls,
        "still_parked_after": still,
        "uploads_per_s": round(with_polls, 1),
        "anchor_per_s": round(anchor, 1),
        "anchor_before_per_s": round(before, 1),
        "anchor_after_per_s": round(after, 1),
        "ratio": round(with_polls / anchor, 3),
        "target_ratio": 0.8,
        "cpus": os.cpu_count(),
    }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql, or a store URL")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
