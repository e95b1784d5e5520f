"""The systemd units: they verify against the installed entry point, meet the
`systemd-analyze security` targets, and the processes speak sd_notify
(READY=1, WATCHDOG=1 from the event loop, STOPPING=1) over a real datagram socket."""

from __future__ import annotations

import configparser
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_harness import GUARD, Broker, free_port

from testkit import REPO, require_binary

UNITS = REPO / "deploy" / "systemd"
#: the issue's targets (lower is better; 10 = fully exposed)
EXPOSURE_LIMITS = {"vifbroker.service": 2.5, "vifbroker-agent.service": 5.0}


def entry_point() -> Path:
    found = Path(sys.executable).parent / "vifbroker"
    assert found.exists(), "vifbroker is not installed beside this Python"
    return found


@pytest.fixture
def installed_units(tmp_path: Path) -> Path:
    """The units with ExecStart pointed at this environment's `vifbroker`."""
    for name in EXPOSURE_LIMITS:
        text = (UNITS / name).read_text().replace("/usr/bin/vifbroker", str(entry_point()))
        (tmp_path / name).write_text(text)
    return tmp_path


def test_units_verify(installed_units: Path) -> None:
    require_binary("systemd-analyze")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no",
         *sorted(str(p) for p in installed_units.iterdir())],
        capture_output=True, text=True, timeout=GUARD, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no unknown keys, no missing commands


@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_security_exposure_is_under_target(installed_units: Path, name: str) -> None:
    require_binary("systemd-analyze")
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager",
         str(installed_units / name)],
        capture_output=True, text=True, timeout=GUARD, check=False,
    )  # fmt: skip
    m = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", done.stdout)
    assert m, done.stdout + done.stderr
    assert float(m.group(1)) < EXPOSURE_LIMITS[name], done.stdout


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_production_settings(name: str) -> None:
    service = unit(name)["Service"]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert int(service["LimitNOFILE"]) >= 10_000 + 1024  # 10,000 parked long-polls and the rest
    assert service["UMask"] == "0077"
    assert service["CapabilityBoundingSet"] == ""
    paths = service.get("ReadWritePaths", "").split()
    assert paths and all(p.startswith("-") for p in paths)  # a missing path is no failure
    assert service["ExecStart"].startswith("/usr/bin/vifbroker ")


def test_agent_starts_after_ovsdb_and_either_libvirt_daemon() -> None:
    after = unit("vifbroker-agent.service")["Unit"]["After"].split()
    assert {"libvirtd.service", "virtqemud.service", "ovsdb-server.service"} <= set(after)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(GUARD)
        yield s, path


def messages_until(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams received until one holding ``wanted`` (the socket times out after GUARD)."""
    got: list[str] = []
    while not any(wanted in m for m in got):
        got.append(sock.recv(4096).decode())
    return got


def stopped_cleanly(proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
    """SIGTERM: the process says STOPPING=1 and exits 0 (killed if the test failed earlier)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        assert any("STOPPING=1" in m for m in messages_until(sock, "STOPPING=1"))
        assert proc.wait(GUARD) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(GUARD)


def test_broker_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIFBROKER_")}
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [str(entry_point()), "serve", "--state-dir", str(tmp_path / "st"),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        ready = messages_until(sock, "READY=1")[-1].split("\n")
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        # It answers once READY=1 is sent: the readiness is real.
        with socket.create_connection(("127.0.0.1", port), timeout=GUARD):
            pass
        assert "WATCHDOG=1" in messages_until(sock, "WATCHDOG=1")[-1]
        assert "WATCHDOG=1" in messages_until(sock, "WATCHDOG=1")[-1]  # and again
    finally:
        stopped_cleanly(proc, sock)


def test_agent_notifies_ready_and_pings_the_watchdog(
    broker: Broker, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIFBROKER_")}
    env |= {
        "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000",
        "VIFBROKER_BROKER": broker.url, "VIFBROKER_TOKEN_FILE": str(broker.agent_token_file),
    }  # fmt: skip
    (tmp_path / "domains").mkdir()
    proc = subprocess.Popen(
        [str(entry_point()), "agent", "--host", "hv1", "--backend", "noop",
         "--domain-xml-dir", str(tmp_path / "domains")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        assert "READY=1" in messages_until(sock, "READY=1")[-1]
        assert "WATCHDOG=1" in messages_until(sock, "WATCHDOG=1")[-1]
    finally:
        stopped_cleanly(proc, sock)


def test_outside_systemd_nothing_is_sent() -> None:
    from vifbroker.sdnotify import Notifier

    assert Notifier({}).notify("READY=1") is False
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).address == "\0abstract"
    # The watchdog variables are for another process (WATCHDOG_PID): not ours to ping.
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_seconds == 30.0
