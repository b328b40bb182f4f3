"""Grafana: every dashboard loads, every panel queries only metrics the services export (the
registry in syi_shared.metric_names), and the provisioning finds the dashboards and datasource."""

from __future__ import annotations

import json

import pytest

from tests.ops.ops_tools import OPS, REPO_ROOT, promql_metric_names, unknown_metrics

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: add pyyaml to the dev group of pyproject.toml")

GRAFANA = OPS / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def panels(board: dict):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep theirs inside


def queries(board: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(board) for t in p.get("targets", [])]


def test_dashboards_load_with_unique_uids_and_titles():
    boards = dashboards()
    assert len(boards) >= 4
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        assert board["title"] and board["panels"], name
        assert name == f"{board['uid']}.json"


def test_every_panel_query_names_only_registered_metrics():
    for name, board in dashboards().items():
        for title, expr in queries(board):
            assert promql_metric_names(expr), f"{name} / {title}: no metric in {expr!r}"
            unknown = unknown_metrics(expr)
            assert not unknown, f"{name} / {title}: {sorted(unknown)} are not in syi_shared.metric_names"


def test_every_data_panel_has_a_query_on_the_provisioned_datasource():
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel.get("targets"), f"{name} / {panel['title']}: no query"
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])


def test_panels_do_not_overlap():
    for name, board in dashboards().items():
        taken: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert pos["x"] + pos["w"] <= 24, f"{name} / {panel['title']} is wider than the grid"
            assert not cells & taken, f"{name} / {panel['title']} overlaps another panel"
            taken |= cells


@pytest.mark.parametrize(
    ("topic", "metric"),
    [
        ("index value", "syi_index_value_percent"),
        ("risk premium", "syi_risk_premium_decimal"),
        ("per-constituent RAY", "syi_constituent_ray_decimal"),
        ("per-constituent scores", "syi_constituent_score"),
        ("freshness", "syi_freshness_seconds"),
        ("calculation latency", "syi_calculation_latency_seconds_bucket"),
        ("consumer lag", "kafka_consumer_lag"),
        ("gateway connections", "syi_ws_subscribers"),
        ("API latency", "syi_api_request_latency_seconds_bucket"),
        ("index updates per minute", "syi:index_updates_per_minute"),
        ("data quality", "syi_data_quality_score"),
        ("completeness", "constituent_data_completeness"),
    ],
)
def test_dashboards_show(topic, metric):
    shown = {m for board in dashboards().values() for _, expr in queries(board) for m in promql_metric_names(expr)}
    assert metric in shown, f"no dashboard shows {topic} ({metric})"


def test_provisioning_serves_the_dashboards_folder_that_compose_mounts():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "stableyield.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO_ROOT / "compose" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../ops/grafana/dashboards:{path}:ro" in mounts
    assert "../ops/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
