"""Storage: the Store protocol, its implementations, and the change hub."""

from .base import Parties, Prior, Recorded, Store, Uploaded
from .errors import (
    BadCursor,
    Conflict,
    InvalidInput,
    InvalidTransition,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    SchemaMismatch,
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
    "Parties",
    "PreconditionFailed",
    "Prior",
    "Recorded",
    "SchemaMismatch",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Uploaded",
    "WrongHost",
]


def open_store(url: str, *, upgrade: bool = True) -> Store:
    """Build the store for ``url`` (``sqlite:///PATH`` or ``postgresql://…``).

    ``upgrade``: bring an older schema up to date at open (else refuse to open it).
    """
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite://"), upgrade=upgrade)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, upgrade=upgrade)
    scheme = url.partition(":")[0]
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite:/// or postgresql://")
