"""Backends declare their own options; the agent's command line offers them.

A plug-in backend installed through the ``vifbroker.backends`` entry point
(here: a distribution written to a temporary directory on ``sys.path``) gets
its options exactly like a shipped one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vifbroker.agent.errors import ConfigError
from vifbroker.agent.wiring import add_backend_options, make_backends
from vifbroker.backends.exec import ExecBackend
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.model import PORTDATA_DEFAULT_MAX

PLUGIN = '''
from pydantic import Field
from vifbroker.backends.noop import NoopBackend
from vifbroker.backends import BackendOptions

class ColourOptions(BackendOptions):
    colour: str = Field(default="red", description="the colour")
    size: int = Field(default=1, ge=1, description="how many")
    loud: bool = False

class ColourBackend(NoopBackend):
    name = "colour"
    Options = ColourOptions

    def __init__(self, **options):
        self.options = ColourOptions.model_validate(options)
        super().__init__()
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "colour_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "colour_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: colour-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[vifbroker.backends]\ncolour = colour_plugin:ColourBackend\n"
    )
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("colour_plugin", None)
        importlib.invalidate_caches()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    return parser.parse_args(argv)


def test_a_plugin_backend_gets_its_declared_options(plugin: None) -> None:
    args = parse("--backend", "colour", "--colour-size", "3", "--colour-loud")
    [backend] = make_backends(args)
    assert backend.name == "colour"
    assert backend.options.model_dump() == {  # type: ignore[attr-defined]
        "colour": "red",
        "size": 3,
        "loud": True,
    }


def test_a_bad_option_value_names_the_flag(plugin: None) -> None:
    args = parse("--backend", "colour", "--colour-size", "0")
    with pytest.raises(ConfigError, match="--colour-size"):
        make_backends(args)


def test_shipped_backends_read_their_options_from_the_command_line() -> None:
    args = parse(
        "--backend", "openvswitch", "--backend", "exec",
        "--ovs-db", "unix:/run/x.sock", "--ovs-no-wait", "--ovs-max-portdata", "4096",
        "--exec-command", "/usr/local/bin/plumb --mode 'a b'", "--exec-interface-types", "direct",
    )  # fmt: skip
    ovs, exe = make_backends(args)
    assert isinstance(ovs, OpenVSwitchBackend) and isinstance(exe, ExecBackend)
    assert (ovs.config.db, ovs.config.no_wait, ovs.max_portdata) == ("unix:/run/x.sock", True, 4096)
    assert exe.command == ["/usr/local/bin/plumb", "--mode", "a b"]
    assert exe.interface_types == ["direct"]


def test_the_port_data_cap_has_one_default() -> None:
    [ovs] = make_backends(parse())
    assert isinstance(ovs, OpenVSwitchBackend)
    assert ovs.max_portdata == PORTDATA_DEFAULT_MAX


def test_exec_without_a_command_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--exec-command"):
        make_backends(parse("--backend", "exec"))
