"""Handoff A/B: the brokers of two checkouts against one durable floor, in one run.

A tool for a change to the handoff path, not one of ``bench/run``'s benchmarks.
On this shared 2-core machine two runs of ``bench_handoff.py`` differ by up to
0.05 in their median ratio, so two checkouts compared run after run cannot
show a change of a few percent. Here the floor (``bench_handoff``'s anchor)
and two brokers, each started by its own checkout's Python, take rounds in
turn, in the order floor A B floor B A, over and over (``ORDER``): no one
follows itself, and each follows each of the others equally often. Who ran
just before matters: a broker's round right after its own last one runs ~5%
faster (its caches are warm), and one right after the other broker faster
than one right after the floor (the two run the same Python). An earlier
rotation (floor A B, A B floor, B floor A) put B after A twice as often as A
after B, which favoured B by about 0.045 of the floor: as much as the changes
it was used to judge. Check a change in both positions (--a X --b Y, then
--a Y --b X).

Each checkout needs its own ./.venv (``scripts/test`` makes it). Prints one JSON
line: each broker's median and p99 as ratios to the floor's, and B's median
ratio minus A's.
Usage: .venv/bin/python bench/ab_handoff.py --a CHECKOUT --b CHECKOUT [--rounds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import uvloop

from bench_handoff import Round, p99, start_anchor, start_broker

WARMUP = 20


#: One cycle through every ordered pair of the three subjects (floor, a, b)
#: once each: floor->a, a->b, b->floor, floor->b, b->a, a->floor (then again).
ORDER = (0, 1, 2, 0, 2, 1)


def transitions(order: tuple[int, ...]) -> dict[tuple[int, int], int]:
    """How often each subject follows each other in ``order`` run over and over."""
    counts: dict[tuple[int, int], int] = {}
    for i, name in enumerate(order):
        pair = (order[i - 1], name)
        counts[pair] = counts.get(pair, 0) + 1
    return counts


assert transitions(ORDER) == {(x, y): 1 for x in range(3) for y in range(3) if x != y}


async def rotate(rounds: int, subjects: dict[str, Round]) -> dict[str, list[float]]:
    """``rounds`` rounds of each subject (three: the floor and two brokers), in ``ORDER``."""
    names = list(subjects)
    after = dict.fromkeys(names, 0)
    samples: dict[str, list[float]] = {name: [] for name in names}
    per_cycle = len(ORDER) // len(names)
    for cycle in range((rounds + WARMUP + per_cycle - 1) // per_cycle):
        for index in ORDER:
            name = names[index]
            elapsed, after[name] = await subjects[name](after[name])
            if cycle * per_cycle >= WARMUP:
                samples[name].append(elapsed)
    return samples


async def main(args: argparse.Namespace) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    pythons = {name: str(Path(path).resolve() / ".venv/bin/python")
               for name, path in (("a", args.a), ("b", args.b))}  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="vifbroker-ab-") as tmp:
            subjects = {"floor": await start_anchor(Path(tmp), procs)}
            for name, python in pythons.items():
                subjects[name] = await start_broker(Path(tmp) / name, "agent", procs, python)
            samples = await rotate(args.rounds, subjects)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    floor_median, floor_p99 = statistics.median(samples["floor"]), p99(samples["floor"])
    out: dict[str, object] = {"bench": "ab_handoff", "rounds": args.rounds,
                              "floor_median_ms": round(floor_median * 1000, 3)}  # fmt: skip
    for name, path in (("a", args.a), ("b", args.b)):
        out[name] = path
        out[f"{name}_median_ratio"] = round(statistics.median(samples[name]) / floor_median, 3)
        out[f"{name}_p99_ratio"] = round(p99(samples[name]) / floor_p99, 3)
    out["b_minus_a_median"] = round(
        float(out["b_median_ratio"]) - float(out["a_median_ratio"]), 3  # type: ignore[arg-type]
    )
    print(json.dumps(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True, help="a checkout with its own .venv")
    parser.add_argument("--b", required=True, help="another checkout with its own .venv")
    parser.add_argument("--rounds", type=int, default=600)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
