"""ray-calc keeps running on bad input: an invalid message goes to `<topic>.dlq` with its
reason, a message for an already closed bucket goes there with reason `late` (and is counted),
and the outputs still equal the batch calculator's. Also: /healthz and /metrics."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from syi_cli.compute import compute_tape
from syi_cli.tape import play_tape
from syi_shared.kafka import make_producer
from syi_shared.methodology.params import load_methodology
from syi_shared.models import PriceTick
from syi_shared.serde import dumps
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.progress import announce_progress, bucket_end_of
from syi_shared.timefmt import time_text
from tests.ray_calc.streams import MINUTE, Calculator, comparable, make_tape, tape_span, values_since, wait_for
from tests.syi_calc.test_parity import now_ms

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def rays_through(settings: ServiceSettings, since: int, bucket_ms: int) -> list[dict] | None:
    rays = values_since(settings, "ray.calculated", since)
    return rays if any(r["bucket_end"] == time_text(bucket_ms) for r in rays) else None


def test_invalid_and_late_messages_go_to_the_dlq_and_the_flow_keeps_running(
    provisioned: ServiceSettings, tmp_path: Path
) -> None:
    tape = make_tape(tmp_path / "tape.jsonl", "8m")
    span = tape_span(tape)
    middle = span.first_ms // MINUTE * MINUTE + 5 * MINUTE
    # The late tick must change nothing: ray-calc's records are to be the batch calculator's.
    batch = compute_tape(tape, load_methodology())
    want = sorted(dumps(comparable(r)) for b in batch.ray_buckets for r in b.rays)
    since = now_ms()
    ray = Calculator("ray_calc", provisioned, since, tmp_path).start()
    try:
        announce_progress(provisioned, span.first_ms, run_start_ms=span.first_ms)
        play_tape(tape, provisioned, end_ms=middle)
        announce_progress(provisioned, middle)
        wait_for(lambda: rays_through(provisioned, since, middle), 60, "the first five buckets")

        producer = make_producer(provisioned)
        producer.produce("cc.prices", key=b"USDC.binance", value=b"{not json")
        producer.produce("cc.prices", key=b"USDC.binance", value=b'{"schema_version": 1, "symbol": "USDC"}')
        late = PriceTick(
            symbol="USDC", venue="binance", base="USDC", quote="USDT", price=0.5,
            event_time=time_text(span.first_ms + 90_000), ingest_time=time_text(middle),
        )
        producer.produce("cc.prices", key=late.key().encode(), value=dumps(late))
        producer.flush(30)

        play_tape(tape, provisioned, start_ms=middle)
        announce_progress(provisioned, bucket_end_of(span.last_ms), final=True)
        wait_for(lambda: rays_through(provisioned, since, bucket_end_of(span.last_ms)), 60, "the last bucket")
        # A bucket's records become visible partition by partition: wait for all of them
        wait_for(lambda: len(values_since(provisioned, "ray.calculated", since)) >= len(want), 30, "every record")
        rays = values_since(provisioned, "ray.calculated", since)
        letters = wait_for(lambda: len(v := values_since(provisioned, "cc.prices.dlq", since)) >= 3 and v, 30, "3 dead letters")
        # the lag gauge is exported on the metrics port's next refresh after the consumer reports it
        metrics = wait_for(lambda: "kafka_consumer_lag{" in (m := ray.get("/metrics").decode()) and m, 30, "lag")
        health = orjson.loads(ray.get("/healthz"))
        assert ray.healthy()
    finally:
        ray.stop()

    assert {letter["service"] for letter in letters} == {"ray-calc"}
    assert {letter["source_topic"] for letter in letters} == {"cc.prices"}
    invalid = [letter for letter in letters if not letter["error"].startswith("late")]
    assert [letter["raw_value"] for letter in invalid] == ["{not json", '{"schema_version": 1, "symbol": "USDC"}']
    assert "invalid JSON" in invalid[0]["error"] and "venue" in invalid[1]["error"]
    [late_letter] = [letter for letter in letters if letter["error"].startswith("late")]
    assert orjson.loads(late_letter["raw_value"]) == orjson.loads(dumps(late))
    assert late_letter["key"] == "USDC.binance" and late_letter["offset"] is not None

    assert sorted(dumps(comparable(r)) for r in rays) == want

    assert 'syi_late_items_total{service="ray-calc",topic="cc.prices"} 1.0' in metrics
    assert 'syi_dead_letters_total{reason="invalid",service="ray-calc",topic="cc.prices"} 2.0' in metrics
    assert 'syi_messages_published_total{service="ray-calc",topic="ray.calculated"}' in metrics
    assert "syi_calculation_latency_seconds_bucket" in metrics and "syi_freshness_seconds" in metrics
    assert "bytewax_item_out_count" in metrics  # Bytewax's per-step counters, through our port
    assert 'kafka_consumer_lag{group="ray-calc"' in metrics
    # The replayed tape is in the past: once its final marker is reached, the calculator's last
    # bucket lags the wall clock and health says so; nothing else may be wrong.
    assert health["late_items"] == 1 and health["kafka"] == "reachable"
    assert all(reason.startswith("lag:") for reason in health["reasons"]), health["reasons"]
    assert health["last_closed_bucket"] == time_text(bucket_end_of(span.last_ms))
