"""``vifbroker agent``, ``vifbroker push`` and ``vifbroker demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from vifbroker.backends import Backend, BackendError
from vifbroker.client import BrokerClient, ClientError
from vifbroker.clikit import unknown_variables
from vifbroker.gctune import tune_for_service
from vifbroker.model import Interface
from vifbroker.model.codec import parse_document
from vifbroker.model.migration import HOST_PATTERN
from vifbroker.sdnotify import Notifier
from vifbroker.settingskit import split_listen

from .config import agent_variables, resolve
from .domainxml import DomainSource
from .errors import AgentError, ConfigError
from .lifecycle import DomainFeed
from .metrics import AgentMetrics, metrics_server
from .router import Router
from .service import Agent
from .settings import AgentSettings
from .state import StateFile
from .wiring import (
    add_backend_options,
    add_broker_options,
    backend_dest,
    configure_logging,
    make_backends,
    make_client,
    make_domain_source,
)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = subparsers.add_parser("agent", help="run the host agent")
    add_broker_options(agent)
    agent.add_argument(
        "--config", type=Path, metavar="PATH", help="TOML settings file (env VIFBROKER_CONFIG)"
    )
    agent.add_argument("--host", help="this hypervisor's name at the broker (default: hostname)")
    add_backend_options(agent)
    agent.add_argument(
        "--domain-xml-dir",
        type=Path,
        metavar="DIR",
        help="read DIR/<uuid>.xml instead of `virsh -r dumpxml UUID`",
    )
    agent.add_argument(
        "--libvirt-uri",
        metavar="URI",
        help="libvirt connection (read-only) for domain XML and lifecycle events "
        "(default: libvirt's own)",
    )
    agent.add_argument(
        "--libvirt-client",
        choices=["auto", "python", "virsh"],
        help="reach libvirt through libvirt-python or `virsh -r` "
        "(auto: libvirt-python when installed)",
    )
    agent.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the inbox position is kept across restarts (default: not kept)",
    )
    # Defaults live in AgentConfig (flags > VIFBROKER_* > TOML > defaults).
    agent.add_argument("--poll-wait", type=float, metavar="S")
    agent.add_argument("--heartbeat-interval", type=float, metavar="S")
    agent.add_argument("--drain-timeout", type=float, metavar="S")
    agent.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve Prometheus /metrics here"
    )
    agent.add_argument(
        "--register-migrations",
        action="store_true",
        default=None,
        help="register arriving migrations from libvirt's events and complete or cancel them "
        "(no controller; the broker runs with --agent-migrations)",
    )
    agent.set_defaults(func=run_agent)

    push = subparsers.add_parser("push", help="upload a domain's vifs once (for scripts)")
    add_broker_options(push)
    push.add_argument(
        "--domain-xml", required=True, metavar="FILE|-", help="libvirt <domain> XML ('-': stdin)"
    )
    push.add_argument("--to", metavar="HOST", help="create the migration to HOST first")
    push.add_argument(
        "--from", dest="source", metavar="HOST", help="source host (default: hostname)"
    )
    push.add_argument("--migration-id", metavar="ID", help="idempotency id for the migration")
    push.add_argument("--ttl", type=int, metavar="S", help="migration lifetime in seconds")
    push.add_argument("--on-backend-mismatch", choices=["skip", "fail"])
    add_backend_options(push, default=False)
    push.set_defaults(func=run_push)

    from .demo import register_demo
    from .preflight import register as register_preflight

    register_demo(subparsers)
    register_preflight(subparsers)


def _agent_version() -> str | None:
    try:
        return version("vifbroker")
    except PackageNotFoundError:
        return None


def run_agent(args: argparse.Namespace) -> int:
    try:
        resolve(args, backend_dest)
    except ConfigError as exc:
        print(f"vifbroker agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, args.log_format, args.host)
    for name in unknown_variables(os.environ, agent_variables()):
        log.warning("%s is not a setting of vifbroker agent (ignored)", name)
    if not re.match(HOST_PATTERN, args.host):
        print(f"vifbroker agent: invalid --host {args.host!r}", file=sys.stderr)
        return 2
    try:
        backends = make_backends(args)
        domains, feed = make_domain_source(args)
        client = make_client(args)
    except ConfigError as exc:
        print(f"vifbroker agent: {exc}", file=sys.stderr)
        return 2
    settings = AgentSettings(
        host=args.host,
        poll_wait=args.poll_wait,
        heartbeat_interval=args.heartbeat_interval,
        drain_timeout=args.drain_timeout,
        agent_version=_agent_version(),
        register_migrations=bool(args.register_migrations),
    )
    state = StateFile(args.state_dir, args.host)
    import uvloop

    tune_for_service()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            return runner.run(
                _agent_main(client, backends, (domains, feed), state, settings, args.metrics_listen)
            )
        except OSError as exc:  # the metrics port is taken
            log.error("cannot listen on %s: %s", args.metrics_listen, exc.strerror or exc)
            return 1


async def _agent_main(
    client: BrokerClient,
    backends: list[Backend],
    domains: tuple[DomainSource, DomainFeed | None],
    state: StateFile,
    settings: AgentSettings,
    metrics_listen: str | None = None,
) -> int:
    log.info("agent %s: domain XML from %r", settings.host, domains[0])
    metrics = AgentMetrics()
    agent = Agent(client, backends, domains[0], state, settings, feed=domains[1], metrics=metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if metrics_listen:
                host, port = split_listen(metrics_listen)
                bound = await stack.enter_async_context(metrics_server(metrics, host, port))
                log.info("metrics on http://%s:%d/metrics", host, bound)
            systemd = Notifier()
            await stack.enter_async_context(systemd.watchdog())
            systemd.ready(f"agent {settings.host}")
            await agent.run()
            systemd.stopping()
    finally:
        await client.close()
    return 0


def run_push(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        if args.domain_xml == "-":
            data = sys.stdin.buffer.read()
        else:
            data = Path(args.domain_xml).read_bytes()
        doc = parse_document(data)
        backends = make_backends(args, default=False)
        client = make_client(args)
    except (OSError, ValueError, AgentError) as exc:
        print(f"vifbroker push: {exc}", file=sys.stderr)
        return 2
    if doc.domain_uuid is None:
        print("vifbroker push: the XML names no domain UUID", file=sys.stderr)
        return 2
    try:
        out = asyncio.run(
            _push(client, backends, args, doc.domain_uuid, doc.domain_name, list(doc.interfaces))
        )
    except (ClientError, AgentError, OSError) as exc:
        print(f"vifbroker push: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0


async def _push(
    client: BrokerClient,
    backends: list[Backend],
    args: argparse.Namespace,
    domain_uuid: str,
    domain_name: str | None,
    interfaces: list[Interface],
) -> dict[str, object]:
    try:
        migration_id = None
        if args.to:
            migration = await client.create_migration(
                domain_uuid,
                args.source or socket.gethostname(),
                args.to,
                domain_name=domain_name,
                ttl_seconds=args.ttl,
                on_backend_mismatch=args.on_backend_mismatch,
                id=args.migration_id,
            )
            migration_id = migration.id
        interfaces = await Router(backends).collect(domain_uuid, interfaces)
        result = await client.upload(domain_uuid, interfaces)
    except BackendError as exc:
        raise ConfigError(f"collecting port data: {exc}") from exc
    finally:
        for backend in backends:
            await backend.close()
        await client.close()
    return {
        "migration": migration_id,
        "domain_uuid": result.domain_uuid,
        "revision": result.revision,
        "interfaces": [{"mac": m, "generation": g} for m, g in result.generations.items()],
    }
