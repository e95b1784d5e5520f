"""Documents and models shared by the codec tests."""

from __future__ import annotations

import os
from pathlib import Path

from vifbroker.model import Bandwidth, Interface, Rate, Source, VirtualPort, Vlan, VlanTag

# As in tests/conftest.py; not imported from there because "conftest" is
# ambiguous as a module name once another test folder has its own conftest.py.
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "libvirt"
STRICT = bool(os.environ.get("VIFBROKER_TEST_STRICT") or os.environ.get("CI"))

# The example from DESIGN.md, verbatim.
EXAMPLE = """\
<interface type='bridge'>
  <mac address='52:54:00:12:34:56'/>
  <source bridge='br-int'/>
  <target dev='vnet0'/>
  <model type='virtio'/>
  <virtualport type='openvswitch'>
    <parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f' profileid='gold'/>
    <portdata>any UTF-8 text, XML-escaped</portdata>
  </virtualport>
  <vlan trunk='yes'><tag id='42'/><tag id='48' nativeMode='untagged'/></vlan>
  <mtu size='9000'/>
  <link state='up'/>
  <bandwidth><inbound average='1000' peak='5000' burst='1024'/></bandwidth>
</interface>
"""

EXAMPLE_MODEL = Interface(
    mac="52:54:00:12:34:56",
    type="bridge",
    source=Source.model_validate({"bridge": "br-int"}),
    target_dev="vnet0",
    model="virtio",
    virtualport=VirtualPort(
        type="openvswitch",
        parameters={"interfaceid": "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f", "profileid": "gold"},
        portdata="any UTF-8 text, XML-escaped",
    ),
    vlan=Vlan(trunk=True, tags=[VlanTag(id=42), VlanTag(id=48, native_mode="untagged")]),
    mtu=9000,
    link_state="up",
    bandwidth=Bandwidth(inbound=Rate(average=1000, peak=5000, burst=1024)),
)
