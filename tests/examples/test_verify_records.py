"""examples/verify_records.py: run as an outsider would, in a clean virtualenv holding only
`rfc8785`, against `syi compute` output, records of the original recipe, and tampered copies."""

from __future__ import annotations

import ast
import gzip
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syi_shared.methodology.audit import JCS_RECIPE, NOT_HASHED, record_cid_of, restate
from syi_shared.models import IndexValue
from syi_shared.serde import canonical_json, dumps, sorted_json
from tests.cli.conftest import demo_index, syi  # noqa: F401  (demo_index is a fixture)
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "examples" / "verify_records.py"
ORIGINAL_RECORDS = REPO_ROOT / "tests" / "fixtures" / "audit" / "original-recipe.jsonl"


def _pinned_rfc8785() -> str:
    """The requirement the schema library pins, so the outsider's venv has the same version."""
    (pin,) = re.findall(r'"(rfc8785==[^"]+)"', (REPO_ROOT / "shared" / "pyproject.toml").read_text())
    return pin


@pytest.fixture(scope="session")
def outsider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtualenv with nothing installed but rfc8785 (from the package index)."""
    venv = tmp_path_factory.mktemp("outsider") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", _pinned_rfc8785()],
                   check=True, timeout=300)
    installed = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    assert installed.split() == [_pinned_rfc8785()]
    return python


def run(python: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    # -I: isolated (no PYTHONPATH, no user site, not even the script's folder on sys.path).
    done = subprocess.run([str(python), "-I", str(SCRIPT), *args], input=stdin, capture_output=True,
                          timeout=120, cwd=python.parent)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_records", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, records: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(records) + b"\n")
    return path


def rechained(records: list[dict], last_cid: str | None) -> list[bytes]:
    """Records re-linked after `last_cid`, each cid recomputed (the producer's job, done here)."""
    out = []
    for record in records:
        record = {**record, "prev_cid": last_cid}
        record["cid"] = last_cid = record_cid_of(record)
        out.append(orjson.dumps(record))
    return out


def test_the_script_needs_only_the_standard_library_and_rfc8785() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) == {"rfc8785"}


def test_real_output_verifies_from_a_file_stdin_and_gzip(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    last = orjson.loads(demo_index.read_bytes().splitlines()[-1])
    assert last["cid_recipe"] == JCS_RECIPE
    done = run(outsider, str(demo_index))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK 390 records") and last["cid"] in done.stdout
    assert run(outsider, stdin=demo_index.read_bytes()).stdout == done.stdout
    packed = tmp_path / "syi.jsonl.gz"
    packed.write_bytes(gzip.compress(demo_index.read_bytes()))
    assert run(outsider, str(packed)).stdout == done.stdout


def test_records_of_the_original_recipe_verify_alone_and_followed_by_new_ones(outsider: Path, demo_index: Path,
                                                                             tmp_path: Path) -> None:
    original = ORIGINAL_RECORDS.read_bytes().splitlines()
    assert b"cid_recipe" not in ORIGINAL_RECORDS.read_bytes()
    done = run(outsider, str(ORIGINAL_RECORDS))
    assert done.returncode == 0 and done.stdout.startswith("OK 20 records"), done.stdout
    # The chain goes on across the change of recipe: the first new record links to the last old one.
    newer = [orjson.loads(line) for line in demo_index.read_bytes().splitlines()[20:40]]
    mixed = write(tmp_path / "mixed.jsonl", original + rechained(newer, orjson.loads(original[-1])["cid"]))
    done = run(outsider, str(mixed))
    assert done.returncode == 0 and done.stdout.startswith("OK 40 records"), done.stdout
    assert syi("verify", str(mixed)).returncode == 0


def test_each_tampered_copy_fails_naming_the_record(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    records = demo_index.read_bytes().splitlines()
    value = orjson.loads(records[99])
    value["syi_decimal"] += 0.0001
    link = orjson.loads(records[49])
    link["prev_cid"] = orjson.loads(records[47])["cid"]
    tampered = {
        "value": (100, records[:99] + [orjson.dumps(value)] + records[100:]),
        "prev_cid": (50, records[:49] + [orjson.dumps(link)] + records[50:]),
        # One byte turned into a space inside a hashed string ("3.0.0" -> "3.0 0").
        "whitespace": (150, records[:149] + [records[149].replace(b'"3.0.0"', b'"3.0 0"', 1)] + records[150:]),
    }
    for name, (line, copy) in tampered.items():
        assert copy != records
        done = run(outsider, str(write(tmp_path / f"{name}.jsonl", copy)))
        bucket = orjson.loads(records[line - 1])["bucket_end"]
        assert done.returncode == 1, (name, done.stdout)
        assert done.stdout.startswith(f"BAD line {line} (bucket {bucket}), after {line - 1} good records: cid mismatch"), \
            (name, done.stdout)
        assert syi("verify", str(tmp_path / f"{name}.jsonl")).returncode == 1


def test_whitespace_between_tokens_is_not_content(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    # The hash covers the canonical form, not the bytes on the wire: re-spaced JSON is the same record.
    records = demo_index.read_bytes().splitlines()
    respaced = records[:9] + [records[9].replace(b'","', b'", "', 1)] + records[10:]
    done = run(outsider, str(write(tmp_path / "respaced.jsonl", respaced)))
    assert done.returncode == 0 and done.stdout.startswith("OK 390 records"), done.stdout


def test_a_forged_cid_breaks_the_next_link(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    records = demo_index.read_bytes().splitlines()
    forged = orjson.loads(records[10])
    forged["syi_decimal"] = 0.5
    forged["cid"] = record_cid_of(forged)
    done = run(outsider, str(write(tmp_path / "forged.jsonl", records[:10] + [orjson.dumps(forged)] + records[11:])))
    assert done.returncode == 1 and done.stdout.startswith("BAD line 12 "), done.stdout
    assert "is the cid of no record before it" in done.stdout


def test_chain_gaps_reorders_and_a_missing_start_fail(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    records = demo_index.read_bytes().splitlines()
    cases = {
        "deleted": (records[:41] + records[42:], "BAD line 42 ", "a record is missing"),
        "swapped": (records[:5] + [records[6], records[5]] + records[7:], "BAD line 6 ", "a record is missing"),
        "duplicated": (records[:8] + [records[7]] + records[8:], "BAD line 9 ", "reordered or duplicated"),
        "truncated": (records[1:], "BAD line 1 ", "on the first record"),
    }
    for name, (copy, start, reason) in cases.items():
        done = run(outsider, str(write(tmp_path / f"{name}.jsonl", copy)))
        assert done.returncode == 1 and done.stdout.startswith(start) and reason in done.stdout, (name, done.stdout)


def test_revision_links(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    records = [orjson.loads(line) for line in demo_index.read_bytes().splitlines()[:30]]
    superseded = IndexValue.model_validate(records[5])
    corrected = superseded.model_copy(update={"syi_decimal": superseded.syi_decimal + 1e-4})
    revision = orjson.loads(dumps(restate(corrected, superseded, "a late input")))
    assert (revision["revision"], revision["supersedes_cid"]) == (1, superseded.cid)

    def chain_with(extra: dict, name: str) -> Path:
        return write(tmp_path / f"{name}.jsonl", rechained([*records, extra], None))

    good = chain_with(revision, "revision")
    assert run(outsider, str(good)).returncode == 0
    assert syi("verify", str(good)).returncode == 0
    relinked = orjson.loads(good.read_bytes().splitlines()[-1])
    second = {**relinked, "revision": 2, "supersedes_cid": relinked["cid"]}
    assert run(outsider, str(write(tmp_path / "second.jsonl", rechained([*records, revision, second], None)))).returncode == 0

    cases = {
        "wrong_target": {**revision, "supersedes_cid": records[4]["cid"]},
        "skipped_revision": {**revision, "revision": 2},
        "duplicate_bucket": {**revision, "revision": 0, "supersedes_cid": None},
        "revision0_supersedes": {**records[5], "bucket_end": "2026-11-20T23:59:00.000Z", "supersedes_cid": superseded.cid},
        "no_reason": {**revision, "restatement_reason": " "},
        "revision0_with_reason": {**records[5], "bucket_end": "2026-11-20T23:59:00.000Z", "restatement_reason": "x"},
    }
    for name, record in cases.items():
        path = chain_with(record, name)
        done = run(outsider, str(path))
        assert done.returncode == 1 and done.stdout.startswith("BAD line 31 "), (name, done.stdout)
        assert "revision" in done.stdout or "already published" in done.stdout, (name, done.stdout)
        cli = syi("verify", str(path))
        assert cli.returncode == 1 and b"line 31" in cli.stdout, (name, cli.stdout)


def test_unknown_recipes_and_unreadable_input(outsider: Path, demo_index: Path, tmp_path: Path) -> None:
    record = orjson.loads(demo_index.read_bytes().splitlines()[0])
    future = write(tmp_path / "future.jsonl", [orjson.dumps({**record, "cid_recipe": "jcs-blake3-cidv1-raw"})])
    done = run(outsider, str(future))
    assert done.returncode == 1 and "unknown cid_recipe 'jcs-blake3-cidv1-raw'" in done.stdout
    assert b"unknown cid_recipe" in syi("verify", str(future)).stdout
    assert run(outsider, str(write(tmp_path / "nan.jsonl", [b'{"cid": "x", "syi_decimal": NaN}']))).returncode == 1
    assert run(outsider, str(write(tmp_path / "empty.jsonl", [b""]))).returncode == 1
    assert run(outsider, str(tmp_path / "absent.jsonl")).returncode == 2


# JSON values as a parsed record holds them: finite floats of every magnitude, any text.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=JSON_VALUES)
def test_the_script_writes_both_canonical_forms_exactly_as_the_library(value: object) -> None:
    script = load_script()
    assert script.original_json(value) == sorted_json(value)
    assert script.jcs_json(value) == canonical_json(value)


def test_the_script_and_the_library_agree_on_every_cid(demo_index: Path) -> None:
    script = load_script()
    for line in [*demo_index.read_bytes().splitlines(), *ORIGINAL_RECORDS.read_bytes().splitlines()]:
        record = orjson.loads(line)
        assert script.record_cid(record) == record_cid_of(record) == record["cid"]
        assert set(script.NOT_HASHED) == set(NOT_HASHED)
