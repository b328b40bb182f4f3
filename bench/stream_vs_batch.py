"""Benchmark: tape throughput of the streaming path (Kafka -> ray-calc -> syi-calc, Bytewax)
next to the batch calculator (`syi compute`) on the same tape.

    .venv/bin/python bench/stream_vs_batch.py                        # demo tape, private Kafka broker
    .venv/bin/python bench/stream_vs_batch.py --tape my.jsonl.gz --bootstrap 127.0.0.1:9092

Streaming: both services run as processes (as `syi run` starts them, one Bytewax worker each)
and are idle before the clock starts; the clock runs from the first message produced
(`play_tape`, as fast as Kafka takes it, between progress markers) to the Kafka timestamp of
the last `syi.calculated` record. Batch: `compute_tape` in this process (tape read + validate +
both engines). Throughput is simulated minutes (buckets) per wall second and input messages per
second; the ratio is streaming / batch. It also checks that both produced the same records.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from syi_cli.compute import compute_tape  # noqa: E402
from syi_shared.admin import provision_topics  # noqa: E402
from syi_shared.methodology.params import load_methodology  # noqa: E402
from syi_shared.settings import ServiceSettings  # noqa: E402
from syi_shared.timefmt import now_text, parse_utc, to_millis  # noqa: E402
from tests.ray_calc.streams import DEMO_TAPE, Calculator, comparable, play, read_since  # noqa: E402


def start_private_broker(workdir: Path):
    from syi_cli.stack.kafka_broker import KafkaBroker
    from tests.conftest import free_port_pair

    broker = KafkaBroker(workdir, port=free_port_pair())
    broker.format_storage(say=lambda m: None)
    process = broker.process(say=lambda m: None)
    process.start()
    process.wait_ready(timeout=120)
    return broker.bootstrap, process


def row(name: str, seconds: float, minutes: int, messages: int) -> str:
    return f"{name:<10} {seconds:>8.2f} s {minutes / seconds:>12.1f} {messages / seconds:>12.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tape", type=Path, default=DEMO_TAPE)
    parser.add_argument("--bootstrap", help="an existing broker (default: start a private one)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="syi-bench-stream-"))
    broker = None
    try:
        bootstrap = args.bootstrap
        if bootstrap is None:
            print("starting a private Kafka broker ...", flush=True)
            bootstrap, broker = start_private_broker(workdir)
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        provision_topics(settings)

        print(f"batch: compute_tape({args.tape.name}) ...", flush=True)
        started = time.perf_counter()
        batch = compute_tape(args.tape, load_methodology())
        batch_s = time.perf_counter() - started
        minutes, messages = len(batch.ray_buckets), batch.messages

        print("streaming: ray-calc + syi-calc, tape at max speed ...", flush=True)
        since = to_millis(parse_utc(now_text()))
        env = {"SYI_LOG_LEVEL": "WARNING"}
        ray = Calculator("ray_calc", settings, since, workdir, env).start()
        syi = Calculator("syi_calc", settings, since, workdir, env).start()
        try:
            started_wall = time.time()
            play(args.tape, settings)
            play_s = time.time() - started_wall
            deadline = time.monotonic() + args.timeout
            while True:
                records = read_since(settings, "syi.calculated", since)
                if len(records) >= len(batch.values):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(records)} of {len(batch.values)} records after {args.timeout} s")
                time.sleep(0.2)
        finally:
            ray.stop(), syi.stop()
        stream_s = max(message.timestamp()[1] for message in records) / 1000 - started_wall

        import orjson

        same = [comparable(orjson.loads(m.value())) for m in records] == [
            comparable(v.model_dump(mode="json")) for v in batch.values
        ]
        print()
        print(f"tape: {args.tape} — {minutes} minute buckets, {messages} input messages, {len(batch.values)} index values")
        print(f"{'path':<10} {'wall':>10} {'sim-min/s':>12} {'msgs/s':>12}")
        print(row("batch", batch_s, minutes, messages))
        print(row("streaming", stream_s, minutes, messages))
        print(f"(of which producing the tape into Kafka: {play_s:.2f} s)")
        print(f"ratio streaming/batch throughput: {batch_s / stream_s:.2f}")
        print(f"streaming records equal batch (but published_at): {same}")
        return 0 if same else 1
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
