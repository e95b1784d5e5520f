"""The broker's HTTP server: aiohttp app factory, auth, errors, metrics, CLI."""

from .app import create_app
from .config import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
