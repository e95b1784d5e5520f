"""deploy/prometheus/alerts.yaml: valid for Prometheus (promtool check rules), each
alert fires on the series meant to raise it (promtool test rules), and every
vifbroker_* metric it names is one the broker or the agent really exports."""

from __future__ import annotations

import re
import subprocess
import urllib.request

from ops_harness import GUARD, Broker

from testkit import REPO, require_binary
from vifbroker.agent.metrics import AgentMetrics

RULES = REPO / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_binary("promtool")
    return subprocess.run(
        ["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=GUARD,
        check=False,
    )  # fmt: skip


def test_rules_are_valid() -> None:
    done = promtool("check", "rules", "alerts.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    done = promtool("test", "rules", "alerts.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"- alert: (\w+)", (RULES / "alerts.yaml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "alerts.test.yaml").read_text()))
    assert alerts == tested, "every alert needs a case in alerts.test.yaml"


def exported_names(exposition: str) -> set[str]:
    """Family names (# HELP/# TYPE lines) and sample names of a /metrics text."""
    names = set(re.findall(r"^# (?:HELP|TYPE) (\S+)", exposition, re.M))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition, re.M))
    return names


def test_every_metric_named_is_exported(broker: Broker) -> None:
    with urllib.request.urlopen(f"{broker.url}/metrics", timeout=GUARD) as resp:
        broker_text = resp.read().decode()
    known = exported_names(broker_text) | exported_names(AgentMetrics().render().decode())
    named = set(re.findall(r"\bvifbroker_[a-z0-9_]+", (RULES / "alerts.yaml").read_text()))
    assert named, "no metric found in alerts.yaml"
    missing = {n for n in named if n not in known}
    assert not missing, f"alerts.yaml names metrics nobody exports: {sorted(missing)}"
