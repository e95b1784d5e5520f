"""Uploads made in the same event-loop turn go to the broker as one request.

An evacuation's source collects hundreds of leaving domains together: their
uploads share ``POST /v1/hosts/{host}/uploads`` (see :mod:`.turnbatch`), each
still all-or-nothing on its own and answered as its own
``PUT /v1/domains/{uuid}/interfaces`` would be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vifbroker.client import BadResponse, BrokerClient, ProblemError, UploadResult, upload_entry
from vifbroker.model import Interface
from vifbroker.model.migration import MAX_UPLOAD_DOMAINS

from .turnbatch import Call, TurnBatcher


@dataclass(frozen=True, slots=True)
class Upload:
    interfaces: Sequence[Interface]
    #: the domain's entry of a grouped request, rendered once
    entry: str
    size: int


class UploadBatcher(TurnBatcher[Upload, UploadResult]):
    max_batch = MAX_UPLOAD_DOMAINS
    route = "host uploads"

    def __init__(self, client: BrokerClient, host: str) -> None:
        super().__init__()
        self.client = client
        self.host = host

    async def upload(self, domain_uuid: str, interfaces: Sequence[Interface]) -> UploadResult:
        """Upload one domain's vifs (with others uploaded now); raise as its own upload would."""
        entry = upload_entry(domain_uuid, interfaces)
        return await self.submit(domain_uuid, Upload(interfaces, entry, len(entry.encode())))

    def size(self, payload: Upload) -> int:
        return payload.size

    async def send_many(
        self, batch: list[Call[Upload, UploadResult]]
    ) -> Mapping[str, UploadResult | ProblemError]:
        taken = await self.client.upload_host_entries(self.host, [c.payload.entry for c in batch])
        if len(taken) != len(batch):
            raise BadResponse(f"upload_host: {len(taken)} outcomes for {len(batch)} domains")
        # In the order sent (the broker spells each UUID its own way: lowercase).
        out: dict[str, UploadResult | ProblemError] = {}
        for call, t in zip(batch, taken, strict=True):
            got = t.error or t.result
            if got is not None:
                out[call.key] = got
        return out

    async def send_one(self, call: Call[Upload, UploadResult]) -> UploadResult:
        return await self.client.upload(call.key, call.payload.interfaces)
