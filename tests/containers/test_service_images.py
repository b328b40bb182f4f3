"""Every service image, built and run as an operator would: each container started next to a real
Kafka and PostgreSQL on the host's network, its root file system read-only with a tmpfs /tmp and
its declared volumes only, no capabilities (as k8s/ runs it). Each one runs as uid 10001, answers
/healthz with 200, still runs when stopped, and exits 0 on SIGTERM within its grace period.

All ten start at once and are stopped together (one start-up for the module); each test then
reads its outcome, with the container's log in the message."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from syi_cli.services import SERVICES
from syi_cli.stack.system import Ports
from tests.conftest import free_port
from tests.containers.podman import Container, create_volume, image_config
from tests.containers.services import STOP_GRACE_S, USER, VOLUMES, container_env, image, specs

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.timeout(1800)]

START_TIMEOUT_S = 120
# What podman itself changes in every container's root: the mount points of /etc/hosts, /etc/hostname
# and /etc/resolv.conf in /etc (seen on a container that runs nothing but `true`).
PODMAN_OWN_CHANGES = {"C /etc"}


@dataclass
class Outcome:
    container: Container
    health_url: str
    healthz: int | None = None
    uid_gid: tuple[int, int] | None = None
    running_at_stop: bool = False
    diff: list[str] = field(default_factory=list)
    stop_seconds: float | None = None
    exit_code: int | None = None
    log: str = ""

    def why(self) -> str:
        return f"{self.container.name}: log tail:\n{self.log}"


def healthz(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture(scope="module")
def outcomes(service_images, container_kafka, container_database) -> dict[str, Outcome]:
    ports = Ports(**{name: free_port() for name in Ports.__dataclass_fields__})
    found: dict[str, Outcome] = {}
    for name, spec in specs(ports).items():
        volumes = {create_volume(f"syi-test-{name}-{i}-{time.monotonic_ns()}"): target
                   for i, target in enumerate(VOLUMES[name])}
        container = Container(f"syi-test-{name}-{time.monotonic_ns()}", image(name),
                              container_env(spec, ports, container_kafka, container_database), volumes, STOP_GRACE_S)
        container.start()
        found[name] = Outcome(container, f"http://127.0.0.1:{spec.port}{spec.health_path}")

    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = set(found)
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            outcome = found[name]
            if (status := healthz(outcome.health_url)) == 200:
                outcome.healthz = status
                outcome.uid_gid = outcome.container.process_uid_gid()
                waiting.discard(name)
            elif not outcome.container.state()["Running"]:
                waiting.discard(name)  # exited: its tests say so with its log
        time.sleep(1)
    time.sleep(5)  # a service that fails just after its first answer (a late write, a lost broker) shows it

    def stop(outcome: Outcome) -> None:
        outcome.running_at_stop = bool(outcome.container.state()["Running"])
        outcome.diff = outcome.container.diff()
        if outcome.running_at_stop:
            outcome.stop_seconds, outcome.exit_code = outcome.container.stop()
        outcome.log = outcome.container.logs()

    with ThreadPoolExecutor(len(found)) as pool:
        list(pool.map(stop, found.values()))
    return found


def test_every_service_has_an_image_built_from_its_dockerfile(service_images):
    for name in SERVICES:
        config = image_config(image(name))
        assert config["User"] == USER, name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_answers_healthz_with_200_once_started(outcomes, name):
    outcome = outcomes[name]
    assert outcome.healthz == 200, outcome.why()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_runs_as_uid_10001_not_root(outcomes, name):
    assert outcomes[name].uid_gid == (10001, 10001), outcomes[name].why()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_exits_0_on_sigterm_within_its_grace_period(outcomes, name):
    outcome = outcomes[name]
    assert outcome.running_at_stop, f"it had exited before the stop: {outcome.why()}"
    assert outcome.exit_code == 0, outcome.why()
    assert outcome.stop_seconds is not None and outcome.stop_seconds < STOP_GRACE_S, outcome.why()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_writes_nothing_outside_its_declared_volumes(outcomes, name):
    """The root file system is read-only (a write there fails the service); podman's diff of it
    must be empty too."""
    assert set(outcomes[name].diff) - PODMAN_OWN_CHANGES == set(), outcomes[name].why()
