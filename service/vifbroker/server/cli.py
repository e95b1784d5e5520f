"""``vifbroker serve`` and ``vifbroker token add``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from vifbroker.clikit import explain, unknown_variables
from vifbroker.gctune import tune_for_service
from vifbroker.sdnotify import Notifier
from vifbroker.store import StoreError

from .auth import Role, TokenFileError, add_token, load_tokens
from .config import Settings, load_settings
from .connections import BrokerRunner, ConnectionLimits
from .logs import configure_logging
from .tokencli import register_tokens
from .tokenfile import TOKEN_WATCHER

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 10.0
GIL_SWITCH_INTERVAL_SECONDS = 0.0005


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run the broker")
    serve.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    serve.add_argument("--db", metavar="URL", help="default sqlite:///<state-dir>/vifbroker.db")
    serve.add_argument(
        "--tokens", type=Path, metavar="PATH", help="default <state-dir>/tokens.toml"
    )
    serve.add_argument(
        "--no-upgrade",
        dest="db_upgrade",
        action="store_false",
        default=None,
        help="refuse an older database schema instead of upgrading it at start",
    )
    serve.add_argument("--state-dir", type=Path, metavar="DIR", help="default ./state")
    serve.add_argument("--config", type=Path, metavar="PATH", help="TOML settings file")
    serve.add_argument(
        "--agent-migrations",
        action="store_true",
        default=None,
        help="let agents register migrations themselves (no controller needed)",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="PATH", help="serve HTTPS: certificate")
    serve.add_argument("--tls-key", type=Path, metavar="PATH", help="serve HTTPS: private key")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PATH",
        help="require client certificates signed by these CAs",
    )
    serve.set_defaults(func=run_serve)

    db = subparsers.add_parser("db", help="manage the broker's database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser(
        "upgrade", help="bring the database schema up to this broker's version, then exit"
    )
    upgrade.add_argument("--db", metavar="URL", help="default: the settings' store URL")
    upgrade.add_argument("--state-dir", type=Path, metavar="DIR", help="default ./state")
    upgrade.add_argument("--config", type=Path, metavar="PATH", help="TOML settings file")
    upgrade.set_defaults(func=run_db_upgrade)

    register_tokens(subparsers, _settings)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        getattr(args, "config", None),
        listen=getattr(args, "listen", None),
        db=getattr(args, "db", None),
        tokens=getattr(args, "tokens", None),
        state_dir=getattr(args, "state_dir", None),
        agent_migrations=getattr(args, "agent_migrations", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        db_upgrade=getattr(args, "db_upgrade", None),
    )


def bootstrap_tokens(settings: Settings) -> None:
    """Without a token file, create one holding a controller token saved beside the state."""
    path = settings.tokens_path
    if path.exists():
        return
    token = add_token(path, Role.CONTROLLER, name="bootstrap-controller")
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    token_file = settings.state_dir / "controller.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    log.info("created token file %s; controller token written to %s", path, token_file)


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=settings.header_timeout_seconds,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        max_connections=settings.max_connections,
    )


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"vifbroker serve: bad settings: {explain(exc)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"vifbroker serve: bad settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    known = {"VIFBROKER_" + name.upper() for name in Settings.model_fields}
    for name in unknown_variables(os.environ, known):
        log.warning("%s is not a setting of vifbroker serve (ignored)", name)
    try:
        # Made here, it holds the token file and the database: its owner's only
        # (a directory that exists keeps the mode it was given).
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        bootstrap_tokens(settings)
        tokens = load_tokens(settings.tokens_path)
    except (TokenFileError, OSError) as exc:
        log.error("cannot load tokens: %s", exc)
        return 2
    try:
        tls = server_tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot load the TLS certificate, key or client CA: %s", exc)
        return 2
    import uvloop

    from vifbroker.store import open_store

    from .app import create_app

    try:
        store = open_store(settings.db_url, upgrade=settings.db_upgrade)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    app = create_app(settings, store, tokens)
    # Work handed to threads (large renders, the store's readers) holds the GIL
    # in short calls; with Python's 5 ms switch interval the event loop could
    # wait that long at each of the many times it takes the GIL back to answer
    # one request. 0.5 ms keeps it answering while such work runs.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    tune_for_service()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            return runner.run(_serve(app, settings, len(tokens), tls))
        except StoreError as exc:  # unreachable, or a schema this broker does not run on
            log.error("cannot open the store: %s", exc)
            return 1
        except OSError as exc:  # the port is taken, the address is not ours
            log.error("cannot listen on %s: %s", settings.listen, exc.strerror or exc)
            return 1


def run_db_upgrade(args: argparse.Namespace) -> int:
    """Open the store with upgrades allowed (that runs them), report the version, close."""
    try:
        settings = _settings(args)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"vifbroker db upgrade: bad settings: {exc}", file=sys.stderr)
        return 2
    from vifbroker.store import open_store

    try:
        store = open_store(settings.db_url, upgrade=True)
    except ValueError as exc:
        print(f"vifbroker db upgrade: {exc}", file=sys.stderr)
        return 2

    async def upgrade() -> None:
        await store.open()
        await store.close()

    try:
        asyncio.run(upgrade())
    except StoreError as exc:
        print(f"vifbroker db upgrade: {exc}", file=sys.stderr)
        return 1
    print("vifbroker db upgrade: the database schema is up to date")
    return 0


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS with ``tls_cert``/``tls_key``; client certificates required with ``tls_client_ca``."""
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(cafile=settings.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (parked long-polls hold sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
            return soft
    return hard


async def _serve(
    app: web.Application, settings: Settings, token_count: int, tls: ssl.SSLContext | None
) -> int:
    host, port = settings.host_port
    log.info("open-file limit %d", raise_open_file_limit())
    runner = BrokerRunner(
        app,
        connection_limits(settings),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        scheme = "https" if tls else "http"
        log.info("listening on %s://%s:%d (%d tokens)", scheme, host, port, token_count)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # SIGHUP: re-read the token file now (it is also re-read when it changes).
        loop.add_signal_handler(signal.SIGHUP, app[TOKEN_WATCHER].reload_now)
        systemd = Notifier()
        async with systemd.watchdog():
            systemd.ready(f"listening on {host}:{port}")
            await stop.wait()
            systemd.stopping()
        log.info("shutting down")
    finally:
        await runner.cleanup()
    return 0
