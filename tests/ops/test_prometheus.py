"""Prometheus: both scrape configs and the rules pass promtool, the rules' unit tests pass, every
alert is tested and has a runbook section, and every query names a registered metric."""

from __future__ import annotations

import re
import subprocess

import pytest

from syi_cli.services import SERVICES
from syi_cli.stack.system import Ports, service_specs
from tests.ops.ops_tools import OPS, REPO_ROOT, registered_metrics, require_tool, unknown_metrics

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: add pyyaml to the dev group of pyproject.toml")

PROMETHEUS = OPS / "prometheus"
CONFIGS = ["prometheus.yml", "prometheus-local.yml"]
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
# every service but the dev/test-only replay server exports /metrics
SCRAPED = sorted(set(SERVICES) - {"replay-server"})


def promtool(*args: str):
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS
    )


def rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def jobs(config: str) -> dict[str, list[str]]:
    loaded = yaml.safe_load((PROMETHEUS / config).read_text())
    return {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in loaded["scrape_configs"]
    }


@pytest.mark.parametrize("config", CONFIGS)
def test_scrape_config_passes_promtool_check_config(config):
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    assert UNIT_TESTS, "no promtool unit tests in ops/prometheus/tests"
    result = promtool("test", "rules", *(str(p) for p in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_unit_test():
    fired = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - fired == set(), f"alerts without a test where they fire: {sorted(alerts - fired)}"


def test_guide_alerts_have_the_guide_thresholds_and_severities():
    by_name = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    stale = by_name["SYIIndexStale"]
    assert "syi_freshness_seconds" in stale["expr"] and "> 300" in stale["expr"]
    assert stale["labels"]["severity"] == "critical"
    lag = by_name["KafkaConsumerLagHigh"]
    assert "kafka_consumer_lag" in lag["expr"] and "> 5000" in lag["expr"]
    assert lag["labels"]["severity"] == "warning"
    db = by_name["DatabaseConnectionErrors"]
    assert "[5m]" in db["expr"] and "> 10" in db["expr"] and db["labels"]["severity"] == "critical"
    assert "1800" in by_name["APYFreshnessSLA"]["expr"] and "[30m]" in by_name["APYFreshnessSLA"]["expr"]
    assert "600" in by_name["PegFreshnessSLA"]["expr"] and "[10m]" in by_name["PegFreshnessSLA"]["expr"]
    assert "[5m]" in by_name["SYIIndexNoUpdates"]["expr"]


def test_every_alert_has_a_runbook_section():
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    headings = {re.sub(r"[^a-z0-9]", "", line.lstrip("#").strip().lower()) for line in operations.splitlines()
                if line.startswith("#")}
    for rule in rules():
        if "alert" in rule:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert anchor in headings, f"{rule['alert']}: docs/operations.md has no section '{anchor}'"


def test_rules_read_only_registered_metrics():
    for rule in rules():
        unknown = unknown_metrics(rule["expr"])
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unregistered metrics {sorted(unknown)}"


def test_recording_rules_are_in_the_registry():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert recorded <= registered_metrics(), recorded - registered_metrics()


@pytest.mark.parametrize("config", CONFIGS)
def test_every_service_is_scraped_once(config):
    scraped = jobs(config)
    assert sorted(set(scraped) - {"prometheus"}) == SCRAPED
    assert all(len(targets) == 1 for targets in scraped.values())


def test_local_config_scrapes_the_ports_the_local_stack_uses():
    ports = {spec.name: spec.port for spec in service_specs(Ports(), live=False)}
    for job, targets in jobs("prometheus-local.yml").items():
        if job != "prometheus":
            assert targets == [f"127.0.0.1:{ports[job]}"], job


def test_compose_config_scrapes_the_compose_services_on_their_image_ports():
    from tests.ops.test_dockerfiles import exposed_port

    for job, targets in jobs("prometheus.yml").items():
        if job != "prometheus":
            assert targets == [f"{job}:{exposed_port(job)}"], job
