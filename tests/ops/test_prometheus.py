"""Alert rules: promtool checks and unit tests, and conventions promtool cannot check.

promtool comes from the Debian package `prometheus`; `make test` installs it. These tests
fail (they do not skip) without it, so CI can never pass with the rules untested.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.ops import METRICS, OPS, exported_metrics, metric_names

PROMETHEUS = OPS / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
RUNBOOK = OPS / "runbook.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install prometheus (make test does this as root)"
    return path


def run_promtool(promtool: str, *args: str) -> str:
    result = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_check_rules(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "check", "rules", ALERTS.name)


def test_promtool_test_rules(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", ALERTS_TEST.name)


def test_promtool_check_compose_prometheus_config(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "check", "config", "prometheus.yml")


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = {rule["alert"] for rule in alerts()}
    for outcome in ("Sensitive", "Unregistered", "Duplicate", "AddressTooLong", "Excluded"):
        assert f"EmailLog{outcome}ShareHigh" in names
    expected = {"EmailLogDeletedRatioChanged", "EmailLogMessagesFailed", "EmailLogStalled"}
    expected |= {"EmailLogSourceDisconnected", "EmailLogUpstreamThrottled", "EmailLogDown"}
    assert expected <= names


def test_every_alert_has_severity_and_annotations() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: no {key}"


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_to_its_runbook_section() -> None:
    anchors = runbook_anchors()
    for rule in alerts():
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path.endswith("ops/runbook.md"), rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section in ops/runbook.md"


def test_every_runbook_alert_section_is_an_alert() -> None:
    sections = set(re.findall(r"^## (EmailLog\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    assert sections == {rule["alert"] for rule in alerts()}


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a not-firing test"


def test_the_service_exports_the_metrics_the_issue_lists() -> None:
    assert set(METRICS) - exported_metrics() == set()


def test_rules_use_only_exported_metrics() -> None:
    used = metric_names(ALERTS.read_text())
    assert used, "no emaillog_ metric found in alerts.yml"
    assert used - exported_metrics() == set()


def test_prometheus_rule_for_the_operator_matches_alerts_yml() -> None:
    rule = yaml.safe_load((OPS / "k8s" / "prometheusrule.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text()), (
        "ops/k8s/prometheusrule.yaml is stale: regenerate it (command in its header)"
    )


def test_compose_prometheus_scrapes_the_job_the_alerts_select() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["emaillog"]
    assert 'up{job="emaillog"}' in ALERTS.read_text()
    assert config["rule_files"] == [ALERTS.name]
