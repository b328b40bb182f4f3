"""Tapes through a real Kafka broker: play, record, invalid lines, pacing, the CLI."""

from __future__ import annotations

import gzip
import random
import subprocess
import time
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from syi_cli.tape import BadLine, TapeMessage, play_tape, read_tape, record_tape
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import parse_utc, to_millis
from tests.cli.conftest import make_tape
from tests.conftest import REPO_ROOT
from tests.shared.examples import PRICE

INPUTS = ["cc.prices", "cc.orderbook", "dl.apy", "ex.mktcap", "trad.tbill"]


def unique_start() -> str:
    """A start time no other test uses, so records from a shared broker can be told apart."""
    rng = random.Random()
    return f"{rng.randint(2031, 2099)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T{rng.randint(10, 23)}:00:00Z"


def event_ms(line: bytes) -> int | None:
    """A recorded line's time; None for a value without one (other tests' hostile messages share
    the session broker's topics)."""
    value = orjson.loads(line)["value"]
    moment = value.get("event_time") or value.get("bucket_end") if isinstance(value, dict) else None
    return to_millis(parse_utc(moment)) if isinstance(moment, str) else None


def lines_of(path: Path) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return [line.rstrip(b"\n") for line in handle if line.strip()]


def price_line(**changes: object) -> bytes:
    value = {**PRICE, **changes}
    return orjson.dumps({"topic": "cc.prices", "key": f"{value['symbol']}.{value['venue']}", "value": value})


def window(lines: list[bytes], start: str, minutes: int) -> list[bytes]:
    low = to_millis(parse_utc(start))
    return [line for line in lines if (ms := event_ms(line)) is not None and low <= ms < low + minutes * 60_000]


@pytest.mark.integration
def test_play_then_record_gives_back_the_same_lines(
    provisioned: ServiceSettings, generator: ModuleType, tmp_path: Path
) -> None:
    start = unique_start()
    tape = make_tape(generator, tmp_path / "short.jsonl.gz", "10m", start=start)
    played = lines_of(tape)

    result = play_tape(tape, provisioned)
    assert result.produced == len(played) and not result.invalid
    assert set(result.by_topic) == set(INPUTS)

    recorded = record_tape(INPUTS, tmp_path / "recorded.jsonl.gz", provisioned)
    back = lines_of(tmp_path / "recorded.jsonl.gz")
    assert recorded.recorded == len(back)
    mine = window(back, start, 10)  # other tests may share the broker's topics
    assert sorted(mine) == sorted(played)  # same bytes: key and value exactly as in the tape
    times = [ms for line in back if (ms := event_ms(line)) is not None]
    assert times == sorted(times)  # a recorded tape is in event-time order
    for key in {orjson.loads(line)["key"] for line in played}:  # one key = one partition: order kept
        assert [x for x in mine if orjson.loads(x)["key"] == key] == [x for x in played if orjson.loads(x)["key"] == key]


@pytest.mark.integration
def test_play_reports_invalid_lines_by_number_and_skips_them(provisioned: ServiceSettings, tmp_path: Path) -> None:
    start = unique_start()
    stamp = start.replace("Z", ".000Z")
    good = price_line(event_time=stamp, ingest_time=stamp)
    tape = tmp_path / "mixed.jsonl"
    tape.write_bytes(b"\n".join([
        good,                                                     # 1
        b"{not json",                                             # 2
        orjson.dumps({"topic": "no.such.topic", "key": "x", "value": {}}),  # 3
        price_line(event_time=stamp, ingest_time=stamp, price=-1.0),        # 4
        price_line(event_time="2026-11-27 10:00:00", ingest_time=stamp),    # 5
        orjson.dumps({"topic": "cc.prices", "key": "WRONG.key", "value": orjson.loads(good)["value"]}),  # 6
        b"",                                                      # 7: blank lines are not errors
        good,                                                     # 8
    ]) + b"\n")

    seen: list[BadLine] = []
    result = play_tape(tape, provisioned, on_invalid=seen.append)

    assert result.produced == 2
    assert [bad.line for bad in result.invalid] == [2, 3, 4, 5, 6] and seen == result.invalid
    reasons = {bad.line: bad.reason for bad in result.invalid}
    assert "invalid JSON" in reasons[2]
    assert "unknown topic 'no.such.topic'" in reasons[3]
    assert reasons[4] == "out_of_range: price: -1.0 is not above 0"
    assert reasons[5].startswith("event_time:")
    assert reasons[6] == "key: expected 'USDC.binance', got 'WRONG.key'"


@pytest.mark.integration
def test_play_at_speed_follows_event_time_and_window_filters(provisioned: ServiceSettings, tmp_path: Path) -> None:
    start = unique_start()
    base = to_millis(parse_utc(start))
    lines = []
    for second in range(0, 41, 4):  # event times spread over 40 s
        stamp = start.replace(":00Z", f":{second:02d}.000Z")
        lines.append(price_line(event_time=stamp, ingest_time=stamp))
    tape = tmp_path / "paced.jsonl"
    tape.write_bytes(b"\n".join(lines) + b"\n")

    began = time.monotonic()
    result = play_tape(tape, provisioned, speed=20.0, start_ms=base + 4_000, end_ms=base + 40_000)
    elapsed = time.monotonic() - began

    assert result.produced == 9  # seconds 4..36; 0 is before --from, 40 is not before --to
    assert (result.first_event_ms, result.last_event_ms) == (base + 4_000, base + 36_000)
    assert elapsed >= 32 / 20 * 0.95  # 32 s of event time at 20x cannot take less than 1.6 s


def test_read_tape_ignores_other_topics_when_asked(tmp_path: Path) -> None:
    tape = tmp_path / "t.jsonl"
    tape.write_bytes(price_line() + b"\n" + orjson.dumps({"topic": "news.feed", "value": {}}) + b"\n")
    items = list(read_tape(tape, only={"cc.prices"}))
    assert len(items) == 1 and isinstance(items[0], TapeMessage) and items[0].line == 1
    assert [type(item) for item in read_tape(tape)] == [TapeMessage, BadLine]


@pytest.mark.integration
def test_syi_tape_commands_play_and_follow_record(
    provisioned: ServiceSettings, generator: ModuleType, tmp_path: Path
) -> None:
    start = unique_start()
    tape = make_tape(generator, tmp_path / "cli.jsonl", "3m", start=start)
    bootstrap = provisioned.kafka_config()["bootstrap.servers"]
    syi = str(REPO_ROOT / ".venv" / "bin" / "syi")

    play = subprocess.run([syi, "tape", "play", str(tape), "--speed", "max", "--bootstrap", bootstrap],
                          capture_output=True, text=True, timeout=120)
    assert play.returncode == 0, play.stderr
    assert f"played {len(lines_of(tape))} messages" in play.stderr and "0 invalid lines" in play.stderr

    out = tmp_path / "followed.jsonl"
    record = subprocess.run([syi, "tape", "record", "--topics", ",".join(INPUTS), "--out", str(out),
                             "--until-idle", "2", "--bootstrap", bootstrap],
                            capture_output=True, text=True, timeout=180)
    assert record.returncode == 0, record.stderr
    assert sorted(window(lines_of(out), start, 3)) == sorted(lines_of(tape))

    bad = subprocess.run([syi, "tape", "play", str(tape), "--speed", "0", "--bootstrap", bootstrap],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "positive number or 'max'" in bad.stderr
