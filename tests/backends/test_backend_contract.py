"""What the Backend seam promises, checked against every shipped backend.

Each backend runs against real local state: Open vSwitch against a throwaway
ovsdb-server, exec against a small script that keeps ports in files under
tmp_path, noop as it is. ``Env.plug`` creates a local port the way the host
would (libvirt plugging a vif), so the same test reads for every backend.

The checks that involve what a backend wrote are functions (``check_*``), so
the suite can show they bite: an exec command that stores something other
than it was given (``LIAR_SCRIPT``) must fail them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from backend_helpers import DOMAIN, executable, mac, ovs_iface, plain_iface

from ovs_harness import OvsDb
from vifbroker.backends import (
    Backend,
    LocalPort,
    Outcome,
    PortNotFound,
    available_backends,
    load_backend,
)
from vifbroker.backends.exec import ExecBackend
from vifbroker.backends.noop import NoopBackend
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.model import BackendInfo
from vifbroker.model.preflight import handles


@dataclass
class Env:
    backend: Backend
    #: False for a backend that owns nothing here (noop): it skips instead of writing
    writes: bool
    plug: Callable[[int], None]


# A stand-in for an operator's plumbing: one file per plugged port holding its
# port data, "<mac>.port" marking that the port exists.
EXEC_SCRIPT = """\
import os, sys, base64, xml.etree.ElementTree as ET
state = os.path.join(os.environ["STATE"], os.environ["VIFBROKER_DOMAIN_UUID"])
path = os.path.join(state, os.environ["VIFBROKER_MAC"])
if not os.path.exists(path + ".port"):
    sys.exit(75)
action = os.environ["VIFBROKER_ACTION"]
if action == "apply":
    el = ET.fromstring(sys.stdin.buffer.read()).find("virtualport/portdata")
    if el is None:
        if os.path.exists(path):
            os.remove(path)
    else:
        text = el.text or ""
        if el.get("encoding") == "base64":
            text = base64.b64decode(text).decode("utf-8")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text + SUFFIX)
elif os.path.exists(path):
    with open(path, encoding="utf-8", newline="") as f:
        sys.stdout.write(f.read())
"""

# A deliberately wrong backend: it stores every value with something appended.
LIAR_SCRIPT = 'SUFFIX = " (altered)"\n' + EXEC_SCRIPT
EXEC_SCRIPT = 'SUFFIX = ""\n' + EXEC_SCRIPT


def exec_env(tmp_path: Path, script_text: str) -> Env:
    script = executable(tmp_path / "plumb.py", script_text)
    state = tmp_path / "state"
    backend = ExecBackend(
        command=[sys.executable, str(script)],
        timeout=10,
        virtualport_types=["openvswitch"],
        env={"STATE": str(state), "PATH": "/usr/bin:/bin"},
    )

    def plug(n: int) -> None:
        (state / DOMAIN).mkdir(parents=True, exist_ok=True)
        (state / DOMAIN / f"{mac(n)}.port").touch()

    return Env(backend, True, plug)


@pytest.fixture(params=["openvswitch-vsctl", "openvswitch-native", "exec", "noop"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    name = request.param
    backend: Backend
    if name.startswith("openvswitch"):
        db: OvsDb = request.getfixturevalue("ovsdb")
        driver = name.partition("-")[2]
        backend = OpenVSwitchBackend(db=db.db, no_wait=True, timeout=5, driver=driver)

        def plug(n: int) -> None:
            # Tap names deliberately unrelated to anything in the record.
            db.add_port("br-int", f"vnet{100 + n}", vm_id=DOMAIN, mac=mac(n))

        writes = True
    elif name == "exec":
        made = exec_env(tmp_path, EXEC_SCRIPT)
        backend, plug, writes = made.backend, made.plug, made.writes
    else:
        backend = NoopBackend()

        def plug(n: int) -> None:
            pass

        writes = False
    await backend.start()
    try:
        yield Env(backend, writes, plug)
    finally:
        await backend.close()


def test_every_backend_is_an_entry_point() -> None:
    assert {"openvswitch", "exec", "noop"} <= set(available_backends())
    assert load_backend("openvswitch") is OpenVSwitchBackend
    assert load_backend("exec") is ExecBackend
    assert load_backend("noop") is NoopBackend


async def test_describe_names_the_backend(env: Env) -> None:
    info = await env.backend.describe()
    assert isinstance(info, BackendInfo)
    assert info.name == env.backend.name
    assert info.available is True


async def test_handles_agrees_with_describe(env: Env) -> None:
    """What a backend says it handles (heartbeat → preflight) is what it handles."""
    info = await env.backend.describe()
    for vif in (ovs_iface(1), plain_iface(2)):
        assert env.backend.handles(vif) == handles(info, vif), vif
    assert env.backend.handles(plain_iface(2)) is False


async def check_apply_answers_each_interface_in_order(env: Env) -> None:
    for n in (1, 2, 3):
        env.plug(n)
    vifs = [ovs_iface(3, "three"), ovs_iface(1, 'one "quoted"'), ovs_iface(2, "two\nlines")]
    results = await env.backend.apply(DOMAIN, vifs)
    assert [r.mac for r in results] == [v.mac for v in vifs]
    for vif, result in zip(vifs, results, strict=True):
        if env.writes:
            assert result.outcome is Outcome.APPLIED, result
            # What the backend read back after writing: the agent posts its
            # digest, and the broker fails the vif when it differs.
            assert result.readback == vif.portdata, result
        else:
            assert result.outcome is Outcome.SKIPPED
            assert result.detail


async def check_collect_reads_back_what_apply_wrote(env: Env) -> None:
    env.plug(1)
    env.plug(2)
    await env.backend.apply(DOMAIN, [ovs_iface(1, "alpha"), ovs_iface(2, "βeta ✓")])
    bare = [ovs_iface(1), ovs_iface(2), plain_iface(3)]
    collected = await env.backend.collect(DOMAIN, bare)
    assert [i.mac for i in collected] == [i.mac for i in bare]
    if env.writes:
        assert [i.portdata for i in collected] == ["alpha", "βeta ✓", None]
    else:
        assert collected == bare
    assert collected[2] == bare[2]  # not handled: returned untouched


async def check_apply_then_rewrite_replaces_the_value(env: Env) -> None:
    env.plug(1)
    await env.backend.apply(DOMAIN, [ovs_iface(1, "first")])
    [result] = await env.backend.apply(DOMAIN, [ovs_iface(1, "second")])
    ports = await env.backend.inspect(DOMAIN, [mac(1)])
    if env.writes:
        assert result.outcome is Outcome.APPLIED
        assert result.readback == "second"
        port = ports[mac(1)]
        assert port is not None and port.portdata == "second"
    else:
        # Writes nothing and owns no port: both applies skipped, nothing to see.
        assert result.outcome is Outcome.SKIPPED and result.readback is None
        assert ports == {mac(1): None}


CHECKS = [
    check_apply_answers_each_interface_in_order,
    check_collect_reads_back_what_apply_wrote,
    check_apply_then_rewrite_replaces_the_value,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_backend_keeps_what_it_writes(
    env: Env, check: Callable[[Env], Awaitable[None]]
) -> None:
    await check(env)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_the_checks_catch_a_backend_that_stores_something_else(
    tmp_path: Path, check: Callable[[Env], Awaitable[None]]
) -> None:
    liar = exec_env(tmp_path, LIAR_SCRIPT)
    with pytest.raises(AssertionError):
        await check(liar)


async def test_inspect_answers_every_mac(env: Env) -> None:
    env.plug(1)
    await env.backend.apply(DOMAIN, [ovs_iface(1, "data")])
    ports = await env.backend.inspect(DOMAIN, [mac(1), mac(2)])
    assert set(ports) == {mac(1), mac(2)}
    assert ports[mac(2)] is None
    if env.writes:
        assert isinstance(ports[mac(1)], LocalPort)
        assert ports[mac(1)] == LocalPort(mac(1), ports[mac(1)].name, "data")  # type: ignore[union-attr]
    else:
        assert ports[mac(1)] is None


async def test_apply_without_local_port_asks_for_a_retry(env: Env) -> None:
    env.plug(1)
    vifs = [ovs_iface(1, "here"), ovs_iface(2, "not yet")]
    if not env.writes:
        results = await env.backend.apply(DOMAIN, vifs)
        assert {r.outcome for r in results} == {Outcome.SKIPPED}
        return
    with pytest.raises(PortNotFound) as caught:
        await env.backend.apply(DOMAIN, vifs)
    assert caught.value.missing == (mac(2),)
    assert caught.value.domain_uuid == DOMAIN
    env.plug(2)  # the port appears: the retry goes through
    results = await env.backend.apply(DOMAIN, vifs)
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED]


async def test_unhandled_interface_is_skipped_with_a_reason(env: Env) -> None:
    env.plug(1)
    results = await env.backend.apply(DOMAIN, [plain_iface(5), ovs_iface(1, "x")])
    assert results[0].mac == mac(5)
    assert results[0].outcome is Outcome.SKIPPED
    assert results[0].detail
    assert results[1].outcome is (Outcome.APPLIED if env.writes else Outcome.SKIPPED)


async def test_close_ends_every_watch_and_twice_is_harmless(env: Env) -> None:
    stream = env.backend.watch()
    first = asyncio.create_task(anext(stream, None))
    await env.backend.close()
    await env.backend.close()
    # A stream open at close ends (no event is pending: nothing changed).
    async with asyncio.timeout(10):
        assert await first is None
    # A closed backend still describes itself (the heartbeat keeps working).
    assert isinstance(await env.backend.describe(), BackendInfo)
