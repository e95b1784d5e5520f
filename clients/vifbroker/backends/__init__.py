"""Backends, discovered by entry point group ``vifbroker.backends``."""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import (
    ApplyResult,
    Backend,
    BackendError,
    BackendOptions,
    BackendTimeout,
    BackendUnavailable,
    LocalPort,
    Outcome,
    PortEvent,
    PortNotFound,
)

GROUP = "vifbroker.backends"

__all__ = [
    "GROUP",
    "ApplyResult",
    "Backend",
    "BackendError",
    "BackendOptions",
    "BackendTimeout",
    "BackendUnavailable",
    "LocalPort",
    "Outcome",
    "PortEvent",
    "PortNotFound",
    "available_backends",
    "load_backend",
]


def available_backends() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_backend(name: str) -> type[Backend]:
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise TypeError(f"entry point {name!r} is not a Backend")
            return cls
    raise LookupError(f"no backend {name!r} in group {GROUP}")
