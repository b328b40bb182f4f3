"""Benchmark: `GET /api/index/current` under concurrent load, next to a bare endpoint of the same server.

    .venv/bin/python bench/rest_api_load.py                        # private PostgreSQL + API, 10 s per endpoint
    .venv/bin/python bench/rest_api_load.py --duration 20 --concurrency 100 --clients 2
    .venv/bin/python bench/rest_api_load.py --base-url http://127.0.0.1:8000 [--api-key KEY]   # a running API

Without --base-url it starts its own PostgreSQL cluster (as the tests do), migrates it with
store-timescale's migrations, stores a day of minute values through store-timescale's writer
and runs `python -m rest_api` on a free port. Then, for each endpoint in turn, `--clients`
processes each keep `--concurrency` requests in flight (httpx, keep-alive) for `--duration`
seconds. The bare endpoint is `/healthz` (no database round trip: it caches its check), so
the ratio shows what reading and serialising the current value costs on top of HTTP.
Target (docs/architecture.md, "Measured"): p95 < 100 ms for /api/index/current.

On a 2-core machine the load generator competes with the server for CPU: requests/s here is
a floor, not the server's ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from syi_shared.logs import configure_logging

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

P95_TARGET_MS = 100.0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _hammer(base: str, path: str, concurrency: int, duration: float, headers: dict[str, str]):
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def one_lane() -> None:
        # one client (one keep-alive connection) per lane: a shared httpx pool costs more CPU per
        # request as connections grow, and would make the load generator the thing measured
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    return latencies, errors


def _client_process(args: tuple[str, str, int, float, dict[str, str]]) -> tuple[list[float], int]:
    return asyncio.run(_hammer(*args))


def load(pool, base: str, path: str, clients: int, concurrency: int, seconds: float,
         headers: dict[str, str]) -> list[tuple[list[float], int]]:
    """One slice of load from every client process; the caller alternates endpoints between slices
    so a noisy neighbour slows both alike."""
    return pool.map(_client_process, [(base, path, concurrency, seconds, headers)] * clients)


def summary(path: str, results: list[tuple[list[float], int]], seconds: float) -> dict:
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    ms = [x * 1000 for x in latencies]
    return {
        "path": path,
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / seconds,
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": ms[-1] if ms else float("nan"),
    }


def server_latency(base: str, headers: dict[str, str]) -> dict[str, dict[str, float]]:
    """The server's own latency histogram per route (syi_api_request_latency_seconds), cumulative."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
    routes: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "syi_api_request_latency_seconds":
            continue
        for sample in family.samples:
            route = routes.setdefault(sample.labels["route"], {})
            if sample.name.endswith("_bucket"):
                route[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_sum"):
                route["sum"] = sample.value
            elif sample.name.endswith("_count"):
                route["count"] = sample.value
    return routes


def server_side(before: dict, after: dict, route: str) -> str:
    """Mean and a bucket-bound p95 of the server's own handling time between two scrapes."""
    a, b = after.get(route, {}), before.get(route, {})
    count = a.get("count", 0) - b.get("count", 0)
    if count <= 0:
        return "n/a"
    mean = (a["sum"] - b.get("sum", 0)) / count * 1000
    bounds = sorted((float(le), a[le] - b.get(le, 0)) for le in a if le not in ("sum", "count"))
    p95 = next((le for le, cumulative in bounds if cumulative >= 0.95 * count), float("inf"))
    return f"mean {mean:.1f} ms, p95 <= {p95 * 1000:g} ms"


def private_server(workdir: Path, minutes: int):
    """PostgreSQL on a free port, a day of stored values, and the API as a process."""
    from syi_cli.stack.postgres import PostgresCluster
    from tests.conftest import free_port

    cluster = PostgresCluster(workdir, port=free_port())
    cluster.init(say=lambda m: None)
    postgres = cluster.process()
    postgres.start()
    postgres.wait_ready(timeout=60)
    cluster.ensure_database()
    asyncio.run(_fill(cluster.dsn, minutes))
    port = free_port()
    env = {**os.environ, "SYI_POSTGRES_DSN": cluster.dsn, "SYI_API_PORT": str(port), "SYI_LOG_FORMAT": "json"}
    api = subprocess.Popen([sys.executable, "-m", "rest_api"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or api.poll() is not None:
            raise RuntimeError("the API did not become healthy")
        time.sleep(0.2)

    def stop() -> None:
        api.terminate()
        api.wait(20)
        postgres.stop()
        shutil.rmtree(cluster.home, ignore_errors=True)

    return base, stop


async def _fill(dsn: str, minutes: int) -> None:
    import asyncpg

    from store_timescale.migrations import migrate
    from store_timescale.pg_writer import PgWriter
    from syi_shared.timefmt import format_utc, utc_now
    from tests.store_timescale.records import index_value

    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    writer = PgWriter(pool, partitioned=True)
    await writer.start(months_ahead=1)
    newest = utc_now().replace(second=0, microsecond=0)
    values = [index_value(format_utc(newest - timedelta(minutes=minutes - 1 - i)), 0.045 + (i % 60) / 100_000)
              for i in range(minutes)]
    for chunk in range(0, len(values), 1000):
        await writer.write([("syi.calculated", v) for v in values[chunk:chunk + 1000]])
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an API that is already running (default: start a private one)")
    parser.add_argument("--api-key", help="sent as X-API-Key")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight per client process")
    parser.add_argument("--clients", type=int, default=1, help="load-generating processes")
    parser.add_argument("--minutes", type=int, default=1440, help="minute values stored in the private database")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per endpoint")
    args = parser.parse_args()
    configure_logging("bench", "WARNING")

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    workdir = Path(tempfile.mkdtemp(prefix="syi-bench-api-"))
    stop = None
    try:
        if args.base_url:
            base = args.base_url.rstrip("/")
        else:
            print(f"starting PostgreSQL and the API, storing {args.minutes} minute values ...", flush=True)
            base, stop = private_server(workdir, args.minutes)
        print(f"server {base}; {args.clients} client process(es) × {args.concurrency} in flight; "
              f"{args.duration:.0f} s per endpoint; {os.cpu_count()} CPUs", flush=True)
        paths = ("/api/index/current", "/healthz")
        collected: dict[str, list] = {path: [] for path in paths}
        slice_seconds = args.duration / args.rounds
        with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
            for path in paths:  # warm-up: connections, prepared statements, the health cache
                load(pool, base, path, args.clients, 4, 1.0, headers)
            before = server_latency(base, headers)
            for _ in range(args.rounds):
                for path in paths:
                    collected[path] += load(pool, base, path, args.clients, args.concurrency, slice_seconds, headers)
        after = server_latency(base, headers)
        current = summary(paths[0], collected[paths[0]], args.duration)
        bare = summary(paths[1], collected[paths[1]], args.duration)
    finally:
        if stop:
            stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'endpoint':<22}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}"
          f"{'p99 ms':>10}{'max ms':>10}")
    for row in (current, bare):
        print(f"{row['path']:<22}{row['requests']:>10}{row['errors']:>8}{row['rps']:>10.0f}{row['p50']:>10.1f}"
              f"{row['p95']:>10.1f}{row['p99']:>10.1f}{row['max']:>10.1f}")
    print()
    print(f"ratio current / bare:  req/s {current['rps'] / bare['rps']:.2f}   p50 {current['p50'] / bare['p50']:.2f}x"
          f"   p95 {current['p95'] / bare['p95']:.2f}x   p99 {current['p99'] / bare['p99']:.2f}x")
    # client-observed times include queueing in the client and the OS; the server's histogram does not
    for path in paths:
        print(f"server-side {path:<20} {server_side(before, after, path)}")
    verdict = "meets" if current["p95"] < P95_TARGET_MS else "misses"
    print(f"/api/index/current p95 {current['p95']:.1f} ms {verdict} the {P95_TARGET_MS:.0f} ms target "
          f"(at {args.clients * args.concurrency} requests in flight)")


if __name__ == "__main__":
    main()
