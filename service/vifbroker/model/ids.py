"""Normalisation of the two keys every record carries: domain UUID and MAC."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import AfterValidator

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_MAC_BARE_RE = re.compile(r"^[0-9a-f]{12}$")


def normalize_mac(value: str) -> str:
    """Return ``value`` as lowercase colon-separated MAC, or raise ValueError."""
    text = value.strip().lower()
    if _MAC_RE.match(text):
        return text.replace("-", ":")
    if _MAC_BARE_RE.match(text):
        return ":".join(text[i : i + 2] for i in range(0, 12, 2))
    raise ValueError(f"not a MAC address: {value!r}")


def normalize_uuid(value: str) -> str:
    """Return ``value`` as lowercase 8-4-4-4-12 UUID, or raise ValueError."""
    text = value.strip()
    if len(text) not in (32, 36):
        raise ValueError(f"not a UUID: {value!r}")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"not a UUID: {value!r}") from None


Mac = Annotated[str, AfterValidator(normalize_mac)]
DomainUUID = Annotated[str, AfterValidator(normalize_uuid)]
