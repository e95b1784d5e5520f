"""``vifbroker``: one console script; each side registers its own subcommands.

The broker side (``serve``, ``token``) lives in ``vifbroker.server.cli``; the
host side (``agent``, ``push``, ``demo``) in ``vifbroker.agent.cli``. Each
module exposes ``register(subparsers)``, and every subparser sets ``func``
to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

_COMMAND_MODULES = ("vifbroker.server.cli", "vifbroker.agent.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vifbroker",
        description="Carry per-vif port data between hypervisors during live migration.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
