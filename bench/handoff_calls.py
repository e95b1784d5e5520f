"""How many function calls a handoff costs on each server's event loop: a count, not a time.

Runs ``bench_handoff``'s rounds (the durable floor, the lean reference and a
broker, or two checkouts' brokers) with every server counting its calls
through the hooks in ``call_hooks/`` (put on its PYTHONPATH: no server's code
is changed). A handoff is counted on the event loop's thread from the upload's
first bytes until the long-poll's answer is made: the Python functions
entered and the C functions called (a coroutine or generator counts again
each time it is resumed: a handler that awaits the commit shows twice). Prints
each server's calls per handoff, then the broker's most called functions (or,
for two checkouts, every function whose count differs between them).

On this machine a handoff's time varies by several percent from run to run,
and a Python call on the handoff path costs roughly a microsecond cold: a
change that removes twenty calls is hard to see in ``ab_handoff`` and plain
here. The count is the same on every run. The writer thread (the COMMIT) is
not counted, nor is the floor's executor thread. A diagnostic for the handoff
path, not one of ``bench/run``'s benchmarks.

Usage: .venv/bin/python bench/handoff_calls.py [--rounds 100] [--top 40]
       [--tree CHECKOUT [--tree CHECKOUT]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop

from bench_handoff import interleave, start_anchor, start_broker, start_lean

HOOKS = Path(__file__).resolve().parent / "call_hooks"


def _is_c(name: str) -> bool:
    return name.startswith("C ")


def per_handoff(path: Path) -> tuple[int, dict[str, float]]:
    """The handoffs a server counted and its calls per handoff, by function."""
    if not path.exists():
        raise SystemExit(f"no call counts in {path}: were the hooks loaded?")
    doc = json.loads(path.read_text())
    handoffs = doc["handoffs"]
    return handoffs, {name: n / handoffs for name, n in doc["calls"].items()}


def summary(calls: dict[str, float]) -> str:
    python = sum(n for name, n in calls.items() if not _is_c(name))
    c = sum(n for name, n in calls.items() if _is_c(name))
    return f"{python + c:6.0f} calls ({python:.0f} Python, {c:.0f} C)"


async def main(args: argparse.Namespace) -> None:
    trees = [Path(t).resolve() for t in args.tree or [Path(__file__).resolve().parent.parent]]
    if len(trees) > 2:
        raise SystemExit("at most two checkouts")
    names = [f"broker {i + 1}" if len(trees) > 1 else "broker" for i in range(len(trees))]
    procs: list[Any] = []
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="vifbroker-calls-") as tmp:
        counts = Path(tmp) / "counts"
        counts.mkdir()
        # Every server started from here loads the hooks (the floor and the
        # lean reference run this Python; each broker its checkout's).
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(HOOKS), *filter(None, [saved.get("PYTHONPATH")])]
        )
        os.environ["HANDOFF_CALLS_DIR"] = str(counts)
        try:
            subjects = {"floor": await start_anchor(Path(tmp), procs)}
            subjects["lean"] = await start_lean(Path(tmp), procs)
            for name, tree in zip(names, trees, strict=True):
                subjects[name] = await start_broker(
                    Path(tmp) / name.replace(" ", ""), "agent", procs,
                    str(tree / ".venv/bin/python"),
                )  # fmt: skip
            server_pids = {"floor": procs[0].pid, "lean": procs[1].pid}
            server_pids |= {name: procs[2 + i].pid for i, name in enumerate(names)}
            await interleave(args.rounds, subjects)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            for proc in procs:
                proc.terminate()
                proc.wait()  # each server writes its counts as it exits
        found = {name: per_handoff(counts / f"{pid}.json") for name, pid in server_pids.items()}
    print("calls per handoff on each server's event loop (upload in -> long-poll answer made)")
    for name, (handoffs, calls) in found.items():
        print(f"  {name:10s}{summary(calls)}  over {handoffs} handoffs")
    if len(names) == 1:
        calls = found[names[0]][1]
        print(f"\nthe broker's {args.top} most called functions, per handoff")
        for name, n in Counter(calls).most_common(args.top):
            print(f"  {n:6.1f}  {name}")
        return
    one, two = found[names[0]][1], found[names[1]][1]
    changed = {k: two.get(k, 0.0) - one.get(k, 0.0) for k in one.keys() | two.keys()}
    changed = {k: d for k, d in changed.items() if abs(d) >= 0.05}
    print(f"\nfunctions called a different number of times ({names[1]} - {names[0]}), per handoff")
    for name, d in sorted(changed.items(), key=lambda kv: (kv[1], kv[0])):
        print(f"  {d:+6.1f}  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--tree", action="append",
                        help="a checkout whose broker to count (with its own .venv); twice to"
                             " compare two")  # fmt: skip
    sys.exit(uvloop.run(main(parser.parse_args())))
