"""Broker settings: command-line flags > ``VIFBROKER_*`` environment > TOML file > defaults.

The TOML file is optional (``--config PATH`` or ``VIFBROKER_CONFIG``) and uses
the field names below as top-level keys (the environment spells them
``VIFBROKER_<NAME>``), e.g.::

    listen = "0.0.0.0:8080"
    state_dir = "/var/lib/vifbroker"
    log_format = "text"

``state_dir`` defaults to ``./state`` relative to the working directory; the
database (``sqlite:///<state_dir>/vifbroker.db``), the token file
(``<state_dir>/tokens.toml``) and the bootstrap ``controller.token`` live
there unless ``db`` / ``tokens`` say otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from vifbroker.model import PORTDATA_DEFAULT_MAX
from vifbroker.model.limits import Limits
from vifbroker.settingskit import TomlSettings, load_toml_settings, split_listen

__all__ = ["Settings", "load_settings", "split_listen"]

MIB = 1024 * 1024


class Settings(TomlSettings):
    model_config = SettingsConfigDict(env_prefix="VIFBROKER_", extra="forbid", frozen=True)

    listen: str = Field(
        default="127.0.0.1:8080", description="HOST:PORT to serve HTTP on ([v6]:PORT for IPv6)"
    )
    db: str | None = Field(
        default=None,
        description="store URL: sqlite:///PATH or postgresql://… "
        "(default: sqlite:///<state_dir>/vifbroker.db)",
    )
    db_upgrade: bool = Field(
        default=True,
        description="bring an older database schema up to date at start "
        "(false: refuse it and say to run `vifbroker db upgrade`)",
    )
    tokens: Path | None = Field(
        default=None,
        description="token file (hashes only; re-read when it changes) "
        "(default: <state_dir>/tokens.toml)",
    )
    state_dir: Path = Field(
        default=Path("./state"),
        description="where the SQLite database, token file and bootstrap controller.token live",
    )
    max_body_bytes: int = Field(
        default=8 * MIB, ge=1024, description="largest request body accepted (413 above)"
    )
    max_portdata_bytes: int = Field(
        default=PORTDATA_DEFAULT_MAX, ge=1, description="largest port data of one vif (UTF-8 bytes)"
    )
    longpoll_max_seconds: float = Field(
        default=60.0, gt=0, description="longest an inbox long-poll or barrier is held"
    )
    expiry_interval_seconds: float = Field(
        default=1.0, gt=0, description="how often overdue migrations are expired"
    )
    retention_seconds: float = Field(
        default=7 * 86400.0,
        ge=0,
        description="how long terminal migrations (without port data) are kept for audit",
    )
    agent_migrations: bool = Field(
        default=False,
        description="agents may register migrations themselves (no controller needed)",
    )
    heartbeat_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        description="the agents' heartbeat interval: a host silent for three is not reporting",
    )
    tls_cert: Path | None = Field(
        default=None, description="certificate chain (PEM): serve HTTPS instead of HTTP"
    )
    tls_key: Path | None = Field(default=None, description="private key (PEM) of tls_cert")
    tls_client_ca: Path | None = Field(
        default=None, description="CA bundle (PEM): require client certificates it signed"
    )
    readiness_timeout_seconds: float = Field(
        default=2.0, gt=0, description="/readyz answers 503 when a probe write takes longer"
    )
    # What one interface document may hold (model/limits.py): past any of
    # them an upload is refused with 413 before the costly part of reading it.
    max_interfaces_per_document: int = Field(
        default=256, ge=1, description="interfaces in one uploaded document, JSON or XML"
    )
    max_attributes_per_element: int = Field(
        default=64, ge=8, description="attributes on one XML element the broker reads"
    )
    max_keys: int = Field(
        default=16, ge=1, description="keys in source, source address and virtualport parameters"
    )
    max_vlan_tags: int = Field(default=64, ge=1, description="<tag> elements in one <vlan>")
    max_vifs_per_migration: int = Field(
        default=256, ge=1, description="vifs one migration may hold (413 past it)"
    )
    max_running_domains: int = Field(
        default=1024, ge=1, description="domains one heartbeat may report running (413 past it)"
    )
    inline_body_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="bodies up to this size are decoded on the event loop, larger in a worker",
    )
    body_workers: int = Field(
        default=1, ge=1, description="worker processes that decode large bodies"
    )
    # Connections (see server/connections.py).
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a client must send its request headers within this"
    )
    keepalive_timeout_seconds: float = Field(
        default=75.0, gt=0, description="an idle keep-alive connection is closed after this"
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a client must send its request body within this"
    )
    max_connections: int = Field(
        default=12_000, ge=1, description="open connections at most (10,000 parked long-polls fit)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log threshold"
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object per line, with migration/domain/mac keys"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        return self

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @property
    def db_url(self) -> str:
        # open_store strips "sqlite://": the rest must be an absolute path.
        return self.db or f"sqlite://{(self.state_dir / 'vifbroker.db').resolve()}"

    @property
    def limits(self) -> Limits:
        return Limits(
            max_interfaces=self.max_interfaces_per_document,
            max_attributes=self.max_attributes_per_element,
            max_keys=self.max_keys,
            max_vlan_tags=self.max_vlan_tags,
            max_portdata_bytes=self.max_portdata_bytes,
        )

    @property
    def tokens_path(self) -> Path:
        return self.tokens or self.state_dir / "tokens.toml"

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)


def load_settings(config: Path | None = None, **flags: Any) -> Settings:
    """Settings from ``flags`` (None values ignored), environment and the TOML file."""
    return load_toml_settings(Settings, config, flags)
