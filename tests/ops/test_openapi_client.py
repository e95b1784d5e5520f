"""openapi.yaml names the product (version, default server), and a client generated
from it with openapi-python-client keeps every documented JSON answer, errors
included (an allOf that narrows the problem type with `const` made it drop them all)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from testkit import REPO
from vifbroker.server.config import Settings

SPEC = yaml.safe_load((REPO / "openapi.yaml").read_text())
JSON_TYPES = ("application/json", "application/problem+json")


def test_info_version_and_server_are_the_products() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert SPEC["info"]["version"] == version
    default_listen = Settings.model_fields["listen"].default
    assert SPEC["servers"][0]["url"] == f"http://{default_listen}"


def resolve(obj: dict[str, object]) -> dict[str, object]:
    ref = obj.get("$ref")
    if not isinstance(ref, str):
        return obj
    node: object = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]  # type: ignore[index]
    return node  # type: ignore[return-value]


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_a_generated_client_keeps_every_error_response(tmp_path: Path) -> None:
    tool = Path(sys.executable).parent / "openapi-python-client"
    if not tool.exists():
        pytest.fail("openapi-python-client is not installed (the test extra has it)")
    done = subprocess.run(
        [str(tool), "generate", "--path", str(REPO / "openapi.yaml"), "--meta", "none",
         "--output-path", str(tmp_path / "gen")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    dropped = [ln for ln in done.stdout.splitlines() if "response will be omitted" in ln]
    # The one answer a generated client cannot parse: the YAML document itself.
    assert all("application/yaml" in ln for ln in dropped), dropped
    modules = {p.stem: p.read_text() for p in (tmp_path / "gen" / "api").rglob("*.py")}
    checked = 0
    for path_item in SPEC["paths"].values():
        for method, op in path_item.items():
            if method not in ("get", "put", "post", "delete"):
                continue
            code_text = modules[snake(op["operationId"])]
            for status, raw in op["responses"].items():
                content = resolve(raw).get("content", {})
                if not any(t in content for t in JSON_TYPES):  # type: ignore[operator]
                    continue
                assert f"response.status_code == {status}" in code_text, (op["operationId"], status)
                checked += int(status) >= 400
    assert checked > 50  # error answers, across every operation
