"""Kubernetes manifests, the compose stack and the Grafana dashboard: valid, consistent with
each other and with the service's settings and metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import SECRET_FIELDS, Settings
from tests.ops import METRICS, OPS, REPO, exported_metrics, metric_names

K8S = OPS / "k8s"
YAML_FILES = sorted([*OPS.rglob("*.yml"), *OPS.rglob("*.yaml")])
KNOWN_VARIABLES = set(Settings.variables())
DEFAULT_DRAIN_SECONDS = Settings().limits.drain_timeout_seconds


def load(name: str) -> Any:
    return yaml.safe_load((K8S / name).read_text())


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(OPS)))
def test_yaml_file_is_valid(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert len(documents) == 1


def test_yaml_files_were_found() -> None:
    assert len(YAML_FILES) >= 10


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    resources = load("kustomization.yaml")["resources"]
    for name in resources:
        assert (K8S / name).is_file(), name
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying placeholder secrets would overwrite the real Secret.
    assert set(resources) == manifests - {"secret.example.yaml"}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = load("deployment.yaml")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    return dict(only)


def test_one_replica_and_never_two_during_a_rollout() -> None:
    deployment = load("deployment.yaml")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_probes_use_livez_and_readyz_on_a_declared_port() -> None:
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert ports == {"http": 8080, "ui": 8081}
    assert load("configmap.yaml")["data"]["EMAILLOG_UI_PORT"] == str(ports["ui"])
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = container()[probe]["httpGet"]
        assert http["port"] in ports
        paths[probe] = http["path"]
    assert paths == {
        "startupProbe": "/livez",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }


def test_grace_period_outlasts_the_drain() -> None:
    configured = float(load("configmap.yaml")["data"]["EMAILLOG_DRAIN_TIMEOUT_SECONDS"])
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > DEFAULT_DRAIN_SECONDS
    assert grace > configured


def test_resources_and_security_context() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    assert pod_spec()["securityContext"]["runAsNonRoot"] is True
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    (tmp,) = [m for m in container()["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_secrets_come_from_the_secret_as_files() -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    mounts = {
        mount["mountPath"]: mount["name"]
        for mount in container()["volumeMounts"]
        if "secret" in volumes[mount["name"]]
    }
    ((mount_path, volume_name),) = mounts.items()
    assert volumes[volume_name]["secret"]["secretName"] == secret["metadata"]["name"]
    secret_files = {f"EMAILLOG_{name.upper()}_FILE" for name in SECRET_FIELDS}
    file_vars = {e["name"]: e["value"] for e in container()["env"] if e["name"].endswith("_FILE")}
    assert file_vars, "no EMAILLOG_*_FILE variables"
    for name, value in file_vars.items():
        assert name in secret_files, f"{name}: not a secret setting read from a file"
        directory, _, key = value.rpartition("/")
        assert directory == mount_path and key in secret["stringData"], name
    # No secret value in plain environment variables.
    plain = {e["name"] for e in container()["env"]} - set(file_vars)
    assert not plain & {f"EMAILLOG_{name.upper()}" for name in SECRET_FIELDS}


def test_configmap_holds_known_non_secret_settings() -> None:
    configmap = load("configmap.yaml")
    refs = [ref["configMapRef"]["name"] for ref in container()["envFrom"]]
    assert refs == [configmap["metadata"]["name"]]
    data = configmap["data"]
    assert set(data) <= KNOWN_VARIABLES, set(data) - KNOWN_VARIABLES
    assert not set(data) & {f"EMAILLOG_{name.upper()}" for name in SECRET_FIELDS}
    assert all(isinstance(value, str) for value in data.values()), "quote numbers"


def test_service_and_servicemonitor_select_the_pods() -> None:
    pod_labels = load("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    service = load("service.yaml")
    # The Service name becomes the job label that EmailLogDown selects.
    assert service["metadata"]["name"] == "emaillog"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert set(ports) == {"http", "ui"}
    for port in ports.values():
        assert port["targetPort"] in {p["name"] for p in container()["ports"]}
    port = ports["http"]
    monitor = load("servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"


def test_compose_stack() -> None:
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "emaillog", "prometheus"}
    service = services["emaillog"]
    assert (OPS / service["build"]["context"]).resolve() == REPO
    assert (REPO / service["build"]["dockerfile"]).is_file()
    environment = service["environment"]
    assert set(environment) <= KNOWN_VARIABLES, set(environment) - KNOWN_VARIABLES
    assert "@postgres:5432/" in environment["EMAILLOG_DATABASE_URL"]
    assert "postgres" in service["depends_on"]
    grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert grace and int(grace.group(1)) > DEFAULT_DRAIN_SECONDS
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"])
    assert mounts["./prometheus"] == "/etc/prometheus"
    assert (OPS / "prometheus" / "prometheus.yml").is_file()


DASHBOARD = json.loads((OPS / "grafana" / "emaillog.json").read_text())
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]
EXPRESSIONS = "\n".join(target["expr"] for panel in PANELS for target in panel["targets"])


def test_dashboard_shows_every_metric_and_only_known_ones() -> None:
    used = metric_names(EXPRESSIONS)
    assert set(METRICS) - used == set(), "metrics of the issue missing from the dashboard"
    assert exported_metrics() - used == set(), "exported metrics missing from the dashboard"
    assert used - exported_metrics() == set(), "metrics the service does not export"


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    assert "sum by (outcome) (rate(emaillog_messages_total" in EXPRESSIONS
    assert (
        "histogram_quantile(0.95, sum by (le) (rate(emaillog_end_to_end_seconds_bucket"
        in EXPRESSIONS
    )
    assert (
        "histogram_quantile(0.95, sum by (le, stage) (rate(emaillog_stage_duration_seconds_bucket"
        in EXPRESSIONS
    )
    assert "time() - max(emaillog_last_disposed_timestamp_seconds" in EXPRESSIONS


def test_dashboard_datasource_is_a_variable() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in PANELS:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_model_is_well_formed() -> None:
    assert 8 <= len(DASHBOARD["uid"]) <= 40 and DASHBOARD["title"]
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_ops_files_mention_only_real_settings() -> None:
    files = [REPO / "Dockerfile", *OPS.rglob("*.y*ml"), OPS / "runbook.md"]
    for path in files:
        for name in re.findall(r"\bEMAILLOG_[A-Z_]+[A-Z]", path.read_text()):
            # EMAILLOG_API_TOKENS_FILE is a setting itself; others are <SECRET>_FILE.
            known = {name, name.removesuffix("_FILE")} & KNOWN_VARIABLES
            assert known, f"{path.name}: {name}"
