"""A worker that crashes on an unforeseen error is restarted, not forgotten."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from agent_harness import BrokerProcess, Vif, domain_xml, mac, running_agents

from vifbroker.agent.state import StateFile
from vifbroker.backends import ApplyResult, Backend, LocalPort
from vifbroker.backends.noop import NoopBackend
from vifbroker.client import BrokerClient
from vifbroker.model import BackendInfo, Interface, MigrationState, VifStatus


class CrashOnceBackend(Backend):
    """A source backend with a bug that bites once (the seam is ours; the agent is under test)."""

    name = "crash-once"

    def __init__(self) -> None:
        self.calls = 0

    async def describe(self) -> BackendInfo:
        return BackendInfo(name=self.name)

    def handles(self, interface: Interface) -> bool:
        return interface.virtualport_type == "openvswitch"

    async def collect(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[Interface]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("unforeseen")
        return [i.with_portdata("after the crash") for i in interfaces]

    async def apply(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[ApplyResult]:
        raise AssertionError("not a destination")

    async def inspect(self, domain_uuid: str, macs: Sequence[str]) -> dict[str, LocalPort | None]:
        return dict.fromkeys(macs)


async def test_crashed_outgoing_worker_is_restarted(
    broker_proc: BrokerProcess, controller: BrokerClient, tmp_path: Path
) -> None:
    dom = str(uuid.uuid4())
    (tmp_path / f"{dom}.xml").write_text(domain_xml(dom, "d", [Vif(mac(1), "vnet0")]))
    backend = CrashOnceBackend()
    hosts = {
        "host-a": ([backend], StateFile(None, "host-a")),
        "host-b": ([NoopBackend()], StateFile(None, "host-b")),
    }
    async with running_agents(broker_proc, tmp_path, hosts):
        m = await controller.create_migration(dom, "host-a", "host-b")
        done = await controller.wait_applied(m.id, 30)

    assert backend.calls == 2
    assert done.state == MigrationState.APPLIED
    assert [v.status for v in done.interfaces] == [VifStatus.SKIPPED]
    rec = await controller.get_interface(dom, mac(1))
    assert rec.interface is not None and rec.interface.portdata == "after the crash"
