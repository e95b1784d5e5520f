"""Load-generating clients whose every acknowledged write can be checked afterwards.

An :class:`Uploader` owns one domain (one migration) and uploads it as fast as
the broker answers, one request in flight, without retries (a retry would hide
which attempt the broker acknowledged). Upload number ``seq`` writes port data
``c<client>:s<seq>`` into every vif of the domain: in ONE bulk PUT for a bulk
uploader, in a single-vif PUT for a single one. Since nothing else writes the
domain and each upload raises every vif's generation by one, a committed
upload ``seq`` leaves generation == ``seq`` on each vif it wrote. That makes
:meth:`Uploader.check` exact after a crash:

- every acknowledged upload is there: the stored ``seq`` is at least the last
  acknowledged one, and at most one more (the request in flight at the kill);
- nothing half-written: every vif of a bulk upload holds the same ``seq``, and
  each vif's generation equals the ``seq`` in its port data.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import aiohttp

from vifbroker.client import BrokerClient

PORTDATA = re.compile(r"^c(\d+):s(\d+):")
PAD = "x" * 64


@dataclass
class Uploader:
    index: int
    base_url: str
    token: str
    domain: str
    macs: list[str]
    bulk: bool
    #: highest seq known committed (acknowledged, or found after a restart)
    seq: int = 0
    acked: int = 0
    #: every 2xx this uploader got, over all rounds
    acks_total: int = 0
    #: (seq, status) of answers other than 2xx (503 while the store is down)
    refusals: list[tuple[int, int]] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)

    def portdata(self, seq: int) -> str:
        return f"c{self.index}:s{seq}:{PAD}"

    def _request(self, seq: int) -> tuple[str, dict[str, object]]:
        vifs = [
            {"mac": m, "type": "bridge", "source": {"bridge": "br-int"},
             "virtualport": {"type": "openvswitch", "portdata": self.portdata(seq)}}
            for m in self.macs
        ]  # fmt: skip
        if self.bulk:
            return f"/v1/domains/{self.domain}/interfaces", {"interfaces": vifs}
        return f"/v1/domains/{self.domain}/interfaces/{self.macs[0]}", vifs[0]

    async def upload(self, session: aiohttp.ClientSession, timeout: float = 10.0) -> int:
        """One upload of ``seq + 1``; its HTTP status (the seq advances on 2xx)."""
        seq = self.seq + 1
        path, body = self._request(seq)
        async with session.put(
            self.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            doc = await resp.json(content_type=None)
            if 200 <= resp.status < 300:
                gens = (
                    [i["generation"] for i in doc["interfaces"]]
                    if self.bulk
                    else [doc["generation"]]
                )
                if gens != [seq] * len(gens):
                    raise AssertionError(f"client {self.index}: seq {seq} answered {doc}")
                if self.bulk:
                    self.revisions.append(int(doc["revision"]))
                self.seq = self.acked = seq
                self.acks_total += 1
            else:
                self.refusals.append((seq, resp.status))
            return resp.status

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """Upload until ``stop`` or until the broker cannot be reached (it was killed)."""
        while not stop.is_set():
            try:
                status = await self.upload(session)
            except (aiohttp.ClientError, TimeoutError):
                return
            if status >= 300 and status != 503:
                raise AssertionError(f"client {self.index}: upload answered {status}")

    async def check(self, controller: BrokerClient) -> None:
        """Compare the stored records with what was acknowledged (see the module doc)."""
        records = await controller.get_interfaces(self.domain)
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
        assert self.acked <= found <= self.acked + 1, (
            f"client {self.index}: acknowledged seq {self.acked}, stored seq {found}"
        )
        # An upload committed but not answered before the kill counts from now on.
        self.seq = self.acked = found
