"""Helpers shared by the backend tests (imported by name: tests/backends is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ovs_harness import OvsDb
from testkit import mac as mac
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.model import Interface, VirtualPort

DOMAIN = "6f1c9c5e-2d5b-4d53-9a3e-0c1f2a3b4c5d"
OTHER_DOMAIN = "0b7d2f55-9e3c-4c1b-8a11-3c5e7f9a1b2d"


def ovs_iface(n: int, portdata: str | None = None) -> Interface:
    return Interface(
        mac=mac(n),
        type="bridge",
        source={"bridge": "br-int"},
        virtualport=VirtualPort(
            type="openvswitch",
            parameters={"interfaceid": f"09b11c53-8b5c-4eeb-8f00-{n:012x}"},
            portdata=portdata,
        ),
    )


def plain_iface(n: int) -> Interface:
    """A vif Open vSwitch does not own (macvtap)."""
    return Interface(mac=mac(n), type="direct", source={"dev": "eth0", "mode": "bridge"})


@contextlib.asynccontextmanager
async def ovs_backend(db: OvsDb, **options: Any) -> AsyncIterator[OpenVSwitchBackend]:
    options.setdefault("timeout", 5)
    backend = OpenVSwitchBackend(db=db.db, no_wait=True, **options)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def counting_vsctl(directory: Path, real: str = "/usr/bin/ovs-vsctl") -> tuple[Path, Path]:
    """A wrapper named ovs-vsctl that logs one line per run, then execs the real one.

    Returns (wrapper path, log path). Each line reads ``sets=N``: how many
    ``set`` commands that process carried (port data may hold newlines, so the
    argv itself is not logged).
    """
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "calls.log"
    wrapper = directory / "ovs-vsctl"
    wrapper.write_text(
        "#!/bin/sh\n"
        "n=0\n"
        'for a in "$@"; do [ "$a" = set ] && n=$((n+1)); done\n'
        f'echo "sets=$n" >> "{log}"\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    log.touch()
    return wrapper, log


def counting_ovsdb_client(
    directory: Path, real: str = "/usr/bin/ovsdb-client"
) -> tuple[Path, Path]:
    """A wrapper named ovsdb-client that logs one line per run, then execs the real one.

    Returns (wrapper path, log path). Each line reads ``COMMAND sets=N scans=M``
    (``transact sets=4 scans=0``): the command, how many ``mutate`` operations
    its transaction carried and how many selects looked for a vm-id in every
    row (escaped inside JSON strings, port data can never look like either).
    """
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "client-calls.log"
    wrapper = directory / "ovsdb-client"
    script = r"""#!/bin/sh
cmd=; n=0; k=0
for a in "$@"; do
  case "$a" in transact|query|monitor) [ -z "$cmd" ] && cmd=$a;; esac
  case "$a" in *'"op":"'*)
    n=$(printf '%s' "$a" | grep -oF '"op":"mutate"' | wc -l)
    scan='"where":[["external_ids","includes",["map",[["vm-id"'
    k=$(printf '%s' "$a" | grep -oF "$scan" | wc -l);;
  esac
done
"""
    wrapper.write_text(script + f'echo "$cmd sets=$n scans=$k" >> "{log}"\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    log.touch()
    return wrapper, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def reset(log: Path) -> None:
    log.write_text("")


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o755)
    return path
