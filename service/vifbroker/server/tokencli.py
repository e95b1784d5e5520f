"""``vifbroker token add|list|revoke``: the token file, from the command line.

A running broker picks the change up by itself (``server/tokenfile.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .auth import Role, TokenFileError, add_token
from .config import Settings
from .tokenfile import list_tokens, revoke_token

SettingsOf = Callable[[argparse.Namespace], Settings]


def register_tokens(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], settings_of: SettingsOf
) -> None:
    token = subparsers.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    def command(name: str, help: str, run: Callable[[argparse.Namespace, Path], int]) -> Any:
        parser = token_sub.add_parser(name, help=help)
        parser.add_argument(
            "--tokens", type=Path, metavar="PATH", help="token file (default: settings)"
        )
        parser.set_defaults(
            func=lambda args: run(args, args.tokens or settings_of(args).tokens_path)
        )
        return parser

    add = command("add", "create a token; print it and store its hash", _add)
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--host", help="the host an agent token acts for")
    add.add_argument("--name", help="a label for logs")
    listing = command("list", "names, roles and hosts of the tokens (never their hashes)", _list)
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table")
    revoke = command("revoke", "remove the tokens called NAME", _revoke)
    revoke.add_argument("name", metavar="NAME")


def _add(args: argparse.Namespace, path: Path) -> int:
    try:
        token = add_token(path, Role(args.role), host=args.host, name=args.name)
    except (ValueError, OSError) as exc:
        print(f"vifbroker token add: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _list(args: argparse.Namespace, path: Path) -> int:
    try:
        tokens = list_tokens(path)
    except TokenFileError as exc:
        print(f"vifbroker token list: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(tokens))
        return 0
    print(f"{'NAME':24} {'ROLE':10} HOST")
    for t in tokens:
        print(f"{t['name']:24} {t['role']:10} {t.get('host', '-')}")
    return 0


def _revoke(args: argparse.Namespace, path: Path) -> int:
    try:
        removed = revoke_token(path, args.name)
    except (TokenFileError, OSError) as exc:
        print(f"vifbroker token revoke: {exc}", file=sys.stderr)
        return 2
    if not removed:
        print(f"vifbroker token revoke: no token named {args.name!r} in {path}", file=sys.stderr)
        return 1
    print(f"revoked {removed} token(s) named {args.name!r}")
    return 0
