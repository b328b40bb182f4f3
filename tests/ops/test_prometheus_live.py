"""A real Prometheus (Debian's binary) with the project's local scrape config and rules, scraping
every service started as a process against this session's Kafka and PostgreSQL (the same way
`syi stack up` starts them, on free ports), finds each service's series through its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from syi_cli.services import SERVICES
from syi_cli.stack.system import Ports, System
from tests.conftest import free_port
from tests.ops.ops_tools import OPS, registered_metrics, require_tool

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: add pyyaml to the dev group of pyproject.toml")

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SCRAPED = sorted(set(SERVICES) - {"replay-server"})
# A series each service exports once it runs (and, for the sources, once data flows).
KEY_SERIES = {
    "ray-calc": 'syi_freshness_seconds{job="ray-calc"}',
    "syi-calc": 'syi_freshness_seconds{job="syi-calc"}',
    "ingest-binance": 'syi_messages_published_total{job="ingest-binance",topic="cc.prices"}',
    "ws-gateway": 'syi_ws_subscribers{job="ws-gateway"}',
    "rest-api": 'syi_api_requests_total{job="rest-api"}',
}


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return json.loads(response.read())


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what} not seen within {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def system(provisioned, postgres_dsn) -> Iterator[System]:
    """Every service as its own process, ports all free, sources on the replayed market."""
    state = Path(tempfile.mkdtemp(prefix="syi-ops-system-"))
    ports = Ports(**{f.name: free_port() for f in fields(Ports)})
    stack_env = {"SYI_KAFKA_BOOTSTRAP_SERVERS": provisioned.kafka_config()["bootstrap.servers"],
                 "SYI_POSTGRES_DSN": postgres_dsn}
    running = System(state, stack_env, ports=ports, live=False)
    try:
        running.up(say=lambda message: None, ready_timeout=120)
        yield running
    finally:
        for spec in running.specs:
            running.process(spec).stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def prometheus(system: System, tmp_path_factory) -> Iterator[str]:
    """Prometheus with ops/prometheus/prometheus-local.yml, its targets moved to the test ports."""
    binary = require_tool("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = yaml.safe_load((OPS / "prometheus" / "prometheus-local.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(OPS / "prometheus" / "rules" / "*.yml")]
    ports = {spec.name: spec.port for spec in system.specs}
    for job in config["scrape_configs"]:
        target = f"127.0.0.1:{port}" if job["job_name"] == "prometheus" else f"127.0.0.1:{ports[job['job_name']]}"
        job["static_configs"] = [{"targets": [target]}]
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (home / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus ready", lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def query(url: str, promql: str) -> list[dict]:
    answer = get_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_scrapes_every_service(prometheus):
    def all_up():
        up = {r["metric"]["job"]: r["value"][1] for r in query(prometheus, "up")}
        return up if all(up.get(job) == "1" for job in [*SCRAPED, "prometheus"]) else None

    up = wait_for("every target up", all_up, timeout=60)
    assert set(up) == {*SCRAPED, "prometheus"}


def test_every_service_exports_registered_metrics(prometheus):
    registered = registered_metrics()

    def names_by_job():
        found: dict[str, set[str]] = {}
        for result in query(prometheus, 'count by (job, __name__) ({job=~".+", job!="prometheus"})'):
            found.setdefault(result["metric"]["job"], set()).add(result["metric"]["__name__"])
        ours = {job: {n for n in names if n in registered or n.removesuffix("_bucket") in registered}
                for job, names in found.items()}
        return ours if all(ours.get(job) for job in SCRAPED) else None

    ours = wait_for("registered metrics from every service", names_by_job, timeout=60)
    assert set(ours) == set(SCRAPED)


def test_key_series_of_each_service_are_found(prometheus, system):
    # one request through the API so its request counter has a series
    api = next(s for s in system.specs if s.name == "rest-api")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{api.port}/api/index/current", timeout=10)  # noqa: S310
    except OSError:
        pass  # 404/503 before the first index value is still a counted request
    for job, series in KEY_SERIES.items():
        wait_for(f"{series} in Prometheus", lambda s=series: query(prometheus, s), timeout=90)


def test_alert_and_recording_rules_load_and_evaluate(prometheus):
    expected = {g["name"] for path in (OPS / "prometheus" / "rules").glob("*.yml")
                for g in yaml.safe_load(path.read_text())["groups"]}

    def evaluated():
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        done = {g["name"] for g in groups} == expected and all(r.get("health") == "ok" for r in rules)
        return groups if done else None

    groups = wait_for("every rule evaluated without error", evaluated, timeout=60)
    assert sum(len(g["rules"]) for g in groups) >= 16
