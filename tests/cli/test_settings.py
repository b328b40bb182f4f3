"""One settings source for every `syi` command: the broker and database come from the variables
the local stack uses (SYI_KAFKA_BOOTSTRAP_SERVERS, SYI_KAFKA_PORT, SYI_POSTGRES_DSN, SYI_PG_PORT,
SYI_STATE_DIR), `--bootstrap` wins, and each command says on stderr which broker it uses.

The integration tests run the real `syi` command against the session's broker with nothing but
SYI_KAFKA_PORT (or SYI_KAFKA_BOOTSTRAP_SERVERS) set, and against a port where nothing listens.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from syi_cli.settings import cli_settings
from syi_shared.kafka import make_producer, read_to_end
from syi_shared.settings import ServiceSettings
from tests.cli.conftest import SYI
from tests.cli.test_tape import price_line
from tests.conftest import free_port

CONNECTION_VARIABLES = ("SYI_KAFKA_BOOTSTRAP_SERVERS", "SYI_KAFKA__BOOTSTRAP_SERVERS", "SYI_KAFKA_PORT", "SYI_PG_PORT",
                        "SYI_POSTGRES_DSN", "SYI_STATE_DIR")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No connection variable set and no .env file (the working directory is empty)."""
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_the_broker_comes_from_the_stacks_variables_in_order(clean_env: pytest.MonkeyPatch) -> None:
    settings = cli_settings()
    assert (settings.kafka.address, settings.kafka.source) == ("127.0.0.1:9092", "default")

    clean_env.setenv("SYI_KAFKA_PORT", "19092")
    settings = cli_settings()
    assert (settings.kafka.address, settings.kafka.source) == ("127.0.0.1:19092", "SYI_KAFKA_PORT")
    assert settings.service.kafka_config()["bootstrap.servers"] == "127.0.0.1:19092"

    clean_env.setenv("SYI_KAFKA__BOOTSTRAP_SERVERS", "nested:9092")
    assert cli_settings().kafka.address == "nested:9092"
    clean_env.setenv("SYI_KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9093")
    settings = cli_settings()
    assert (settings.kafka.address, settings.kafka.source) == ("kafka.example:9093", "SYI_KAFKA_BOOTSTRAP_SERVERS")
    assert settings.local_kafka.address == "127.0.0.1:19092"  # where `syi stack up` runs its broker

    settings = cli_settings("other:9094")
    assert (settings.kafka.address, settings.kafka.source) == ("other:9094", "--bootstrap")
    assert settings.service.kafka_config()["bootstrap.servers"] == "other:9094"


def test_each_command_says_which_broker_and_when_the_port_is_overruled(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SYI_KAFKA_PORT", "19092")
    lines: list[str] = []
    cli_settings().announce(lines.append)
    assert lines == ["syi kafka: 127.0.0.1:19092 (SYI_KAFKA_PORT)"]

    lines.clear()
    cli_settings("10.0.0.5:9092").announce(lines.append)
    assert lines[0] == "syi kafka: 10.0.0.5:9092 (--bootstrap)"
    assert "SYI_KAFKA_PORT (127.0.0.1:19092) is not used" in lines[1]

    lines.clear()
    clean_env.setenv("SYI_KAFKA_BOOTSTRAP_SERVERS", "10.0.0.5:9092")
    cli_settings().announce_stack(lines.append)  # the stack runs its own broker; others would read 10.0.0.5
    assert lines[0] == "syi kafka: 127.0.0.1:19092 (SYI_KAFKA_PORT)"
    assert "other syi commands" in lines[1] and "10.0.0.5:9092" in lines[1]


def test_a_dotenv_file_counts_like_the_services_read_it(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SYI_KAFKA_PORT=29092\nSYI_PG_PORT=25432\nSYI_STATE_DIR=/srv/syi\n")
    settings = cli_settings()
    assert (settings.kafka.address, settings.kafka.source) == ("127.0.0.1:29092", "SYI_KAFKA_PORT in .env")
    assert settings.postgres.address.endswith("@127.0.0.1:25432/stableyield")
    assert settings.stack.state_dir == Path("/srv/syi")


def test_services_run_by_the_cli_get_the_same_broker_and_database(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SYI_KAFKA_PORT", "19092")
    clean_env.setenv("SYI_PG_PORT", "15432")
    env = cli_settings().service_env
    assert env == {"SYI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
                   "SYI_POSTGRES_DSN": "postgresql://syi:syi@127.0.0.1:15432/stableyield"}
    clean_env.setenv("SYI_POSTGRES_DSN", "postgresql://u:p@db.example:5432/x")
    assert cli_settings().service_env["SYI_POSTGRES_DSN"] == "postgresql://u:p@db.example:5432/x"


# ---- the real command against the session's broker ----------------------------------------------------------


def local_port(bootstrap: str) -> int:
    host, _, port = bootstrap.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the session broker {bootstrap} is not local: SYI_KAFKA_PORT cannot reach it")
    return int(port)


def run(cwd: Path, variables: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`syi ARGS` with only `variables` among the connection settings (none inherited)."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES} | variables
    return subprocess.run([SYI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def chain_topic(provisioned: ServiceSettings, demo_index: Path) -> str:
    """A topic of its own holding the first 40 index records of the demo tape."""
    topic = f"test.syi.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(provisioned.kafka_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=60)
    producer = make_producer(provisioned)
    for record in demo_index.read_bytes().splitlines()[:40]:
        producer.produce(topic, key=b"SYI", value=record)
    assert producer.flush(60) == 0
    return topic


@pytest.mark.integration
def test_verify_reads_the_broker_of_syi_kafka_port(chain_topic: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    port = local_port(kafka_bootstrap)
    done = run(tmp_path, {"SYI_KAFKA_PORT": str(port)}, "verify", "--topic", chain_topic)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact: 40 records" in done.stdout
    assert f"syi kafka: 127.0.0.1:{port} (SYI_KAFKA_PORT)" in done.stderr


@pytest.mark.integration
def test_verify_reads_the_broker_of_syi_kafka_bootstrap_servers(
    chain_topic: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    done = run(tmp_path, {"SYI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SYI_KAFKA_PORT": str(free_port())},
               "verify", "--topic", chain_topic)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact: 40 records" in done.stdout
    assert f"syi kafka: {kafka_bootstrap} (SYI_KAFKA_BOOTSTRAP_SERVERS)" in done.stderr
    assert "SYI_KAFKA_PORT" in done.stderr  # the overruled port is named, not silently ignored


@pytest.mark.integration
def test_nothing_listening_at_the_configured_port_fails_clearly_instead_of_reading_9092(tmp_path: Path) -> None:
    port = free_port()
    began = time.monotonic()
    for args in (["verify", "--topic", "syi.calculated"], ["topics", "create"],
                 ["tape", "record", "--topics", "syi.calculated", "--out", str(tmp_path / "out.jsonl")]):
        done = run(tmp_path, {"SYI_KAFKA_PORT": str(port)}, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert f"nothing listens at 127.0.0.1:{port} (SYI_KAFKA_PORT)" in done.stderr, (args, done.stderr)
        assert "9092" not in done.stderr and "intact" not in done.stdout
    assert time.monotonic() - began < 60  # at once, not after librdkafka's timeouts
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.integration
def test_a_missing_topic_is_named_with_the_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = local_port(kafka_bootstrap)
    done = run(tmp_path, {"SYI_KAFKA_PORT": str(port)}, "verify", "--topic", "no.such.topic")
    assert done.returncode == 1
    assert f"no topic no.such.topic on 127.0.0.1:{port} (SYI_KAFKA_PORT)" in done.stderr


@pytest.mark.integration
def test_tape_play_record_and_topics_create_use_syi_kafka_port(
    provisioned: ServiceSettings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = local_port(kafka_bootstrap)
    variables = {"SYI_KAFKA_PORT": str(port)}
    created = run(tmp_path, variables, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert " 0 created" in created.stderr and f"syi kafka: 127.0.0.1:{port} (SYI_KAFKA_PORT)" in created.stderr

    moment = f"2098-0{uuid.uuid4().int % 9 + 1}-11T{uuid.uuid4().int % 14 + 10}:{uuid.uuid4().int % 60:02d}:07.123Z"
    line = price_line(event_time=moment, ingest_time=moment)
    tape = tmp_path / "one.jsonl"
    tape.write_bytes(line + b"\n")
    played = run(tmp_path, variables, "tape", "play", str(tape), "--no-progress-markers")
    assert played.returncode == 0, played.stderr
    assert "played 1 messages" in played.stderr and f"127.0.0.1:{port} (SYI_KAFKA_PORT)" in played.stderr
    on_broker = [m.value() for m in read_to_end(["cc.prices"], provisioned)]
    assert orjson.loads(line)["value"] in [json_or_none(v) for v in on_broker]

    out = tmp_path / "recorded.jsonl"
    recorded = run(tmp_path, variables, "tape", "record", "--topics", "cc.prices", "--out", str(out))
    assert recorded.returncode == 0, recorded.stderr
    assert moment.encode() in out.read_bytes()


def json_or_none(raw: bytes | None) -> object:
    """A message value as JSON, None when it is not (other tests' hostile messages share the topic)."""
    try:
        return orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None
