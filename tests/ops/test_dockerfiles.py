"""The service images: one small, non-root Dockerfile per service, linted by hadolint, and
consistent with what each service reads (its module, port and settings)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from syi_cli.services import SERVICES
from tests.ops.ops_tools import REPO_ROOT, SERVICES_DIR, require_tool, settings_env_names

SERVICE_DIRS = sorted(p.name for p in SERVICES_DIR.iterdir() if (p / "pyproject.toml").is_file())


def dockerfile(service: str) -> str:
    return (SERVICES_DIR / service / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def exposed_port(service: str) -> int:
    ports = [int(args.split()[0]) for word, args in final_stage(dockerfile(service)) if word == "EXPOSE"]
    assert len(ports) == 1, f"{service}: expected one EXPOSE"
    return ports[0]


def image_env(service: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in final_stage(dockerfile(service)):
        if word == "ENV":
            env.update(dict(pair.split("=", 1) for pair in args.split()))
    return env


def test_every_service_has_a_dockerfile_and_a_run_entry():
    assert SERVICE_DIRS == sorted(SERVICES), "services/ and syi_cli.services.SERVICES disagree"
    missing = [s for s in SERVICE_DIRS if not (SERVICES_DIR / s / "Dockerfile").is_file()]
    assert not missing, f"no Dockerfile for {missing}"


@pytest.mark.parametrize("service", SERVICE_DIRS)
def test_dockerfile_is_multi_stage_slim_non_root_with_one_process(service):
    text = dockerfile(service)
    steps = instructions(text)
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"], froms
    runs = " ".join(args for word, args in steps if word == "RUN")
    # the locked workspace, only this service's dependencies, no dev tools, not editable
    assert f"uv sync --frozen --no-dev --no-install-workspace --package {service}" in runs
    assert f"uv sync --frozen --no-dev --no-editable --package {service}" in runs
    copies = [args for word, args in steps if word == "COPY" and not args.startswith("--from")]
    sources = {args.split()[0] for args in copies}
    other_services = {f"services/{s}" for s in SERVICE_DIRS if s != service}
    assert not sources & other_services, f"{service} copies another service: {sources & other_services}"
    assert not any(word == "ADD" for word, _ in steps)

    last = final_stage(text)
    users = [args for word, args in last if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) > 0, users
    assert any(word == "HEALTHCHECK" for word, _ in last)
    assert [args for word, args in last if word == "CMD"] == [f'["python", "-m", "{SERVICES[service]}"]']
    assert not any(word == "ENTRYPOINT" for word, _ in last)
    # the runtime stage gets the built virtualenv, never the build tools
    assert "COPY --from=build /app/.venv /app/.venv" in text
    assert not any("pip install" in args for word, args in last if word == "RUN")


@pytest.mark.parametrize("service", SERVICE_DIRS)
def test_image_settings_match_the_service_settings(service):
    """Every SYI_ variable the image sets is a setting the service reads, and the port it
    exposes is the one the service listens on (its settings default or the image's ENV)."""
    package = SERVICES[service]
    fields = settings_env_names(service)
    env = image_env(service)
    syi_vars = {k for k in env if k.startswith("SYI_")}
    unknown = syi_vars - fields
    assert not unknown, f"{service}: the image sets {sorted(unknown)}, which {package}.settings does not read"
    port_vars = [k for k in syi_vars if k.endswith("_PORT")]
    assert len(port_vars) == 1, f"{service}: one *_PORT variable expected, got {port_vars}"
    assert int(env[port_vars[0]]) == exposed_port(service)
    host_vars = [k for k in syi_vars if k.endswith("_HOST")]
    assert [env[k] for k in host_vars] == ["0.0.0.0"], f"{service}: must listen on every interface in a container"


def workspace_packages() -> dict[str, str]:
    """Workspace members outside services/ by package name: {"syi-shared": "shared", ...}."""
    return {tomllib.loads(path.read_text())["project"]["name"]: path.parent.name
            for path in REPO_ROOT.glob("*/pyproject.toml")}


def workspace_dependencies(pyproject: Path, members: dict[str, str]) -> set[str]:
    """The folders of the workspace packages a pyproject.toml depends on, transitively."""
    sources = tomllib.loads(pyproject.read_text()).get("tool", {}).get("uv", {}).get("sources", {})
    found = set()
    for name, source in sources.items():
        if source.get("workspace") and name in members:
            found |= {members[name]} | workspace_dependencies(REPO_ROOT / members[name] / "pyproject.toml", members)
    return found


@pytest.mark.parametrize("service", SERVICE_DIRS)
def test_dockerfile_copies_every_workspace_package_the_service_needs(service):
    """`uv sync --frozen --no-editable` builds the workspace packages from their folders: each one the
    service depends on (the calculators: shared and dataflow) must be copied into the build stage."""
    needed = workspace_dependencies(SERVICES_DIR / service / "pyproject.toml", workspace_packages())
    assert "shared" in needed
    copies = {args.split()[0] for word, args in instructions(dockerfile(service))
              if word == "COPY" and not args.startswith("--from")}
    assert needed <= copies, f"{service}: the build stage does not copy {sorted(needed - copies)}"


def test_dockerignore_keeps_every_build_input():
    ignored = [
        line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "uv.lock", "shared", "dataflow", "services", "methodology.toml", "fixtures"):
        assert needed not in ignored, f".dockerignore drops {needed}, which the images copy"
    for heavy in (".venv", ".git", ".cache", ".stack", "tests"):
        assert heavy in ignored, f".dockerignore should drop {heavy}"


def test_dockerfiles_pass_hadolint():
    hadolint = require_tool("hadolint")
    files = [str(SERVICES_DIR / s / "Dockerfile") for s in SERVICE_DIRS]
    result = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
