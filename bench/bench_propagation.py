"""Propagation: a PortData change on the source OVSDB → visible on the destination OVSDB.

Real pieces: a broker process (temporary SQLite), two throwaway ovsdb-servers
(host A, host B), one ``vifbroker agent`` process per host. One domain with one
vif is migrated A → B and stays active; then, N times, the bench writes a new
PortData on A's port and times until an ``ovsdb-client monitor`` on B's
database shows the same value on B's port (other tap name).

* t0: ``ovs-vsctl set`` on A returned (the change is committed);
* t1: B's monitor printed the row with the new value.

Anchor, measured in the same run: three sequential ``ovs-vsctl`` round trips
(the floor of any read-on-A, upload, write-on-B path that shells out).

Target (DESIGN "Targets"): median <= 20 ms with ovs-vsctl, <= 10 ms native.
Usage: .venv/bin/python bench/bench_propagation.py [--changes 40] [--ovs-driver vsctl|native]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "agent"))

from agent_harness import BrokerProcess, Host, Vif, terminate  # noqa: E402

from ovs_harness import OvsDb  # noqa: E402
from vifbroker.backends.openvswitch.vsctl import portdata_arg  # noqa: E402
from vifbroker.client import BrokerClient  # noqa: E402

MAC = "52:54:00:aa:00:01"
#: DESIGN "Targets": median source change -> destination OVSDB
TARGET_MS = {"vsctl": 20.0, "native": 10.0}


class Monitor:
    """``ovsdb-client monitor`` of B's Interface external_ids; remembers each value's arrival."""

    def __init__(self, db: OvsDb) -> None:
        self.db = db
        self.seen: dict[str, float] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "ovsdb-client", "monitor", self.db.db, "Open_vSwitch", "Interface",
            "name,external_ids", "--format=json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.ready.wait(), 10)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            now = time.perf_counter()
            self.ready.set()
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            for row in doc.get("data", []):
                for cell in row:
                    if isinstance(cell, list) and cell and cell[0] == "map":
                        value = dict(cell[1]).get("PortData")
                        if isinstance(value, str):
                            self.seen.setdefault(value, now)

    async def until(self, value: str, within: float = 10.0) -> float:
        deadline = time.perf_counter() + within
        while value not in self.seen:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{value!r} never reached host B")
            await asyncio.sleep(0.0005)
        return self.seen[value]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._task is not None:
            self._task.cancel()


async def vsctl(db: OvsDb, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ovs-vsctl", f"--db={db.db}", "--no-wait", "--timeout=10", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode())


async def bench(changes: int, tmp: Path, driver: str) -> dict[str, object]:
    a = Host("host-a", OvsDb(tmp / "ovs-a").start(), tmp / "host-a")
    b = Host("host-b", OvsDb(tmp / "ovs-b").start(), tmp / "host-b")
    broker = BrokerProcess(tmp / "broker")
    await broker.start()
    monitor = Monitor(b.ovs)
    try:
        dom = str(uuid.uuid4())
        a.define(dom, [Vif(MAC, "vnet0", "initial")])
        b.plug(dom, Vif(MAC, "vnet17"))
        for h in (a, b):
            h.spawn_agent(
                broker,
                broker.token_file("agent", h.name),
                extra_args=("--ovs-driver", driver),
            )
        await monitor.start()
        async with BrokerClient(broker.url, broker.token("controller")) as ctl:
            m = await ctl.create_migration(dom, a.name, b.name)
            state = (await ctl.wait_applied(m.id, 60)).state
            if str(state) != "applied":
                raise RuntimeError(f"setup migration ended {state}")
            await monitor.until("initial")
            samples = []
            for i in range(changes + 3):
                value = json.dumps({"change": i, "pad": "p" * 200})
                await vsctl(a.ovs, "set", "Interface", "vnet0", portdata_arg(value))
                t0 = time.perf_counter()
                t1 = await monitor.until(value)
                if i >= 3:  # the first few warm caches and connections
                    samples.append((t1 - t0) * 1000)
            anchor = []
            for _ in range(max(10, changes // 2)):
                t0 = time.perf_counter()
                await vsctl(a.ovs, "get", "Interface", "vnet0", "external_ids:PortData")
                await vsctl(b.ovs, "set", "Interface", "vnet17", portdata_arg("anchor"))
                await vsctl(b.ovs, "get", "Interface", "vnet17", "external_ids:PortData")
                anchor.append((time.perf_counter() - t0) * 1000)
            await ctl.complete(m.id)
    finally:
        await monitor.stop()
        for h in (a, b):
            if h.proc is not None:
                terminate(h.proc)
        broker.stop()
        a.ovs.stop()
        b.ovs.stop()
    samples.sort()
    median = statistics.median(samples)
    anchor_median = statistics.median(anchor)
    return {
        "bench": "propagation",
        "changes": len(samples),
        "median_ms": round(median, 2),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 2),
        "max_ms": round(samples[-1], 2),
        "anchor_3_vsctl_ms": round(anchor_median, 2),
        "ratio_to_anchor": round(median / anchor_median, 2),
        "ovs_driver": driver,
        "target_median_ms": TARGET_MS[driver],
        "met": median <= TARGET_MS[driver],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--ovs-driver", choices=sorted(TARGET_MS), default="vsctl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vifbroker-bench-") as tmp:
        print(json.dumps(asyncio.run(bench(args.changes, Path(tmp), args.ovs_driver))))


if __name__ == "__main__":
    main()
