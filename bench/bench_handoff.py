"""Handoff latency: upload sent on the source → the destination's parked long-poll returns.

Anchor, measured in the same run with the same client: a bare aiohttp+uvloop
long-poll server whose PUT commits a row to SQLite (WAL, synchronous=FULL) in a
thread and only then wakes the parked GET — the durable floor.

The two servers run side by side and their rounds alternate, so that load
swings on a shared machine hit both alike. Each is measured once its
database's WAL has stopped growing (``WalWatch``), as a long-running server's
has. Prints one JSON line with median and p99 of both, and their ratios; then,
in rounds of their own against the same floor, the lean reference's ratios
(``lean_server.py``: the broker's work for a handoff written out by hand).
Targets: median ≤ 1.15x, p99 ≤ 1.3x the anchor.
Usage: python bench/bench_handoff.py [--rounds 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop

from bench_upload import Conn, free_port, wait_healthy
from benchkit import cpu_seconds

PORTDATA = "ovn:" + "x" * 200
# A benchmark, not a test: a short pause so the long-poll is parked before the upload.
PARK_PAUSE = 0.003


#: Commits in a row that must leave a WAL file's size alone before its server is measured.
STEADY_COMMITS = 50


class WalWatch:
    """Whether a database's WAL file has stopped growing.

    A new database's WAL grows until its first checkpoint (1,000 pages); from
    then on its frames are written over from the start. A COMMIT that extends
    the file waits for the file's size to be synced too: about 0.28 ms against
    0.13 ms here for one page. A bare floor adds a page or two per commit, so
    over a whole run (a few hundred rounds) it would be paying that and the
    broker, at six pages a commit, not: the floor's median was ~15% slower,
    which made the broker's ratio look that much better than it is.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = -1
        self.same = 0

    def steady(self) -> bool:
        """Call after each commit: True once ``STEADY_COMMITS`` left the size alone."""
        size = self.path.stat().st_size if self.path.exists() else 0
        self.same = self.same + 1 if size == self.size else 0
        self.size = size
        return self.same >= STEADY_COMMITS


def anchor_server(port: int, db: str) -> None:
    from aiohttp import web

    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS vifs (rev INTEGER PRIMARY KEY, body TEXT)")
    wal = WalWatch(Path(db + "-wal"))
    for _ in range(20_000):  # a long-running floor's WAL (see WalWatch)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO vifs (body) VALUES (?)", (PORTDATA,))
        conn.execute("COMMIT")
        if wal.steady():
            break
    pool = ThreadPoolExecutor(1)
    state = {"rev": 0}
    waiters: list[asyncio.Future[int]] = []

    def commit(body: str) -> int:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute("INSERT INTO vifs (body) VALUES (?)", (body,))
        conn.execute("COMMIT")
        return int(cur.lastrowid or 0)

    async def put(request: web.Request) -> web.Response:
        doc = await request.json()
        rev = await asyncio.get_running_loop().run_in_executor(pool, commit, json.dumps(doc))
        state["rev"] = rev
        for fut in waiters:
            if not fut.done():
                fut.set_result(rev)
        waiters.clear()
        return web.json_response({"revision": rev})

    async def wait(request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        if state["rev"] <= after:
            fut = asyncio.get_running_loop().create_future()
            waiters.append(fut)
            await asyncio.wait_for(fut, 60)
        return web.json_response({"revision": state["rev"], "items": [state["rev"]]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_put("/put", put)
    app.router.add_get("/wait", wait)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                loop=uvloop.new_event_loop())


Round = Callable[[int], Awaitable[tuple[float, int]]]


async def interleave(
    rounds: int, subjects: dict[str, Round], after: dict[str, int] | None = None
) -> dict[str, list[float]]:
    """One round of each subject in turn (the order flipping every time), so that
    load swings on this shared machine hit the anchor and the broker alike.
    ``after``: each subject's last revision, kept from an earlier call (a round
    waits for the change after it: its own upload, not one it already saw)."""
    after = {} if after is None else after
    for name in subjects:
        after.setdefault(name, 0)
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    names = list(subjects)
    for i in range(rounds + 20):
        for name in names if i % 2 else names[::-1]:
            elapsed, after[name] = await subjects[name](after[name])
            if i >= 20:  # warm-up
                samples[name].append(elapsed)
    return samples


async def handoff(
    src: Conn, dst: Conn, wait_path: str, put: tuple[str, str, bytes, dict[str, str]],
    wait_headers: dict[str, str], revision_of: Callable[[bytes], int],
) -> tuple[float, int]:
    poll = asyncio.create_task(dst.request("GET", wait_path, headers=wait_headers))
    await asyncio.sleep(PARK_PAUSE)
    start = time.perf_counter()
    upload = asyncio.create_task(src.request(*put))
    status, body = await poll
    elapsed = time.perf_counter() - start
    ustatus, ubody = await upload
    if status != 200 or ustatus != 200:
        raise SystemExit(f"poll {status} {body[:200]!r} / upload {ustatus} {ubody[:200]!r}")
    return elapsed, revision_of(body)


async def start_anchor(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> Round:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--anchor-server", str(port),
                             str(tmp / "anchor.db")])
    procs.append(proc)  # the caller stops it, whatever happens next
    await wait_healthy(port, "/healthz", proc)
    src, dst = await Conn.open(port), await Conn.open(port)
    body = json.dumps({"mac": "52:54:00:00:00:01",
                       "virtualport": {"portdata": PORTDATA}}).encode()
    put = ("PUT", "/put", body, {"Content-Type": "application/json"})

    def one(after: int) -> Awaitable[tuple[float, int]]:
        return handoff(src, dst, f"/wait?after={after}", put, {},
                       lambda b: int(json.loads(b)["revision"]))

    return one


def token(state: Path, role: str, host: str | None = None, python: str = sys.executable) -> str:
    args = [python, "-m", "vifbroker.cli", "token", "add",
            "--tokens", str(state / "tokens.toml"), "--role", role]
    args += ["--host", host] if host else []
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


async def start_broker(
    state: Path, role: str, procs: list[subprocess.Popen[bytes]], python: str = sys.executable
) -> Round:
    """A broker (run by ``python``: another checkout's venv, for bench/ab_handoff.py)."""
    tokens = {"controller": token(state, "controller", python=python),
              "src": token(state, "agent", "src", python=python),
              "dst": token(state, "agent", "dst", python=python)}
    port = free_port()
    proc = subprocess.Popen(
        [python, "-m", "vifbroker.cli", "serve", "--state-dir", str(state),
         "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, "VIFBROKER_LOG_LEVEL": "INFO"},
        stderr=subprocess.DEVNULL,
    )
    procs.append(proc)  # the caller stops it, whatever happens next
    await wait_healthy(port, "/healthz", proc)
    return await api_rounds(port, tokens, role, WalWatch(state / "vifbroker.db-wal"))


async def start_lean(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> Round:
    """The lean reference (``lean_server.py``): the broker's API, its work written out by hand."""
    tokens = {"controller": "lean-controller", "src": "lean-src", "dst": "lean-dst"}
    hosts = {tokens["controller"]: None, tokens["src"]: "src", tokens["dst"]: "dst"}
    port = free_port()
    lean = Path(__file__).with_name("lean_server.py")
    argv = [str(port), str(tmp / "lean.db"), json.dumps(hosts)]
    proc = subprocess.Popen([sys.executable, str(lean), *argv])
    procs.append(proc)  # the caller stops it, whatever happens next
    await wait_healthy(port, "/healthz", proc)
    return await api_rounds(port, tokens, "agent", WalWatch(tmp / "lean.db-wal"))


async def api_rounds(port: int, tokens: dict[str, str], role: str, wal: WalWatch) -> Round:
    """Handoff rounds through the broker's API at ``port``: a migration src -> dst, its
    source's upload of one vif against its destination's inbox long-poll, measured
    once the database's WAL has settled (``WalWatch``)."""
    src, dst = await Conn.open(port), await Conn.open(port)
    domain = str(uuid.uuid4())
    status, body = await src.request(
        "POST", "/v1/migrations",
        json.dumps({"domain_uuid": domain, "source_host": "src",
                    "destination_host": "dst"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {tokens['controller']}"},
    )
    assert status == 201, body
    mac = "52:54:00:00:00:01"
    iface = json.dumps({"mac": mac, "virtualport": {"type": "openvswitch",
                                                    "portdata": PORTDATA}}).encode()
    uploader, waiter = ("src", "dst") if role == "agent" else ("controller", "controller")
    put = ("PUT", f"/v1/domains/{domain}/interfaces/{mac}", iface,
           {"Content-Type": "application/json",
            "Authorization": f"Bearer {tokens[uploader]}"})
    wait_headers = {"Authorization": f"Bearer {tokens[waiter]}"}
    for _ in range(20_000):  # a long-running server's WAL (see WalWatch)
        status, body = await src.request(*put)
        assert status == 200, body
        if wal.steady():
            break

    def revision_of(body: bytes) -> int:
        doc = json.loads(body)
        assert doc["items"], doc
        return int(doc["revision"])

    # Start after what is already there, so every round waits for its own upload.
    _, first = await dst.request("GET", "/v1/hosts/dst/inbox", headers=wait_headers)
    start_after = int(json.loads(first)["revision"])

    def one(after: int) -> Awaitable[tuple[float, int]]:
        after = max(after, start_after)
        return handoff(src, dst, f"/v1/hosts/dst/inbox?after={after}&wait=60", put,
                       wait_headers, revision_of)

    return one


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def main(args: argparse.Namespace) -> None:
    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp:
            anchor_round = await start_anchor(Path(tmp), procs)
            broker_round = await start_broker(Path(tmp) / "state", args.token_role, procs)
            subjects = {"anchor": anchor_round, "broker": broker_round}
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            after: dict[str, int] = {}
            samples = await interleave(args.rounds, subjects, after)
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            # Then, apart (so the broker's rounds above follow the floor's only),
            # the lean reference against the same floor: what the work costs.
            lean_round = await start_lean(Path(tmp), procs)
            lean = await interleave(
                args.rounds, {"anchor": anchor_round, "lean": lean_round}, after
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    anchor, broker = samples["anchor"], samples["broker"]
    am, ap = statistics.median(anchor), p99(anchor)
    bm, bp = statistics.median(broker), p99(broker)
    print(json.dumps({
        "bench": "handoff",
        "rounds": args.rounds,
        "token_role": args.token_role,
        "median_ms": round(bm * 1000, 3),
        "p99_ms": round(bp * 1000, 3),
        "anchor_median_ms": round(am * 1000, 3),
        "anchor_p99_ms": round(ap * 1000, 3),
        "median_ratio": round(bm / am, 3),
        # the median of each round's broker/anchor ratio (the two ran back to back)
        "paired_median_ratio": round(
            statistics.median(b / a for a, b in zip(anchor, broker, strict=True)), 3
        ),
        "p99_ratio": round(bp / ap, 3),
        # the lean reference (lean_server.py) against the floor, in rounds of its own
        "lean_median_ratio": round(
            statistics.median(lean["lean"]) / statistics.median(lean["anchor"]), 3
        ),
        "lean_p99_ratio": round(p99(lean["lean"]) / p99(lean["anchor"]), 3),
        # CPU each server used per round (µs): the part of the latency that is
        # work rather than waiting (fsync, scheduling on a busy machine)
        "cpu_us_per_round": round((cpu1[1] - cpu0[1]) / len(broker) * 1e6),
        "anchor_cpu_us_per_round": round((cpu1[0] - cpu0[0]) / len(anchor) * 1e6),
        "target_median_ratio": 1.15,
        "target_p99_ratio": 1.3,
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--token-role", choices=["agent", "controller"], default="agent")
    parser.add_argument("--anchor-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("anchor_db", nargs="?", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.anchor_server:
        anchor_server(ns.anchor_server, ns.anchor_db)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(ns))
