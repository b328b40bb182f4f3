"""Benchmark: Kafka → ClickHouse (chDB) ingest rate of store-clickhouse, and query latency.

    .venv/bin/python bench/clickhouse_ingest.py                  # private Kafka broker, 200k ticks + 20k books
    .venv/bin/python bench/clickhouse_ingest.py --prices 50000 --books 5000
    .venv/bin/python bench/clickhouse_ingest.py --bootstrap 127.0.0.1:9092   # an existing (empty) broker

Produces synthetic ticks and 20-level books, runs the real writer (ClickHouseWriter, the
same code as `python -m store_clickhouse`) in-process against a fresh chDB store until every
message is written and committed, then times the analyst queries (all with FINAL/argMax).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY

from store_clickhouse import queries
from store_clickhouse.clickhouse_store import ClickHouseStore
from store_clickhouse.settings import Settings
from store_clickhouse.worker import ClickHouseWriter
from syi_shared import serde
from syi_shared.admin import provision_topics
from syi_shared.kafka import base_config, make_consumer, make_producer
from syi_shared.models import OrderBook, PriceTick
from syi_shared.settings import ServiceSettings
from syi_shared.shutdown import Shutdown
from syi_shared.timefmt import format_utc

T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
SYMBOLS = ["USDT", "USDC", "DAI", "FDUSD", "TUSD"]
VENUES = ["binance", "kraken", "coinbase", "okx"]
# Reference figure (docs/clickhouse.md, "Performance"): an aggregate over 300k rows in chDB takes about 35 ms.
REFERENCE_AGGREGATE_MS = 35.0


def start_private_broker(workdir: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from syi_cli.stack.kafka_broker import KafkaBroker
    from tests.conftest import free_port_pair

    broker = KafkaBroker(workdir, port=free_port_pair())
    broker.format_storage(say=lambda m: None)
    process = broker.process(say=lambda m: None)
    process.start()
    process.wait_ready(timeout=120)
    return broker.bootstrap, process


def produce(settings: ServiceSettings, prices: int, books: int) -> float:
    producer = make_producer(settings, **{"linger.ms": 20, "batch.num.messages": 10000})
    started = time.perf_counter()
    for i in range(prices):
        symbol, venue = SYMBOLS[i % len(SYMBOLS)], VENUES[(i // len(SYMBOLS)) % len(VENUES)]
        price = 1.0 + ((i * 7919) % 2001 - 1000) / 1e6
        event = T0 + timedelta(milliseconds=i * 10)
        tick = PriceTick(
            symbol=symbol, venue=venue, pair=f"{symbol}USD", base=symbol, quote="USD",
            bid=price - 1e-5, ask=price + 1e-5, price=price,
            event_time=format_utc(event), ingest_time=format_utc(event + timedelta(milliseconds=40)),
        )
        _send(producer, "cc.prices", tick)
    for i in range(books):
        symbol, venue = SYMBOLS[i % len(SYMBOLS)], VENUES[(i // len(SYMBOLS)) % len(VENUES)]
        event = T0 + timedelta(milliseconds=i * 100)
        book = OrderBook(
            symbol=symbol, venue=venue, pair=f"{symbol}USD", base=symbol, quote="USD",
            bids=[(0.9999 - level * 1e-4, 1000.0 + level) for level in range(20)],
            asks=[(1.0001 + level * 1e-4, 1000.0 + level) for level in range(20)],
            event_time=format_utc(event), ingest_time=format_utc(event + timedelta(milliseconds=30)),
        )
        _send(producer, "cc.orderbook", book)
    assert producer.flush(120) == 0
    return time.perf_counter() - started


def _send(producer, topic: str, value) -> None:
    while True:
        try:
            producer.produce(topic, key=value.key().encode(), value=serde.dumps(value))
            producer.poll(0)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)


def total_messages(settings: ServiceSettings, topics: list[str]) -> int:
    consumer = Consumer({**base_config(settings), "group.id": "bench-ends"})
    try:
        metadata = consumer.list_topics(timeout=30)
        total = 0
        for name in topics:
            for partition in metadata.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=30)
                total += high - low
        return total
    finally:
        consumer.close()


def ingest(settings: Settings, expected: int) -> tuple[float, float, ClickHouseWriter]:
    """Seconds to join the group (first message), seconds from there to all committed."""
    store = ClickHouseStore.open(settings.clickhouse_dsn)
    store.ensure_schema()
    shutdown = Shutdown()
    writer = ClickHouseWriter(
        settings, store, make_consumer(settings.clickhouse_consumer_group, settings), make_producer(settings), shutdown
    )
    thread = threading.Thread(target=writer.run, daemon=True)
    started = time.perf_counter()
    first_message = None
    thread.start()
    while not (writer.consumed >= expected and writer.batch.messages == 0):
        time.sleep(0.01)
        if first_message is None and writer.consumed > 0:
            first_message = time.perf_counter()
        if time.perf_counter() - started > 900:
            raise SystemExit(f"ingest did not finish in 15 min ({writer.consumed}/{expected})")
    finished = time.perf_counter()
    shutdown.trigger()
    thread.join(60)
    store.close()
    first_message = first_message or finished
    return first_message - started, finished - first_message, writer


def time_query(call, repeat: int) -> tuple[float, float, int]:
    call()  # warm caches once, as an analyst's second query would be
    samples, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = len(call())
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="an existing broker (its cc.prices/cc.orderbook are read too)")
    parser.add_argument("--prices", type=int, default=200_000)
    parser.add_argument("--books", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5000, help="SYI_CLICKHOUSE_BATCH_MAX_MESSAGES of the writer")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="syi-bench-ch-"))
    broker_process = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            print("starting a private Kafka broker ...", flush=True)
            bootstrap, broker_process = start_private_broker(workdir)
        kafka = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        provision_topics(kafka)
        produce_seconds = produce(kafka, args.prices, args.books)
        produced = args.prices + args.books
        print(f"produced {produced} messages in {produce_seconds:.2f} s ({produced / produce_seconds:,.0f} msg/s)")

        settings = Settings(
            kafka_bootstrap_servers=bootstrap, clickhouse_dsn=f"chdb://{workdir / 'chdb'}",
            clickhouse_consumer_group=f"bench-{uuid.uuid4().hex[:8]}", health_port=0,
            clickhouse_topics=["cc.prices", "cc.orderbook"],
            clickhouse_batch_max_messages=args.batch, clickhouse_batch_max_seconds=1.0,
        )
        expected = total_messages(kafka, settings.clickhouse_topics)
        join, seconds, writer = ingest(settings, expected)
        store_seconds = REGISTRY.get_sample_value("syi_store_batch_seconds_sum", {"service": "store-clickhouse"})
        print(
            f"ingest: {expected} messages consumed, validated, inserted and committed in {seconds:.2f} s "
            f"= {expected / seconds:,.0f} rows/s after the group join ({join:.2f} s); "
            f"{writer.committed_batches} batches of up to {args.batch}, insert+commit {store_seconds:.2f} s "
            f"({store_seconds / seconds:.0%} of the time)"
        )

        store = ClickHouseStore.open(settings.clickhouse_dsn)
        client = store.client
        counts = {c["table"]: c for c in queries.table_counts(client)}
        print(f"stored: prices {counts['prices']['unique_rows']}, orderbook {counts['orderbook']['unique_rows']}")
        checks = {
            "ohlc per minute, one symbol, all venues (FINAL)": lambda: queries.ohlc_per_minute(client, "USDC"),
            "latest price per symbol/venue (FINAL, all rows)": lambda: queries.latest_prices(client),
            "depth ±50 bps per minute, one symbol (FINAL)": lambda: queries.depth_over_time(client, "USDC"),
            "count() FINAL over prices": lambda: client.query("SELECT count() FROM prices FINAL").result_rows,
        }
        for name, call in checks.items():
            p50, p95, rows = time_query(call, args.repeat)
            print(f"query {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({rows} rows out)")
        # the full-table read compared with the reference aggregate over 300k rows
        p50, _, _ = time_query(checks["latest price per symbol/venue (FINAL, all rows)"], args.repeat)
        scaled = REFERENCE_AGGREGATE_MS * counts["prices"]["rows"] / 300_000
        print(f"ratio: full-scan aggregate p50 / reference scaled to this size = {p50 / scaled:.2f}")
        store.close()
    finally:
        if broker_process is not None:
            broker_process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
