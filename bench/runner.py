"""Run every benchmark, one after another, and print their JSON lines and a table.

Each benchmark is its own process (``bench/bench_*.py``) and starts and stops
its own broker(s), ovsdb-servers, agents and load generator, all on
loopback; this runner only starts it, collects the JSON lines it prints
(each carries its figures and its anchor's, measured in the same run), adds
the wall time and the machine's load average around it, and prints a table
at the end. A benchmark that fails or runs past its time limit becomes a
JSON line with an ``error``; the others still run.

Every ``bench_*.py`` in this folder runs: the ones listed in :data:`PLAN`
with the arguments given there (the OVS ones once per driver), any other
with its defaults, so a new benchmark takes part by existing.

Usage: bench/run [--quick] [--only NAME[,NAME...]] [--list]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Run:
    name: str
    script: str
    args: tuple[str, ...] = ()
    #: arguments replacing ``args`` under --quick (a smoke run, figures not comparable)
    quick: tuple[str, ...] | None = None
    timeout: float = 240.0
    env: dict[str, str] = field(default_factory=dict)


PLAN: list[Run] = [
    *(
        Run(f"apply/{d}", "bench_apply.py", ("--ovs-driver", d), ("--ovs-driver", d, "--reps", "3"))
        for d in ("vsctl", "native")
    ),
    *(
        Run(
            f"propagation/{d}",
            "bench_propagation.py",
            ("--ovs-driver", d),
            ("--ovs-driver", d, "--changes", "8"),
        )
        for d in ("vsctl", "native")
    ),
    *(
        Run(
            f"evacuation/{d}",
            "bench_evacuation.py",
            ("--ovs-driver", d),
            ("--ovs-driver", d, "--domains", "40"),
        )
        for d in ("vsctl", "native")
    ),
    Run("upload", "bench_upload.py", (), ("--seconds", "1")),
    Run("handoff", "bench_handoff.py", (), ("--rounds", "40")),
    Run("idle_longpolls", "bench_idle_longpolls.py", (), ("--polls", "500", "--wakes", "20")),
    Run(
        "scaling",
        "bench_scaling.py",
        (),
        ("--rounds", "30", "--vifs", "100", "--migrations", "200", "--tokens", "200"),
    ),
    *(
        Run(
            f"stuck_clients/{db}",
            "bench_stuck_clients.py",
            ("--db", db),
            ("--db", db, "--seconds", "1", "--polls", "100"),
        )
        for db in ("sqlite", "postgresql")
    ),
    Run("upload_stores", "bench_upload_stores.py", (), ("--seconds", "1")),
    Run("replica_handoff", "bench_replica_handoff.py", (), ("--rounds", "30")),
]


def plan() -> list[Run]:
    """:data:`PLAN` plus every other ``bench_*.py`` here, with its defaults."""
    listed = {r.script for r in PLAN}
    extra = [
        Run(p.stem.removeprefix("bench_"), p.name)
        for p in sorted(HERE.glob("bench_*.py"))
        if p.name not in listed
    ]
    return [r for r in PLAN if (HERE / r.script).exists()] + extra


def run_one(run: Run, quick: bool) -> list[dict[str, Any]]:
    args = run.quick if quick and run.quick is not None else run.args
    argv = [sys.executable, str(HERE / run.script), *args]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    env = {**os.environ, **run.env}
    # Its own process group: a benchmark that hangs or dies is stopped together
    # with every broker, agent and ovsdb-server it started.
    proc = subprocess.Popen(
        argv,
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=run.timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _stop_group(proc.pid)
        out, _ = proc.communicate()
        err, rc = f"timed out after {run.timeout:.0f}s", -1
    _stop_group(proc.pid)  # anything it left behind
    context = {
        "run": run.name,
        "wall_s": round(time.monotonic() - started, 1),
        "load1_before": round(load_before, 2),
        "load1_after": round(os.getloadavg()[0], 2),
    }
    results = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                results.append({**json.loads(line), **context})
            except ValueError:
                continue
    if rc != 0 or not results:
        tail = " | ".join(err.strip().splitlines()[-3:]) if err.strip() else f"exit status {rc}"
        results.append({"bench": run.name, "error": tail, **context})
    return results


def _stop_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)


# -- the table ---------------------------------------------------------------------------------
Row = tuple[str, str, str, str, str]


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def _summary(r: dict[str, Any]) -> Row:
    """(figure, anchor, ratio, target, met) of one result."""
    kind = str(r.get("bench", ""))
    for prefix, fn in SUMMARIES.items():
        if kind.startswith(prefix):
            try:
                return fn(r)
            except (KeyError, TypeError, ZeroDivisionError):
                break
    skip = {"bench", "run", "wall_s", "load1_before", "load1_after", "cpus"}
    figures = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
    return figures[:90], "", "", "", ""


def _apply(r: dict[str, Any]) -> Row:
    return (
        f"64 vifs {r['apply64_ms']} ms (cold {r['apply64_cold_ms']})",
        f"1 vsctl set {r['single_set_ms']} ms",
        f"{r['ratio']}x",
        f"<= {r['target_ratio']}x",
        _met(r["ratio"] <= r["target_ratio"]),
    )


def _propagation(r: dict[str, Any]) -> Row:
    return (
        f"median {r['median_ms']} ms, p90 {r['p90_ms']}",
        f"3 vsctl calls {r['anchor_3_vsctl_ms']} ms",
        f"{r['ratio_to_anchor']}x",
        f"<= {r['target_median_ms']} ms",
        _met(r["median_ms"] <= r["target_median_ms"]),
    )


def _evacuation(r: dict[str, Any]) -> Row:
    return (
        f"{r['domains']}x{r['vifs_per_domain']} in {r['evacuation_s']} s",
        f"per-vif calls {r['anchor_per_vif_calls_s']} s",
        f"{round(r['evacuation_s'] / r['anchor_per_vif_calls_s'], 3)}x",
        f"<= {r['target_s']} s",
        _met(r["evacuation_s"] <= r["target_s"] and not r["wrong_portdata"]),
    )


def _upload(r: dict[str, Any]) -> Row:
    target = r.get("target_ratio", 0.5)
    return (
        f"{r['uploads_per_s']}/s",
        f"trivial handler {r['anchor_per_s']}/s"
        + (f"; durable floor {r['durable_floor_per_s']}/s" if "durable_floor_per_s" in r else "")
        + (f"; lean reference {r['lean_per_s']}/s" if "lean_per_s" in r else ""),
        f"{r['ratio']}x",
        f">= {target}x",
        _met(r["ratio"] >= target),
    )


def _handoff(r: dict[str, Any]) -> Row:
    return (
        f"median {r['median_ms']} ms, p99 {r['p99_ms']}",
        f"durable floor {r['anchor_median_ms']} / {r['anchor_p99_ms']} ms"
        + (f"; lean reference {r['lean_median_ratio']}x" if "lean_median_ratio" in r else ""),
        f"{r['median_ratio']}x / {r['p99_ratio']}x",
        f"<= {r['target_median_ratio']}x / {r['target_p99_ratio']}x",
        _met(
            r["median_ratio"] <= r["target_median_ratio"]
            and r["p99_ratio"] <= r["target_p99_ratio"]
        ),
    )


def _idle(r: dict[str, Any]) -> Row:
    return (
        f"{r['parked']} parked {r['rss_mb_with_polls']} MB, wake p99 {r['wake_p99_ms']} ms",
        f"idle {r['rss_mb_idle_broker']} MB, lone wake p99 {r['anchor_single_wake_p99_ms']} ms",
        "",
        f"<= {r['target_rss_mb']} MB, <= {r['target_wake_p99_ms']} ms",
        _met(
            r["rss_mb_with_polls"] <= r["target_rss_mb"]
            and r["wake_p99_ms"] <= r["target_wake_p99_ms"]
        ),
    )


def _scaling(r: dict[str, Any]) -> Row:
    return (
        f"{r['large']}: median {r['large_median_ms']} ms",
        f"{r['small']}: median {r['anchor_small_median_ms']} ms",
        f"{r['ratio']}x",
        f"<= {r['target_ratio']}x",
        _met(r["ratio"] <= r["target_ratio"]),
    )


def _ratio_only(r: dict[str, Any]) -> Row:
    target = r.get("target_ratio")
    return (
        f"{r.get('uploads_per_s', r.get('postgresql_per_s'))}/s",
        f"{r.get('anchor_per_s', r.get('sqlite_per_s'))}/s",
        f"{r['ratio']}x",
        f">= {target}x" if target else "",
        _met(r["ratio"] >= target) if target else "",
    )


def _replica(r: dict[str, Any]) -> Row:
    return (
        f"cross median {r['cross_median_ms']} ms, p99 {r['cross_p99_ms']}",
        f"same replica {r['same_median_ms']} / {r['same_p99_ms']} ms",
        f"{r['extra_p99_ms']:+} ms p99",
        f"<= +{r['target_extra_p99_ms']} ms",
        _met(r["extra_p99_ms"] <= r["target_extra_p99_ms"]),
    )


SUMMARIES: dict[str, Callable[[dict[str, Any]], Row]] = {
    "apply": _apply,
    "propagation": _propagation,
    "evacuation": _evacuation,
    "upload_stores": _ratio_only,
    "upload": _upload,
    "handoff": _handoff,
    "idle_longpolls": _idle,
    "scaling_": _scaling,
    "stuck_clients": _ratio_only,
    "replica_handoff": _replica,
}


def table(results: list[dict[str, Any]]) -> str:
    header = ("benchmark", "figure", "anchor (same run)", "ratio", "target", "met", "load1")
    rows = []
    for r in results:
        name = str(r.get("run", r.get("bench")))
        if str(r.get("bench", "")).startswith("scaling_"):
            name = str(r["bench"])
        if "error" in r:
            cells: tuple[str, ...] = ("ERROR: " + str(r["error"])[:80], "", "", "", "")
        else:
            cells = _summary(r)
        rows.append((name, *cells, f"{r.get('load1_before', '')}"))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated run names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the run names and exit")
    args = parser.parse_args()
    runs = plan()
    if args.list:
        print("\n".join(f"{r.name}: {r.script} {' '.join(r.args)}" for r in runs))
        return 0
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        runs = [r for r in runs if r.name in wanted or r.name.split("/")[0] in wanted]
    started = time.monotonic()
    results = []
    for run in runs:
        for result in run_one(run, args.quick):
            print(json.dumps(result), flush=True)
            results.append(result)
    print()
    print(table(results))
    print(
        f"\n{len(runs)} runs in {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs; "
        "load1 = the machine's 1-minute load average as the run started"
    )
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
