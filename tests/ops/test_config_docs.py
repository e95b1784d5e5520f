"""docs/configuration.md is generated from the settings models and must match them;
the sample files under deploy/ hold only real settings with valid values."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from ops_harness import vifbroker

from testkit import REPO
from vifbroker.agent.config import AgentConfig, agent_variables, load_agent_config
from vifbroker.ctl.configdocs import render
from vifbroker.server.config import Settings, load_settings

DOC = REPO / "docs" / "configuration.md"


def test_the_committed_reference_is_what_the_code_generates() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `vifbroker config-docs > docs/configuration.md`"
    )


def test_the_command_prints_the_reference() -> None:
    done = vifbroker("config-docs")
    assert done.returncode == 0, done.stderr
    assert done.stdout == render()


@pytest.mark.parametrize("model", [Settings, AgentConfig])
def test_every_setting_says_what_it_means(model: type[Settings | AgentConfig]) -> None:
    undocumented = [n for n, f in model.model_fields.items() if not f.description]
    assert not undocumented, f"{model.__name__}: add Field(description=...) to {undocumented}"
    for name in model.model_fields:
        assert f"| `{name}` | `VIFBROKER_{name.upper()}` |" in DOC.read_text()


def test_sample_toml_files_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("VIFBROKER_")]:
        monkeypatch.delenv(name)
    broker = load_settings(REPO / "deploy" / "broker.toml")
    assert broker.listen == "0.0.0.0:8080" and broker.state_dir == Path("/var/lib/vifbroker")
    agent = load_agent_config(REPO / "deploy" / "agent.toml")
    assert agent.backends == ["openvswitch"] and agent.metrics_listen == "127.0.0.1:9181"


def _assignments(path: Path) -> dict[str, str]:
    """``VAR=value`` lines, commented-out examples included."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"#?(VIFBROKER_[A-Z0-9_]+)=(.*)", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_environment_files_name_real_settings_with_valid_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [k for k in os.environ if k.startswith("VIFBROKER_")]:
        monkeypatch.delenv(name)
    broker_vars = _assignments(REPO / "deploy" / "default" / "vifbroker")
    broker_known = {"VIFBROKER_" + n.upper() for n in Settings.model_fields} | {"VIFBROKER_CONFIG"}
    assert set(broker_vars) <= broker_known
    agent_vars = _assignments(REPO / "deploy" / "default" / "vifbroker-agent")
    assert set(agent_vars) <= agent_variables() | {"VIFBROKER_CONFIG"}
    for name, value in broker_vars.items():
        monkeypatch.setenv(name, value.replace("/etc/vifbroker/", str(REPO / "deploy") + "/"))
    assert load_settings().listen == "0.0.0.0:8080"
    for name in broker_vars:
        monkeypatch.delenv(name)
    for name, value in agent_vars.items():
        monkeypatch.setenv(name, value.replace("/etc/vifbroker/", str(REPO / "deploy") + "/"))
    assert load_agent_config().backends == ["openvswitch", "noop"]


def test_every_flag_is_a_setting_with_a_variable_and_a_toml_key() -> None:
    import argparse

    from vifbroker.agent.config import agent_config_model, backend_option_fields
    from vifbroker.agent.wiring import backend_dest
    from vifbroker.cli import build_parser

    commands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    backend_flags = {backend_dest(b, f) for b, f, _ in backend_option_fields().values()}
    for command, fields in (
        ("serve", set(Settings.model_fields)),
        ("agent", set(agent_config_model().model_fields) | backend_flags),
    ):
        flags = {a.dest for a in commands[command]._actions if a.option_strings}
        dests = flags - {"help", "config"}
        assert dests <= fields, f"{command}: flags that are no setting: {sorted(dests - fields)}"
