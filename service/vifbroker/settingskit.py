"""What the broker's and the agent's settings models share.

Both read, in this order of precedence: command-line flags, ``VIFBROKER_*``
environment variables, an optional TOML file (``--config PATH`` or
``VIFBROKER_CONFIG``) whose top-level keys are the field names, and defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

S = TypeVar("S", bound="TomlSettings")


class TomlSettings(BaseSettings):
    """Flags (init arguments) > environment > TOML file > defaults; no .env, no secrets dir."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def load_toml_settings(model: type[S], config: Path | None, flags: dict[str, Any]) -> S:
    """``model`` from ``flags`` (None values ignored), the environment and the TOML file."""
    path = config or (Path(p) if (p := os.environ.get("VIFBROKER_CONFIG")) else None)
    overrides = {k: v for k, v in flags.items() if v is not None}
    if path is None:
        return model(**overrides)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(model):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(toml_file=path)

    settings: S = _FromFile(**overrides)
    return settings
