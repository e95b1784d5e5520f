"""Benchmark: apply 64 vifs of one domain vs one single ``ovs-vsctl set``.

Runs against a throwaway ovsdb-server (tests/ovs_harness.py). Prints one JSON
line. Anchors are measured in the same run, through the same asyncio
subprocess path and the same ovs-vsctl flags the backend uses:

* single_set_ms   one ``ovs-vsctl set`` of one PortData
* separate64_ms   64 of those, one after another (the naive per-vif way)
* apply64_ms      backend.apply() of 64 vifs, ports already looked up
                  (the agent inspects while waiting for the ports to appear)
* apply64_cold_ms the same on a fresh backend: one ``find`` more

Target (DESIGN "Targets"): apply64_ms <= 2 x single_set_ms.

Usage: .venv/bin/python bench/bench_apply.py [--reps N] [--vifs N] [--ovs-driver vsctl|native]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from ovs_harness import ovsdb_servers  # noqa: E402
from vifbroker.backends.openvswitch import OpenVSwitchBackend  # noqa: E402
from vifbroker.backends.openvswitch.vsctl import VsctlConfig, portdata_arg  # noqa: E402
from vifbroker.model import Interface, VirtualPort  # noqa: E402

DOMAIN = "6f1c9c5e-2d5b-4d53-9a3e-0c1f2a3b4c5d"


def mac(n: int) -> str:
    return f"52:54:00:00:{n // 256:02x}:{n % 256:02x}"


def vifs(count: int, rep: int) -> list[Interface]:
    # A fresh ~256-byte value per repetition, so every run really writes.
    return [
        Interface(
            mac=mac(n),
            virtualport=VirtualPort(
                type="openvswitch", portdata=json.dumps({"rep": rep, "vif": n, "pad": "x" * 220})
            ),
        )
        for n in range(count)
    ]


async def single_set(config: VsctlConfig, port: str, value: str) -> float:
    argv = [*config.base_argv(), "--", "set", "Interface", port, portdata_arg(value)]
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(err.decode())
    return elapsed


async def timed_apply(backend: OpenVSwitchBackend, batch: list[Interface]) -> float:
    start = time.perf_counter()
    results = await backend.apply(DOMAIN, batch)
    elapsed = time.perf_counter() - start
    if any(r.outcome != "applied" for r in results):
        raise RuntimeError(f"apply failed: {results}")
    return elapsed


async def bench(db: str, count: int, reps: int, driver: str) -> dict[str, object]:
    config = VsctlConfig(db=db, no_wait=True, timeout=10)
    # The machine is shared: interleave anchor and subject so that load
    # swings hit both alike, and take medians.
    single, warm, cold, separate = [], [], [], []
    backend = OpenVSwitchBackend(db=db, no_wait=True, timeout=10, driver=driver)
    try:
        await backend.inspect(DOMAIN, [mac(n) for n in range(count)])
        for rep in range(reps):
            single.append(await single_set(config, "tap0", f"single {rep}"))
            warm.append(await timed_apply(backend, vifs(count, rep)))
            fresh = OpenVSwitchBackend(db=db, no_wait=True, timeout=10, driver=driver)
            try:
                cold.append(await timed_apply(fresh, vifs(count, 1000 + rep)))
            finally:
                await fresh.close()
    finally:
        await backend.close()

    for rep in range(3):
        start = time.perf_counter()
        for n in range(count):
            await single_set(config, f"tap{n}", f"separate {rep} {n}")
        separate.append(time.perf_counter() - start)

    def ms(samples: list[float]) -> float:
        return round(statistics.median(samples) * 1000, 2)

    return {
        "bench": f"apply{count}",
        "single_set_ms": ms(single),
        "apply64_ms": ms(warm),
        "ratio": round(ms(warm) / ms(single), 2),
        "apply64_cold_ms": ms(cold),
        "cold_ratio": round(ms(cold) / ms(single), 2),
        "separate64_ms": ms(separate),
        "ovs_driver": driver,
        "target_ratio": 2.0,
        "met": ms(warm) / ms(single) <= 2.0,
        "reps": reps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--vifs", type=int, default=64)
    parser.add_argument("--ovs-driver", choices=["vsctl", "native"], default="vsctl")
    args = parser.parse_args()
    with ovsdb_servers() as make:
        server = make()
        for n in range(args.vifs):
            server.add_port("br-int", f"tap{n}", vm_id=DOMAIN, mac=mac(n))
        figures = asyncio.run(bench(server.db, args.vifs, args.reps, args.ovs_driver))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
