"""The backend for hosts where nothing local carries port data.

It owns no interface and writes nothing: every apply is reported ``skipped``
with the reason, so a migration to such a host is an explained outcome (or a
failure under ``on_backend_mismatch: fail``, which the broker decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from vifbroker.model import BackendInfo, Interface

from .base import ApplyResult, Backend, BackendOptions, LocalPort, Outcome


class NoopOptions(BackendOptions):
    reason: str = Field(
        default="no Open vSwitch on this host", description="the reason every skip reports"
    )


class NoopBackend(Backend):
    name = "noop"
    Options = NoopOptions

    def __init__(self, **options: Any) -> None:
        """Keywords: the fields of :class:`NoopOptions`."""
        self.reason = NoopOptions.model_validate(options).reason

    async def describe(self) -> BackendInfo:
        return BackendInfo(name=self.name, available=True, detail=self.reason)

    def handles(self, interface: Interface) -> bool:
        return False

    async def collect(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[Interface]:
        return list(interfaces)

    async def apply(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[ApplyResult]:
        return [ApplyResult(i.mac, Outcome.SKIPPED, self.reason) for i in interfaces]

    async def inspect(self, domain_uuid: str, macs: Sequence[str]) -> dict[str, LocalPort | None]:
        return dict.fromkeys(macs)
