"""pytest fixtures for the real-libvirt tests, registered once by ``conftest.py``.

Kept out of a ``tests/libvirt/conftest.py`` on purpose: conftest files outside
packages all share the module name ``conftest``; one more would only add to the
ambiguity. Shared helpers come from ``testkit``, never from ``conftest``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from libvirt_harness import REQUIRED_BINARIES, Guest, Host, Nic, Testbed, new_guest
from libvirt_stack import AgentPair, Broker

from testkit import STRICT, require_binary

__all__ = [
    "STRICT", "GuestFactory", "agent_pair", "broker", "guests", "require_binary",
    "require_root", "testbed",
]  # fmt: skip

GuestFactory = Callable[..., Guest]

KEEP = bool(os.environ.get("VIFBROKER_LIBVIRT_KEEP"))  # keep HOSTDIRs (logs) after the run


def require_root() -> None:
    if os.geteuid() != 0:
        msg = "the libvirt testbed needs root (mount namespaces, taps, libvirtd)"
        if STRICT:
            pytest.fail(msg + " (strict mode: VIFBROKER_TEST_STRICT/CI set)")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """Hosts A and B, brought up once per session and torn down by PID at the end."""
    require_binary(*REQUIRED_BINARIES)
    require_root()
    root = Path(tempfile.mkdtemp(prefix="vifbroker-libvirt-"))
    bed = Testbed(root)
    try:
        bed.start(lock_timeout=240)  # within the 300 s test timeout
        yield bed
    finally:
        try:
            bed.stop()
        finally:
            if KEEP:
                print(f"\nlibvirt testbed kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def guests(testbed: Testbed) -> Iterator[GuestFactory]:
    """``guests(nics, host=testbed.a)`` defines and starts a diskless guest.

    Every guest made here is destroyed and undefined at the end of the test,
    wherever it ended up, so one failing test leaves no domain behind for the next.
    """
    made: list[Guest] = []

    def make(nics: Sequence[Nic], host: Host | None = None) -> Guest:
        guest = new_guest(nics)
        made.append(guest)
        (host or testbed.a).define_and_start(guest)
        return guest

    yield make
    for guest in made:
        for host in testbed.hosts:
            host.destroy_domain(guest.name)


@pytest.fixture(scope="session")
def broker(testbed: Testbed) -> Iterator[Broker]:
    # "C": a third host without a testbed of its own (it only registers, issue 10).
    b = Broker(testbed.root / "broker", [*(h.name for h in testbed.hosts), "C"])
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture
def agent_pair(testbed: Testbed, broker: Broker) -> Iterator[AgentPair]:
    """Agents for A and B, not started: a test starts them (or runs libvirt alone)."""
    directory = testbed.root / "agents"
    directory.mkdir(exist_ok=True)
    pair = AgentPair(testbed.hosts, broker, directory)
    try:
        yield pair
    finally:
        logs = {name: agent.log() for name, agent in pair.agents.items()}
        codes = pair.stop()
        for name, text in logs.items():
            assert "Traceback" not in text, f"agent {name} logged a traceback:\n{text[-4000:]}"
        assert all(code == 0 for code in codes.values()), f"agents exited {codes}"
