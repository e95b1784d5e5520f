"""``vifbroker serve`` refuses a bad setting or a taken port with one line, no traceback."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from ops_harness import Broker, one_line_error, vifbroker

from testkit import free_port


@pytest.mark.parametrize(
    ("env", "toml", "says"),
    [
        ({"VIFBROKER_LISTEN": "nonsense"}, None, "listen (VIFBROKER_LISTEN): listen must be"),
        ({"VIFBROKER_MAX_BODY_BYTES": "lots"}, None, "max_body_bytes (VIFBROKER_MAX_BODY_BYTES)"),
        ({"VIFBROKER_LOG_LEVEL": "loud"}, None, "log_level (VIFBROKER_LOG_LEVEL)"),
        ({}, "longpoll_max_seconds = -1\n", "longpoll_max_seconds"),
        ({}, "no_such_setting = 1\n", "unknown setting 'no_such_setting'"),
        ({}, "listen = [\n", "bad settings"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], toml: str | None, says: str
) -> None:
    args = ["serve", "--state-dir", str(tmp_path)]
    if toml is not None:
        (tmp_path / "broker.toml").write_text(toml)
        args += ["--config", str(tmp_path / "broker.toml")]
    done = vifbroker(*args, env=env)
    assert done.returncode == 2
    line = one_line_error(done)
    assert line.startswith("vifbroker serve: bad settings: ") and says in line, line


def test_a_port_in_use_is_one_line_and_exit_1(broker: Broker, tmp_path: Path) -> None:
    done = vifbroker(
        "serve", "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{broker.port}",
        env={"VIFBROKER_LOG_FORMAT": "text", "VIFBROKER_LOG_LEVEL": "ERROR"},
    )  # fmt: skip
    assert done.returncode == 1
    line = one_line_error(done)
    assert f"cannot listen on 127.0.0.1:{broker.port}" in line and "in use" in line


def test_a_second_broker_on_the_same_sqlite_file_is_one_line_and_exit_1(broker: Broker) -> None:
    # Its long-polls would never wake on the first one's commits: refused at start.
    state = str(broker.directory / "state")
    env = {"VIFBROKER_LOG_FORMAT": "text", "VIFBROKER_LOG_LEVEL": "ERROR"}
    second = vifbroker(
        "serve", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}", env=env
    )
    upgrade = vifbroker("db", "upgrade", "--state-dir", state, env=env)
    assert second.returncode == 1 and upgrade.returncode == 1
    held = f"in use by another vifbroker process (pid {broker.proc.pid})"
    assert "cannot open the store" in one_line_error(second)
    assert held in one_line_error(second) and held in one_line_error(upgrade)
    with urllib.request.urlopen(f"{broker.url}/readyz", timeout=10) as resp:
        assert resp.status == 200  # the first one serves on, its file untouched
