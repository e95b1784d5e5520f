"""``vifbroker``: one console script; each side registers its own subcommands.

The broker side (``serve``, ``token``) lives in ``vifbroker.server.cli``; the
host side (``agent``, ``push``, ``demo``) in ``vifbroker.agent.cli``. Each
module exposes ``register(subparsers)``, and every subparser sets ``func``
to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .about import product_version
from .clikit import EXIT_CODES_HELP, EXIT_FAILURE

_COMMAND_MODULES = ("vifbroker.server.cli", "vifbroker.agent.cli", "vifbroker.ctl.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vifbroker",
        description="Carry per-vif port data between hypervisors during live migration.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"vifbroker {product_version()}")
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
    try:
        rc: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug, not an operator's mistake: still one line; the traceback at DEBUG.
        logging.getLogger("vifbroker").debug("unexpected error", exc_info=True)
        print(
            f"vifbroker {args.command}: unexpected error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return rc


if __name__ == "__main__":
    sys.exit(main())
