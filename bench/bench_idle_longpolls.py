"""Idle long-polls held by one broker process, and how fast a parked one wakes.

Opens N long-polls (default 10,000), each on its own host's inbox with
wait=60, against one `vifbroker serve` process; reads the broker's RSS once
all are parked; then wakes W of them one at a time (a migration created with
that host as destination) and times creation sent → that poll answered.

Anchor, measured in the same run: the broker's RSS before any poll is opened
(so the figure is the cost per parked poll), and a wake with only one poll
parked (so the figure shows what 10,000 idle neighbours cost a wake).
Targets: RSS ≤ 300 MB with 10,000 parked; wake p99 ≤ 10 ms.
Usage: python bench/bench_idle_longpolls.py [--polls 10000] [--wakes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from bench_upload import Conn, free_port, wait_healthy


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def open_poll(
    port: int, token: str, host: str
) -> tuple[Conn, asyncio.Task[tuple[int, bytes]]]:
    conn = await Conn.open(port)
    task = asyncio.create_task(
        conn.request(
            "GET",
            f"/v1/hosts/{host}/inbox?after=0&wait=60",
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    return conn, task


async def wake(
    port: int, token: str, ctl: Conn, host: str, poll: asyncio.Task[tuple[int, bytes]]
) -> float:
    body = json.dumps(
        {"domain_uuid": str(uuid.uuid4()), "source_host": "src", "destination_host": host}
    ).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    start = time.perf_counter()
    status, _ = await ctl.request("POST", "/v1/migrations", body, headers)
    assert status == 201, status
    await asyncio.wait_for(poll, 10)
    return (time.perf_counter() - start) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.polls * 2 + 1000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, VIFBROKER_LOG_LEVEL="WARNING")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vifbroker.cli",
                "serve",
                "--state-dir",
                tmp,
                "--listen",
                f"127.0.0.1:{port}",
            ],
            env=env,
        )
        try:
            await wait_healthy(port, "/healthz", proc)
            token = (Path(tmp) / "controller.token").read_text().strip()
            ctl = await Conn.open(port)
            base_rss = rss_mb(proc.pid)

            # Anchor: a wake with a single parked poll.
            single: list[float] = []
            for _ in range(20):
                host = f"solo-{uuid.uuid4().hex[:8]}"
                conn, task = await open_poll(port, token, host)
                await asyncio.sleep(0.005)  # benchmark pacing: let the poll park
                single.append(await wake(port, token, ctl, host, task))
                conn.close()

            polls: dict[str, tuple[Conn, asyncio.Task[tuple[int, bytes]]]] = {}
            opened = time.perf_counter()
            for start in range(0, args.polls, 500):
                batch = [f"h{i}" for i in range(start, min(args.polls, start + 500))]
                for host, pair in zip(
                    batch,
                    await asyncio.gather(*(open_poll(port, token, h) for h in batch)),
                    strict=True,
                ):
                    polls[host] = pair
            # Parked when the broker's gauge says so.
            deadline = time.monotonic() + 60
            parked = 0
            while time.monotonic() < deadline:
                _, text = await ctl.request("GET", "/metrics")
                for line in text.decode().splitlines():
                    if line.startswith("vifbroker_open_longpolls"):
                        parked = int(float(line.split()[-1]))
                if parked >= args.polls:
                    break
                await asyncio.sleep(0.2)
            open_s = time.perf_counter() - opened
            full_rss = rss_mb(proc.pid)

            wakes: list[float] = []
            for host in random.sample(sorted(polls), args.wakes):
                conn, task = polls.pop(host)
                wakes.append(await wake(port, token, ctl, host, task))
                conn.close()
            for conn, task in polls.values():
                task.cancel()
                conn.close()
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        json.dumps(
            {
                "bench": "idle_longpolls",
                "polls": args.polls,
                "parked": parked,
                "open_seconds": round(open_s, 2),
                "rss_mb_idle_broker": round(base_rss, 1),
                "rss_mb_with_polls": round(full_rss, 1),
                "kb_per_poll": round((full_rss - base_rss) * 1024 / max(parked, 1), 2),
                "wake_median_ms": round(statistics.median(wakes), 3),
                "wake_p99_ms": round(pct(wakes, 0.99), 3),
                "anchor_single_wake_median_ms": round(statistics.median(single), 3),
                "anchor_single_wake_p99_ms": round(pct(single, 0.99), 3),
                "target_rss_mb": 300,
                "target_wake_p99_ms": 10,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=10_000)
    parser.add_argument("--wakes", type=int, default=200)
    uvloop.run(main(parser.parse_args()))
