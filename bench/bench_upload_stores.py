"""Durable single-vif uploads at 64 connections: PostgreSQL beside SQLite, in the same run.

The same load as ``bench_upload`` (its load generator and request mix), first
against a broker on its embedded SQLite file, then against a broker on a
throwaway PostgreSQL cluster (``tests/pg_harness.py``: Debian's server
binaries, fsync on, loopback TCP). The anchor is the SQLite figure.

Prints one JSON line. Usage: python bench/bench_upload_stores.py [--seconds 5] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

import uvloop

from bench_upload import bench_broker, store_url


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp:
        sqlite = await bench_broker(args, Path(tmp) / "sqlite")
        with store_url("postgresql") as db:
            postgresql = await bench_broker(args, Path(tmp) / "postgresql", db)
    print(json.dumps({
        "bench": "upload_stores",
        "connections": args.connections,
        "seconds": args.seconds,
        "token_role": args.token_role,
        "postgresql_per_s": round(postgresql, 1),
        "sqlite_per_s": round(sqlite, 1),
        "ratio": round(postgresql / sqlite, 3),
        "cpus": os.cpu_count(),
    }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--token-role", choices=["agent", "controller"], default="agent")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
