"""Exec backend: what the operator's command receives and how its exit is read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from backend_helpers import DOMAIN, executable, mac, ovs_iface, plain_iface

from vifbroker.backends import BackendError, BackendUnavailable, Outcome, PortNotFound
from vifbroker.backends.exec import ExecBackend
from vifbroker.model.codec import parse_interface

RECORDER = """\
import json, os, sys
stdin = sys.stdin.read()
env = {k: v for k, v in os.environ.items() if k.startswith("VIFBROKER_")}
name = os.environ["VIFBROKER_MAC"] + "." + os.environ["VIFBROKER_ACTION"] + ".json"
with open(os.path.join(os.environ["OUT"], name), "w") as f:
    json.dump({"env": env, "stdin": stdin}, f)
if os.environ.get("FAIL"):
    print("first line", file=sys.stderr)
    print("switch said no", file=sys.stderr)
    sys.exit(3)
print("collected: " + os.environ["VIFBROKER_MAC"])
"""


def recorder(tmp_path: Path, **env: str) -> ExecBackend:
    script = executable(tmp_path / "recorder.py", RECORDER)
    return ExecBackend(
        command=[sys.executable, str(script)], env={"OUT": str(tmp_path), **env}, timeout=10
    )


def recorded(tmp_path: Path, mac: str, action: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / f"{mac}.{action}.json").read_text())
    return data


async def test_apply_passes_interface_xml_and_environment(tmp_path: Path) -> None:
    backend = recorder(tmp_path)
    vifs = [ovs_iface(1, '<xml> & "data"\n'), plain_iface(2)]
    results = await backend.apply(DOMAIN, vifs)
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    for vif, result in zip(vifs, results, strict=True):
        seen = recorded(tmp_path, vif.mac, "apply")
        assert seen["env"] == {
            "VIFBROKER_ACTION": "apply",
            "VIFBROKER_DOMAIN_UUID": DOMAIN,
            "VIFBROKER_MAC": vif.mac,
        }
        assert parse_interface(str(seen["stdin"])) == vif
        # Each apply is followed by a read; what it printed is the read-back.
        read = recorded(tmp_path, vif.mac, "read")
        assert read["stdin"] == ""
        assert result.readback == f"collected: {vif.mac}"


async def test_collect_takes_stdout_as_port_data(tmp_path: Path) -> None:
    backend = recorder(tmp_path)
    [vif] = await backend.collect(DOMAIN, [ovs_iface(1, "stale")])
    assert vif.portdata == f"collected: {mac(1)}"  # one trailing newline stripped
    assert recorded(tmp_path, mac(1), "collect")["env"]["VIFBROKER_ACTION"] == "collect"  # type: ignore[index]


async def test_failure_reports_the_last_stderr_line(tmp_path: Path) -> None:
    backend = recorder(tmp_path, FAIL="1")
    [result] = await backend.apply(DOMAIN, [ovs_iface(1, "x")])
    assert result.outcome is Outcome.FAILED
    assert result.detail == "switch said no"
    with pytest.raises(BackendError, match="switch said no"):
        await backend.collect(DOMAIN, [ovs_iface(1)])


async def test_exit_75_means_no_port_yet(tmp_path: Path) -> None:
    script = executable(tmp_path / "absent.sh", "#!/bin/sh\nexit 75\n")
    backend = ExecBackend(command=[str(script)])
    with pytest.raises(PortNotFound) as caught:
        await backend.apply(DOMAIN, [ovs_iface(1, "x"), ovs_iface(2, "y")])
    assert caught.value.missing == (mac(1), mac(2))
    assert await backend.inspect(DOMAIN, [mac(1)]) == {mac(1): None}


async def test_hung_command_is_killed_and_fails_its_vif(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = executable(tmp_path / "hang.sh", f'#!/bin/sh\necho $$ > "{pidfile}"\nexec sleep 60\n')
    backend = ExecBackend(command=[str(script)], timeout=0.5)
    [result] = await backend.apply(DOMAIN, [ovs_iface(1, "x")])
    assert result.outcome is Outcome.FAILED
    assert result.detail is not None and "ran past" in result.detail
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped, not left behind


async def test_missing_command_is_unavailable(tmp_path: Path) -> None:
    backend = ExecBackend(command=[str(tmp_path / "nope")])
    assert (await backend.describe()).available is False
    with pytest.raises(BackendUnavailable):
        await backend.apply(DOMAIN, [ovs_iface(1, "x")])


def test_handles_only_what_it_is_configured_for() -> None:
    everything = ExecBackend(command=["true"])
    ovs_only = ExecBackend(command=["true"], virtualport_types=["openvswitch"])
    direct_only = ExecBackend(command=["true"], interface_types=["direct"])
    assert everything.handles(ovs_iface(1)) and everything.handles(plain_iface(2))
    assert ovs_only.handles(ovs_iface(1)) and not ovs_only.handles(plain_iface(2))
    assert direct_only.handles(plain_iface(2)) and not direct_only.handles(ovs_iface(1))
