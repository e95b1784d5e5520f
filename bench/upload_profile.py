"""Where an upload's time goes inside the broker under load: py-spy, by layer.

Runs ``bench_upload``'s load (64 connections, each PUTting one vif of its own
domain) against a broker while py-spy samples it from outside (the broker's
code is not changed), then sorts every sample of the event loop's thread into
the broker's layers by the deepest frame of its stack that names one
(``LAYERS``): aiohttp and the kernel, the request middleware, the upload
handler's steps, the store's steps. Prints one JSON line and a table: each
layer's share of the loop's samples and what that share is of the loop's time
per upload (one core runs the loop: at ``rate`` uploads/s, ``1/rate`` each).

A diagnostic for the upload path, not one of ``bench/run``'s benchmarks:
``bench/upload_layers.py`` measures the layers by swapping them into the
lean reference; this says where the broker's own time goes, step by step.
Sampling pauses the broker for each sample (for whole stacks), which slows
it by 10-20%. py-spy over-weights system calls on this machine: a ``getpid``
inside ``asyncio.get_running_loop`` (CPython 3.11 asks it on every call,
0.2 µs when timed) is most of "store: queue a write".

Needs py-spy (``.venv/bin/pip install -e '.[profile]'``) and the right to
trace the broker (root, or ``kernel.yama.ptrace_scope=0``).
Usage: .venv/bin/python bench/upload_profile.py [--seconds 8] [--connections 64] [--rate 250]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from bench_upload import add_tokens, free_port, load, spawn_broker, upload_requests, wait_healthy

#: (layer, a frame naming it: "function (file"), the deepest match in a stack wins.
LAYERS: list[tuple[str, str]] = [
    ("store: plan each upload (rules)", "take_upload (store/rows.py"),
    ("store: SQL writes", "_write_vifs (store/sqlite_uploads.py"),
    ("store: SQL writes", "settle (store/sqlite_group.py"),
    ("store: rows held (watch cache)", "_held_uploads (store/sqlite_uploads.py"),
    ("store: changes for the watch cache", "report (store/sqlite_group.py"),
    ("store: batch (BEGIN, data_version, meta)", "Engine._start (store/sqlite_engine.py"),
    ("store: after the commit (watch cache)", "SQLiteStore._committed (store/sqlite.py"),
    ("store: after the commit (answers, wake-ups)", "Engine._committed (store/sqlite_engine.py"),
    ("store: queue a write", "RoutedWrites.put_interfaces (store/frontend.py"),
    ("handler: body decoded and validated", "decode_interfaces (server/bodies.py"),
    ("handler: body read (media, size)", "read_body (server/media.py"),
    ("handler: uploader check", "check_uploader (server/access.py"),
    ("handler: metrics and log", "put_records (server/domains.py"),
    ("handler: answer", "generation_response (server/render.py"),
    ("handler: the rest", "put_interface (server/domains.py"),
    ("middleware: authentication", "guard (server/middleware.py"),
    ("middleware: ids, metrics, headers", "_front.<locals>.front (server/middleware.py"),
    ("aiohttp: answer written and sent", "RequestHandler.finish_response (aiohttp/web_protocol.py"),
    ("aiohttp: request routed", "RequestHandler._handle_request (aiohttp/web_protocol.py"),
    ("aiohttp: bytes read and parsed", "data_received ("),
]
OTHER = "event loop: the rest (uvloop, aiohttp's connection task)"
WRITER = "writer thread (COMMIT), not the loop"


def layer_of(frames: list[str]) -> str:
    """The layer of one sampled stack (outermost frame first)."""
    if not frames or "MainThread" not in frames[0]:
        return WRITER
    best, depth = OTHER, -1
    for name, marker in LAYERS:
        for d in range(len(frames) - 1, depth, -1):
            if marker in frames[d]:
                best, depth = name, d
                break
    return best


def tally(raw: str) -> collections.Counter[str]:
    """Samples per layer from py-spy's ``--format raw`` output (``stack count`` lines)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if stack and n.isdigit():
            counts[layer_of(stack.split(";"))] += int(n)
    return counts


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("needs py-spy: .venv/bin/pip install -e '.[profile]'")
    return found


async def main(args: argparse.Namespace) -> None:
    spy = py_spy()
    with tempfile.TemporaryDirectory(prefix="vifbroker-profile-") as tmp:
        state = Path(tmp) / "state"
        tokens = add_tokens(state, "src")
        port = free_port()
        broker = spawn_broker(state, port, None)
        try:
            await wait_healthy(port, "/healthz", broker)
            make = await upload_requests(
                port, tokens["controller"], tokens["src"], args.connections
            )
            out = Path(tmp) / "samples.txt"
            sampler = subprocess.Popen(
                [spy, "record", "--pid", str(broker.pid), "--rate", str(args.rate),
                 "--format", "raw", "--output", str(out), "--threads",
                 "--duration", str(int(args.seconds) + 1)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            rate = await load(port, args.seconds, args.connections, make)
            _, err = sampler.communicate(timeout=60)
            if not out.exists():
                raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
            counts = tally(out.read_text())
        finally:
            broker.terminate()
            broker.wait()
    loop = sum(c for name, c in counts.items() if name != WRITER)
    per_upload_us = 1e6 / rate
    layers = {
        name: {"share": round(c / loop, 3), "us_per_upload": round(c / loop * per_upload_us, 1)}
        for name, c in counts.most_common()
        if name != WRITER
    }
    print(json.dumps({"bench": "upload_profile", "uploads_per_s": round(rate, 1),
                      "loop_samples": loop, "writer_samples": counts[WRITER],
                      "layers": layers}))  # fmt: skip
    print(f"\n{rate:.0f} uploads/s while sampled: the loop's {per_upload_us:.0f} µs per upload")
    for name, figures in layers.items():
        print(f"{figures['us_per_upload']:7.1f} µs {100 * figures['share']:5.1f}%  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
