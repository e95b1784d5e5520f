"""Load-generating clients whose every acknowledged write can be checked afterwards.

An :class:`Uploader` owns one domain (one migration) and uploads it as fast as
the broker answers, one request in flight, without retries (a retry would hide
which attempt the broker acknowledged). Upload number ``seq`` writes port data
``c<client>:s<seq>:…`` into every vif of the domain: in ONE bulk PUT for a bulk
uploader, in a single-vif PUT for a single one. Nothing else writes the domain
and each upload raises every vif's generation by one, so as long as every
upload's fate is known, a committed upload ``seq`` leaves generation ==
``seq`` on each vif it wrote. An upload whose fate is unknown (the broker died
before answering, or answered 503 while its database crashed mid-commit) makes
the uploader read the records back before its next upload (``resync``), which
keeps that invariant exact. Each read back checks:

- every acknowledged upload is there: the stored ``seq`` is at least the last
  acknowledged one, and at most the last attempted one;
- nothing half-written: every vif of a bulk upload holds the same ``seq``, and
  each vif's generation equals the ``seq`` in its port data.

A :class:`ParkedPoll` is a long-poll on a raw socket: a thousand of them cost
the test process little, and one that is never read stands for a stuck client.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from agent_harness import mac

from vifbroker.client import BrokerClient
from vifbroker.model import VifRecord

PORTDATA = re.compile(r"^c(\d+):s(\d+):")
PAD = "x" * 64
#: what an upload may answer while the store is unreachable
UNAVAILABLE = 503
BULK_VIFS = 4
#: how long an uploader waits after a 503 before it tries again
REFUSED_PAUSE = 0.05


@dataclass
class Uploader:
    index: int
    base_url: str
    token: str
    domain: str
    macs: list[str]
    bulk: bool
    #: the seq the stored records hold (as far as this uploader knows)
    seq: int = 0
    #: the last seq the broker acknowledged with a 2xx
    acked: int = 0
    #: the last upload's fate is unknown: read back before the next one
    uncertain: bool = False
    #: every 2xx this uploader got, over all rounds
    acks_total: int = 0
    #: statuses of upload answers other than 2xx
    refusals: list[int] = field(default_factory=list)
    #: read-backs (after an upload of unknown fate) answered other than 200
    readback_refusals: int = 0
    #: the longest a refused upload took to be answered (seconds)
    slowest_refusal: float = 0.0
    #: revisions answered by bulk uploads (since the caller last cleared them)
    revisions: list[int] = field(default_factory=list)

    def portdata(self, seq: int) -> str:
        return f"c{self.index}:s{seq}:{PAD}"

    def _request(self, seq: int) -> tuple[str, dict[str, Any]]:
        vifs = [
            {"mac": m, "type": "bridge", "source": {"bridge": "br-int"},
             "virtualport": {"type": "openvswitch", "portdata": self.portdata(seq)}}
            for m in self.macs
        ]  # fmt: skip
        if self.bulk:
            return f"/v1/domains/{self.domain}/interfaces", {"interfaces": vifs}
        return f"/v1/domains/{self.domain}/interfaces/{self.macs[0]}", vifs[0]

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def step(self, session: aiohttp.ClientSession, timeout: float = 10.0) -> int:
        """Read back if needed, then upload ``seq + 1``; the HTTP status of the last request."""
        limit = aiohttp.ClientTimeout(total=timeout)
        if self.uncertain:
            url = f"{self.base_url}/v1/domains/{self.domain}/interfaces"
            async with session.get(url, headers=self._auth, timeout=limit) as resp:
                doc = await resp.json(content_type=None)
                if resp.status != 200:
                    self.readback_refusals += 1
                    return resp.status
            self.verify([VifRecord.model_validate(r) for r in doc["interfaces"]])
        seq = self.seq + 1
        path, body = self._request(seq)
        self.uncertain = True
        started = time.monotonic()
        async with session.put(
            self.base_url + path, json=body, headers=self._auth, timeout=limit
        ) as resp:
            doc = await resp.json(content_type=None)
            if not 200 <= resp.status < 300:
                self.refusals.append(resp.status)
                self.slowest_refusal = max(self.slowest_refusal, time.monotonic() - started)
                return resp.status
        gens = [i["generation"] for i in doc["interfaces"]] if self.bulk else [doc["generation"]]
        assert gens == [seq] * len(gens), f"client {self.index}: seq {seq} answered {doc}"
        if self.bulk:
            self.revisions.append(int(doc["revision"]))
        self.seq = self.acked = seq
        self.uncertain = False
        self.acks_total += 1
        return resp.status

    async def run(
        self, session: aiohttp.ClientSession, stop: asyncio.Event, *, until_unreachable: bool = True
    ) -> None:
        """Upload until ``stop``; a broker that cannot be reached (killed) ends the run when
        ``until_unreachable``, else fails it. Only 2xx and 503 are acceptable answers."""
        while not stop.is_set():
            try:
                status = await self.step(session)
            except (aiohttp.ClientError, TimeoutError):
                if until_unreachable:
                    return
                raise
            if status >= 300 and status != UNAVAILABLE:
                raise AssertionError(f"client {self.index}: answered {status}")
            if status == UNAVAILABLE:
                await asyncio.sleep(REFUSED_PAUSE)  # pacing, as a real client backs off

    async def check(self, controller: BrokerClient) -> None:
        """Read the records back through ``controller`` and verify them (see the module doc)."""
        self.verify(await controller.get_interfaces(self.domain))

    def verify(self, records: list[VifRecord]) -> None:
        assert sorted(r.mac for r in records) == sorted(self.macs), records
        seqs = set()
        for rec in records:
            assert rec.interface is not None and rec.interface.portdata is not None, rec
            m = PORTDATA.match(rec.interface.portdata)
            assert m is not None and int(m.group(1)) == self.index, rec.interface.portdata
            seq = int(m.group(2))
            assert rec.generation == seq, (
                f"client {self.index} mac {rec.mac}: generation {rec.generation} holds seq {seq}"
            )
            seqs.add(seq)
        assert len(seqs) == 1, f"client {self.index}: half-written bulk upload: seqs {seqs}"
        found = seqs.pop()
        attempted = self.seq + 1 if self.uncertain else self.seq
        assert self.acked <= found <= attempted, (
            f"client {self.index}: acknowledged seq {self.acked}, attempted {attempted}, "
            f"stored seq {found}"
        )
        self.seq, self.uncertain = found, False


async def make_uploaders(
    controller: BrokerClient,
    urls: list[str],
    token: str,
    count: int,
    route: tuple[str, str] = ("host-a", "host-b"),
) -> list[Uploader]:
    """``count`` uploaders, each on a new migration along ``route`` (source, destination),
    spread over ``urls``; even ones bulk-upload 4 vifs, odd ones a single vif."""
    out = []
    for i in range(count):
        domain = str(uuid.uuid4())
        await controller.create_migration(domain, *route, ttl_seconds=3600)
        bulk = i % 2 == 0
        macs = [mac(i * BULK_VIFS + j) for j in range(BULK_VIFS if bulk else 1)]
        out.append(Uploader(i, urls[i % len(urls)], token, domain, macs, bulk))
    return out


class ParkedPoll:
    """``GET /v1/hosts/HOST/inbox?after=N&wait=S`` on its own connection, read when asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(
        cls, port: int, host: str, token: str, after: int, wait: float = 60.0
    ) -> ParkedPoll:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /v1/hosts/{host}/inbox?after={after}&wait={wait:g} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        return cls(reader, writer)

    async def answer(self) -> tuple[int, Any]:
        """Status and JSON body (the server closes the connection after it)."""
        raw = await self._reader.read()
        self.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head:
            return 0, None
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return status, json.loads(body) if body else None

    def close(self) -> None:
        self._writer.close()


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def inbox_portdata(doc: Any, domain: str) -> dict[str, str | None]:
    """MAC → port data of ``domain``'s records in an inbox answer."""
    out: dict[str, str | None] = {}
    for item in doc["items"]:
        if item["migration"]["domain_uuid"] == domain:
            for rec in item["interfaces"]:
                vp = (rec.get("interface") or {}).get("virtualport") or {}
                out[rec["mac"]] = vp.get("portdata")
    return out
