"""Results posted in the same event-loop turn go to the broker as one request.

An evacuation's destination applies hundreds of domains in a few merged OVSDB
transactions, and each domain's worker then posts its results: posts that
arrive together share ``POST /v1/hosts/{host}/results`` (see :mod:`.turnbatch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vifbroker.client import BrokerClient, ProblemError
from vifbroker.model import ResultIn
from vifbroker.model.migration import MAX_RESULT_MIGRATIONS

from .turnbatch import Call, TurnBatcher


class ResultsBatcher(TurnBatcher[Sequence[ResultIn], None]):
    max_batch = MAX_RESULT_MIGRATIONS
    route = "host results"

    def __init__(self, client: BrokerClient, host: str) -> None:
        super().__init__()
        self.client = client
        self.host = host

    async def post(self, migration_id: str, results: Sequence[ResultIn]) -> None:
        """Post one migration's results (with others posted now); raise as its own post would."""
        await self.submit(migration_id, results)

    def size(self, payload: Sequence[ResultIn]) -> int:
        # An upper bound: a MAC, a generation, a status, a digest and their keys.
        return 64 + sum(200 + len(r.detail or "") for r in payload)

    async def send_many(
        self, batch: list[Call[Sequence[ResultIn], None]]
    ) -> Mapping[str, ProblemError | None]:
        taken = await self.client.post_host_results(self.host, [(c.key, c.payload) for c in batch])
        return {t.migration_id: t.error for t in taken}

    async def send_one(self, call: Call[Sequence[ResultIn], None]) -> None:
        await self.client.post_results(call.key, call.payload)
