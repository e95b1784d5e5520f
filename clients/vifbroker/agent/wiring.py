"""Turning command-line options into objects: backends, domain source, client.

The only place that knows every backend's constructor options.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from vifbroker.backends import Backend, load_backend
from vifbroker.client import BrokerClient

from .domainxml import DirectorySource, DomainSource, VirshSource
from .errors import ConfigError
from .lifecycle import DomainFeed, VirshEvents

DEFAULT_BACKENDS = ("openvswitch",)


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        required=True,
        metavar="URL[,URL...]",
        help="broker base URL(s); the next is tried when one is down",
    )
    parser.add_argument(
        "--token-file", required=True, type=Path, metavar="PATH", help="file holding the token"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def add_backend_options(parser: argparse.ArgumentParser, *, default: bool = True) -> None:
    parser.add_argument(
        "--backend",
        action="append",
        dest="backends",
        metavar="NAME",
        help="backend to load, in order of preference (repeatable; default: "
        + (", ".join(DEFAULT_BACKENDS) if default else "none")
        + ")",
    )
    parser.add_argument(
        "--ovs-db", metavar="unix:SOCK", help="OVSDB to talk to (default: ovs-vsctl's own)"
    )
    parser.add_argument(
        "--ovs-no-wait",
        action="store_true",
        help="pass --no-wait to ovs-vsctl (no ovs-vswitchd, e.g. tests)",
    )
    parser.add_argument(
        "--exec-command",
        metavar="CMD",
        help="the exec backend's command (split like a shell would; never run by one)",
    )


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def make_client(args: argparse.Namespace) -> BrokerClient:
    urls = [u.strip() for u in str(args.broker).split(",") if u.strip()]
    if not urls:
        raise ConfigError("--broker needs at least one URL")
    return BrokerClient(urls, read_token(args.token_file))


def backend_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "openvswitch":
        return {"db": args.ovs_db, "no_wait": bool(args.ovs_no_wait)}
    if name == "exec":
        if not args.exec_command:
            raise ConfigError("the exec backend needs --exec-command")
        return {"command": shlex.split(args.exec_command)}
    return {}


def make_backends(args: argparse.Namespace, *, default: bool = True) -> list[Backend]:
    names: list[str] = args.backends or (list(DEFAULT_BACKENDS) if default else [])
    backends = []
    for name in dict.fromkeys(names):
        try:
            cls = load_backend(name)
        except LookupError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            backends.append(cls(**backend_options(name, args)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"backend {name}: {exc}") from exc
    return backends


def libvirt_python_available() -> bool:
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return False
    return True


def make_domain_source(args: argparse.Namespace) -> tuple[DomainSource, DomainFeed | None]:
    """Where domain XML comes from, and the lifecycle events of those domains (if any).

    ``--libvirt-client auto`` takes libvirt-python when it is installed (XML
    and events over one library, events as callbacks), else ``virsh -r``.
    """
    if args.domain_xml_dir is not None:
        return DirectorySource(args.domain_xml_dir), None
    uri = getattr(args, "libvirt_uri", None)
    client = getattr(args, "libvirt_client", "auto")
    if client == "python" or (client == "auto" and libvirt_python_available()):
        try:
            from .libvirtapi import LibvirtSource
        except ImportError as exc:
            msg = f"--libvirt-client python: {exc} (pip install vifbroker[libvirt])"
            raise ConfigError(msg) from exc
        source = LibvirtSource(uri)
        return source, source
    return VirshSource(uri=uri), VirshEvents(uri=uri)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
