"""Uploads made in the same event-loop turn go to the broker as one request.

An evacuation's source collects hundreds of leaving domains together: their
uploads share ``POST /v1/hosts/{host}/uploads`` (see :mod:`.turnbatch`), each
still all-or-nothing on its own and answered as its own
``PUT /v1/domains/{uuid}/interfaces`` would be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vifbroker.client import BadResponse, BrokerClient, ProblemError, UploadResult
from vifbroker.model import Interface

from .turnbatch import Call, TurnBatcher

#: domains one request carries: keeps its body small enough for the broker to
#: read at once (larger ones go through its decoding worker)
UPLOAD_BATCH = 32


class UploadBatcher(TurnBatcher[Sequence[Interface], UploadResult]):
    max_batch = UPLOAD_BATCH
    route = "host uploads"

    def __init__(self, client: BrokerClient, host: str) -> None:
        super().__init__()
        self.client = client
        self.host = host

    async def upload(self, domain_uuid: str, interfaces: Sequence[Interface]) -> UploadResult:
        """Upload one domain's vifs (with others uploaded now); raise as its own upload would."""
        return await self.submit(domain_uuid, interfaces)

    async def send_many(
        self, batch: list[Call[Sequence[Interface], UploadResult]]
    ) -> Mapping[str, UploadResult | ProblemError]:
        taken = await self.client.upload_host(self.host, [(c.key, c.payload) for c in batch])
        if len(taken) != len(batch):
            raise BadResponse(f"upload_host: {len(taken)} outcomes for {len(batch)} domains")
        # In the order sent (the broker spells each UUID its own way: lowercase).
        out: dict[str, UploadResult | ProblemError] = {}
        for call, t in zip(batch, taken, strict=True):
            got = t.error or t.result
            if got is not None:
                out[call.key] = got
        return out

    async def send_one(self, call: Call[Sequence[Interface], UploadResult]) -> UploadResult:
        return await self.client.upload(call.key, call.payload)
