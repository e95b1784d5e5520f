"""Store errors: what went wrong in domain terms. The server maps them to HTTP.

StoreError
├── NotFound              no such migration / record / host
├── Conflict              another active migration for the domain; id reused with another body
├── NoActiveMigration     an upload for a domain with no active migration
├── PreconditionFailed    If-Match generation is stale
├── InvalidTransition     e.g. complete on a cancelled migration, results for a terminal one
├── WrongHost             an upload from a host that is not the migration's source
├── InvalidInput          unknown MAC in results, duplicate MACs, a future generation
│   ├── BadCursor         a list cursor the store did not hand out
│   └── TooManyVifs       an upload would give the migration more vifs than allowed
├── StoreUnavailable      the database cannot be reached (translated driver error)
└── SchemaMismatch        the database schema is not the version this broker runs
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Root of every store error."""

    def details(self) -> dict[str, Any]:
        """Machine-readable facts beyond the message (none by default)."""
        return {}


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class NoActiveMigration(StoreError):
    pass


class PreconditionFailed(StoreError):
    def __init__(self, message: str, *, mac: str, current_generation: int) -> None:
        super().__init__(message)
        self.mac = mac
        self.current_generation = current_generation

    def details(self) -> dict[str, Any]:
        return {"mac": self.mac, "current_generation": self.current_generation}


class InvalidTransition(StoreError):
    pass


class WrongHost(StoreError):
    pass


class InvalidInput(StoreError):
    pass


class BadCursor(InvalidInput):
    pass


class TooManyVifs(InvalidInput):
    pass


class StoreUnavailable(StoreError):
    pass


class SchemaMismatch(StoreError):
    pass
