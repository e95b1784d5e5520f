"""Fixtures of the backend tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["vsctl", "native"])
def ovs_driver(request: pytest.FixtureRequest) -> str:
    """Each Open vSwitch test that takes this runs once per driver."""
    return str(request.param)
