"""compose/compose.host.yaml run for real with podman-compose (PyPI): the offline profile (Kafka and
plain PostgreSQL from images built here from Debian packages, chDB inside store-clickhouse, no
Prometheus or Grafana), every service from its image, every port moved to a free one. Then the
end-to-end test's checks from the containers: a WebSocket client gets the snapshot and a new
value, REST serves the record on Kafka; `down -v` leaves no container and no volume.

Slow (the first build of the Kafka and PostgreSQL images, then minutes for two index values):
it runs in `make test-long` (SYI_CONTAINERS_LONG=1)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request
import uuid

import orjson
import pytest
import websockets
from confluent_kafka import Consumer

from syi_cli.stack.system import Ports
from tests.conftest import REPO_ROOT, free_port, free_port_pair
from tests.containers.podman import ENV, build_images, podman

pytestmark = [
    pytest.mark.containers,
    pytest.mark.integration,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.environ.get("SYI_CONTAINERS_LONG") != "1",
                       reason="the compose run is part of `make test-long` (SYI_CONTAINERS_LONG=1)"),
]

COMPOSE_FILE = REPO_ROOT / "compose" / "compose.host.yaml"
PODMAN_COMPOSE = REPO_ROOT / ".cache" / "tools" / "bin" / "podman-compose"  # scripts/setup.sh --containers
SERVICES_UP_S = 300


def compose(project: str, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(PODMAN_COMPOSE), "-p", project, "-f", str(COMPOSE_FILE), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO_ROOT)


def project_objects(project: str) -> tuple[list[str], list[str]]:
    label = f"label=io.podman.compose.project={project}"
    containers = podman("ps", "-a", "--format", "{{.Names}}", "--filter", label).stdout.split()
    volumes = podman("volume", "ls", "-q", "--filter", label).stdout.split()
    return containers, volumes


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (loopback)
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack():
    assert PODMAN_COMPOSE.exists(), "podman-compose is missing: bash scripts/setup.sh --containers"
    build_images()
    build_images("kafka", "postgres")
    ports = Ports(**{name: free_port() for name in Ports.__dataclass_fields__})
    kafka_port = free_port_pair()
    project = f"syi-test-{uuid.uuid4().hex[:8]}"
    env = {
        **ENV,
        "COMPOSE_PROFILES": "replay",
        "SYI_KAFKA_PORT": str(kafka_port),
        "SYI_KAFKA_CONTROLLER_PORT": str(kafka_port + 1),
        "SYI_PG_PORT": str(free_port()),
        **{f"SYI_STACK_PORT_{name.upper()}": str(getattr(ports, name)) for name in Ports.__dataclass_fields__},
    }
    down_result: dict = {}

    def down() -> dict:
        if not down_result:
            result = compose(project, env, "down", "-v", "-t", "30")
            down_result.update(returncode=result.returncode, stderr=result.stderr[-2000:],
                               left=project_objects(project))
        return down_result

    started = time.monotonic()
    up = compose(project, env, "up", "-d", "--no-build")
    try:
        assert up.returncode == 0, f"podman-compose up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        # the first index value published and stored: REST serves it
        current = f"http://127.0.0.1:{ports.api}/api/index/current"
        deadline = time.monotonic() + SERVICES_UP_S
        while not answers(current) and time.monotonic() < deadline:
            time.sleep(2)
        print(f"\ncompose: first index value served {time.monotonic() - started:.0f} s after `up`")
        yield {"project": project, "ports": ports, "kafka": f"127.0.0.1:{kafka_port}", "down": down}
    finally:
        down()
        containers, volumes = project_objects(project)  # whatever happened, nothing is left for the next run
        for name in containers:
            podman("rm", "-f", "-t", "0", name, check=False)
        for volume in volumes:
            podman("volume", "rm", "-f", volume, check=False)


def test_every_container_of_the_stack_runs(stack):
    names = podman("ps", "--format", "{{.Names}} {{.Status}}", "--filter",
                   f"label=io.podman.compose.project={stack['project']}").stdout.splitlines()
    running = {line.split()[0].removeprefix(f"{stack['project']}_").rsplit("_", 1)[0] for line in names}
    assert running == {"kafka", "postgres", "replay-server", "ingest-binance", "ingest-defillama", "ingest-fred",
                       "ray-calc", "syi-calc", "store-timescale", "store-clickhouse", "rest-api", "ws-gateway"}


def test_websocket_client_gets_a_snapshot_then_a_new_value(stack):
    url = f"ws://127.0.0.1:{stack['ports'].gateway}/stream/syi/live"

    async def watch() -> list[dict]:
        async with websockets.connect(url) as socket:
            seen = []
            while not any(m["type"] == "syi" for m in seen):
                seen.append(orjson.loads(await asyncio.wait_for(socket.recv(), timeout=150)))
            return seen

    messages = asyncio.run(watch())
    assert [m["type"] for m in messages[:2]] == ["welcome", "snapshot"]
    snapshot, update = messages[1]["data"], messages[-1]["data"]
    assert update["bucket_end"] > snapshot["bucket_end"]
    assert update["index_id"] == "SYI"


def test_rest_current_equals_the_value_on_kafka(stack):
    consumer = Consumer({"bootstrap.servers": stack["kafka"], "group.id": "containers-plain-consumer",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe(["syi.calculated"])
    on_kafka: dict[str, dict] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            if on_kafka:
                break
            continue
        if not message.error():
            record = orjson.loads(message.value())
            on_kafka[record["bucket_end"]] = record
    consumer.close()
    assert on_kafka, "no value on syi.calculated"
    api = f"http://127.0.0.1:{stack['ports'].api}"
    for _ in range(20):  # the writer and the API's one-second cache may trail Kafka a little
        with urllib.request.urlopen(f"{api}/api/index/current", timeout=10) as response:  # noqa: S310
            current = orjson.loads(response.read())
        if current["bucket_end"] in on_kafka:
            break
        time.sleep(1)
    published = on_kafka[current["bucket_end"]]
    assert (current["cid"], current["syi_decimal"]) == (published["cid"], published["syi_decimal"])


def test_shut_down_leaves_nothing_running(stack):
    """Runs last: `podman-compose down -v` stops every container (exit 0) and removes the volumes."""
    result = stack["down"]()
    assert result["returncode"] == 0, result["stderr"]
    assert result["left"] == ([], []), f"left behind: {result['left']}"
    ports = stack["ports"]
    assert not any(answers(f"http://127.0.0.1:{port}/healthz") for port in (ports.api, ports.gateway, ports.syi_calc))
