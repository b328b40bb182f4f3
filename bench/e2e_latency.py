"""End-to-end latency of the running system (minute close → published → delivered).

Run the system first (`make up`), then:

    .venv/bin/python bench/e2e_latency.py --minutes 10

For every minute bucket that closes while it runs, it measures
  (a) bucket end → its `syi.calculated` record produced (the Kafka message timestamp), and
  (b) bucket end → the record's arrival at a WebSocket client of the gateway,
and prints p50/p95/p99 of both with the calculators' allowed lateness beside them
(budgets: (a) p99 ≤ lateness + 0.5 s; (b) p99 < 100 ms more than (a)).

Then it says where (a) goes, from the topics' own (Kafka) timestamps:
  * ingest lag: a `cc.prices`/`cc.orderbook` message's Kafka timestamp minus its event time
    (how old a value is when it reaches Kafka: the source's pace and the ingester's throttle);
  * inputs past end + lateness: per bucket, when the last live input partition's clock passed
    `end + lateness` (its first message stamped at/after it, or its last message before it plus
    the time its stamp was short of it: the calculators' rule, docs/streaming.md);
  * ray-calc: that moment → the bucket's first `ray.calculated` record;
  * syi-calc: `ray.calculated` → `syi.calculated`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time

import orjson
import websockets

from syi_shared.kafka import make_consumer, read_to_end
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import parse_utc, to_millis


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def follow_kafka(produced: dict[str, float], stop: threading.Event) -> None:
    consumer = make_consumer(f"bench-e2e-{os.getpid()}", ServiceSettings(), **{"auto.offset.reset": "latest"})
    consumer.subscribe(["syi.calculated"])
    while not stop.is_set():
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        record = orjson.loads(message.value())
        _, timestamp_ms = message.timestamp()  # set by the producer when it produced the record
        produced.setdefault(record["bucket_end"], timestamp_ms / 1000)
    consumer.close()


async def follow_gateway(url: str, delivered: dict[str, float], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with websockets.connect(url, compression=None) as socket:
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(socket.recv(), timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            arrived = time.time()
            envelope = orjson.loads(raw)
            if envelope.get("type") == "syi":
                delivered.setdefault(envelope["data"]["bucket_end"], arrived)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--ws", default="ws://127.0.0.1:8002/stream/syi/live")
    parser.add_argument("--lateness", type=float, default=float(os.environ.get("SYI_ALLOWED_LATENESS_SECONDS", 2.0)),
                        help="the calculators' allowed lateness, reported beside the results")
    args = parser.parse_args()

    produced: dict[str, float] = {}
    delivered: dict[str, float] = {}
    started_ms = int(time.time() * 1000)
    stop = threading.Event()
    thread = threading.Thread(target=follow_kafka, args=(produced, stop), daemon=True)
    thread.start()
    print(f"measuring for {args.minutes:g} minutes against {args.ws} ...")
    asyncio.run(follow_gateway(args.ws, delivered, args.minutes * 60))
    stop.set()
    thread.join(timeout=5)

    buckets = sorted(set(produced) & set(delivered))
    to_kafka = [produced[b] - to_millis(parse_utc(b)) / 1000 for b in buckets]
    to_client = [delivered[b] - to_millis(parse_utc(b)) / 1000 for b in buckets]
    extra = [c - k for k, c in zip(to_kafka, to_client)]
    print(f"buckets measured: {len(buckets)} (allowed lateness {args.lateness:g} s)")
    for name, values in (("bucket end → syi.calculated produced", to_kafka),
                         ("bucket end → WebSocket client", to_client),
                         ("produced → WebSocket client", extra)):
        if values:
            print(f"  {name:<40} p50 {percentile(values, 50):7.3f} s  p95 {percentile(values, 95):7.3f} s  "
                  f"p99 {percentile(values, 99):7.3f} s  mean {statistics.fmean(values):7.3f} s")
    if to_kafka:
        print(f"  p99(produced) − lateness: {percentile(to_kafka, 99) - args.lateness:.3f} s (budget 0.5 s)")
        breakdown(buckets, started_ms, args.lateness)


def _stats(name: str, values: list[float]) -> None:
    if values:
        print(f"  {name:<40} p50 {percentile(values, 50):7.3f} s  p95 {percentile(values, 95):7.3f} s  "
              f"p99 {percentile(values, 99):7.3f} s  n {len(values)}")


def breakdown(buckets: list[str], since_ms: int, lateness_s: float) -> None:
    """Where the time between a bucket's end and its syi.calculated record goes (see the top)."""
    settings = ServiceSettings()
    lateness_ms = round(lateness_s * 1000)
    ends = {b: to_millis(parse_utc(b)) for b in buckets}
    inputs = read_to_end(["cc.prices", "cc.orderbook"], settings, timeout=60, since_ms=since_ms)
    rays = read_to_end(["ray.calculated"], settings, timeout=60, since_ms=since_ms)
    indexes = read_to_end(["syi.calculated"], settings, timeout=60, since_ms=since_ms)
    ingest_lag, passed_at = [], {}
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for message in inputs:
        value = orjson.loads(message.value())
        event_ms, kafka_ms = to_millis(parse_utc(value["event_time"])), message.timestamp()[1]
        ingest_lag.append((kafka_ms - event_ms) / 1000)
        by_partition.setdefault((message.topic(), message.partition()), []).append((event_ms, kafka_ms))
    for bucket, end in ends.items():
        floor = end + lateness_ms
        passes = []
        for items in by_partition.values():
            before = [(event, kafka) for event, kafka in items if floor - 60_000 <= event < floor]
            if not before:
                continue  # a quiet partition: idleness, not event time, releases it
            # the clock's rule: a partition's time runs on with the wall clock from its last message
            event, kafka = max(before)
            after = [kafka for event_after, kafka in items if event_after >= floor]
            passes.append(min([kafka + floor - event, *after]))
        if passes:
            passed_at[bucket] = max(passes)
    ray_at: dict[str, int] = {}
    for message in rays:
        bucket = orjson.loads(message.value())["bucket_end"]
        ray_at[bucket] = min(ray_at.get(bucket, message.timestamp()[1]), message.timestamp()[1])
    syi_at = {orjson.loads(m.value())["bucket_end"]: m.timestamp()[1] for m in indexes}
    measured = [b for b in buckets if b in passed_at and b in ray_at and b in syi_at]
    print(f"where it goes ({len(measured)} buckets):")
    _stats("ingest lag (Kafka ts − event time)", ingest_lag)
    _stats("end → inputs past end + lateness", [(passed_at[b] - ends[b]) / 1000 for b in measured])
    _stats("inputs past end + lateness → ray-calc", [(ray_at[b] - passed_at[b]) / 1000 for b in measured])
    _stats("ray.calculated → syi.calculated", [(syi_at[b] - ray_at[b]) / 1000 for b in measured])


if __name__ == "__main__":
    main()
