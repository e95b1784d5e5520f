"""The door for any backend we do not ship: an operator's command, once per vif.

The command (an argv list, never a shell line) gets, per interface:

* stdin: the ``<interface>`` XML (the model's codec; port data inside
  ``<virtualport><portdata>``); empty for ``inspect``;
* environment: ``VIFBROKER_ACTION`` (apply, collect, inspect),
  ``VIFBROKER_DOMAIN_UUID``, ``VIFBROKER_MAC``, on top of the agent's own.

Exit status:

* 0: done. For ``collect`` and ``inspect``, stdout is the port data (one
  trailing newline stripped; empty output means no port data).
* 75 (EX_TEMPFAIL): no local port for this vif yet; raised as PortNotFound
  so the agent retries (apply still runs every other vif first).
* anything else: ``failed`` (apply) or BackendError (collect, inspect), with
  stderr's last line as the detail.

A command that runs past ``timeout`` is killed: apply reports that vif
``failed``, collect and inspect raise BackendTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vifbroker.model import BackendInfo, Interface, portdata_digest
from vifbroker.model.codec import interface_to_xml

from .base import (
    ApplyResult,
    Backend,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    LocalPort,
    Outcome,
    PortNotFound,
)

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75


@dataclass(frozen=True, slots=True)
class _Run:
    returncode: int
    stdout: bytes
    stderr: bytes

    def detail(self) -> str:
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.returncode}"

    def portdata(self) -> str | None:
        try:
            text = self.stdout.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackendError(f"command printed port data that is not UTF-8: {exc}") from exc
        if text.endswith("\n"):
            text = text[:-1]
        return text or None


class ExecBackend(Backend):
    name = "exec"

    def __init__(
        self,
        *,
        command: Sequence[str],
        timeout: float = 10.0,
        concurrency: int = 4,
        interface_types: Sequence[str] = (),
        virtualport_types: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``interface_types``/``virtualport_types`` say which vifs the command owns;
        both empty means every vif."""
        if not command:
            raise ValueError("exec backend needs a command")
        self.command = list(command)
        self.timeout = timeout
        self.interface_types = list(interface_types)
        self.virtualport_types = list(virtualport_types)
        self.env = dict(os.environ if env is None else env)
        self._slots = asyncio.Semaphore(concurrency)

    async def describe(self) -> BackendInfo:
        found = shutil.which(self.command[0]) is not None
        return BackendInfo(
            name=self.name,
            available=found,
            interface_types=self.interface_types,
            virtualport_types=self.virtualport_types,
            detail=None if found else f"command not found: {self.command[0]}",
        )

    def handles(self, interface: Interface) -> bool:
        if not self.interface_types and not self.virtualport_types:
            return True
        return (
            interface.type in self.interface_types
            or interface.virtualport_type in self.virtualport_types
        )

    async def apply(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[ApplyResult]:
        runs = await asyncio.gather(
            *(self._apply_one(domain_uuid, i) for i in interfaces), return_exceptions=True
        )
        results: list[ApplyResult] = []
        missing: list[str] = []
        for interface, run in zip(interfaces, runs, strict=True):
            if isinstance(run, PortNotFound):
                missing.append(interface.mac)
            elif isinstance(run, BaseException):
                raise run
            else:
                results.append(run)
        if missing:
            raise PortNotFound(domain_uuid, missing[0], missing)
        return results

    async def collect(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[Interface]:
        async def one(interface: Interface) -> Interface:
            if not self.handles(interface):
                return interface
            run = await self._run("collect", domain_uuid, interface.mac, _xml(interface))
            self._check(run, domain_uuid, interface.mac)
            return interface.with_portdata(run.portdata())

        return list(await asyncio.gather(*(one(i) for i in interfaces)))

    async def inspect(self, domain_uuid: str, macs: Sequence[str]) -> dict[str, LocalPort | None]:
        async def one(mac: str) -> LocalPort | None:
            run = await self._run("inspect", domain_uuid, mac, b"")
            if run.returncode == EX_TEMPFAIL:
                return None
            self._check(run, domain_uuid, mac)
            return LocalPort(mac=mac, name="", portdata=run.portdata())

        ports = await asyncio.gather(*(one(m) for m in macs))
        return dict(zip(macs, ports, strict=True))

    # -- internals ---------------------------------------------------------------------
    async def _apply_one(self, domain_uuid: str, interface: Interface) -> ApplyResult:
        if not self.handles(interface):
            return ApplyResult(interface.mac, Outcome.SKIPPED, "not handled by the exec command")
        try:
            run = await self._run("apply", domain_uuid, interface.mac, _xml(interface))
        except BackendTimeout as exc:
            return ApplyResult(interface.mac, Outcome.FAILED, str(exc))
        if run.returncode == EX_TEMPFAIL:
            raise PortNotFound(domain_uuid, interface.mac)
        if run.returncode != 0:
            log.info(
                "domain %s mac %s: exec apply failed: %s", domain_uuid, interface.mac, run.detail()
            )
            return ApplyResult(interface.mac, Outcome.FAILED, run.detail())
        log.info(
            "domain %s mac %s: port data applied by %s", domain_uuid, interface.mac, self.command[0]
        )
        return ApplyResult(
            interface.mac, Outcome.APPLIED, digest=portdata_digest(interface.portdata)
        )

    def _check(self, run: _Run, domain_uuid: str, mac: str) -> None:
        if run.returncode == EX_TEMPFAIL:
            raise PortNotFound(domain_uuid, mac)
        if run.returncode != 0:
            raise BackendError(f"{self.command[0]} failed for {mac}: {run.detail()}")

    async def _run(self, action: str, domain_uuid: str, mac: str, stdin: bytes) -> _Run:
        env = {
            **self.env,
            "VIFBROKER_ACTION": action,
            "VIFBROKER_DOMAIN_UUID": domain_uuid,
            "VIFBROKER_MAC": mac,
        }
        async with self._slots:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            except OSError as exc:
                raise BackendUnavailable(f"cannot run {self.command[0]}: {exc}") from exc
            try:
                out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
            except TimeoutError as exc:
                raise BackendTimeout(
                    f"{self.command[0]} ({action} {mac}) ran past {self.timeout}s"
                ) from exc
            finally:
                if proc.returncode is None:  # timed out or cancelled: leave no orphan
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await asyncio.shield(proc.wait())
        assert proc.returncode is not None
        return _Run(proc.returncode, out, err)


def _xml(interface: Interface) -> bytes:
    return interface_to_xml(interface).encode("utf-8")
