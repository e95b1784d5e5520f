"""libvirt configuration of one testbed host (the recipe's additions), no I/O but files."""

from __future__ import annotations

import shutil
from pathlib import Path

_QEMU_CONF = """
# --- vifbroker test harness ---
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_port_min = {mig_min}
migration_port_max = {mig_max}
"""

_LIBVIRTD_CONF = """
# --- vifbroker test harness ---
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "{tcp_port}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "{host_uuid}"
log_filters = "1:util.command 1:util.netdevopenvswitch 1:qemu.qemu_migration 3:*"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
"""

# HOSTDIR subdirectory -> where libvirtd sees it inside its mount namespace.
BINDS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
    "ovs": "/run/openvswitch",
}


def write_libvirt_config(
    etc: Path,
    *,
    migration_ports: tuple[int, int],
    tcp_port: int,
    host_uuid: str,
    hooks: dict[str, str],
) -> None:
    """``etc``: a copy of /etc/libvirt with the recipe's additions and ``hooks``."""
    shutil.rmtree(etc)
    shutil.copytree("/etc/libvirt", etc, symlinks=True)
    for link in (etc / "qemu" / "networks" / "autostart").glob("*"):
        link.unlink()
    mig_min, mig_max = migration_ports
    with (etc / "qemu.conf").open("a") as f:
        f.write(_QEMU_CONF.format(mig_min=mig_min, mig_max=mig_max))
    with (etc / "libvirtd.conf").open("a") as f:
        f.write(_LIBVIRTD_CONF.format(tcp_port=tcp_port, host_uuid=host_uuid))
    for hook, text in hooks.items():
        path = etc / "hooks" / hook
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
