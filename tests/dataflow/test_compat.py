"""The Bytewax layer is written for one release: an upgrade must be a decision, not an accident."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from syi_dataflow import compat


def test_the_installed_bytewax_is_the_one_the_layer_is_written_for() -> None:
    assert version("bytewax") == compat.BYTEWAX_VERSION, (
        "bytewax changed: re-check syi_dataflow (source, sink, flow, run) against its API, then bump compat.py"
    )
    compat.check_bytewax()


def test_another_version_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "version", lambda _name: "0.22.0")
    with pytest.raises(RuntimeError, match=r"bytewax 0.22.0 is installed; syi_dataflow is written for 0.21.1"):
        compat.check_bytewax()


def test_no_private_bytewax_api_is_used() -> None:
    """Only public modules: a private one (`_name`) could change in any release."""
    import ast
    from pathlib import Path

    package = Path(compat.__file__).parent
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bytewax"):
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert imported, "the layer imports bytewax"
    assert [name for name in imported if any(part.startswith("_") for part in name.split("."))] == []


def test_the_schema_library_does_not_import_bytewax() -> None:
    """syi_shared (and the CLI) work without Bytewax installed."""
    import subprocess
    import sys

    code = ("import sys, importlib, pkgutil, syi_shared\n"
            "sys.modules['bytewax'] = None\n"
            "for m in pkgutil.walk_packages(syi_shared.__path__, 'syi_shared.'):\n"
            "    importlib.import_module(m.name)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
