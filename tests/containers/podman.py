"""podman as the container tests drive it: the project's settings (ops/images/containers.conf),
images built by ops/images/build.sh, and containers labelled with the session so that every one
the tests started is removed, whatever happened."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO_ROOT

CONF = REPO_ROOT / "ops" / "images" / "containers.conf"
ENV = {**os.environ, "CONTAINERS_CONF": str(CONF)}
LABEL = f"syi-test={uuid.uuid4().hex[:12]}"  # this session's containers and volumes


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def build_images(*names: str, timeout: float = 1800) -> float:
    """ops/images/build.sh (the same as `make images`); returns its wall time in seconds."""
    started = time.monotonic()
    result = subprocess.run(["bash", str(REPO_ROOT / "ops" / "images" / "build.sh"), *names], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=ENV, timeout=timeout)
    assert result.returncode == 0, f"building the images failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return time.monotonic() - started


def image_config(image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]["Config"]


@dataclass
class Container:
    """One container on the host's network, root file system read-only, no capabilities, like
    k8s/ runs it (readOnlyRootFilesystem, drop ALL, no privilege escalation, an emptyDir /tmp)."""

    name: str
    image: str
    env: dict[str, str]
    volumes: dict[str, str] = field(default_factory=dict)  # named volume -> mount point
    stop_grace: int = 30  # seconds between SIGTERM and SIGKILL: terminationGracePeriodSeconds

    def start(self) -> None:
        args = ["run", "-d", "--name", self.name, "--label", LABEL, "--network", "host",
                "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--stop-timeout", str(self.stop_grace)]
        for key, value in self.env.items():
            args += ["-e", f"{key}={value}"]
        for volume, target in self.volumes.items():
            args += ["--mount", f"type=volume,source={volume},destination={target}"]
        podman(*args, self.image)

    def state(self) -> dict:
        return json.loads(podman("inspect", self.name).stdout)[0]["State"]

    def process_uid_gid(self) -> tuple[int, int]:
        """The real uid and gid of the container's main process, read from the host's /proc."""
        status = Path(f"/proc/{self.state()['Pid']}/status").read_text()
        fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if ":" in line}
        return int(fields["Uid"]), int(fields["Gid"])

    def diff(self) -> list[str]:
        """Paths changed in the container's root file system (mounts excluded)."""
        return [line for line in podman("diff", self.name).stdout.splitlines() if line.strip()]

    def stop(self) -> tuple[float, int]:
        """SIGTERM (then SIGKILL after the grace period): seconds it took and the exit code."""
        started = time.monotonic()
        podman("stop", "-t", str(self.stop_grace), self.name, timeout=self.stop_grace + 30)
        return time.monotonic() - started, int(self.state()["ExitCode"])

    def logs(self, lines: int = 40) -> str:
        result = podman("logs", "--tail", str(lines), self.name, check=False)
        return result.stdout + result.stderr


def remove_session_objects() -> None:
    """Every container and volume this session labelled: nothing of the tests is left behind."""
    ids = podman("ps", "-a", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False, timeout=180)
    volumes = podman("volume", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if volumes:
        podman("volume", "rm", "-f", *volumes, check=False)


def create_volume(name: str) -> str:
    podman("volume", "create", "--label", LABEL, name)
    return name
