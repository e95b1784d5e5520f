"""Destination, step 3: post a migration's per-vif results to the broker.

Posting is retried with backoff until the migration's deadline; a broker that
no longer takes results for the migration (gone, or terminal) ends the worker.
Posts of workers finishing together share one request (:mod:`.resultsbatch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from vifbroker.client import ClientError, Conflict, NotFound
from vifbroker.model import Migration, ResultIn

from .resultsbatch import ResultsBatcher
from .retry import Backoff, monotonic_deadline, remaining

log = logging.getLogger(__name__)


class Reporter:
    def __init__(self, results: ResultsBatcher) -> None:
        self.results = results
        #: MAC → the newest generation this process posted a result for
        self.posted: dict[str, int] = {}

    async def post(self, migration: Migration, results: Sequence[ResultIn]) -> bool:
        """Post until accepted; False when the migration is gone (stop tracking)."""
        # One line per post, not per vif: an evacuation posts thousands.
        log.info(
            "migration %s: %s", migration.id,
            "; ".join(
                f"mac {r.mac}: {r.status} generation {r.generation}"
                + (f" ({r.detail})" if r.detail else "")
                for r in results
            ),
        )  # fmt: skip
        deadline = monotonic_deadline(migration.expires_at)
        backoff = Backoff(0.1, 2.0)
        while True:
            try:
                await self.results.post(migration.id, results)
            except (NotFound, Conflict) as exc:
                log.info("migration %s: results not taken (%s); stopping", migration.id, exc)
                return False
            except ClientError as exc:
                if remaining(deadline) <= 0:
                    log.error("migration %s: could not post results: %s", migration.id, exc)
                    return False
                delay = backoff.next()
                log.warning(
                    "migration %s: posting results failed (%s); retrying in %.2fs",
                    migration.id, exc, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            for r in results:
                self.posted[r.mac] = max(self.posted.get(r.mac, 0), r.generation)
            return True
