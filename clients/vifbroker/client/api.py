"""``BrokerClient``: the one class a controller or an agent talks to the broker with."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from vifbroker.model import (
    BackendInfo,
    Host,
    HostIn,
    Inbox,
    Interface,
    Migration,
    MigrationState,
    OnMismatch,
    ResultIn,
    VifRecord,
)
from vifbroker.model.preflight import Preflight

from .answers import (
    MigrationPage,
    ResultsTaken,
    UploadResult,
    UploadTaken,
    parse,
    parse_body,
    parse_text,
    taken,
    upload_result,
    upload_taken,
)
from .errors import BadResponse, TransportError
from .transport import Response, RetryPolicy, Transport, decode_json, raise_for_problem

#: states in which the applied barrier has nothing more to wait for
SETTLED_STATES = frozenset(
    {
        MigrationState.APPLIED,
        MigrationState.FAILED,
        MigrationState.COMPLETED,
        MigrationState.CANCELLED,
        MigrationState.EXPIRED,
    }
)

#: the header of a JSON body the client renders itself
_JSON_BODY = {"Content-Type": "application/json"}

#: the longest single barrier/long-poll asked of the server; longer waits loop
_MAX_SERVER_WAIT = 30.0
#: how much longer than the server's wait the HTTP request may take
_WAIT_MARGIN = 10.0


def _interface_json(interface: Interface) -> dict[str, Any]:
    return interface.model_dump(mode="json", exclude_none=True)


def _array_text(models: Sequence[Interface] | Sequence[ResultIn]) -> str:
    """A JSON array of ``models`` (pydantic writes each: no dicts in between)."""
    return f"[{','.join(m.model_dump_json(exclude_none=True) for m in models)}]"


def upload_entry(domain_uuid: str, interfaces: Sequence[Interface]) -> str:
    """One domain's entry of a host's upload, as JSON text (:meth:`BrokerClient.upload_host`)."""
    interfaces_text = _array_text(interfaces)
    return f'{{"domain_uuid":{json.dumps(domain_uuid)},"interfaces":{interfaces_text}}}'


def _num(value: float) -> str:
    return f"{value:g}"


class BrokerClient:
    """Async client for the broker's v1 API.

    ``urls``: one or more broker base URLs (replicas); a comma-separated string
    is split. Use as ``async with BrokerClient(...) as client:`` or call
    :meth:`close`.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        token: str,
        *,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        self._t = Transport(urls, token, retry=retry, session=session, tls=tls)

    @property
    def urls(self) -> list[str]:
        return list(self._t.urls)

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._t.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        deadline_s: float | None = None,
    ) -> Response:
        resp = await self._t.request(
            method,
            path,
            params=params,
            json_body=json_body,
            data=data,
            headers=headers,
            deadline_s=deadline_s,
        )
        raise_for_problem(resp)
        return resp

    # migrations

    async def create_migration(
        self,
        domain_uuid: str,
        source_host: str | None,
        destination_host: str,
        *,
        domain_name: str | None = None,
        ttl_seconds: int | None = None,
        on_backend_mismatch: OnMismatch | None = None,
        id: str | None = None,
    ) -> Migration:
        """Create (or, with the same ``id`` and body, get again) a migration.

        Without ``id`` a fresh one is generated here, before the first attempt,
        so the transport's retries of this request are idempotent. ``source_host``
        None: an agent registering an arriving domain (the broker fills it).
        """
        body: dict[str, Any] = {
            "domain_uuid": domain_uuid,
            "destination_host": destination_host,
            "id": id or f"mig-{uuid.uuid4()}",
        }
        optional = {
            "source_host": source_host,
            "domain_name": domain_name,
            "ttl_seconds": ttl_seconds,
            "on_backend_mismatch": on_backend_mismatch,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        resp = await self._call("POST", "/v1/migrations", json_body=body)
        return parse_body(Migration, resp, "create_migration")

    async def get_migration(self, migration_id: str) -> Migration:
        resp = await self._call("GET", f"/v1/migrations/{quote(migration_id, safe='')}")
        return parse_body(Migration, resp, "get_migration")

    async def list_migrations(
        self,
        *,
        state: MigrationState | str | None = None,
        domain_uuid: str | None = None,
        host: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> MigrationPage:
        """One page; pass ``next_cursor`` back for the next (or use :meth:`iter_migrations`)."""
        candidates = {
            "state": str(state) if state is not None else None,
            "domain_uuid": domain_uuid,
            "host": host,
            "limit": str(limit) if limit is not None else None,
            "cursor": cursor,
        }
        params = {k: v for k, v in candidates.items() if v is not None}
        doc = decode_json(await self._call("GET", "/v1/migrations", params=params))
        try:
            items = [parse(Migration, m, "list_migrations") for m in doc["migrations"]]
            next_cursor = doc.get("next_cursor")
        except (KeyError, TypeError, AttributeError) as exc:
            raise BadResponse(f"list_migrations: unexpected answer: {exc!r}") from exc
        return MigrationPage(items, next_cursor if isinstance(next_cursor, str) else None)

    async def iter_migrations(
        self,
        *,
        state: MigrationState | str | None = None,
        domain_uuid: str | None = None,
        host: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Migration]:
        cursor: str | None = None
        while True:
            page = await self.list_migrations(
                state=state, domain_uuid=domain_uuid, host=host, limit=page_size, cursor=cursor
            )
            for m in page.migrations:
                yield m
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def wait_applied(self, migration_id: str, seconds: float) -> Migration:
        """The applied barrier: return once the migration is applied, failed or
        terminal, or when ``seconds`` have passed (check ``state``)."""
        deadline = time.monotonic() + seconds
        path = f"/v1/migrations/{quote(migration_id, safe='')}"
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            wait = min(remaining, _MAX_SERVER_WAIT)
            resp = await self._call(
                "GET",
                path,
                params={"wait_for": "applied", "timeout": _num(wait)},
                deadline_s=wait + _WAIT_MARGIN,
            )
            migration = parse_body(Migration, resp, "wait_applied")
            if migration.state in SETTLED_STATES or time.monotonic() >= deadline:
                return migration

    async def report_resumed(self, migration_id: str, at: datetime) -> Migration:
        """The destination's report that the guest resumed on its host at ``at``."""
        resp = await self._call(
            "POST",
            f"/v1/migrations/{quote(migration_id, safe='')}/resumed",
            json_body={"at": at.isoformat()},
        )
        return parse_body(Migration, resp, "report_resumed")

    async def complete(self, migration_id: str) -> Migration:
        resp = await self._call("POST", f"/v1/migrations/{quote(migration_id, safe='')}/complete")
        return parse_body(Migration, resp, "complete")

    async def cancel(self, migration_id: str) -> Migration:
        resp = await self._call("POST", f"/v1/migrations/{quote(migration_id, safe='')}/cancel")
        return parse_body(Migration, resp, "cancel")

    # records

    async def upload(
        self, domain_uuid: str, interfaces: Sequence[Interface] | str | bytes
    ) -> UploadResult:
        """All-or-nothing upload of many vifs (models, or libvirt XML text)."""
        path = f"/v1/domains/{quote(domain_uuid, safe='')}/interfaces"
        if isinstance(interfaces, str | bytes):
            data = interfaces.encode("utf-8") if isinstance(interfaces, str) else interfaces
            resp = await self._call(
                "PUT", path, data=data, headers={"Content-Type": "application/xml"}
            )
        else:
            data = f'{{"interfaces":{_array_text(interfaces)}}}'.encode()
            resp = await self._call("PUT", path, data=data, headers=_JSON_BODY)
        try:
            return upload_result(decode_json(resp))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse(f"upload: unexpected answer: {exc!r}") from exc

    async def upload_host(
        self, host: str, batch: Sequence[tuple[str, Sequence[Interface]]]
    ) -> list[UploadTaken]:
        """The uploads of several domains leaving ``host`` in one request, each
        all-or-nothing on its own (a refused one carries the error its own
        :meth:`upload` would raise). At most ``MAX_UPLOAD_DOMAINS`` domains, each once."""
        return await self.upload_host_entries(host, [upload_entry(d, i) for d, i in batch])

    async def upload_host_entries(self, host: str, entries: Sequence[str]) -> list[UploadTaken]:
        """:meth:`upload_host` with each domain's entry already rendered (:func:`upload_entry`)."""
        answered = await self._host_batch(host, "uploads", "domains", entries)
        try:
            return [upload_taken(entry) for entry in answered]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse(f"upload_host: unexpected answer: {exc!r}") from exc

    async def upload_one(
        self, domain_uuid: str, interface: Interface, *, if_match: int | None = None
    ) -> int:
        """Upload one vif; with ``if_match`` only when its generation is still that
        (PreconditionFailed otherwise; 0: only when no record exists). Returns the
        new generation."""
        path = (
            f"/v1/domains/{quote(domain_uuid, safe='')}/interfaces/{quote(interface.mac, safe='')}"
        )
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        resp = await self._call("PUT", path, json_body=_interface_json(interface), headers=headers)
        doc = decode_json(resp)
        try:
            return int(doc["generation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse(f"upload_one: unexpected answer: {exc!r}") from exc

    async def get_interfaces(self, domain_uuid: str) -> list[VifRecord]:
        path = f"/v1/domains/{quote(domain_uuid, safe='')}/interfaces"
        doc = decode_json(await self._call("GET", path))
        try:
            return [parse(VifRecord, r, "get_interfaces") for r in doc["interfaces"]]
        except (KeyError, TypeError) as exc:
            raise BadResponse(f"get_interfaces: unexpected answer: {exc!r}") from exc

    async def get_interface(self, domain_uuid: str, mac: str) -> VifRecord:
        path = f"/v1/domains/{quote(domain_uuid, safe='')}/interfaces/{quote(mac, safe='')}"
        return parse_body(VifRecord, await self._call("GET", path), "get_interface")

    # agents

    async def inbox(self, host: str, after: int, wait: float = 0.0) -> Inbox:
        """Items changed after revision ``after``; waits up to ``wait`` s for one."""
        wait = min(max(wait, 0.0), _MAX_SERVER_WAIT)
        resp = await self._call(
            "GET",
            f"/v1/hosts/{quote(host, safe='')}/inbox",
            params={"after": str(after), "wait": _num(wait)},
            deadline_s=wait + _WAIT_MARGIN,
        )
        return parse_body(Inbox, resp, "inbox")

    async def post_results(self, migration_id: str, results: Sequence[ResultIn]) -> Migration:
        data = f'{{"results":{_array_text(results)}}}'.encode()
        path = f"/v1/migrations/{quote(migration_id, safe='')}/results"
        resp = await self._call("POST", path, data=data, headers=_JSON_BODY)
        return parse_body(Migration, resp, "post_results")

    async def post_host_results(
        self, host: str, batch: Sequence[tuple[str, Sequence[ResultIn]]]
    ) -> list[ResultsTaken]:
        """Results of several migrations arriving on ``host`` in one request; each
        migration's outcome on its own (a refused one carries the error its own post
        would raise). At most ``MAX_RESULT_MIGRATIONS`` migrations, each once."""
        entries = [f'{{"id":{json.dumps(mid)},"results":{_array_text(rs)}}}' for mid, rs in batch]
        answered = await self._host_batch(host, "results", "migrations", entries)
        try:
            return [taken(entry) for entry in answered]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponse(f"post_host_results: unexpected answer: {exc!r}") from exc

    async def _host_batch(self, host: str, route: str, key: str, entries: Sequence[str]) -> Any:
        """POST ``{key: [entries]}`` (each already JSON) to ``/v1/hosts/{host}/{route}``;
        the answer's list under ``key`` (unchecked: the caller reads each entry)."""
        data = f'{{"{key}":[{",".join(entries)}]}}'.encode()
        path = f"/v1/hosts/{quote(host, safe='')}/{route}"
        doc = decode_json(await self._call("POST", path, data=data, headers=_JSON_BODY))
        try:
            return doc[key]
        except (KeyError, TypeError) as exc:
            raise BadResponse(f"{route}: unexpected answer: {exc!r}") from exc

    async def heartbeat(
        self,
        host: str,
        backends: Sequence[BackendInfo],
        *,
        agent_version: str | None = None,
        running_domains: Sequence[str] = (),
    ) -> Host:
        body = HostIn(
            agent_version=agent_version,
            backends=list(backends),
            running_domains=list(running_domains),
        )
        resp = await self._call(
            "PUT",
            f"/v1/hosts/{quote(host, safe='')}",
            json_body=body.model_dump(mode="json", exclude_none=True),
        )
        return parse_body(Host, resp, "heartbeat")

    # controllers

    async def events(self, after: int = 0) -> AsyncIterator[Migration]:
        """Every migration change after revision ``after``, as the broker's event
        stream delivers it (``GET /v1/events``), for as long as the caller reads.

        A broken stream is resumed from the last revision seen, on any replica,
        with the client's retry policy; TransportError once that runs out.
        """
        failures = 0
        while True:
            try:
                async for migration in self._event_stream(after):
                    after = max(after, migration.revision)
                    failures = 0
                    yield migration
                failures = 0  # the broker ended the stream (shutdown): reconnect
            except TransportError:
                failures += 1
                if failures >= self._t.retry.attempts:
                    raise
                await asyncio.sleep(self._t.retry.delay(failures))

    async def _event_stream(self, after: int) -> AsyncIterator[Migration]:
        data: list[str] = []
        async for line in self._t.lines("/v1/events", params={"after": str(after)}):
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:
                text, data = "\n".join(data), []
                yield parse_text(Migration, text, "events")

    async def preflight(
        self,
        host: str,
        interfaces: Sequence[Interface] | str | bytes,
        *,
        on_backend_mismatch: OnMismatch | None = None,
    ) -> Preflight:
        """Whether ``host`` can honour each vif, from what its agent last reported."""
        path = f"/v1/hosts/{quote(host, safe='')}/preflight"
        params: dict[str, str] | None = None
        if on_backend_mismatch is not None:
            params = {"on_backend_mismatch": str(on_backend_mismatch)}
        if isinstance(interfaces, str | bytes):
            data = interfaces.encode("utf-8") if isinstance(interfaces, str) else interfaces
            resp = await self._call(
                "POST", path, params=params, data=data, headers={"Content-Type": "application/xml"}
            )
        else:
            body = {"interfaces": [_interface_json(i) for i in interfaces]}
            resp = await self._call("POST", path, params=params, json_body=body)
        return parse_body(Preflight, resp, "preflight")

    async def list_hosts(self) -> list[Host]:
        doc = decode_json(await self._call("GET", "/v1/hosts"))
        try:
            return [parse(Host, h, "list_hosts") for h in doc["hosts"]]
        except (KeyError, TypeError) as exc:
            raise BadResponse(f"list_hosts: unexpected answer: {exc!r}") from exc
