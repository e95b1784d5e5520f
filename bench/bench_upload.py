"""Durable single-vif uploads with 64 concurrent connections against one broker process.

Anchor, measured in the same run with the same load generator: a trivial
aiohttp+uvloop handler that parses a JSON PUT and answers JSON. Beside it, for
reference, the durable floor: the same handler made durable as the broker's
uploads are (group commit of concurrent requests to SQLite, WAL,
synchronous=FULL, the COMMIT on a thread, the answer after it), and nothing
else: no authentication, no validation, no migration. And the lean
reference (``lean_server.py``): the floor plus the work an upload must
do (authentication, the uploader check, the broker's own validation, the
generation, the vif and migration rows), written out by hand without the
broker's layers. What separates the broker from the anchor is then split in
three: durability (anchor -> floor), the required work (floor -> lean) and
the broker's structure (lean -> broker). All servers run as
separate processes, up at the same time, and the load alternates between them
in slices; the load generator is a minimal keep-alive HTTP/1.1 client on uvloop
so that it costs the servers as little CPU as possible.

Prints one JSON line. Target: ≥ 0.5x the anchor (the long-term aim: 0.7x).
Usage: python bench/bench_upload.py [--seconds 5] [--connections 64] [--token-role agent]
       [--db sqlite|postgresql|URL]  (postgresql: a throwaway cluster, see tests/pg_harness.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

from benchkit import cpu_seconds

PORTDATA = "ovn:" + "x" * 200
JSON = "application/json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough protocol for these servers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, data
                data += chunk[:-2]
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def wait_healthy(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = await Conn.open(port)
            status, _ = await conn.request("GET", path)
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("server never became healthy")


async def load(
    port: int, seconds: float, connections: int, make: list[tuple[str, str, bytes, dict[str, str]]]
) -> float:
    """Requests per second over ``seconds`` (after a 1 s warm-up)."""
    done = 0
    measuring = False
    stop_at = 0.0

    async def worker(i: int) -> None:
        nonlocal done
        conn = await Conn.open(port)
        method, path, body, headers = make[i]
        try:
            while True:
                status, payload = await conn.request(method, path, body, headers)
                if status != 200:
                    raise SystemExit(f"{method} {path}: {status} {payload[:300]!r}")
                if measuring:
                    done += 1
                if time.perf_counter() >= stop_at and measuring:
                    return
        finally:
            conn.close()

    workers = [asyncio.create_task(worker(i)) for i in range(connections)]
    await asyncio.sleep(1.0)
    start = time.perf_counter()
    stop_at = start + seconds
    measuring = True
    await asyncio.gather(*workers)
    return done / (time.perf_counter() - start)


def anchor_server(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        doc = await request.json()
        return web.json_response({"mac": doc.get("mac"), "generation": 1})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_put("/upload", handler)
    app.router.add_get("/healthz", health)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def durable_floor_server(port: int, db: str) -> None:
    import queue
    import threading

    from aiohttp import web

    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE vifs (mac TEXT PRIMARY KEY, body TEXT, generation INTEGER)")
    commits: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[Any]]] = queue.SimpleQueue()
    queued: list[tuple[str, str, asyncio.Future[None]]] = []
    running = False

    def committer() -> None:
        while True:
            loop, batch = commits.get()
            conn.execute("COMMIT")
            loop.call_soon_threadsafe(committed, batch)

    def start() -> None:
        """Everything queued, in one transaction; its COMMIT on the thread."""
        nonlocal running
        batch = queued[:]
        queued.clear()
        running = bool(batch)
        if batch:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO vifs VALUES (?, ?, 1) ON CONFLICT (mac) DO UPDATE"
                " SET body = excluded.body, generation = generation + 1",
                [(mac, body) for mac, body, _ in batch],
            )
            commits.put((asyncio.get_running_loop(), batch))

    def committed(batch: list[tuple[str, str, asyncio.Future[None]]]) -> None:
        for _, _, fut in batch:
            fut.set_result(None)
        start()

    async def handler(request: web.Request) -> web.Response:
        nonlocal running
        doc = await request.json()
        fut = asyncio.get_running_loop().create_future()
        queued.append((doc["mac"], json.dumps(doc), fut))
        if not running:
            running = True
            asyncio.get_running_loop().call_soon(start)
        await fut
        return web.json_response({"mac": doc.get("mac"), "generation": 1})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    threading.Thread(target=committer, daemon=True).start()
    app = web.Application()
    app.router.add_put("/upload", handler)
    app.router.add_get("/healthz", health)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


async def bench_anchor(args: argparse.Namespace) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--anchor-server", str(port)])
    try:
        await wait_healthy(port, "/healthz", proc)
        body = json.dumps({"mac": "52:54:00:00:00:01", "virtualport": {"portdata": PORTDATA}})
        make = [("PUT", "/upload", body.encode(), {"Content-Type": "application/json"})]
        return await load(port, args.seconds, args.connections, make * args.connections)
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def store_url(db: str) -> Iterator[str | None]:
    """The broker's ``--db``: ``sqlite`` (None: its default file under the state directory),
    ``postgresql`` (a database on a throwaway cluster started here), or a URL as given."""
    if db == "sqlite":
        yield None
    elif db == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from pg_harness import PgCluster

        with PgCluster.temporary() as cluster:
            yield cluster.create_database("bench")
    else:
        yield db


def spawn_broker(state: Path, port: int, db: str | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "vifbroker.cli", "serve", "--state-dir", str(state),
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    if db:
        argv += ["--db", db]
    # bench_scaling puts 1,000 vifs in one migration: above the default bound
    # (max_vifs_per_migration, 256), which guards a broker against hostile uploads.
    env = {"VIFBROKER_LOG_LEVEL": "WARNING", "VIFBROKER_MAX_VIFS_PER_MIGRATION": "100000"}
    return subprocess.Popen(argv, env={**os.environ, **env})


async def upload_requests(
    port: int, controller: str, token: str, connections: int
) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """One migration per connection; each connection PUTs one vif of its own domain."""
    conn = await Conn.open(port)
    make = []
    for i in range(connections):
        domain = str(uuid.uuid4())
        status, payload = await conn.request(
            "POST",
            "/v1/migrations",
            json.dumps(
                {"domain_uuid": domain, "source_host": "src", "destination_host": "dst"}
            ).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {controller}"},
        )
        assert status == 201, payload
        mac = f"52:54:00:00:{i >> 8:02x}:{i & 0xFF:02x}"
        body = json.dumps(
            {"mac": mac, "virtualport": {"type": "openvswitch", "portdata": PORTDATA}}
        ).encode()
        make.append(
            (
                "PUT",
                f"/v1/domains/{domain}/interfaces/{mac}",
                body,
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
        )
    conn.close()
    return make


def add_tokens(state: Path, *hosts: str) -> dict[str, str]:
    """A controller token and one agent token per host, made before the broker starts."""
    from vifbroker.server.auth import Role, add_token

    state.mkdir(parents=True, exist_ok=True)
    tokens = {"controller": add_token(state / "tokens.toml", Role.CONTROLLER)}
    for host in hosts:
        tokens[host] = add_token(state / "tokens.toml", Role.AGENT, host=host)
    return tokens


async def bench_broker(args: argparse.Namespace, state: Path, db: str | None = None) -> float:
    tokens = add_tokens(state, "src")
    port = free_port()
    proc = spawn_broker(state, port, db)
    try:
        await wait_healthy(port, "/healthz", proc)
        token = tokens["src"] if args.token_role == "agent" else tokens["controller"]
        make = await upload_requests(port, tokens["controller"], token, args.connections)
        return await load(port, args.seconds, args.connections, make)
    finally:
        proc.terminate()
        proc.wait()


async def main(args: argparse.Namespace) -> None:
    """All three servers up at once; the load alternates between them in slices
    (anchor, floor, broker, broker, floor, anchor), so that load swings on a
    shared machine hit all alike. Each server's CPU per request is reported
    beside its rate."""
    order = ("anchor", "floor", "lean", "broker", "broker", "lean", "floor", "anchor")
    rates: dict[str, list[float]] = {"anchor": [], "floor": [], "lean": [], "broker": []}
    cpu = dict.fromkeys(rates, 0.0)
    anchor_port, floor_port, lean_port = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, __file__, "--anchor-server", str(anchor_port)])]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp,
            store_url(args.db) as db,
        ):
            floor_argv = ["--floor-server", str(floor_port), str(Path(tmp) / "floor.db")]
            procs.append(subprocess.Popen([sys.executable, __file__, *floor_argv]))
            lean_tokens = {"lean-controller": None, "lean-agent": "src"}
            lean_argv = [str(lean_port), str(Path(tmp) / "lean.db"), json.dumps(lean_tokens)]
            lean = Path(__file__).with_name("lean_server.py")
            procs.append(subprocess.Popen([sys.executable, str(lean), *lean_argv]))
            await wait_healthy(anchor_port, "/healthz", procs[0])
            await wait_healthy(floor_port, "/healthz", procs[1])
            await wait_healthy(lean_port, "/healthz", procs[2])
            body = json.dumps({"mac": "52:54:00:00:00:01", "virtualport": {"portdata": PORTDATA}})
            anchor_make = [("PUT", "/upload", body.encode(), {"Content-Type": JSON})]
            # The floor keeps a row per MAC: one each, as the broker's connections have.
            floor_make = [
                ("PUT", "/upload", json.dumps({"mac": f"52:54:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
                 "virtualport": {"portdata": PORTDATA}}).encode(), {"Content-Type": JSON})
                for i in range(args.connections)
            ]  # fmt: skip
            state = Path(tmp) / "state"
            tokens = add_tokens(state, "src")
            port = free_port()
            procs.append(spawn_broker(state, port, db))
            await wait_healthy(port, "/healthz", procs[3])
            token = tokens["src"] if args.token_role == "agent" else tokens["controller"]
            lean_token = "lean-agent" if args.token_role == "agent" else "lean-controller"
            subjects = {
                "anchor": (anchor_port, procs[0], anchor_make * args.connections),
                "floor": (floor_port, procs[1], floor_make),
                "lean": (
                    lean_port,
                    procs[2],
                    await upload_requests(
                        lean_port, "lean-controller", lean_token, args.connections
                    ),
                ),
                "broker": (
                    port,
                    procs[3],
                    await upload_requests(port, tokens["controller"], token, args.connections),
                ),
            }
            for name in order:
                port_, proc, make = subjects[name]
                before = cpu_seconds(proc.pid)
                rate = await load(port_, args.seconds / 2, args.connections, make)
                rates[name].append(rate)
                # CPU over the slice (warm-up included) per request measured
                cpu[name] += (cpu_seconds(proc.pid) - before) / max(1.0, rate * args.seconds / 2)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    anchor = statistics.mean(rates["anchor"])
    floor = statistics.mean(rates["floor"])
    broker = statistics.mean(rates["broker"])
    lean = statistics.mean(rates["lean"])
    print(
        json.dumps(
            {
                "bench": "upload",
                "db": args.db.split(":", 1)[0],
                "connections": args.connections,
                "seconds": args.seconds,
                "token_role": args.token_role,
                "uploads_per_s": round(broker, 1),
                "anchor_per_s": round(anchor, 1),
                "ratio": round(broker / anchor, 3),
                "durable_floor_per_s": round(floor, 1),
                "floor_ratio": round(floor / anchor, 3),
                "broker_to_floor_ratio": round(broker / floor, 3),
                "lean_per_s": round(lean, 1),
                "lean_ratio": round(lean / anchor, 3),
                "broker_to_lean_ratio": round(broker / lean, 3),
                "cpu_us_per_upload": round(cpu["broker"] / 2 * 1e6),
                "anchor_cpu_us_per_request": round(cpu["anchor"] / 2 * 1e6),
                "floor_cpu_us_per_request": round(cpu["floor"] / 2 * 1e6),
                "lean_cpu_us_per_request": round(cpu["lean"] / 2 * 1e6),
                "target_ratio": 0.5,
                "aim_ratio": 0.7,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--token-role", choices=["agent", "controller"], default="agent")
    parser.add_argument(
        "--db", default="sqlite", help="sqlite (default), postgresql (throwaway cluster), or a URL"
    )
    parser.add_argument("--anchor-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("floor_db", nargs="?", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.anchor_server:
        anchor_server(ns.anchor_server)
    elif ns.floor_server:
        durable_floor_server(ns.floor_server, ns.floor_db)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(ns))
