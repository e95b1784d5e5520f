"""What the running product is: its version, as installed, and as a metric."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)


def product_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare tree)."""
    try:
        return version("vifbroker")
    except PackageNotFoundError:
        return "unknown"


def register_process_metrics(registry: CollectorRegistry, build_info: str, what: str) -> None:
    """``process_*``, ``python_info``, ``python_gc_*`` and ``<build_info>{version, python} 1``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)  # how often the tuned collector runs (vifbroker.gctune)
    Gauge(
        build_info,
        f"Always 1: the version of the running {what} and its Python.",
        ["version", "python"],
        registry=registry,
    ).labels(product_version(), platform.python_version()).set(1)
