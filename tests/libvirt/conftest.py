"""The libvirt suite's fixtures, defined once for every module here.

Session-scoped fixtures must be defined in ONE place: a fixture imported into
two test modules is two fixtures, and each would start its own testbed (two
host A's fighting over the one kernel ``br-int``). Nothing imports from this
file; helpers live in ``libvirt_*`` modules and ``testkit``.
"""

from collections.abc import Generator

import pytest
from libvirt_fixtures import agent_pair, broker, guests, testbed  # noqa: F401
from libvirt_stack import AgentPair, Broker


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """A failed test's report carries the tails of its agents' and the broker's logs
    (their files live in the testbed's temp dir, gone once the run ends)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    pair = funcargs.get("agent_pair")
    if isinstance(pair, AgentPair):
        for name, agent in pair.agents.items():
            report.sections.append((f"agent {name} log (tail)", agent.log()[-6000:]))
    running = funcargs.get("broker")
    if isinstance(running, Broker):
        report.sections.append(("broker log (tail)", running.log()[-4000:]))
