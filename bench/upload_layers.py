"""What each of the broker's layers costs an upload: the lean reference with its parts swapped in.

``bench_upload`` shows the broker at about half the lean reference's rate
(``lean_server.py``: the same work written out by hand). Here the lean server
runs again with one of the broker's parts in place of its own each time (the
request middleware, the SQLite store, the connection layer), then with all
three, beside the lean server itself, the broker, and the trivial anchor; the
load alternates between them in slices, forward then backward. Each prints its
rate, its ratio to the anchor and its CPU per upload, so a change to one layer
shows as a change in that row. A diagnostic for the upload path, not one of
``bench/run``'s benchmarks.

Usage: .venv/bin/python bench/upload_layers.py [--seconds 3] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from bench_upload import (
    JSON,
    PORTDATA,
    add_tokens,
    free_port,
    load,
    spawn_broker,
    upload_requests,
    wait_healthy,
)
from benchkit import cpu_seconds

#: the lean server with these broker parts in place of its own ("" : none)
VARIANTS = ("", "middleware", "store", "connections", "middleware,store,connections")
LEAN_TOKENS = {"lean-controller": None, "lean-agent": "src"}


async def main(args: argparse.Namespace) -> None:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    makes: dict[str, list[tuple[str, str, bytes, dict[str, str]]]] = {}
    here = Path(__file__).parent
    try:
        with tempfile.TemporaryDirectory(prefix="vifbroker-layers-") as tmp:
            ports["anchor"] = free_port()
            argv = [sys.executable, str(here / "bench_upload.py"), "--anchor-server"]
            procs["anchor"] = subprocess.Popen([*argv, str(ports["anchor"])])
            await wait_healthy(ports["anchor"], "/healthz", procs["anchor"])
            body = json.dumps({"mac": "52:54:00:00:00:01", "virtualport": {"portdata": PORTDATA}})
            makes["anchor"] = [("PUT", "/upload", body.encode(), {"Content-Type": JSON})]
            makes["anchor"] *= args.connections
            for i, layers in enumerate(VARIANTS):
                name = "lean" + (f" + {layers.replace(',', ' + ')}" if layers else "")
                ports[name] = free_port()
                db = str(Path(tmp) / f"lean{i}.db")
                argv = [sys.executable, str(here / "lean_server.py"), str(ports[name]), db,
                        json.dumps(LEAN_TOKENS), layers]  # fmt: skip
                procs[name] = subprocess.Popen(argv)
                await wait_healthy(ports[name], "/healthz", procs[name])
                makes[name] = await upload_requests(
                    ports[name], "lean-controller", "lean-agent", args.connections
                )
            state = Path(tmp) / "state"
            tokens = add_tokens(state, "src")
            ports["broker"] = free_port()
            procs["broker"] = spawn_broker(state, ports["broker"], None)
            await wait_healthy(ports["broker"], "/healthz", procs["broker"])
            makes["broker"] = await upload_requests(
                ports["broker"], tokens["controller"], tokens["src"], args.connections
            )
            names = list(ports)
            rates: dict[str, list[float]] = {name: [] for name in names}
            cpu: dict[str, list[float]] = {name: [] for name in names}
            for name in names + names[::-1]:
                before = cpu_seconds(procs[name].pid)
                rate = await load(ports[name], args.seconds, args.connections, makes[name])
                rates[name].append(rate)
                # CPU over the slice (its 1 s warm-up included) per request measured
                used = cpu_seconds(procs[name].pid) - before
                cpu[name].append(used / max(1.0, rate * args.seconds))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait()
    anchor = statistics.mean(rates["anchor"])
    for name in names:
        rate = statistics.mean(rates[name])
        print(json.dumps({
            "bench": "upload_layers", "server": name, "per_s": round(rate, 1),
            "ratio": round(rate / anchor, 3),
            "cpu_us_per_request": round(statistics.mean(cpu[name]) * 1e6),
        }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
