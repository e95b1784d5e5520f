"""``vifbroker demo`` (placeholder until the demo lands)."""

from __future__ import annotations

import argparse


def register_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="run a two-host migration on this machine")
    demo.set_defaults(func=lambda args: 1)
