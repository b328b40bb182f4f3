"""Benchmark: the kill campaign, long form (tests/faults/campaign.py; the short form runs in
`make test`, tests/faults/test_kill_campaign.py).

    .venv/bin/python bench/kill_campaign.py                           # 4 h tape at 24x (10 min), 10 kills each
    .venv/bin/python bench/kill_campaign.py --minutes 90 --speed 36 --kills 3 --seed 7
    .venv/bin/python bench/kill_campaign.py --postgres-dsn postgresql://syi:syi@127.0.0.1:5432/stableyield

A generated tape is played through a private Kafka broker at a fixed speed while ray-calc and
syi-calc are SIGKILLed at random moments (every other kill as a bucket's close mark reaches the
broker, so inside its transaction) and restarted after a random pause of up to 3 s; the broker
is SIGKILLed and started again once; syi-calc is restarted once from a fresh empty directory.
Then it prints, against `syi compute` of the same tape (read with read_committed): kills, kills
that aborted a bucket's transaction, buckets, and missing, duplicate and mismatching records,
chain breaks and store mismatches — all but the first three must be 0 (exit 1 otherwise).
A private PostgreSQL cluster holds the store-timescale writer's database unless --postgres-dsn
names one (a database of its own is created there and dropped) or --no-store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.faults.campaign import CampaignConfig, run_campaign  # noqa: E402


@contextlib.contextmanager
def private_postgres(workdir: Path) -> Iterator[str]:
    from syi_cli.stack.postgres import PostgresCluster
    from tests.conftest import free_port

    cluster = PostgresCluster(workdir, port=free_port())
    cluster.init(say=lambda m: None)
    process = cluster.process()
    process.start()
    try:
        process.wait_ready(timeout=60)
        cluster.ensure_database()
        yield cluster.dsn
    finally:
        process.stop()


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """librdkafka's connection errors while the broker is dead go to fd 2: into a file instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=240, help="tape length (generated)")
    parser.add_argument("--speed", type=float, default=24.0, help="x the tape's pace")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs of each calculator")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument("--postgres-dsn", help="a PostgreSQL cluster to use (default: start a private one)")
    parser.add_argument("--no-store", action="store_true", help="no store-timescale writer, no store check")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, broker data)")
    args = parser.parse_args()

    config = CampaignConfig(tape_minutes=args.minutes, speed=args.speed, kills=args.kills, seed=args.seed,
                            broker_restart=not args.no_broker_restart, settle_s=300.0)
    workdir = Path(tempfile.mkdtemp(prefix="syi-bench-kill-"))
    try:
        with contextlib.ExitStack() as stack:
            dsn = None
            if not args.no_store:
                if args.postgres_dsn:
                    dsn = args.postgres_dsn
                else:
                    print("starting a private PostgreSQL cluster ...", flush=True)
                    dsn = stack.enter_context(private_postgres(workdir / "postgres"))
            print(f"kill campaign: {args.minutes} min tape at {args.speed:g}x (~{config.play_s / 60:.0f} min), "
                  f"{args.kills} kills of each calculator; client errors go to {workdir}/stderr.log", flush=True)
            with stderr_to(workdir / "stderr.log"):
                result = run_campaign(config, workdir / "campaign", dsn, say=lambda text: print(text, flush=True))
        print()
        print(result.summary())
        print("\ntimeline:")
        print("\n".join(result.timeline))
        failures = result.failures()
        if result.kills_in_close < 1:
            failures["kills_in_close"] = 0
        if failures:
            print(f"\nFAILED: {failures}\n{result.logs}")
            return 1
        print("\nall clean: exactly one record per bucket, equal to the batch run, one chain, store = topic")
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
