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

Usage: .venv/bin/python bench/handoff_timeline.py [--rounds 600] [--tree CHECKOUT [--tree CHECKOUT]]
(``--tree``: a checkout with its own .venv; given twice, both brokers run against
the same floor in ``ab_handoff``'s order, to time a change step by step).
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

from ab_handoff import rotate
from bench_handoff import Round, interleave, start_anchor, start_broker

HOOKS = Path(__file__).resolve().parent / "timeline_hooks"


def _notes(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        raise SystemExit(f"the broker wrote no timeline to {path}: were its hooks loaded?")
    notes = [json.loads(line) for line in path.read_text().splitlines()]
    for note in notes:
        if "error" in note:
            raise SystemExit(f"the broker's timeline hooks failed: {note['error']}")
    return notes


async def start_timed(tmp: Path, name: str, tree: Path, procs: list[Any]) -> Round:
    """A broker of ``tree`` whose hooks write its notes to ``tmp/name.jsonl``."""
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HOOKS), *filter(None, [saved.get("PYTHONPATH")])]
    )
    os.environ["HANDOFF_TIMELINE_FILE"] = str(tmp / f"{name}.jsonl")
    try:
        return await start_broker(tmp / name, "agent", procs, str(tree / ".venv/bin/python"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def main(args: argparse.Namespace) -> None:
    procs: list[Any] = []
    trees = [Path(t).resolve() for t in args.tree or [Path(__file__).resolve().parent.parent]]
    if len(trees) > 2:
        raise SystemExit("at most two checkouts")
    names = [f"broker {i + 1}" if len(trees) > 1 else "broker" for i in range(len(trees))]
    with tempfile.TemporaryDirectory(prefix="vifbroker-timeline-") as tmp:
        try:
            subjects = {"floor": await start_anchor(Path(tmp), procs)}
            for name, tree in zip(names, trees, strict=True):
                subjects[name] = await start_timed(Path(tmp), name, tree, procs)
            # Two brokers: each follows the floor and the other equally often.
            run = rotate if len(trees) > 1 else interleave
            samples = await run(args.rounds, subjects)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()  # a broker writes its last notes as it stops
        # (the first 20 are the warm-up rounds)
        timed = {name: _notes(Path(tmp) / f"{name}.jsonl")[20:] for name in names}
    floor = statistics.median(samples["floor"])
    ratios = []
    for name, tree in zip(names, trees, strict=True):
        which = f" ({tree})" if len(trees) > 1 else ""
        ratio = statistics.median(samples[name]) / floor
        ratios.append(f"{name}{which} {ratio:.3f} x ({len(timed[name])} rounds timed)")
    print(f"floor median {floor * 1e3:.3f} ms; with the hooks: {', '.join(ratios)}")
    every = {step for notes in timed.values() for r in notes for step in r}
    steps = sorted(every, key=lambda n: float(n.split()[0]))
    head = "".join(f"{name + ': at, step':>24s}" for name in names)
    print(f"{'step (us after the upload arrived)':36s}{head}")
    before = dict.fromkeys(names, 0.0)
    for step in steps:
        cells = ""
        for name in names:
            values = [r[step] for r in timed[name] if step in r]
            if not values:
                cells += f"{'-':>24s}"
                continue
            at = statistics.median(values)
            cells += f"{at:17.0f}{at - before[name]:7.0f}"
            before[name] = at
        print(f"{step:36s}{cells}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--tree", action="append",
                        help="a checkout whose broker to time (with its own .venv); twice to"
                             " compare two in one run (default: this one)")  # fmt: skip
    sys.exit(uvloop.run(main(parser.parse_args())))
