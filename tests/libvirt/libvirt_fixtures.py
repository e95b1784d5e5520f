"""pytest fixtures for the real-libvirt tests; a test module imports them by name.

Kept out of a ``tests/libvirt/conftest.py`` on purpose: conftest files outside
packages all share the module name ``conftest``; one more would only add to the
ambiguity (see :func:`_root_conftest`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from harness import REQUIRED_BINARIES, Guest, Host, Nic, Testbed, new_guest


def _root_conftest() -> ModuleType:
    """tests/conftest.py itself, whatever ``conftest`` means in sys.modules right now.

    pytest drops the previous ``conftest`` from sys.modules whenever it loads
    another folder's conftest.py (tests/agent, tests/api, … have one), so a
    plain ``from conftest import require_binary`` can land on the wrong file.
    """
    name = "_vifbroker_tests_root_conftest"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


require_binary: Callable[..., None] = _root_conftest().require_binary
STRICT: bool = _root_conftest().STRICT

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
        bed.start()
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
