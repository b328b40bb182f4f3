"""k8s/ says what ran: the dev overlay's images, ports, probes, user ids, volumes and environment are
those of the images the container tests built and started (tests/containers/services.py) and of
the compose run (compose/compose.host.yaml), so a deployment is one `kubectl apply -k` away."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from syi_cli.services import SERVICES
from syi_cli.stack.system import Ports
from tests.containers.podman import image_config
from tests.containers.services import TMPFS, USER, VOLUMES, image, specs
from tests.ops.ops_tools import REPO_ROOT, require_tool
from tests.ops.test_k8s import by_kind, workloads

pytestmark = [pytest.mark.containers, pytest.mark.integration]  # builds and inspects the images

COMPOSE_HOST = REPO_ROOT / "compose" / "compose.host.yaml"
# Where k8s/ differs from the offline compose run on purpose: production stores go to a ClickHouse
# server (its DSN from a secret) instead of the chDB file on store-clickhouse's volume.
K8S_ONLY_ENV = {"store-clickhouse": {"SYI_CLICKHOUSE_DSN"}}
K8S_WITHOUT_VOLUME = {"store-clickhouse": {"/var/lib/syi"}}


def compose_services() -> dict[str, dict]:
    """compose.host.yaml as Compose resolves it with its defaults (the replay profile on)."""
    result = subprocess.run([require_tool("docker-compose"), "-f", str(COMPOSE_HOST), "config", "--format", "json"],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "COMPOSE_PROFILES": "replay"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def container(name: str) -> dict:
    return workloads("dev")[name]["spec"]["template"]["spec"]["containers"][0]


def k8s_env_names(name: str) -> tuple[set[str], set[str]]:
    """(the container's own variables, the ones it gets from ConfigMaps)."""
    c = container(name)
    maps = by_kind("dev", "ConfigMap")
    shared = {key for ref in c.get("envFrom", []) if "configMapRef" in ref
              for key in maps[ref["configMapRef"]["name"]]["data"]}
    return {e["name"] for e in c.get("env", [])}, shared


def health_port(name: str) -> int:
    spec = specs(Ports())[name]  # the defaults: what an image serves unless told otherwise
    return spec.port


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_k8s_runs_the_image_the_tests_ran_with_its_user(name, service_images):
    c = container(name)
    assert c["image"] == image(name) == compose_services()[name]["image"]
    security = workloads("dev")[name]["spec"]["template"]["spec"]["securityContext"]
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == USER == image_config(image(name))["User"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_k8s_port_and_probes_are_the_ones_the_image_and_compose_use(name, service_images):
    port = health_port(name)
    c = container(name)
    assert [p["containerPort"] for p in c["ports"]] == [port]
    assert f"{port}/tcp" in image_config(image(name))["ExposedPorts"]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {probe: (c[probe]["httpGet"]["path"], named[c[probe]["httpGet"]["port"]])
              for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": ("/healthz", port), "livenessProbe": ("/healthz", port),
                      "readinessProbe": ("/readyz", port)}
    check = " ".join(compose_services()[name]["healthcheck"]["test"])
    assert re.search(rf"http://127\.0\.0\.1:{port}/(healthz|readyz)", check), check


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_k8s_volumes_are_the_ones_the_containers_had(name):
    """Read-only root, an emptyDir /tmp (the tests' tmpfs), and the declared volumes only."""
    c = container(name)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    assert mounts == {TMPFS, *VOLUMES[name]} - K8S_WITHOUT_VOLUME.get(name, set())
    compose_mounts = {v["target"] for v in compose_services()[name].get("volumes", [])}
    assert compose_mounts <= set(VOLUMES[name])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_k8s_environment_is_the_one_compose_ran_with(name):
    """Every variable the compose run gave a service, k8s gives it too (the port variables aside:
    k8s keeps the images' default ports), and each of a container's own variables in k8s is one
    the compose run set."""
    compose_env = set(compose_services()[name].get("environment", {}))
    own, shared = k8s_env_names(name)
    port_env = specs(Ports())[name].port_env
    assert compose_env - {port_env} <= own | shared, f"not in k8s: {compose_env - {port_env} - own - shared}"
    assert own - K8S_ONLY_ENV.get(name, set()) <= compose_env, f"only in k8s: {own - compose_env}"
