"""``vifbroker demo``: a whole live-migration handoff on this machine, then a table.

A broker on a temporary SQLite file, two throwaway ovsdb-servers (host A and
host B), an agent process for each. Domains with several OVS ports (and one
macvtap interface no backend owns) run on A with PortData set; they migrate
to B, whose ports get other tap names. One PortData changes on A after the
first handoff and arrives as generation 2. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from vifbroker.backends.openvswitch.sandbox import REQUIRED, OvsSandbox, SandboxError
from vifbroker.client import BrokerClient, ClientError, RetryPolicy
from vifbroker.model import VifStatus

from .demo_env import DemoError, free_port, run, stop_process, vifbroker, wait_listening

SAMPLE_VALUES = (
    '{"segment": 1001, "tenant": "blue"}',
    'qos="gold" -- acl=allow',
    "multi\nline\tvalue \\ with backslash",
    "Grüße 日本 🚀",
    "",
)


@dataclass
class DemoVif:
    domain: str
    mac: str
    tap_a: str
    tap_b: str
    portdata: str | None
    ovs: bool = True


def register_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="run a two-host migration on this machine")
    demo.add_argument("--domains", type=int, default=3, help="domains to migrate (default 3)")
    demo.add_argument("--vifs", type=int, default=3, help="OVS vifs per domain (default 3)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    missing = [b for b in REQUIRED if shutil.which(b) is None]
    if missing:
        print(f"vifbroker demo: needs Open vSwitch ({', '.join(missing)} missing)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vifbroker-demo-"))
    try:
        return asyncio.run(_demo(tmp, max(1, args.domains), max(1, args.vifs)))
    except (DemoError, SandboxError, ClientError, OSError) as exc:
        print(f"vifbroker demo: {exc}", file=sys.stderr)
        print(f"logs were in {tmp}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _plan(n_domains: int, n_vifs: int) -> list[DemoVif]:
    vifs, k = [], 0
    for d in range(n_domains):
        dom = str(uuid.uuid4())
        for i in range(n_vifs):
            value = SAMPLE_VALUES[k % len(SAMPLE_VALUES)]
            vifs.append(DemoVif(dom, f"52:54:00:de:{d:02x}:{i:02x}", f"vnet{k}", f"vnet{100 + k}",
                                value))  # fmt: skip
            k += 1
        if d == 0:
            vifs.append(DemoVif(dom, f"52:54:00:de:{d:02x}:ff", "macvtap0", "macvtap7", None,
                                ovs=False))  # fmt: skip
    return vifs


def _domain_xml(dom: str, vifs: list[DemoVif]) -> str:
    parts = []
    for v in vifs:
        if v.ovs:
            parts.append(
                f"<interface type='bridge'><mac address='{v.mac}'/><source bridge='br-int'/>"
                f"<target dev={quoteattr(v.tap_a)}/><model type='virtio'/>"
                "<virtualport type='openvswitch'/></interface>"
            )
        else:
            parts.append(
                f"<interface type='direct'><mac address='{v.mac}'/>"
                "<source dev='eth0' mode='bridge'/><model type='virtio'/></interface>"
            )
    return (f"<domain type='kvm'><name>demo-{dom[:8]}</name><uuid>{dom}</uuid>"
            f"<devices>{''.join(parts)}</devices></domain>")  # fmt: skip


class Observer:
    """Watches host B's inbox (as the controller) and notes when each generation of
    each vif was first seen uploaded and first seen applied."""

    def __init__(self, client: BrokerClient) -> None:
        self.client = client
        self.uploaded: dict[tuple[str, str, int], float] = {}
        self.applied: dict[tuple[str, str, int], float] = {}
        self.status: dict[tuple[str, str], tuple[int, VifStatus, str | None]] = {}

    async def follow(self, host: str) -> None:
        after = 0
        while True:
            inbox = await self.client.inbox(host, after, wait=10)
            now = time.monotonic()
            for item in inbox.items:
                for rec in item.interfaces:
                    key = (rec.domain_uuid, rec.mac, rec.generation)
                    self.uploaded.setdefault(key, now)
                    if rec.result.status != VifStatus.PENDING:
                        self.applied.setdefault(
                            (rec.domain_uuid, rec.mac, rec.result.applied_generation), now
                        )
                    self.status[(rec.domain_uuid, rec.mac)] = (
                        rec.generation, rec.result.status, rec.result.detail
                    )  # fmt: skip
            after = inbox.revision

    async def until(self, key: tuple[str, str, int], within: float) -> None:
        deadline = time.monotonic() + within
        while key not in self.applied:
            if time.monotonic() > deadline:
                raise DemoError(f"generation {key[2]} of {key[1]} was not applied in time")
            await asyncio.sleep(0.02)


async def _demo(tmp: Path, n_domains: int, n_vifs: int) -> int:
    print(f"vifbroker demo in {tmp}", file=sys.stderr)
    tokens = tmp / "tokens.toml"
    cli = (sys.executable, "-m", "vifbroker.cli")
    controller_token = (await run(*cli, "token", "add", "--tokens", str(tokens),
                                  "--role", "controller")).strip()  # fmt: skip
    for host in ("host-a", "host-b"):
        token = await run(*cli, "token", "add", "--tokens", str(tokens), "--role", "agent",
                          "--host", host)  # fmt: skip
        (tmp / f"{host}.token").write_text(token)
    port = free_port()
    procs: list[asyncio.subprocess.Process] = []
    ovs = {h: OvsSandbox(tmp / h / "ovs") for h in ("host-a", "host-b")}
    try:
        broker = await vifbroker(
            "serve", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp / 'broker.db'}",
            "--tokens", str(tokens), "--state-dir", str(tmp / "broker"), log=tmp / "broker.log",
        )  # fmt: skip
        procs.append(broker)
        for o in ovs.values():
            await asyncio.to_thread(o.start)
        await wait_listening(port, broker, "broker")
        url = f"http://127.0.0.1:{port}"
        vifs = _plan(n_domains, n_vifs)
        domains = list(dict.fromkeys(v.domain for v in vifs))
        xml_dir = tmp / "host-a" / "domains"
        xml_dir.mkdir(parents=True)
        for dom in domains:
            mine = [v for v in vifs if v.domain == dom]
            (xml_dir / f"{dom}.xml").write_text(_domain_xml(dom, mine))
            for v in mine:
                if v.ovs:
                    await asyncio.to_thread(
                        ovs["host-a"].add_port, "br-int", v.tap_a, dom, v.mac, v.portdata
                    )
        for host in ("host-a", "host-b"):
            args = ["agent", "--broker", url, "--token-file", str(tmp / f"{host}.token"),
                    "--host", host, "--ovs-db", ovs[host].db, "--ovs-no-wait",
                    "--state-dir", str(tmp / host / "state")]  # fmt: skip
            if host == "host-a":
                args += ["--domain-xml-dir", str(xml_dir)]
            procs.append(await vifbroker(*args, log=tmp / f"{host}-agent.log"))
        retry = RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.5)
        async with BrokerClient(url, controller_token, retry=retry) as client:
            return await _migrate(client, ovs, vifs, domains)
    finally:
        for proc in reversed(procs):
            await stop_process(proc)
        for o in ovs.values():
            await asyncio.to_thread(o.stop)


async def _migrate(
    client: BrokerClient, ovs: dict[str, OvsSandbox], vifs: list[DemoVif], domains: list[str]
) -> int:
    observer = Observer(client)
    watcher = asyncio.create_task(observer.follow("host-b"))
    try:
        migrations = [
            (await client.create_migration(dom, "host-a", "host-b", domain_name=f"demo-{dom[:8]}"))
            for dom in domains
        ]
        # libvirt on B creates the ports of the incoming domains, with its own tap names.
        for v in vifs:
            if v.ovs:
                await asyncio.to_thread(
                    ovs["host-b"].add_port, "br-int", v.tap_b, v.domain, v.mac
                )
        results = await asyncio.gather(*(client.wait_applied(m.id, 60) for m in migrations))
        print(f"{len(results)} migrations: " + ", ".join(sorted({str(m.state) for m in results})))
        changed = vifs[0]
        changed.portdata = '{"segment": 1002, "note": "changed after the first handoff"}'
        await asyncio.to_thread(ovs["host-a"].set_portdata, changed.tap_a, changed.portdata)
        await observer.until((changed.domain, changed.mac, 2), 30)
        ok = await _print_table(observer, ovs, vifs)
        for m in migrations:
            await client.complete(m.id)
        return 0 if ok else 1
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientError):
            await watcher


def _show(value: str | None, width: int = 26) -> str:
    if value is None:
        return "-"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


async def _print_table(observer: Observer, ovs: dict[str, OvsSandbox], vifs: list[DemoVif]) -> bool:
    header = ("DOMAIN", "MAC", "TAP A -> B", "SOURCE VALUE", "DESTINATION VALUE", "GEN",
              "STATUS", "UPLOAD->APPLIED")  # fmt: skip
    rows, notes, ok = [header], [], True
    for v in vifs:
        gen, status, detail = observer.status.get((v.domain, v.mac), (0, VifStatus.PENDING, None))
        src = await asyncio.to_thread(ovs["host-a"].get_portdata, v.tap_a) if v.ovs else None
        dst = await asyncio.to_thread(ovs["host-b"].get_portdata, v.tap_b) if v.ovs else None
        up = observer.uploaded.get((v.domain, v.mac, gen))
        done = observer.applied.get((v.domain, v.mac, gen))
        took = f"{(done - up) * 1000:.0f} ms" if up is not None and done is not None else "-"
        expected = VifStatus.APPLIED if v.ovs else VifStatus.SKIPPED
        good = status == expected and (not v.ovs or src == dst == v.portdata)
        ok = ok and good
        shown = str(status) + ("" if good else " (!)")
        if detail:
            notes.append(f"  {v.mac} {status}: {detail}")
        rows.append((v.domain[:8], v.mac, f"{v.tap_a} -> {v.tap_b}", _show(src), _show(dst),
                     str(gen), shown, took))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print("\n".join(notes))
    print("all port data arrived byte-exactly" if ok else "SOME VIFS DID NOT ARRIVE AS EXPECTED")
    return ok
