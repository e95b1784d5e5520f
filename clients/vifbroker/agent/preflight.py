"""``vifbroker preflight --to HOST --domain-xml FILE``: can HOST honour every vif?

Prints one row per vif (MAC, verdict, backend, reason); exits 1 when any
verdict is ``fail`` (or the broker cannot be asked), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from vifbroker.client import BrokerClient, ClientError
from vifbroker.model.preflight import Preflight

from .errors import AgentError
from .wiring import add_broker_options, make_client


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "preflight", help="ask whether a host can honour every vif of a domain, before migrating"
    )
    add_broker_options(cmd)
    cmd.add_argument("--to", required=True, metavar="HOST", help="the destination host")
    cmd.add_argument(
        "--domain-xml", required=True, metavar="FILE|-", help="libvirt <domain> XML ('-': stdin)"
    )
    cmd.add_argument("--on-backend-mismatch", choices=["skip", "fail"], default="skip")
    cmd.add_argument("-o", "--output", choices=["table", "json"], default="table")
    cmd.set_defaults(func=run_preflight)


def run_preflight(args: argparse.Namespace) -> int:
    try:
        data = (
            sys.stdin.buffer.read()
            if args.domain_xml == "-"
            else Path(args.domain_xml).read_bytes()
        )
        client = make_client(args)
    except (OSError, AgentError) as exc:
        print(f"vifbroker preflight: {exc}", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(_ask(client, args.to, data, args.on_backend_mismatch))
    except ClientError as exc:
        print(f"vifbroker preflight: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer.model_dump(mode="json"), indent=2) if args.output == "json"
          else table(answer))  # fmt: skip
    return 1 if any(v.verdict == "fail" for v in answer.verdicts) else 0


async def _ask(client: BrokerClient, host: str, xml: bytes, policy: str) -> Preflight:
    try:
        return await client.preflight(host, xml, on_backend_mismatch="fail" if policy == "fail"
                                      else "skip")  # fmt: skip
    finally:
        await client.close()


def table(answer: Preflight) -> str:
    seen = answer.last_seen.isoformat() if answer.last_seen else "never"
    state = "reporting" if answer.reporting else "NOT REPORTING"
    rows = [("MAC", "VERDICT", "BACKEND", "REASON")]
    rows += [(v.mac, v.verdict, v.backend or "-", v.reason or "") for v in answer.verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"host {answer.host}: {state} (last seen {seen})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[3]
              for r in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)
