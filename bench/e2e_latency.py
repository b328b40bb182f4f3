"""End-to-end latency of the running system (issue: minute close → published → delivered).

Run the system first (`make up`), then:

    .venv/bin/python bench/e2e_latency.py --minutes 10

For every minute bucket that closes while it runs, it measures
  (a) bucket end → its `syi.calculated` record produced (the Kafka message timestamp), and
  (b) bucket end → the record's arrival at a WebSocket client of the gateway,
and prints p50/p95/p99 of both with the calculators' allowed lateness beside them
(budgets: (a) p95 < 2 s including the lateness; (b) p95 < 100 ms more than (a)).
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

from syi_shared.kafka import make_consumer
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
        print(f"  ratio p95(produced) / lateness: {percentile(to_kafka, 95) / args.lateness:.2f}")


if __name__ == "__main__":
    main()
