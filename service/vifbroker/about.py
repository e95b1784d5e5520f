"""What the running product is: its version, as installed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def product_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare tree)."""
    try:
        return version("vifbroker")
    except PackageNotFoundError:
        return "unknown"
