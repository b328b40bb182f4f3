"""The topic map lives in one place (syi_shared.topics): who writes and who reads every topic.

docs/topics.md's table is generated from it, the services it names exist, what the services
really consume agrees with it, and no service spells a topic name as a string literal.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from store_clickhouse.tables import TABLE_FOR_TOPIC
from store_timescale.settings import TOPICS as TIMESCALE_TOPICS
from syi_shared.methodology.engine import IndexEngine, RayEngine
from syi_shared.streaming.calculators import INDEX_TOPIC, RAY_OUTPUT_TOPICS
from syi_shared.topics import (
    CLI,
    DEAD_LETTER_WRITERS,
    PROGRESS_TOPIC,
    RAW_INPUT_TOPICS,
    STATE_TOPICS,
    STORES,
    TABLE_BEGIN,
    TABLE_END,
    TOPICS,
    all_topics,
    consumers_of,
    dlq_topic,
    markdown_table,
    producers_of,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "topics.md"

# Directories whose code must take topic names from the registry.
CODE_ROOTS = ("services", "cli", "dataflow", "shared/syi_shared")


def service_exists(name: str) -> bool:
    return (REPO_ROOT / "cli").is_dir() if name == CLI else (REPO_ROOT / "services" / name).is_dir()


def test_docs_topics_md_table_is_the_generated_one():
    text = DOC.read_text()
    documented = text[text.index(TABLE_BEGIN):text.index(TABLE_END) + len(TABLE_END)]
    assert documented == markdown_table(), "docs/topics.md's table is out of date: run python tools/gen_topic_table.py"


def test_the_generator_checks_the_doc():
    script = REPO_ROOT / "tools" / "gen_topic_table.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_named_producer_consumer_and_reader_is_a_service_directory():
    named = {name for t in all_topics() for name in (*t.producers, *t.consumers)}
    named |= {name for store in STORES for name in (store.writer, *store.readers)}
    assert CLI in named and "rest-api" in named
    assert sorted(name for name in named if not service_exists(name)) == []


def test_every_topic_has_a_producer_and_every_data_topic_a_consumer():
    assert [t.name for t in all_topics() if not t.producers] == []
    assert [t.name for t in (*TOPICS.values(), PROGRESS_TOPIC, *STATE_TOPICS.values()) if not t.consumers] == []
    assert all(t.about for t in (*TOPICS.values(), PROGRESS_TOPIC, *STATE_TOPICS.values()))


def test_dead_letters_are_written_by_the_topic_readers_that_validate():
    assert producers_of("ray.calculated.dlq") == ("syi-calc", "store-timescale", "ws-gateway", "ray-calc")
    assert producers_of("cc.prices.dlq") == ("ray-calc", "store-clickhouse")
    assert consumers_of("syi.calculated.dlq") == ()
    assert all(set(dlq_topic(t).producers) <= set(DEAD_LETTER_WRITERS) for t in TOPICS.values())


def test_the_map_agrees_with_what_the_services_consume_and_produce():
    assert set(TIMESCALE_TOPICS) == {t.name for t in TOPICS.values() if "store-timescale" in t.consumers}
    assert set(TABLE_FOR_TOPIC) == {t.name for t in TOPICS.values() if "store-clickhouse" in t.consumers}
    assert {t.name for t in TOPICS.values() if "ray-calc" in t.producers} == set(RAY_OUTPUT_TOPICS)
    assert all("ray-calc" in consumers_of(name) for name in (*RayEngine.INPUT_TOPICS, *RAY_OUTPUT_TOPICS))
    assert producers_of(INDEX_TOPIC) == ("syi-calc",)
    assert all("syi-calc" in consumers_of(name) for name in (*IndexEngine.INPUT_TOPICS, INDEX_TOPIC))
    assert all(CLI in producers_of(name) for name in (*RAW_INPUT_TOPICS, PROGRESS_TOPIC.name))
    assert consumers_of("state.syi-calc") == ("syi-calc", CLI)


def test_rest_api_depends_on_store_timescale_tables():
    (timescale,) = [store for store in STORES if store.writer == "store-timescale"]
    assert timescale.readers == ("rest-api",)
    assert "syi.calculated" in timescale.topics() and "ray.calculated" in timescale.topics()


def _topic_literals(path: Path, names: set[str]) -> list[str]:
    """`path:line "name"` for every string constant equal to a topic name, docstrings aside."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        and (node.value in names or node.value.startswith("state."))
    ]


def test_services_take_topic_names_from_the_registry():
    names = {t.name for t in all_topics()}
    found = []
    for root in CODE_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if "/tests/" in relative or relative == "shared/syi_shared/topics.py" or ".venv" in relative:
                continue
            found += _topic_literals(path, names)
    assert found == []
