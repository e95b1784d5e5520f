"""What every handler reaches through ``request.app[CTX]``: built once by the app factory."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from vifbroker.store import Store

from .auth import TokenRegistry
from .bodies import BodyDecoder
from .config import Settings
from .longpoll import LongPolls
from .metrics import Metrics

#: The time now, in UTC: ``datetime.now(UTC)`` as a partial (no Python frame of its
#: own on every upload's way to the store).
utcnow: Callable[[], datetime] = functools.partial(datetime.now, UTC)


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    store: Store
    tokens: TokenRegistry
    metrics: Metrics
    longpolls: LongPolls
    bodies: BodyDecoder
    clock: Callable[[], datetime] = utcnow

    def now(self) -> datetime:
        return self.clock()


CTX = web.AppKey("vifbroker.context", Context)
