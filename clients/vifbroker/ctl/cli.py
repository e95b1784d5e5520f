"""``vifbroker migrations list|show|watch|cancel|complete`` and ``vifbroker hosts list``.

Every command takes ``--broker URL[,URL…]`` (``VIFBROKER_BROKER``, default
``http://127.0.0.1:8080``), ``--token-file PATH`` (``VIFBROKER_TOKEN_FILE``)
and ``-o table|json`` (table on a terminal, JSON otherwise). Exit codes: see
:mod:`vifbroker.clikit`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from vifbroker.client import (
    BrokerClient,
    ClientError,
    NotFound,
    ProblemError,
    RetryPolicy,
    TransportError,
    Unauthorized,
)
from vifbroker.clikit import EXIT_CODES_HELP, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from vifbroker.model import Migration, MigrationState, VifRecord

from . import render

DEFAULT_BROKER = "http://127.0.0.1:8080"
#: an agent heartbeats every 15 s by default: three missed ones mean "not reporting"
DEFAULT_STALE_AFTER = 45.0

Command = Callable[[BrokerClient, argparse.Namespace], Awaitable[int]]


class UsageError(Exception):
    """A bad option, variable or file: exit 2."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--broker",
        metavar="URL[,URL...]",
        help=f"broker base URL(s) (env VIFBROKER_BROKER; default {DEFAULT_BROKER})",
    )
    common.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding a controller token (env VIFBROKER_TOKEN_FILE)",
    )
    common.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        help="output format (default: table on a terminal, json otherwise)",
    )
    common.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per request (default 10)"
    )
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()
    migrations = subparsers.add_parser(
        "migrations",
        help="list, show, watch, cancel or complete migrations",
        epilog=EXIT_CODES_HELP,
    )
    msub = migrations.add_subparsers(dest="migrations_command", required=True, metavar="ACTION")

    listing = msub.add_parser("list", parents=[common], help="migrations, newest first")
    listing.add_argument("--state", choices=[s.value for s in MigrationState])
    listing.add_argument("--host", help="only where HOST is the source or the destination")
    listing.set_defaults(func=_runner(list_migrations))

    show = msub.add_parser("show", parents=[common], help="one migration and its vifs")
    show.add_argument("id", metavar="ID")
    show.set_defaults(func=_runner(show_migration))

    watch = msub.add_parser("watch", parents=[common], help="one line per migration change")
    watch.add_argument(
        "--after",
        type=int,
        default=0,
        metavar="REV",
        help="start after this revision (default 0: every migration's latest state first)",
    )
    watch.add_argument("--state", choices=[s.value for s in MigrationState])
    watch.add_argument("--host", help="only where HOST is the source or the destination")
    watch.set_defaults(func=_runner(watch_migrations))

    for action, help_text in (
        ("cancel", "cancel a migration (its port data is purged)"),
        ("complete", "complete a migration after the switchover (port data purged)"),
    ):
        p = msub.add_parser(action, parents=[common], help=help_text)
        p.add_argument("id", metavar="ID")
        p.set_defaults(func=_runner(end_migration), action=action)

    hosts = subparsers.add_parser(
        "hosts", help="the hosts whose agents report", epilog=EXIT_CODES_HELP
    )
    hsub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="ACTION")
    hlist = hsub.add_parser("list", parents=[common], help="hosts, last heartbeat, backends")
    hlist.add_argument(
        "--stale-after",
        type=float,
        default=DEFAULT_STALE_AFTER,
        metavar="S",
        help=f"a host silent longer is not reporting (default {DEFAULT_STALE_AFTER:g})",
    )
    hlist.set_defaults(func=_runner(list_hosts))

    from .configdocs import register as register_config_docs

    register_config_docs(subparsers)


def _output(args: argparse.Namespace) -> str:
    return str(args.output or ("table" if sys.stdout.isatty() else "json"))


def _client(args: argparse.Namespace) -> BrokerClient:
    urls = args.broker or os.environ.get("VIFBROKER_BROKER") or DEFAULT_BROKER
    token_file = args.token_file or os.environ.get("VIFBROKER_TOKEN_FILE")
    if not token_file:
        raise UsageError("no token: pass --token-file PATH or set VIFBROKER_TOKEN_FILE")
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file {token_file}: {exc.strerror or exc}") from exc
    if not token:
        raise UsageError(f"token file {token_file} is empty")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    retry = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, timeout=args.timeout)
    try:
        return BrokerClient(urls, token, retry=retry)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _describe(exc: ClientError) -> str:
    if isinstance(exc, TransportError):
        return f"broker unreachable: {exc}"
    if isinstance(exc, Unauthorized):
        return "the broker refused the token (401): check --token-file"
    if isinstance(exc, ProblemError):
        return f"{exc.status} {exc.slug}: {exc.detail or exc.title}"
    return str(exc)


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        action = getattr(args, "migrations_command", None) or getattr(args, "hosts_command", "")
        name = f"vifbroker {args.command} {action}"
        try:
            client = _client(args)
        except UsageError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            return asyncio.run(_with(client, command, args))
        except ClientError as exc:
            print(f"{name}: {_describe(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            return EXIT_OK

    return run


async def _with(client: BrokerClient, command: Command, args: argparse.Namespace) -> int:
    async with client:
        return await command(client, args)


async def list_migrations(client: BrokerClient, args: argparse.Namespace) -> int:
    items = [m async for m in client.iter_migrations(state=args.state, host=args.host)]
    if _output(args) == "json":
        print(render.as_json([render.migration_doc(m) for m in items]))
    else:
        print(render.table([render.migration_row(m) for m in items], render.MIGRATION_COLUMNS))
    return EXIT_OK


async def _records_of(client: BrokerClient, m: Migration) -> list[VifRecord] | None:
    """The domain's records, when they are this migration's (the domain's active
    migration, else its newest one); None otherwise."""
    siblings = [s async for s in client.iter_migrations(domain_uuid=m.domain_uuid)]
    current = next((s for s in siblings if not s.state.terminal), None)
    current = current or max(siblings, key=lambda s: s.created_at, default=None)
    if current is None or current.id != m.id:
        return None
    try:
        return await client.get_interfaces(m.domain_uuid)
    except NotFound:
        return None


async def show_migration(client: BrokerClient, args: argparse.Namespace) -> int:
    try:
        m = await client.get_migration(args.id)
    except NotFound:
        print(f"vifbroker migrations show: no migration {args.id!r}", file=sys.stderr)
        return EXIT_FAILURE
    rows = render.vif_rows(m, await _records_of(client, m))
    if _output(args) == "json":
        print(render.as_json({"migration": render.migration_doc(m), "interfaces": rows}))
    else:
        print(render.migration_header(m))
        print()
        print(render.table(rows, render.VIF_COLUMNS) if rows else "(no vifs uploaded)")
    return EXIT_OK


async def watch_migrations(client: BrokerClient, args: argparse.Namespace) -> int:
    json_out = _output(args) == "json"
    async for m in client.events(after=args.after):
        if args.state and m.state.value != args.state:
            continue
        if args.host and args.host not in (m.source_host, m.destination_host):
            continue
        if json_out:
            print(render.json_line(render.migration_doc(m)))
        else:
            print(render.event_line(m))
        sys.stdout.flush()
    return EXIT_OK


async def end_migration(client: BrokerClient, args: argparse.Namespace) -> int:
    call = client.cancel if args.action == "cancel" else client.complete
    try:
        m = await call(args.id)
    except NotFound:
        print(f"vifbroker migrations {args.action}: no migration {args.id!r}", file=sys.stderr)
        return EXIT_FAILURE
    if _output(args) == "json":
        print(render.as_json(render.migration_doc(m)))
    else:
        print(render.table([render.migration_row(m)], render.MIGRATION_COLUMNS))
    return EXIT_OK


async def list_hosts(client: BrokerClient, args: argparse.Namespace) -> int:
    hosts = await client.list_hosts()
    now = datetime.now(UTC)
    if _output(args) == "json":
        print(render.as_json([render.host_doc(h, now, args.stale_after) for h in hosts]))
    else:
        rows = [render.host_row(h, now, args.stale_after) for h in hosts]
        print(render.table(rows, render.HOST_COLUMNS))
    return EXIT_OK
