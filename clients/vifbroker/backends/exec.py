"""The door for any backend we do not ship: an operator's command, once per vif.

The command (an argv list, never a shell line) gets, per interface:

* stdin: the ``<interface>`` XML (the model's codec; port data inside
  ``<virtualport><portdata>``); empty for ``read``;
* environment: ``VIFBROKER_ACTION``, ``VIFBROKER_DOMAIN_UUID``,
  ``VIFBROKER_MAC``, on top of the agent's own.

Actions:

* ``apply`` (destination): store the port data of the XML on stdin (no
  ``<portdata>``: remove it);
* ``read``: print the port data the local port holds now. Run after every
  successful ``apply`` — what it prints is the read-back the agent reports
  (so a command that stores something else is caught by the broker) — and
  for ``inspect``;
* ``collect`` (source): print the port data to upload for the XML on stdin.

Exit status:

* 0: done. For ``read`` and ``collect``, stdout is the port data (one
  trailing newline stripped; empty output means no port data).
* 75 (EX_TEMPFAIL): no local port for this vif yet; raised as PortNotFound
  so the agent retries (apply still runs every other vif first).
* anything else: ``failed`` (apply) or BackendError (collect, read), with
  stderr's last line as the detail.

A command that runs past ``timeout`` is killed: apply reports that vif
``failed``, collect and read raise BackendTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from vifbroker.model import BackendInfo, Interface
from vifbroker.model.codec import interface_to_xml

from .base import (
    ApplyResult,
    Backend,
    BackendError,
    BackendOptions,
    BackendTimeout,
    BackendUnavailable,
    LocalPort,
    Outcome,
    PortNotFound,
    split_commas,
    split_words,
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


class ExecOptions(BackendOptions):
    command: Annotated[list[str], BeforeValidator(split_words)] = Field(
        min_length=1,
        description="the command (split like a shell would; never run by one)",
    )
    timeout: float = Field(default=10.0, gt=0, description="seconds one run may take")
    concurrency: int = Field(default=4, ge=1, description="runs at once")
    interface_types: Annotated[list[str], BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="interface types the command owns, comma-separated (none: every vif)",
    )
    virtualport_types: Annotated[list[str], BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="virtualport types the command owns, comma-separated (none: every vif)",
    )


class ExecBackend(Backend):
    name = "exec"
    Options = ExecOptions

    def __init__(self, *, env: Mapping[str, str] | None = None, **options: Any) -> None:
        """Keywords: the fields of :class:`ExecOptions`, and ``env`` (the command's
        environment; default: the agent's own)."""
        opts = ExecOptions.model_validate(options)
        self.command = list(opts.command)
        self.timeout = opts.timeout
        self.interface_types = list(opts.interface_types)
        self.virtualport_types = list(opts.virtualport_types)
        self.env = dict(os.environ if env is None else env)
        self._slots = asyncio.Semaphore(opts.concurrency)

    async def describe(self) -> BackendInfo:
        found = shutil.which(self.command[0]) is not None
        owns_all = not self.interface_types and not self.virtualport_types
        return BackendInfo(
            name=self.name,
            available=found,
            interface_types=["*"] if owns_all else self.interface_types,
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
            run = await self._run("read", domain_uuid, mac, b"")
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
        try:
            read = await self._run("read", domain_uuid, interface.mac, b"")
            self._check(read, domain_uuid, interface.mac)
            readback = read.portdata()
        except BackendError as exc:
            return ApplyResult(interface.mac, Outcome.FAILED, f"reading back: {exc}")
        log.info(
            "domain %s mac %s: port data applied by %s", domain_uuid, interface.mac, self.command[0]
        )
        return ApplyResult(interface.mac, Outcome.APPLIED, readback=readback)

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
