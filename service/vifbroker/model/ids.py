"""Normalisation of the two keys every record carries: domain UUID and MAC.

Both are read with full-match patterns (never ``$``, which also matches before
a trailing newline) and nothing around them is stripped: a key either is
exactly one of the accepted spellings or it is refused.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated

from pydantic import AfterValidator

_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}", re.IGNORECASE)
_MAC_BARE_RE = re.compile(r"[0-9a-f]{12}", re.IGNORECASE)
# 8-4-4-4-12 with dashes exactly there, or 32 bare hex digits; nothing else
# (uuid.UUID would also take braces, "urn:uuid:" and dashes anywhere).
_UUID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}", re.IGNORECASE
)


# Every request names its MAC and UUID several times over (path, body, store):
# the few distinct keys a broker sees are checked once each. Pure functions,
# so a bounded cache changes nothing but the cost; errors are never cached.
@functools.lru_cache(maxsize=16384)
def normalize_mac(value: str) -> str:
    """Return ``value`` as lowercase colon-separated MAC, or raise ValueError.

    Only a unicast address can name a NIC: multicast (which includes the
    broadcast address) and the all-zero address are refused.
    """
    if _MAC_RE.fullmatch(value):
        digits = value.lower().replace("-", "").replace(":", "")
    elif _MAC_BARE_RE.fullmatch(value):
        digits = value.lower()
    else:
        raise ValueError(f"not a MAC address: {value!r}")
    if int(digits[:2], 16) & 1:
        raise ValueError(f"a multicast MAC cannot name a NIC: {value!r}")
    if digits == "0" * 12:
        raise ValueError(f"the all-zero MAC cannot name a NIC: {value!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@functools.lru_cache(maxsize=16384)
def normalize_uuid(value: str) -> str:
    """Return ``value`` as lowercase 8-4-4-4-12 UUID, or raise ValueError."""
    if not _UUID_RE.fullmatch(value):
        raise ValueError(f"not a UUID: {value!r}")
    digits = value.lower().replace("-", "")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


Mac = Annotated[str, AfterValidator(normalize_mac)]
DomainUUID = Annotated[str, AfterValidator(normalize_uuid)]
