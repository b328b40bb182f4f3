"""Helpers for the `syi` command tests: the demo-tape generator and short generated tapes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO_ROOT, load_generator

DEMO_TAPE = REPO_ROOT / "data" / "tapes" / "demo.jsonl.gz"


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    return load_generator()


def make_tape(generator: ModuleType, path: Path, duration: str, start: str | None = None, seed: int = 7) -> Path:
    kwargs = {"start": start} if start else {}
    generator.write(generator.generate(generator.parse_duration(duration), seed, **kwargs), path)
    return path


SYI = str(REPO_ROOT / ".venv" / "bin" / "syi")


def syi(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    """Run the `syi` command as a user would (stdout as bytes, stderr as text)."""
    done = subprocess.run([SYI, *args], capture_output=True, timeout=timeout, env=env)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, done.stderr.decode())


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`syi compute` of the demo tape (syi.calculated lines), computed once per session."""
    out = tmp_path_factory.mktemp("demo-index") / "syi.jsonl"
    done = syi("compute", "--tape", str(DEMO_TAPE))
    assert done.returncode == 0, done.stderr
    out.write_bytes(done.stdout)
    return out
