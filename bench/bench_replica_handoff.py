"""Cross-replica wake latency: upload on replica A → a long-poll parked on replica B returns.

Two broker replicas on one throwaway PostgreSQL (``tests/pg_harness.py``). The
anchor, in the same run on the same replicas: the long-poll parked on A
itself (a same-replica handoff, woken inside the process). The difference is
what waking another replica costs (PostgreSQL ``LISTEN/NOTIFY`` and the read
that follows). The two kinds of rounds alternate, so drift hits both alike.

Prints one JSON line: median and p99 of both and the extra p99.
Target: p99 extra ≤ 20 ms.
Usage: python bench/bench_replica_handoff.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import uuid
from pathlib import Path

import uvloop

from bench_handoff import PORTDATA, handoff, p99
from bench_upload import Conn, add_tokens, free_port, spawn_broker, store_url, wait_healthy

WARMUP = 20


async def main(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp,
        store_url("postgresql") as db,
    ):
        states = [Path(tmp) / "a", Path(tmp) / "b"]
        tokens = add_tokens(states[0], "src", "dst")
        states[1].mkdir()
        shutil.copy(states[0] / "tokens.toml", states[1] / "tokens.toml")
        ports = [free_port(), free_port()]
        procs = [spawn_broker(s, p, db) for s, p in zip(states, ports, strict=True)]
        try:
            for port, proc in zip(ports, procs, strict=True):
                await wait_healthy(port, "/readyz", proc)
            same, cross = await measure(ports, tokens, args.rounds)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    sm, sp, cm, cp = statistics.median(same), p99(same), statistics.median(cross), p99(cross)
    print(json.dumps({
        "bench": "replica_handoff",
        "rounds": args.rounds,
        "cross_median_ms": round(cm * 1000, 3),
        "cross_p99_ms": round(cp * 1000, 3),
        "same_median_ms": round(sm * 1000, 3),
        "same_p99_ms": round(sp * 1000, 3),
        "extra_median_ms": round((cm - sm) * 1000, 3),
        "extra_p99_ms": round((cp - sp) * 1000, 3),
        "target_extra_p99_ms": 20,
    }))  # fmt: skip


async def measure(ports: list[int], tokens: dict[str, str], rounds: int) -> tuple[list[float], ...]:
    """Alternate same-replica and cross-replica handoffs; the samples of each."""
    src = await Conn.open(ports[0])
    waiters = {"same": await Conn.open(ports[0]), "cross": await Conn.open(ports[1])}
    domain = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens['src']}"}
    status, body = await src.request(
        "POST", "/v1/migrations",
        json.dumps({"domain_uuid": domain, "source_host": "src",
                    "destination_host": "dst"}).encode(),
        {**headers, "Authorization": f"Bearer {tokens['controller']}"},
    )  # fmt: skip
    assert status == 201, body
    mac = "52:54:00:00:00:01"
    iface = json.dumps({"mac": mac, "virtualport": {"type": "openvswitch",
                                                    "portdata": PORTDATA}}).encode()  # fmt: skip
    put = ("PUT", f"/v1/domains/{domain}/interfaces/{mac}", iface, headers)
    auth = {"Authorization": f"Bearer {tokens['dst']}"}
    _, first = await src.request("GET", "/v1/hosts/dst/inbox", headers=auth)
    after = int(json.loads(first)["revision"])

    def revision_of(answer: bytes) -> int:
        doc = json.loads(answer)
        assert doc["items"], doc
        return int(doc["revision"])

    samples: dict[str, list[float]] = {"same": [], "cross": []}
    for i in range(2 * (rounds + WARMUP)):
        kind = "same" if i % 2 == 0 else "cross"
        path = f"/v1/hosts/dst/inbox?after={after}&wait=30"
        elapsed, after = await handoff(src, waiters[kind], path, put, auth, revision_of)
        if i >= 2 * WARMUP:
            samples[kind].append(elapsed)
    return samples["same"], samples["cross"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
