"""The Store methods that only route a write, written once for every store.

Each store keeps its writes as functions of the same names in one module
(``sqlite_writes``, ``postgres_writes``) and runs them through its engine;
what is checked before a write needs no database. So the methods below are
the same for every store, and a store supplies ``_write(name, **arguments)``:
run its function ``name`` with these arguments in its next group commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any

from vifbroker.model import (
    Host,
    HostIn,
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
)

from . import rules
from .base import Recorded, Uploaded


class RoutedWrites:
    def _write(self, operation: str, /, **arguments: Any) -> Awaitable[Any]:
        """The write function ``operation`` of the store's writes module, run by its engine."""
        raise NotImplementedError

    async def create_migration(
        self, req: MigrationCreate, now: datetime, *, registered_by: str | None = None
    ) -> tuple[Migration, bool]:
        mid = req.id or str(uuid.uuid4())
        done: tuple[Migration, bool] = await self._write(
            "create_migration", req=req, mid=mid, now=now, registered_by=registered_by
        )
        return done

    async def transition(self, migration_id: str, to: MigrationState, now: datetime) -> Migration:
        done: Migration = await self._write(
            "end_migration", migration_id=migration_id, to=to, now=now
        )
        return done

    async def expire(self, now: datetime) -> list[str]:
        done: list[str] = await self._write("expire_overdue", now=now)
        return done

    async def prune(self, older_than: datetime) -> int:
        done: int = await self._write("prune_ended", older_than=older_than)
        return done

    async def put_interfaces(
        self,
        domain_uuid: str,
        interfaces: Sequence[Interface],
        now: datetime,
        *,
        if_match: dict[str, int] | None = None,
        source_host: str | None = None,
        max_vifs: int | None = None,
    ) -> Uploaded:
        if len(interfaces) > 1:  # (one MAC is unique: a handoff's upload skips the list)
            rules.check_unique_macs([i.mac for i in interfaces])
        done: Uploaded = await self._write(
            "store_uploads",
            domain_uuid=domain_uuid,
            interfaces=interfaces,
            now=now,
            if_match=if_match,
            source_host=source_host,
            max_vifs=max_vifs,
        )
        return done

    async def post_results(
        self, migration_id: str, results: Sequence[ResultIn], now: datetime
    ) -> Migration:
        return (await self.record_results(migration_id, results, now)).migration

    async def record_results(
        self, migration_id: str, results: Sequence[ResultIn], now: datetime
    ) -> Recorded:
        rules.check_unique_macs([r.mac for r in results])
        done: Recorded = await self._write(
            "record_results", migration_id=migration_id, results=results, now=now
        )
        return done

    async def record_resume(self, migration_id: str, at: datetime, now: datetime) -> Migration:
        done: Migration = await self._write(
            "record_resume", migration_id=migration_id, at=at, now=now
        )
        return done

    async def heartbeat(self, name: str, info: HostIn, now: datetime) -> Host:
        done: Host = await self._write("record_heartbeat", name=name, info=info, now=now)
        return done
