"""Storage: the Store protocol, its implementations, and the change hub."""

from .base import Store
from .errors import (
    BadCursor,
    Conflict,
    InvalidInput,
    InvalidTransition,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    StoreError,
    StoreUnavailable,
    WrongHost,
)
from .hub import ChangeHub

__all__ = [
    "BadCursor",
    "ChangeHub",
    "Conflict",
    "InvalidInput",
    "InvalidTransition",
    "NoActiveMigration",
    "NotFound",
    "PreconditionFailed",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "WrongHost",
]


def open_store(url: str) -> Store:
    """Build the store for ``url`` (``sqlite:///PATH``; ``postgresql://…`` comes later)."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite://"))
    raise ValueError(f"unsupported store URL: {url!r}")
