"""What each service's container is given in the container tests: the settings `syi stack` gives
its process (tests move every port to a free one), and its declared volumes. The k8s/ check
(test_k8s_matches_containers.py) compares the manifests with these."""

from __future__ import annotations

from syi_cli.services import SERVICES
from syi_cli.stack.system import Ports, ServiceSpec, service_specs

IMAGE_PREFIX = "stableyield"
TAG = "dev"
USER = "10001:10001"  # every image's numeric USER (k8s/: runAsUser and runAsGroup 10001)
STOP_GRACE_S = 30  # compose's stop_grace_period, k8s' terminationGracePeriodSeconds
# The only places a service writes: its volumes (store-clickhouse's embedded chDB store) and a tmpfs
# /tmp (in k8s/ an emptyDir; Bytewax's dataflow.json, the calculators' working directory).
VOLUMES: dict[str, tuple[str, ...]] = {name: () for name in SERVICES} | {"store-clickhouse": ("/var/lib/syi",)}
TMPFS = "/tmp"


def image(service: str) -> str:
    return f"{IMAGE_PREFIX}/{service}:{TAG}"


def specs(ports: Ports) -> dict[str, ServiceSpec]:
    return {spec.name: spec for spec in service_specs(ports, live=False)}


def container_env(spec: ServiceSpec, ports: Ports, kafka: str, postgres_dsn: str) -> dict[str, str]:
    """The service's environment: what `syi stack` gives its process, minus the host's paths (the
    image's methodology file and chDB folder stay)."""
    env = {
        "SYI_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SYI_LOG_LEVEL": "INFO",
        spec.port_env: str(spec.port),
        **spec.env,
    }
    if spec.name in ("store-timescale", "rest-api"):
        env["SYI_POSTGRES_DSN"] = postgres_dsn
    if spec.name == "rest-api":
        env["SYI_WS_PUBLIC_URL"] = f"ws://127.0.0.1:{ports.gateway}/stream/syi/live"
    return env
