"""deploy/kubernetes/ against the Kubernetes JSON schemas (the kubernetes-validate
package ships them: strict mode, so an unknown or misspelt field fails), plus the
wiring the schemas cannot see; deploy/container/Containerfile checked, and built
where a container builder answers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from testkit import REPO
from vifbroker.agent.config import agent_variables
from vifbroker.server.config import Settings

K8S = REPO / "deploy" / "kubernetes"
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
KUBERNETES_VERSION = "1.30"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in documents() if d["kind"] == kind
              and (name is None or d["metadata"]["name"] == name)]  # fmt: skip
    return doc


@pytest.mark.parametrize(
    "doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_manifest_is_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_would_be_caught() -> None:
    doc = find("Deployment")
    broken = {**doc, "spec": {**doc["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_broker_deployment() -> None:
    deployment = find("Deployment", "vifbroker")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (broker,) = pod["containers"]
    assert broker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert broker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(broker)
    assert env["VIFBROKER_DB"]["valueFrom"]["secretKeyRef"]["name"] == "vifbroker-db"
    # The token file comes from a Secret volume mounted whole (no subPath), so a
    # rotated Secret reaches the running pod.
    tokens = next(v for v in pod["volumes"] if v["name"] == "tokens")
    assert tokens["secret"]["secretName"] == "vifbroker-tokens"
    mount = next(m for m in broker["volumeMounts"] if m["name"] == "tokens")
    assert "subPath" not in mount
    assert env["VIFBROKER_TOKENS"]["value"].startswith(mount["mountPath"] + "/")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert broker["securityContext"]["readOnlyRootFilesystem"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = find(kind)["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    pdb = find("PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] < deployment["spec"]["replicas"]


def test_agent_daemonset() -> None:
    daemonset = find("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (agent,) = pod["containers"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    for socket_dir in ("/run/openvswitch", "/run/libvirt"):
        (name,) = [n for n, p in host_paths.items() if p == socket_dir]
        assert mounts[name] == socket_dir
    env = env_of(agent)
    assert env["VIFBROKER_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["VIFBROKER_TOKEN_FILE"]["value"].endswith("/$(VIFBROKER_HOST)")
    assert env["VIFBROKER_BROKER"]["value"].startswith("http://vifbroker.vifbroker.svc:")


def test_every_variable_set_is_one_the_process_reads() -> None:
    broker_vars = {"VIFBROKER_" + n.upper() for n in Settings.model_fields}
    (broker,) = find("Deployment")["spec"]["template"]["spec"]["containers"]
    assert set(env_of(broker)) <= broker_vars
    (agent,) = find("DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert set(env_of(agent)) <= agent_variables()


def test_every_secret_referenced_has_an_example() -> None:
    text = yaml.safe_dump_all(documents())
    referenced = set(re.findall(r"secretName: (\S+)", text)) | {
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in documents() if d["kind"] in ("Deployment", "DaemonSet")
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
    }  # fmt: skip
    examples = {d["metadata"]["name"] for d in documents() if d["kind"] == "Secret"}
    assert referenced and referenced <= examples


def test_containerfile_is_small_and_non_root() -> None:
    lines = [ln.strip() for ln in CONTAINERFILE.read_text().splitlines()]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 2 and all("-slim" in f for f in froms)  # build stage, then runtime
    final = lines[lines.index(froms[-1]):]
    (user,) = [ln for ln in final if ln.startswith("USER ")]
    assert not user.split()[1].startswith(("0", "root"))
    assert 'ENTRYPOINT ["vifbroker"]' in final
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


def builder() -> str | None:
    for tool in ("podman", "docker"):
        if shutil.which(tool) and subprocess.run(
            [tool, "info"], capture_output=True, timeout=30, check=False
        ).returncode == 0:
            return tool
    return None


def test_image_builds_and_runs_where_a_builder_answers(tmp_path: Path) -> None:
    tool = builder()
    if tool is None:  # a builder is optional: no daemon here is not a failure
        pytest.skip("no container builder (podman/docker) answers on this machine")
    tag = "vifbroker-test:ops"
    build = subprocess.run(
        [tool, "build", "-f", str(CONTAINERFILE), "-t", tag, str(REPO)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if build.returncode != 0 and re.search(r"(?i)pull|resolve|network|dial tcp", build.stderr):
        pytest.skip(f"the base image cannot be fetched here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run(
        [tool, "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.startswith("vifbroker "), run.stderr
    user = subprocess.run(
        [tool, "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert user.stdout.strip() == "10001"
