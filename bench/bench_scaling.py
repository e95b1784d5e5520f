"""Cost of one upload as the cloud grows: a small and a large broker side by side.

Three pairs of ``vifbroker serve`` processes (temporary SQLite each), every
pair differing in one dimension only:

* vifs:        the migration already holds 1 vs 1,000 vifs;
* migrations:  10 vs 10,000 active migrations in the broker;
* tokens:      10 vs 5,000 agent tokens in the token file (the uploading
               agent's token is the last one in the file).

For each pair, one connection per broker sends single-vif PUTs (the source
agent's upload of one changed vif, a fresh value each time), alternating
between the small and the large broker so that load swings on this shared
machine hit both alike. The figure is the median latency of the large case
over the small one (the small case is the anchor); target: within 1.5x.

Prints one JSON line per pair. Usage: python bench/bench_scaling.py [--rounds 300]
       [--vifs 1000] [--migrations 10000] [--tokens 5000] [--only vifs|migrations|tokens]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench_upload import Conn, free_port, spawn_broker, wait_healthy

JSON = "application/json"
SOURCE = "src"
BULK = 200


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    controller: str
    agent: str  # the uploading (source) agent's token
    source: str  # its host name


def write_tokens(state: Path, agents: int) -> tuple[str, str, str]:
    """A token file with a controller and ``agents`` agent tokens (hosts h0..), in one write.

    Returns (controller token, last agent's token, last agent's host).
    """
    state.mkdir(parents=True, exist_ok=True)
    lines, last, host = [], "", ""
    controller = secrets.token_urlsafe(32)
    entries = [("controller", controller, None)]
    for i in range(agents):
        host = f"h{i}" if agents > 1 else SOURCE
        last = secrets.token_urlsafe(32)
        entries.append(("agent", last, host))
    for role, token, who in entries:
        lines += ["[[tokens]]", f'name = "{who or role}"', f'role = "{role}"']
        lines.append(f'sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"')
        if who:
            lines.append(f'host = "{who}"')
        lines.append("")
    path = state / "tokens.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return controller, last, host


async def start(state: Path, agents: int = 1) -> Broker:
    controller, agent, source = write_tokens(state, agents)
    port = free_port()
    proc = spawn_broker(state, port, None)
    await wait_healthy(port, "/healthz", proc)
    return Broker(port, proc, controller, agent, source)


def headers(token: str) -> dict[str, str]:
    return {"Content-Type": JSON, "Authorization": f"Bearer {token}"}


def mac(n: int) -> str:
    return f"52:54:00:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"


def vif(n: int, value: str) -> dict[str, object]:
    return {"mac": mac(n), "virtualport": {"type": "openvswitch", "portdata": value}}


async def create(conn: Conn, b: Broker, domain: str, source: str) -> None:
    body = {"domain_uuid": domain, "source_host": source, "destination_host": "dst"}
    status, payload = await conn.request(
        "POST", "/v1/migrations", json.dumps(body).encode(), headers(b.controller)
    )
    if status != 201:
        raise SystemExit(f"create migration: {status} {payload[:200]!r}")


async def migration_with_vifs(b: Broker, vifs: int) -> str:
    """One migration from ``b.source`` holding ``vifs`` vifs; returns its domain."""
    domain = str(uuid.uuid4())
    conn = await Conn.open(b.port)
    try:
        await create(conn, b, domain, b.source)
        for first in range(0, vifs, BULK):  # the broker takes at most 256 in one document
            batch = [vif(n, f"v{n}") for n in range(first, min(vifs, first + BULK))]
            status, payload = await conn.request(
                "PUT",
                f"/v1/domains/{domain}/interfaces",
                json.dumps({"interfaces": batch}).encode(),
                headers(b.agent),
            )
            if status != 200:
                raise SystemExit(f"bulk upload: {status} {payload[:200]!r}")
    finally:
        conn.close()
    return domain


async def other_migrations(b: Broker, count: int, connections: int = 16) -> None:
    """``count`` more active migrations (from other hosts), created over a few connections."""
    todo = iter(range(count))

    async def worker() -> None:
        conn = await Conn.open(b.port)
        try:
            for _ in todo:
                await create(conn, b, str(uuid.uuid4()), "elsewhere")
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def alternate(pair: dict[str, tuple[Broker, str]], rounds: int) -> dict[str, list[float]]:
    """Single-vif PUTs, one broker after the other; latency (ms) per broker."""
    conns = {name: await Conn.open(b.port) for name, (b, _) in pair.items()}
    samples: dict[str, list[float]] = {name: [] for name in pair}
    try:
        names = list(pair)
        for i in range(rounds + 20):
            for name in names if i % 2 else names[::-1]:  # neither always goes first
                b, domain = pair[name]
                body = json.dumps(vif(0, f"round {i} " + "x" * 200)).encode()
                path = f"/v1/domains/{domain}/interfaces/{mac(0)}"
                t0 = time.perf_counter()
                status, payload = await conns[name].request("PUT", path, body, headers(b.agent))
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 200:
                    raise SystemExit(f"{name} upload: {status} {payload[:200]!r}")
                if i >= 20:  # warm-up
                    samples[name].append(elapsed)
    finally:
        for conn in conns.values():
            conn.close()
    return samples


def figures(
    kind: str, small: int, large: int, samples: dict[str, list[float]]
) -> dict[str, object]:
    def q(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    s_med = statistics.median(samples["small"])
    l_med = statistics.median(samples["large"])
    ratio = l_med / s_med
    return {
        "bench": f"scaling_{kind}",
        "small": small,
        "large": large,
        "large_median_ms": round(l_med, 3),
        "large_p90_ms": q(samples["large"], 0.9),
        "anchor_small_median_ms": round(s_med, 3),
        "anchor_small_p90_ms": q(samples["small"], 0.9),
        "ratio": round(ratio, 3),
        "target_ratio": 1.5,
        "met": ratio <= 1.5,
        "rounds": len(samples["small"]),
    }


async def pair(tmp: Path, kind: str, small: int, large: int, rounds: int) -> dict[str, object]:
    brokers: list[Broker] = []
    try:
        targets: dict[str, tuple[Broker, str]] = {}
        for name, size in (("small", small), ("large", large)):
            b = await start(tmp / kind / name, size if kind == "tokens" else 1)
            brokers.append(b)
            domain = await migration_with_vifs(b, size if kind == "vifs" else 1)
            if kind == "migrations":
                await other_migrations(b, size - 1)
            targets[name] = (b, domain)
        samples = await alternate(targets, rounds)
    finally:
        for b in brokers:
            b.proc.terminate()
            b.proc.wait()
    return figures(kind, small, large, samples)


async def main(args: argparse.Namespace) -> None:
    # The large case needs more vifs in one migration than the broker's default
    # cap (256); both brokers of a pair run with the same setting.
    os.environ["VIFBROKER_MAX_VIFS_PER_MIGRATION"] = str(max(256, args.vifs))
    sizes = {
        "vifs": (1, args.vifs),
        "migrations": (10, args.migrations),
        "tokens": (10, args.tokens),
    }
    with tempfile.TemporaryDirectory(prefix="vifbroker-bench-scaling-") as tmp:
        for kind, (small, large) in sizes.items():
            if args.only and kind != args.only:
                continue
            result = await pair(Path(tmp), kind, small, large, args.rounds)
            result["cpus"] = os.cpu_count()
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--vifs", type=int, default=1000)
    parser.add_argument("--migrations", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--only", choices=["vifs", "migrations", "tokens"])
    uvloop.run(main(parser.parse_args()))
