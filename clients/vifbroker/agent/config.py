"""Agent configuration: command-line flags > ``VIFBROKER_*`` environment > TOML file > defaults.

Like ``vifbroker serve``: the TOML file is optional (``--config PATH`` or
``VIFBROKER_CONFIG``) and uses the field names below as top-level keys; the
environment spells them ``VIFBROKER_<NAME>``. Each backend's own options
(``--ovs-db`` …) follow the same rule: ``ovs_db`` in TOML, ``VIFBROKER_OVS_DB``.

``AgentConfig`` holds the agent's own settings; :func:`agent_config_model`
adds a field for every option of every installed backend, so one model
validates (and documents, see ``vifbroker config-docs``) everything.
"""

from __future__ import annotations

import argparse
import socket
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, create_model, field_validator
from pydantic_settings import (
    NoDecode,
    SettingsConfigDict,
)

from vifbroker.backends import available_backends, load_backend
from vifbroker.clikit import explain
from vifbroker.model.migration import HOST_PATTERN
from vifbroker.settingskit import TomlSettings, load_toml_settings, split_listen

from .errors import ConfigError


class AgentConfig(TomlSettings):
    """The host agent (``vifbroker agent``)."""

    model_config = SettingsConfigDict(env_prefix="VIFBROKER_", extra="forbid", frozen=True)

    broker: str = Field(
        description="broker base URL(s), comma-separated; the next is tried when one is down"
    )
    token_file: Path = Field(description="file holding this host's agent token")
    ca_file: Path | None = Field(
        default=None, description="CA bundle (PEM) to trust for an https:// broker"
    )
    cert: Path | None = Field(
        default=None, description="client certificate (PEM) for a broker that requires one"
    )
    key: Path | None = Field(default=None, description="private key (PEM) of cert")
    host: str = Field(
        default_factory=socket.gethostname,
        pattern=HOST_PATTERN,
        description="this hypervisor's name at the broker (default: the host name)",
    )
    backends: Annotated[list[str], NoDecode] = Field(
        default=["openvswitch"],
        description="backends to load, in order of preference (comma-separated in the environment)",
    )
    domain_xml_dir: Path | None = Field(
        default=None, description="read DIR/<uuid>.xml instead of asking libvirt"
    )
    libvirt_uri: str | None = Field(
        default=None, description="libvirt connection (read-only); default: libvirt's own"
    )
    libvirt_client: Literal["auto", "python", "virsh"] = Field(
        default="auto", description="reach libvirt through libvirt-python or `virsh -r`"
    )
    state_dir: Path | None = Field(
        default=None, description="where the inbox position is kept across restarts"
    )
    poll_wait: float = Field(default=25.0, gt=0, le=60, description="longest inbox long-poll (s)")
    heartbeat_interval: float = Field(default=15.0, gt=0, description="seconds between heartbeats")
    drain_timeout: float = Field(
        default=10.0, ge=0, description="on SIGTERM, how long in-flight work may take to finish (s)"
    )
    metrics_listen: str | None = Field(
        default=None, description="HOST:PORT to serve Prometheus /metrics on (default: off)"
    )
    register_migrations: bool = Field(
        default=False,
        description="register arriving migrations from libvirt's events, complete or cancel "
        "them (no controller; the broker runs with --agent-migrations)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log threshold"
    )
    log_format: Literal["json", "text"] = Field(
        default="text",
        description="json: one object per line, with host/migration/domain/mac keys",
    )

    @field_validator("backends", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value


def backend_option_fields() -> dict[str, tuple[str, str, Any]]:
    """``ovs_db`` → (backend name, option field, pydantic FieldInfo) for every installed backend."""
    out: dict[str, tuple[str, str, Any]] = {}
    for name in available_backends():
        try:
            cls = load_backend(name)
        except Exception:  # noqa: S112 - a broken plug-in is reported by the CLI, not here
            continue
        for field, info in cls.Options.model_fields.items():
            out[f"{cls.cli_prefix()}_{field}".replace("-", "_")] = (cls.name, field, info)
    return out


@cache
def agent_config_model() -> type[AgentConfig]:
    """AgentConfig plus one optional field per installed backend option."""
    extra: dict[str, Any] = {}
    for key, (backend, _, info) in backend_option_fields().items():
        desc = f"{backend} backend: {info.description or ''}".rstrip(": ")
        extra[key] = (info.annotation | None, Field(default=None, description=desc))
    model: type[AgentConfig] = create_model(
        "AgentConfigWithBackends", __base__=AgentConfig, **extra
    )
    return model


def load_agent_config(config: Path | None = None, **flags: Any) -> AgentConfig:
    """Settings from ``flags`` (None values ignored), the environment and the TOML file."""
    return load_toml_settings(agent_config_model(), config, flags)


def agent_variables() -> set[str]:
    """Every ``VIFBROKER_*`` name the agent reads."""
    return {"VIFBROKER_" + name.upper() for name in agent_config_model().model_fields}


def resolve(args: argparse.Namespace, backend_dest: Any) -> AgentConfig:
    """Validate the agent's flags with the environment and TOML file, and write the
    result back onto ``args`` (so the wiring reads one namespace).

    ``backend_dest(backend name, field)`` names the namespace attribute of a
    backend option. ConfigError (one line) on any bad or missing value.
    """
    model = agent_config_model()
    options = backend_option_fields()
    flags = {name: getattr(args, name, None) for name in AgentConfig.model_fields}
    for key, (backend, field, _) in options.items():
        flags[key] = getattr(args, backend_dest(backend, field), None)
    try:
        cfg = load_agent_config(getattr(args, "config", None), **flags)
    except ValidationError as exc:
        raise ConfigError(f"bad settings: {explain(exc)}") from exc
    except (ValueError, OSError) as exc:
        raise ConfigError(f"bad settings: {exc}") from exc
    for name in AgentConfig.model_fields:
        setattr(args, name, getattr(cfg, name))
    for key, (backend, field, _) in options.items():
        setattr(args, backend_dest(backend, field), getattr(cfg, key))
    assert isinstance(cfg, model)
    return cfg
