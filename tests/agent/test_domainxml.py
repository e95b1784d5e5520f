"""Domain XML sources: real ``virsh -r`` against libvirt's built-in test driver."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from testkit import require_binary
from vifbroker.agent.domainxml import DirectorySource, VirshSource
from vifbroker.agent.errors import DomainNotFound, DomainXmlError

TEST_URI = "test:///default"  # libvirt's in-process test driver: no daemon
TEST_DOMAIN = "6695eb01-f6a4-8304-79aa-97f2502e193f"


async def test_virsh_source_reads_the_live_domain_interfaces() -> None:
    require_binary("virsh")
    interfaces = await VirshSource(uri=TEST_URI).interfaces(TEST_DOMAIN)

    assert [(i.mac, i.type, i.target_dev) for i in interfaces] == [
        ("aa:bb:cc:dd:ee:ff", "network", "testnet0")
    ]


async def test_virsh_source_unknown_domain_is_domain_not_found() -> None:
    require_binary("virsh")
    with pytest.raises(DomainNotFound):
        await VirshSource(uri=TEST_URI).interfaces(str(uuid.uuid4()))


async def test_virsh_source_missing_binary_is_a_domain_xml_error() -> None:
    with pytest.raises(DomainXmlError):
        await VirshSource(virsh="/nonexistent/virsh").interfaces(TEST_DOMAIN)


async def test_directory_source_missing_and_malformed(tmp_path: Path) -> None:
    dom = str(uuid.uuid4())
    source = DirectorySource(tmp_path)
    with pytest.raises(DomainNotFound):
        await source.interfaces(dom)
    (tmp_path / f"{dom}.xml").write_text("<domain><devices><interface")
    with pytest.raises(DomainXmlError) as exc:
        await source.interfaces(dom)
    assert not isinstance(exc.value, DomainNotFound)
