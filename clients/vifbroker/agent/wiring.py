"""Turning command-line options into objects: backends, domain source, client.

Backend options are not listed here: each installed backend declares them
(``Backend.Options``) and they become ``--<prefix>-<field>`` options.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vifbroker.backends import Backend, BackendOptions, available_backends, load_backend
from vifbroker.client import BrokerClient, tls_context
from vifbroker.logkit import FieldsFilter, configure

from .domainxml import DirectorySource, DomainSource, VirshSource
from .errors import ConfigError
from .lifecycle import DomainFeed, VirshEvents

log = logging.getLogger(__name__)

DEFAULT_BACKENDS = ("openvswitch",)


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    # No defaults here: a flag left out falls back to VIFBROKER_* and the TOML file.
    parser.add_argument(
        "--broker",
        metavar="URL[,URL...]",
        help="broker base URL(s); the next is tried when one is down (env VIFBROKER_BROKER)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding the token (env VIFBROKER_TOKEN_FILE)",
    )
    parser.add_argument(
        "--ca-file", type=Path, metavar="PATH", help="CA bundle to trust for an https:// broker"
    )
    parser.add_argument(
        "--cert", type=Path, metavar="PATH", help="client certificate (PEM) for mutual TLS"
    )
    parser.add_argument("--key", type=Path, metavar="PATH", help="private key of --cert")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["json", "text"])


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
    for name in available_backends():
        try:
            cls = load_backend(name)
        except Exception as exc:  # a broken plug-in must not take the CLI down
            log.warning("backend %s cannot be loaded: %s", name, exc)
            continue
        _add_options(parser, cls)


def _dest(cls: type[Backend], field: str) -> str:
    return backend_dest(cls.name, field)


def backend_dest(backend: str, field: str) -> str:
    """The namespace attribute of a backend option."""
    return f"backend_{backend}_{field}"


def _add_options(parser: argparse.ArgumentParser, cls: type[Backend]) -> None:
    group = parser.add_argument_group(f"{cls.name} backend")
    for field, info in cls.Options.model_fields.items():
        flag = f"--{cls.cli_prefix()}-{field.replace('_', '-')}"
        kwargs: dict[str, Any] = {"dest": _dest(cls, field), "default": None}
        if info.description:
            kwargs["help"] = info.description
        if info.annotation is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = field.upper()
        try:
            group.add_argument(flag, **kwargs)
        except argparse.ArgumentError as exc:
            log.warning("backend %s: option %s not offered: %s", cls.name, flag, exc)


def backend_options(cls: type[Backend], args: argparse.Namespace) -> BackendOptions:
    """The options of backend ``cls`` given on the command line, validated."""
    given = {
        field: value
        for field in cls.Options.model_fields
        if (value := getattr(args, _dest(cls, field), None)) is not None
    }
    try:
        return cls.Options.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{cls.cli_prefix()}-{str(e['loc'][0]).replace('_', '-')}: {e['msg']}"
            if e["loc"]
            else e["msg"]
            for e in exc.errors()
        )
        raise ConfigError(f"the {cls.name} backend: {problems}") from exc


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def make_client(args: argparse.Namespace) -> BrokerClient:
    broker = args.broker or os.environ.get("VIFBROKER_BROKER")
    token_file = args.token_file or os.environ.get("VIFBROKER_TOKEN_FILE")
    if not token_file:
        raise ConfigError("no token: pass --token-file PATH or set VIFBROKER_TOKEN_FILE")
    urls = [u.strip() for u in str(broker or "").split(",") if u.strip()]
    if not urls:
        raise ConfigError("--broker (or VIFBROKER_BROKER) needs at least one URL")
    try:
        tls = tls_context(
            getattr(args, "ca_file", None), getattr(args, "cert", None), getattr(args, "key", None)
        )
        return BrokerClient(urls, read_token(Path(token_file)), tls=tls)
    except ValueError as exc:  # a malformed URL: a configuration error, never retried
        raise ConfigError(str(exc)) from exc
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files: {exc}") from exc


def make_backends(args: argparse.Namespace, *, default: bool = True) -> list[Backend]:
    names: list[str] = args.backends or (list(DEFAULT_BACKENDS) if default else [])
    backends = []
    for name in dict.fromkeys(names):
        try:
            cls = load_backend(name)
        except (LookupError, TypeError) as exc:
            raise ConfigError(str(exc)) from exc
        try:
            backends.append(cls.from_options(backend_options(cls, args)))
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


def configure_logging(level: str | None, fmt: str | None = None, host: str | None = None) -> None:
    """JSON or text lines on stderr; with ``host``, every record carries it as a key."""
    level = level or os.environ.get("VIFBROKER_LOG_LEVEL", "INFO").upper()
    fmt = fmt or os.environ.get("VIFBROKER_LOG_FORMAT", "text")
    filters = [FieldsFilter(host=host)] if host else []
    configure(level if level in logging.getLevelNamesMapping() else "INFO", fmt, filters)
