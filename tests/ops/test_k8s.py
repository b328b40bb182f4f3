"""k8s/: the overlays build with kustomize and every object validates against the Kubernetes
schemas (kubernetes-validate, offline, strict); the manifests hold what docs/operations.md says
("Kubernetes", "Scale")."""

from __future__ import annotations

import importlib
import subprocess
from functools import cache

import pytest

from syi_cli.services import SERVICES
from syi_cli.stack.system import Ports, service_specs
from tests.ops.ops_tools import REPO_ROOT, find_tool, require_tool, settings_env_names

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: add pyyaml to the dev group of pyproject.toml")

K8S = REPO_ROOT / "k8s"
OVERLAYS = ["dev", "prod"]
KUBERNETES_VERSIONS = ["1.30.0", "1.34.0"]
CALCULATORS = {"ray-calc", "syi-calc"}  # Bytewax; their state is a checkpoint in Kafka, not on a volume
DEPLOYED = sorted(set(SERVICES) - {"replay-server"})  # replay-server: dev overlay only
DOCUMENTED_SECRETS = {"syi-postgres", "syi-clickhouse", "syi-fred", "syi-cryptocompare", "syi-api", "syi-kafka"}


@cache
def build(overlay: str) -> tuple[str, ...]:
    """`kustomize build` of an overlay (kustomize, else kubectl's built-in kustomize)."""
    kustomize = find_tool("kustomize")
    if kustomize:
        command = [kustomize, "build", str(K8S / "overlays" / overlay)]
    elif find_tool("kubectl"):
        command = [find_tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)]
    else:
        pytest.skip("kustomize is not installed; install it with: "
                    "go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return (result.stdout,)


def objects(overlay: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(build(overlay)[0]) if doc]


def by_kind(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects(overlay) if o["kind"] == kind}


def workloads(overlay: str) -> dict[str, dict]:
    return {**by_kind(overlay, "Deployment"), **by_kind(overlay, "StatefulSet")}


def pod_specs(overlay: str):
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, obj in by_kind(overlay, kind).items():
            yield f"{kind}/{name}", obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schemas(overlay, version, tmp_path):
    validate = require_tool("kubernetes-validate")
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(build(overlay)[0])
    result = subprocess.run(
        [validate, "--strict", "--quiet", "-k", version, str(manifest)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_schema_validation_catches_a_wrong_field(tmp_path):
    validate = require_tool("kubernetes-validate")
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(build("prod")[0].replace("revisionHistoryLimit: 5", "revisionHistoryLimit: five", 1))
    result = subprocess.run([validate, "--strict", "--quiet", str(manifest)], capture_output=True, text=True,
                            timeout=120)
    assert "ERROR" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_runs_as_a_deployment_without_persistent_volumes(overlay):
    deployments = by_kind(overlay, "Deployment")
    assert set(deployments) == set(DEPLOYED) | ({"replay-server"} if overlay == "dev" else set())
    assert not by_kind(overlay, "StatefulSet") and not by_kind(overlay, "PersistentVolumeClaim")
    for name, obj in deployments.items():
        assert obj["spec"]["template"]["spec"]["containers"][0]["image"].split("/")[-1].startswith(f"{name}:")
        for volume in obj["spec"]["template"]["spec"].get("volumes", []):
            assert "persistentVolumeClaim" not in volume, (name, volume)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_calculators_run_one_copy_never_two_at_once(overlay):
    """Two copies of a calculator share its Kafka transactional id and fence each other: one
    replica, no autoscaler, and Recreate so an update stops the old pod before the new one starts."""
    deployments = by_kind(overlay, "Deployment")
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind(overlay, "HorizontalPodAutoscaler").values()}
    for name in CALCULATORS:
        spec = deployments[name]["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, name
        assert name not in scaled, f"{name} must not be autoscaled"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_resources_and_runs_non_root(overlay):
    for where, spec in pod_specs(overlay):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            if not where.startswith("Job/"):
                assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container), where


def health_port(name: str, env: dict[str, str]) -> int:
    """Where a service serves /healthz and /readyz, as its settings say: the calculators on their
    metrics port (SYI_METRICS_PORT), ingesters and writers on SYI_HEALTH_PORT, the API, the gateway
    and the replay server on their own port (the variable `syi stack` moves for each)."""
    spec = next(s for s in service_specs(Ports(), live=False) if s.name == name)
    if spec.port_env in env:
        return int(env[spec.port_env])
    settings = importlib.import_module(f"{SERVICES[name]}.settings").Settings
    return settings.model_fields[spec.port_env.removeprefix("SYI_").lower()].default


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_liveness_probes_healthz_and_readiness_probes_readyz_on_each_services_health_port(overlay):
    """/healthz answers 200 for ok and degraded (a restart only helps a failed service); /readyz 200
    only for ok. Liveness (and start-up) on the first, readiness on the second, so an outage
    makes pods unready instead of restarting them all."""
    found = workloads(overlay)
    assert set(found) == set(DEPLOYED) | ({"replay-server"} if overlay == "dev" else set())
    for name, obj in found.items():
        container = obj["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        expected = health_port(name, env)
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (overlay, name, probe)
            port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
            assert port == expected, f"{overlay} {name} {probe}: port {port}, but its health is on {expected}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_embedded(overlay):
    assert not by_kind(overlay, "Secret"), "a Secret object in the manifests would put its value in git"
    referenced = set()
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for env in container.get("env", []):
                assert "value" in env or "valueFrom" in env, where
                if "valueFrom" in env:
                    referenced.add(env["valueFrom"]["secretKeyRef"]["name"])
                elif any(word in env["name"] for word in ("KEY", "PASSWORD", "SECRET", "DSN")):
                    pytest.fail(f"{where}: {env['name']} has a literal value")
    assert referenced <= DOCUMENTED_SECRETS, referenced - DOCUMENTED_SECRETS
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    for secret in referenced:
        assert f"`{secret}`" in operations, f"docs/operations.md does not document the secret {secret}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_follows_the_operations_doc(overlay):
    hpas = by_kind(overlay, "HorizontalPodAutoscaler")
    api = hpas["rest-api"]["spec"]["metrics"][0]
    assert api["resource"]["name"] == "cpu" and api["resource"]["target"]["averageUtilization"] == 70
    gateway = hpas["ws-gateway"]["spec"]["metrics"][0]
    assert gateway["type"] == "Pods" and gateway["pods"]["metric"]["name"] == "syi_ws_subscribers"
    assert gateway["pods"]["target"]["averageValue"] == "1000"
    if overlay == "prod":
        assert (hpas["rest-api"]["spec"]["minReplicas"], hpas["rest-api"]["spec"]["maxReplicas"]) == (3, 10)
    for hpa in hpas.values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in workloads(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget_a_service_and_an_account(overlay):
    budgets, services = by_kind(overlay, "PodDisruptionBudget"), by_kind(overlay, "Service")
    accounts = by_kind(overlay, "ServiceAccount")
    for name, obj in workloads(overlay).items():
        labels = obj["spec"]["template"]["metadata"]["labels"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert services[name]["spec"]["selector"].items() <= labels.items(), name
        assert obj["spec"]["template"]["spec"]["serviceAccountName"] in accounts, name
        replicas = obj["spec"].get("replicas", 1)
        if "minAvailable" in budgets[name]["spec"]:
            assert budgets[name]["spec"]["minAvailable"] < replicas, f"{name}: the budget would block every drain"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_is_denied_by_default_and_opened_per_need(overlay):
    policies = by_kind(overlay, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    assert {"allow-dns", "allow-data-stores", "allow-public-ingress", "allow-prometheus-scrape"} <= set(policies)


def test_rbac_grants_only_reading_the_config():
    roles = by_kind("prod", "Role")
    assert set(roles) == {"syi-read-config"}
    assert roles["syi-read-config"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["syi-config"], "verbs": ["get"]}
    ]
    assert not by_kind("prod", "ClusterRole") and not by_kind("prod", "ClusterRoleBinding")


@pytest.mark.parametrize(("overlay", "replication"), [("dev", "1"), ("prod", "3")])
def test_topic_provisioning_job_creates_the_registry_topics(overlay, replication):
    job = by_kind(overlay, "Job")["syi-topics"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "provision_topics" in " ".join(container["command"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SYI_TOPIC_REPLICATION_FACTOR"] == replication
    # the command is real Python that compiles
    compile(container["command"][-1], "provision-topics", "exec")


def test_prod_uses_release_images_and_sasl_credentials_from_a_secret():
    for where, spec in pod_specs("prod"):
        container = spec["containers"][0]
        assert container["image"].endswith(":0.1.0") and "/stableyield/" in container["image"], where
        names = {e["name"] for e in container["env"]}
        assert {"SYI_KAFKA__SASL_USERNAME", "SYI_KAFKA__SASL_PASSWORD"} <= names, where
    for where, spec in pod_specs("dev"):
        assert spec["containers"][0]["image"].endswith(":dev"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_given_to_a_workload_is_a_setting_it_reads(overlay):
    for name, obj in workloads(overlay).items():
        container = obj["spec"]["template"]["spec"]["containers"][0]
        given = {e["name"] for e in container["env"]}
        unknown = given - settings_env_names(name)
        assert not unknown, f"{overlay} {name} is given {sorted(unknown)}, which its settings do not read"
    everything = set().union(*(settings_env_names(name) for name in SERVICES))
    for config in by_kind(overlay, "ConfigMap").values():
        unknown = set(config["data"]) - everything
        assert not unknown, f"{overlay} ConfigMap {config['metadata']['name']}: no service reads {sorted(unknown)}"
