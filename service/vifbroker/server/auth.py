"""Bearer tokens, principals and the authorization rules.

The token file is TOML with one ``[[tokens]]`` table per token::

    [[tokens]]
    name = "controller"
    sha256 = "<hex sha256 of the token>"
    role = "controller"            # or "agent"
    host = "hv1"                   # agents only: the host it acts for

Only hashes are stored. A presented token is hashed, looked up by its hash and
the match confirmed in constant time; tokens are never logged. The broker
re-reads the file when it changes (``server/tokenfile.py``).

Rules: a controller may do everything; an agent acts only for its own host
(see :meth:`Principal.require_host`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from .errors import Forbidden, Unauthorized


class Role(enum.StrEnum):
    CONTROLLER = "controller"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    host: str | None = None
    #: ``role is Role.CONTROLLER``, kept rather than a property: asked several
    #: times on every request, a slot read costs no call.
    is_controller: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_controller", self.role is Role.CONTROLLER)

    def require_controller(self) -> None:
        if not self.is_controller:
            raise Forbidden(f"{self.name!r} is not a controller")

    def require_host(self, *hosts: str) -> None:
        """Pass for a controller, or an agent whose host is one of ``hosts``."""
        if self.is_controller or (self.host is not None and self.host in hosts):
            return
        raise Forbidden(f"agent {self.name!r} (host {self.host!r}) may not act for this host")


class TokenFileError(ValueError):
    """The token file cannot be read or has a bad entry."""


class TokenRegistry:
    """The tokens the broker accepts, by the sha256 of each (a dict: no scan of
    every entry per request). :meth:`replace` swaps in a re-read file at once."""

    def __init__(self, entries: list[tuple[str, Principal]]) -> None:
        self._by_digest = self._index(entries)

    @staticmethod
    def _index(entries: list[tuple[str, Principal]]) -> dict[bytes, tuple[bytes, Principal]]:
        return {(d := bytes.fromhex(h)): (d, p) for h, p in entries}

    def __len__(self) -> int:
        return len(self._by_digest)

    def replace(self, other: TokenRegistry) -> None:
        self._by_digest = other._by_digest

    def authenticate(self, token: str) -> Principal:
        """The principal of ``token``; Unauthorized when it matches no entry."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        # The lookup is keyed by a digest no caller can steer (sha256 of what it
        # sent); the match is then confirmed in constant time.
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            raise Unauthorized("invalid bearer token")
        return found[1]

    def authenticate_header(self, header: str | None) -> Principal:
        if not header:
            raise Unauthorized("missing bearer token")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        return self.authenticate(token)


def load_tokens(path: Path) -> TokenRegistry:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc}") from exc
    tables = doc.get("tokens", [])
    if not isinstance(tables, list):
        raise TokenFileError(f"{path}: 'tokens' must be an array of tables")
    entries: list[tuple[str, Principal]] = []
    for i, table in enumerate(tables):
        entries.append(_parse_entry(path, i, table))
    return TokenRegistry(entries)


def _parse_entry(path: Path, index: int, table: object) -> tuple[str, Principal]:
    where = f"{path}: tokens[{index}]"
    if not isinstance(table, dict):
        raise TokenFileError(f"{where} is not a table")
    digest = table.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise TokenFileError(f"{where}: sha256 must be 64 hex digits")
    try:
        bytes.fromhex(digest)
        role = Role(str(table.get("role")))
    except ValueError as exc:
        raise TokenFileError(f"{where}: {exc}") from exc
    host = table.get("host")
    if role is Role.AGENT and (not isinstance(host, str) or not host):
        raise TokenFileError(f"{where}: an agent token needs a host")
    name = str(table.get("name") or (host if role is Role.AGENT else role.value))
    return digest.lower(), Principal(name, role, host if role is Role.AGENT else None)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def add_token(path: Path, role: Role, host: str | None = None, name: str | None = None) -> str:
    """Create a token, append its hash to ``path`` (created with mode 0600), return it."""
    if role is Role.AGENT and not host:
        raise ValueError("an agent token needs --host")
    if role is Role.CONTROLLER and host:
        raise ValueError("a controller token has no host")
    token = new_token()
    entry: dict[str, str] = {
        "name": name or (host if role is Role.AGENT and host else role.value),
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "role": role.value,
    }
    if host:
        entry["host"] = host
    text = tomli_w.dumps({"tokens": [entry]})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if f.tell() > 0:
            f.write("\n")
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return token
