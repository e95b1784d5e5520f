"""Where the source agent reads a domain's ``<interface>`` elements from.

A seam with three implementations: a directory of ``<uuid>.xml`` files (tests,
demos, hosts without libvirt), read-only ``virsh dumpxml`` and libvirt-python
(:mod:`.libvirtapi`, when installed). The destination agent reads its own
view of an incoming domain through the same seam.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from vifbroker.model import Interface, normalize_uuid
from vifbroker.model.codec import parse_interfaces

from .errors import DomainNotFound, DomainXmlError
from .virsh import run_virsh


class DomainSource(Protocol):
    async def interfaces(self, domain_uuid: str) -> list[Interface]:
        """Every ``<interface>`` of the running domain (DomainNotFound if none)."""

    async def running(self) -> list[str]:
        """UUIDs of the domains running here now (DomainXmlError when unknown)."""

    async def migrating_out(self, domain_uuid: str) -> bool:
        """Whether the domain has an outgoing migration job here now."""


def parse_domain_xml(xml: bytes, where: str) -> list[Interface]:
    try:
        return parse_interfaces(xml)
    except ValueError as exc:
        raise DomainXmlError(f"{where}: {exc}") from exc


class DirectorySource:
    """``DIR/<domain uuid>.xml``: a libvirt ``<domain>`` (or ``<interfaces>``) document."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"DirectorySource({str(self.directory)!r})"

    async def interfaces(self, domain_uuid: str) -> list[Interface]:
        # A local file of a few KiB: reading it inline costs microseconds, a
        # thread hop more; a plain string path, not a new Path per call (an
        # evacuation's destination asks for hundreds of domains, mostly not there yet).
        path = os.path.join(self.directory, f"{normalize_uuid(domain_uuid)}.xml")
        try:
            with open(path, "rb") as fh:  # noqa: ASYNC230 - see above
                data = fh.read()
        except FileNotFoundError as exc:
            raise DomainNotFound(f"no domain XML at {path}") from exc
        except OSError as exc:
            raise DomainXmlError(f"{path}: {exc}") from exc
        return parse_domain_xml(data, path)

    async def running(self) -> list[str]:
        return sorted(normalize_uuid(p.stem) for p in self.directory.glob("*.xml"))

    async def migrating_out(self, domain_uuid: str) -> bool:
        """A ``<uuid>.migrating-out`` file beside the XML stands for libvirt's job."""
        path = self.directory / f"{normalize_uuid(domain_uuid)}.migrating-out"
        return await asyncio.to_thread(path.exists)


class VirshSource:
    """``virsh -r [-c URI] dumpxml UUID``: read-only, bounded by ``timeout`` seconds."""

    def __init__(
        self, *, virsh: str = "virsh", uri: str | None = None, timeout: float = 10.0
    ) -> None:
        self.virsh = virsh
        self.uri = uri
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"VirshSource({self.uri!r})"

    async def interfaces(self, domain_uuid: str) -> list[Interface]:
        domain_uuid = normalize_uuid(domain_uuid)
        try:
            rc, out, text = await run_virsh(
                self.virsh, self.uri, "dumpxml", domain_uuid, seconds=self.timeout
            )
        except OSError as exc:
            raise DomainXmlError(f"cannot run {self.virsh}: {exc}") from exc
        except TimeoutError as exc:
            raise DomainXmlError(f"virsh dumpxml {domain_uuid}: timed out") from exc
        if rc != 0:
            if "failed to get domain" in text or "Domain not found" in text:
                raise DomainNotFound(f"virsh: {text}")
            raise DomainXmlError(f"virsh dumpxml {domain_uuid} failed: {text}")
        return parse_domain_xml(out, f"virsh dumpxml {domain_uuid}")

    async def running(self) -> list[str]:
        rc, out, text = await self._virsh("list", "--uuid")
        if rc != 0:
            raise DomainXmlError(f"virsh list failed: {text}")
        return sorted(normalize_uuid(line) for line in out.decode().split() if line.strip())

    async def migrating_out(self, domain_uuid: str) -> bool:
        rc, out, _ = await self._virsh("domjobinfo", normalize_uuid(domain_uuid))
        return rc == 0 and job_is_outgoing(out.decode("utf-8", "replace"))

    async def _virsh(self, *args: str) -> tuple[int, bytes, str]:
        try:
            return await run_virsh(self.virsh, self.uri, *args, seconds=self.timeout)
        except OSError as exc:
            raise DomainXmlError(f"cannot run {self.virsh}: {exc}") from exc
        except TimeoutError as exc:
            raise DomainXmlError(f"virsh {args[0]}: timed out") from exc


def job_is_outgoing(domjobinfo: str) -> bool:
    """``virsh domjobinfo`` output names an active outgoing migration job."""
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in domjobinfo.splitlines())
    )
    return fields.get("Operation") == "Outgoing migration" and fields.get("Job type") not in (
        None, "None", "Completed", "Failed", "Cancelled",
    )  # fmt: skip
