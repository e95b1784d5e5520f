"""Where a handoff's time goes inside the broker: a timeline of its steps.

Runs ``bench_handoff``'s rounds (the durable floor and a broker, alternating,
the broker measured once its WAL is settled) with the broker timing its own
steps through the hooks in ``timeline_hooks/`` (put on its PYTHONPATH: the
broker's code is not changed). Prints the floor's and the broker's median
handoff, then each step's median time after the upload's first bytes reached
the broker, and the step before it. The hooks cost a few microseconds each,
so the broker's ratio here is above ``bench_handoff``'s; the steps are what
to read. A diagnostic for the handoff path, not one of ``bench/run``'s
benchmarks.

Usage: .venv/bin/python bench/handoff_timeline.py [--rounds 600] [--tree CHECKOUT]
(``--tree``: another checkout with its own .venv, e.g. to time a change).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench_handoff import interleave, start_anchor, start_broker

HOOKS = Path(__file__).resolve().parent / "timeline_hooks"


async def main(args: argparse.Namespace) -> None:
    procs: list[Any] = []
    tree = Path(args.tree).resolve()
    with tempfile.TemporaryDirectory(prefix="vifbroker-timeline-") as tmp:
        notes = Path(tmp) / "timeline.jsonl"
        try:
            subjects = {"floor": await start_anchor(Path(tmp), procs)}
            saved = dict(os.environ)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [str(HOOKS), *filter(None, [saved.get("PYTHONPATH")])]
            )
            os.environ["HANDOFF_TIMELINE_FILE"] = str(notes)
            try:
                python = str(tree / ".venv/bin/python")
                subjects["broker"] = await start_broker(Path(tmp) / "b", "agent", procs, python)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            samples = await interleave(args.rounds, subjects)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()  # the broker writes its last notes as it stops
        # (the first 20 are interleave's warm-up rounds)
        rounds = [json.loads(line) for line in notes.read_text().splitlines()][20:]
    floor = statistics.median(samples["floor"])
    broker = statistics.median(samples["broker"])
    print(f"floor median {floor * 1e3:.3f} ms, broker {broker * 1e3:.3f} ms"
          f" ({broker / floor:.3f} x, with the hooks), {len(rounds)} rounds timed")  # fmt: skip
    steps = sorted({name for r in rounds for name in r}, key=lambda n: float(n.split()[0]))
    print(f"{'step':34s} {'us after the upload arrived':>28s} {'since the step before':>22s}")
    before = 0.0
    for name in steps:
        values = [r[name] for r in rounds if name in r]
        at = statistics.median(values)
        print(f"{name:34s} {at:28.0f} {at - before:22.0f}")
        before = at


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent),
                        help="the checkout whose broker to time (with its own .venv)")  # fmt: skip
    sys.exit(uvloop.run(main(parser.parse_args())))
