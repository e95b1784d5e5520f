"""What every handler reaches through ``request.app[CTX]``: built once by the app factory."""

from __future__ import annotations

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


def utcnow() -> datetime:
    return datetime.now(UTC)


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
