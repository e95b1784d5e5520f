"""deploy/libvirt/qemu.d/vifbroker: spools domain XML, prints nothing, never fails, never
calls libvirt, and logs what went wrong with ``logger`` (bounded, never blocking)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testkit import CORPUS, REPO
from vifbroker.agent.domainxml import DirectorySource

HOOK = REPO / "deploy" / "libvirt" / "qemu.d" / "vifbroker"
DOMAIN_XML = (CORPUS / "qemuxml2argvdata-net-openvswitch.xml").read_text()
DOMAIN_UUID = "c7a5fdbd-edaf-9455-926a-d65c16db1809"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The hook's environment, with a ``virsh`` on PATH that leaves a mark if run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tripwire = bin_dir / "virsh"
    tripwire.write_text(f"#!/bin/sh\ntouch {tmp_path / 'virsh-was-called'}\n")
    tripwire.chmod(0o755)
    # A logger that records what it was asked to log (one line per call).
    logger = bin_dir / "logger"
    logger.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path / "logged"}\n')
    logger.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "VIFBROKER_SPOOL": str(tmp_path / "spool"),
    }


def hook(
    env: dict[str, str], *args: str, xml: str = DOMAIN_XML
) -> subprocess.CompletedProcess[str]:
    """Run the hook as libvirtd does: domain name, operation…, the XML on stdin."""
    return subprocess.run(
        [str(HOOK), "QEMUGuest1", *args], input=xml, capture_output=True, text=True,
        env=env, timeout=30,
    )  # fmt: skip


def test_incoming_migration_spools_the_xml_and_prints_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = hook(env, "migrate", "begin", "-")

    assert (done.returncode, done.stdout) == (0, "")
    spooled = Path(env["VIFBROKER_SPOOL"]) / f"{DOMAIN_UUID}.xml"
    assert spooled.read_text() == DOMAIN_XML.rstrip("\n") + "\n"
    assert not (tmp_path / "virsh-was-called").exists()
    assert not (tmp_path / "logged").exists()  # nothing went wrong, nothing logged


async def test_the_agent_reads_the_spool_as_its_domain_xml_source(env: dict[str, str]) -> None:
    hook(env, "started", "begin", "-")

    interfaces = await DirectorySource(env["VIFBROKER_SPOOL"]).interfaces(DOMAIN_UUID)

    assert [(i.mac, i.virtualport_type) for i in interfaces] == [
        ("00:11:22:33:44:55", "openvswitch")
    ]


def test_release_end_removes_the_spooled_xml(env: dict[str, str]) -> None:
    hook(env, "started", "begin", "-")
    spooled = Path(env["VIFBROKER_SPOOL"]) / f"{DOMAIN_UUID}.xml"
    assert spooled.exists()

    done = hook(env, "release", "end", "-")

    assert (done.returncode, done.stdout) == (0, "")
    assert not spooled.exists()


def test_unwritable_spool_still_exits_0_for_migrate(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env["VIFBROKER_SPOOL"] = str(blocker / "spool")

    done = hook(env, "migrate", "begin", "-")

    assert (done.returncode, done.stdout) == (0, "")
    logged = (tmp_path / "logged").read_text()
    assert logged.startswith("-t vifbroker-hook -p daemon.warning -- migrate begin ")
    assert f"{DOMAIN_UUID}: cannot create spool" in logged


def test_a_logger_that_hangs_cannot_hold_libvirt(env: dict[str, str], tmp_path: Path) -> None:
    (Path(env["PATH"].split(":")[0]) / "logger").write_text("#!/bin/sh\nexec sleep 600\n")
    env["VIFBROKER_SPOOL"] = "/proc/nonexistent/spool"

    done = hook(env, "migrate", "begin", "-")  # returns: `timeout` ends the logger

    assert (done.returncode, done.stdout) == (0, "")


@pytest.mark.parametrize(
    "args", [("prepare", "begin", "-"), ("stopped", "end", "-"), ("frobnicate", "x", "-"), ()]
)
def test_every_other_operation_exits_0_and_leaves_no_spool(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    done = hook(env, *args)

    assert (done.returncode, done.stdout) == (0, "")
    assert not (Path(env["VIFBROKER_SPOOL"]) / f"{DOMAIN_UUID}.xml").exists()


def test_huge_xml_is_read_to_the_end_and_never_spooled_truncated(
    env: dict[str, str],
) -> None:
    env["VIFBROKER_HOOK_MAX_XML"] = "4096"
    padding = "<!-- " + "x" * (2 * 1024 * 1024) + " -->"
    big = DOMAIN_XML.replace("</domain>", padding + "</domain>")
    proc = subprocess.Popen(
        [str(HOOK), "QEMUGuest1", "migrate", "begin", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(big.encode())  # raises BrokenPipeError if the hook stopped reading
    proc.stdin.close()
    assert proc.stdout.read() == b""
    assert proc.wait(30) == 0
    spooled = Path(env["VIFBROKER_SPOOL"]) / f"{DOMAIN_UUID}.xml"
    assert not spooled.exists()
    logged = (Path(env["PATH"].split(":")[0]).parent / "logged").read_text()
    assert "migrate begin: domain XML over 4096 bytes; not spooled" in logged
