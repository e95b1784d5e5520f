"""Open vSwitch backend: the only code that runs ovs-vsctl and ovsdb-client.

Errors (tree, adding to the backend tree in ``vifbroker.backends.base``)::

    BackendError
    ├── BackendUnavailable   ovsdb-server unreachable, binary missing, backend closed
    ├── BackendTimeout       ovs-vsctl ran past --timeout
    ├── PortNotFound         no Interface with this vm-id + attached-mac (yet)
    └── VsctlError           ovs-vsctl rejected the transaction itself
"""

from .backend import OpenVSwitchBackend
from .monitor import InterfaceMonitor
from .pool import VsctlPool
from .vsctl import Command, Transaction, VsctlConfig, VsctlError, VsctlRunner

__all__ = [
    "Command",
    "InterfaceMonitor",
    "OpenVSwitchBackend",
    "Transaction",
    "VsctlConfig",
    "VsctlError",
    "VsctlPool",
    "VsctlRunner",
]
