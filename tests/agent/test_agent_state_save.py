"""The inbox resume point is saved in the background: a slow disk never holds up polling."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

from agent_harness import BrokerProcess, Vif, domain_xml, mac, running_agents

from testkit import wait_until
from vifbroker.agent.state import StateFile
from vifbroker.backends.noop import NoopBackend
from vifbroker.client import BrokerClient
from vifbroker.model import MigrationState


class StuckDisk(StateFile):
    """A state file whose writes hang until the test lets them go (our seam; the agent
    is under test). Records every point it was asked to write."""

    def __init__(self, directory: Path, host: str) -> None:
        super().__init__(directory, host)
        self.gate = threading.Event()
        self.asked: list[int] = []

    def save(self, after: int) -> None:
        self.asked.append(after)
        self.gate.wait(timeout=60)
        super().save(after)


async def test_polling_goes_on_while_the_resume_point_is_being_written(
    broker_proc: BrokerProcess, controller: BrokerClient, tmp_path: Path
) -> None:
    dom = str(uuid.uuid4())
    (tmp_path / f"{dom}.xml").write_text(domain_xml(dom, "d", [Vif(mac(1), "vnet0")]))
    disk = StuckDisk(tmp_path / "state", "host-b")
    hosts = {
        "host-a": ([NoopBackend()], StateFile(None, "host-a")),
        "host-b": ([NoopBackend()], disk),
    }
    async with running_agents(broker_proc, tmp_path, hosts) as agents:
        try:
            m = await controller.create_migration(dom, "host-a", "host-b")
            # The destination's first write hangs; it still polls, applies and reports.
            done = await controller.wait_applied(m.id, 20)
            assert done.state == MigrationState.APPLIED
            assert disk.asked and not disk.path.exists()  # nothing written yet
            # Its own results' revision reaches it by its next poll, the write still hung
            # (the barrier can answer first: stopping the agents here raced that poll).
            await wait_until(lambda: agents[1].resume_point() >= done.revision)
            assert not disk.path.exists()
        finally:
            disk.gate.set()
    destination = agents[1]
    assert disk.path is not None
    saved = json.loads(disk.path.read_text())["after"]
    assert saved == destination.resume_point() >= done.revision
