"""Open vSwitch backend: the only code that talks to OVSDB (ovs-vsctl, ovsdb-client, the IDL).

Errors (tree, adding to the backend tree in ``vifbroker.backends.base``)::

    BackendError
    ├── BackendUnavailable   ovsdb-server unreachable, binary missing, backend closed
    ├── BackendTimeout       ovs-vsctl ran past --timeout
    ├── PortNotFound         no Interface with this vm-id + attached-mac (yet)
    ├── StalePort            a row named in a write is gone (looked up again, retried)
    ├── OvsdbError           the database refused a native transaction
    └── VsctlError           ovs-vsctl rejected the transaction itself
"""

from .backend import OpenVSwitchBackend
from .driver import DRIVERS, OvsdbError, OvsDriver, StalePort
from .monitor import InterfaceMonitor
from .pool import VsctlPool
from .vsctl import Command, Transaction, VsctlConfig, VsctlError, VsctlRunner

__all__ = [
    "DRIVERS",
    "Command",
    "InterfaceMonitor",
    "OpenVSwitchBackend",
    "OvsDriver",
    "OvsdbError",
    "StalePort",
    "Transaction",
    "VsctlConfig",
    "VsctlError",
    "VsctlPool",
    "VsctlRunner",
]
