"""ws-gateway fan-out benchmark: N WebSocket clients on loopback, next to raw `websockets.broadcast()`.

One real gateway (admission, snapshot, slow-client checks, metrics) fed directly with
`Gateway.offer` (no Kafka: this measures fan-out, not the broker), N clients in separate
processes. Messages alternate between two paths over the same connections:
  * gateway: `Gateway.offer(...)` -> the gateway's fan-out (`Stream.publish`);
  * raw: one `websockets.broadcast(server.connections, frame)` call, nothing else;
so both are measured in the same run, under the same load. Every message carries its hand-over
time; latency = receipt by the client - hand-over (includes reaching the last client and the
clients' own CPU share of this machine).

    .venv/bin/python bench/ws_fanout.py                      # 1 000 clients
    .venv/bin/python bench/ws_fanout.py --clients 10000      # 10 000 clients (raises RLIMIT_NOFILE)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.shared.examples

from prometheus_client import REGISTRY  # noqa: E402
from websockets.asyncio.server import broadcast  # noqa: E402

from tests.shared.examples import SYI  # noqa: E402
from ws_gateway.envelope import frame  # noqa: E402
from ws_gateway.gateway import SYI_PATH, Gateway, raise_open_file_limit  # noqa: E402
from ws_gateway.settings import Settings  # noqa: E402
from ws_gateway.topic_follower import Record  # noqa: E402


def record(seq: int, path: str, constituents: int) -> bytes:
    """A realistic syi.calculated value (the docs/topics.md example, `constituents` entries), stamped."""
    base = SYI["constituents"][0]
    members = [{**base, "symbol": f"S{i:02d}"} for i in range(constituents)]
    stamp = {"bench_seq": seq, "bench_path": path, "bench_sent_at": time.time()}
    return orjson.dumps({**SYI, "constituents": members, **stamp})


# ---------------------------------------------------------------- client processes


def client_process(port: int, path: str, count: int, expected: int, results: Any, stop: Any, deadline: float) -> None:
    raise_open_file_limit()
    asyncio.run(_clients(port, path, count, expected, results, stop, deadline))


class ThinClient(asyncio.Protocol):
    """A minimal RFC 6455 reader (handshake, unmasked server frames, pong replies), so that the
    clients' share of this machine's CPU stays small next to the server's; the server side is
    the real `websockets` stack."""

    def __init__(self, request: bytes, opened: asyncio.Future[None], latencies: dict[str, list[float]]) -> None:
        self.request = request
        self.opened = opened
        self.latencies = latencies
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(bytes(self.buffer[:end]).decode(errors="replace")))
                return
            del self.buffer[: end + 4]
            self.opened.set_result(None)
        while len(self.buffer) >= 2:
            opcode, length, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            if opcode == 0x1:
                self.on_text(payload)
            elif opcode == 0x9 and self.transport is not None:  # ping -> pong, masked with a zero key
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def on_text(self, payload: bytes) -> None:
        at = payload.find(b'"bench_sent_at":')
        if at < 0:
            return  # welcome, snapshot
        received = time.time()
        end = at + 16
        while payload[end] not in b",}":
            end += 1
        path = "raw" if b'"bench_path":"raw"' in payload else "gateway"
        self.latencies[path].append(received - float(payload[at + 16 : end]))


async def _clients(
    port: int, path: str, count: int, expected: int, results: Any, stop: Any, deadline: float
) -> None:
    """Open `count` connections, then report latencies once each got `expected` messages (or on stop)."""
    loop = asyncio.get_running_loop()
    latencies: dict[str, list[float]] = {"gateway": [], "raw": []}
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(100)  # connect in waves, like clients coming back after a restart
    transports = []

    async def one() -> None:
        async with gate:
            opened: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: ThinClient(request, opened, latencies), "127.0.0.1", port
            )
            transports.append(transport)
            await asyncio.wait_for(opened, 60)

    outcomes = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        print(f"{len(failures)} connections failed, e.g. {failures[0]!r}", file=sys.stderr)
    opened = count - len(failures)
    results.put(("ready", opened))
    while not stop.is_set() and time.time() < deadline and sum(map(len, latencies.values())) < opened * expected:
        await asyncio.sleep(0.1)
    for transport in transports:
        transport.close()
    results.put(("done", latencies))


class Clients:
    """`procs` processes holding `count` connections in total."""

    def __init__(self, port: int, path: str, count: int, expected: int, procs: int, deadline: float) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.stop = ctx.Event()
        shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
        self.processes = [
            ctx.Process(target=client_process, args=(port, path, share, expected, self.results, self.stop, deadline))
            for share in shares
            if share
        ]

    async def start(self) -> int:
        for process in self.processes:
            process.start()
        replies = [await asyncio.to_thread(self.results.get) for _ in self.processes]
        return sum(n for _, n in replies)

    async def finish(self, settle_until: float) -> dict[str, list[float]]:
        """Each process reports once its clients got every message, or when stopped at `settle_until`."""
        latencies: dict[str, list[float]] = {"gateway": [], "raw": []}
        for _ in self.processes:
            while True:
                try:
                    _, got = await asyncio.to_thread(self.results.get, True, 0.5)
                    break
                except queue.Empty:
                    if time.time() > settle_until:
                        self.stop.set()
            for path, values in got.items():
                latencies[path].extend(values)
        self.stop.set()
        for process in self.processes:
            await asyncio.to_thread(process.join, 30)
        return latencies


# ---------------------------------------------------------------- the two phases


async def run(args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    settings = Settings(
        _env_file=None,
        ws_port=0,
        ws_max_connections=args.clients + 100,
        ws_max_connections_per_ip=0,
    )
    gateway = Gateway(settings)
    await gateway.start(follow_kafka=False)
    try:
        clients = Clients(gateway.port, SYI_PATH, args.clients, 2 * args.messages, args.procs, deadline)
        connected = await clients.start()
        print(f"{connected} clients connected", flush=True)
        raw_spent = []
        sum_before, count_before = fanout_histogram()
        for seq in range(2 * args.messages):
            if seq % 2:
                value = record(seq, "raw", args.constituents)
                started = time.perf_counter()
                data = frame("syi", value)  # one serialisation per message, as in the gateway
                broadcast(gateway.server.connections, data, text=True)  # type: ignore[union-attr]
                raw_spent.append(time.perf_counter() - started)
            else:
                value = record(seq, "gateway", args.constituents)
                gateway.offer([Record("syi.calculated", "SYI", value, time.monotonic(), seq, int(time.time() * 1000))])
            await asyncio.sleep(args.interval)
        sum_after, count_after = fanout_histogram()
        fanouts = count_after - count_before
        gateway_spent = [(sum_after - sum_before) / fanouts] if fanouts else []
        latencies = await clients.finish(min(deadline, time.time() + args.settle))
        drops = REGISTRY.get_sample_value("syi_ws_slow_client_drops_total", {"stream": "syi"}) or 0
    finally:
        await gateway.stop()
    size = len(data)
    raw = summary("raw broadcast()", connected, args, raw_spent, latencies["raw"], size)
    via_gateway = summary("ws-gateway", connected, args, gateway_spent, latencies["gateway"], size)
    via_gateway["slow_client_drops"] = int(drops)
    return [raw, via_gateway]


def fanout_histogram() -> tuple[float, float]:
    labels = {"stream": "syi"}
    return (
        REGISTRY.get_sample_value("syi_ws_fanout_latency_seconds_sum", labels) or 0.0,
        REGISTRY.get_sample_value("syi_ws_fanout_latency_seconds_count", labels) or 0.0,
    )


def summary(
    name: str, connected: int, args: argparse.Namespace, spent: list[float], latencies: list[float], size: int
) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    per_message = statistics.mean(spent) if spent else float("nan")
    return {
        "name": name,
        "connected": connected,
        "expected": connected * args.messages,
        "delivered": len(latencies),
        "frame_bytes": size,
        "server_ms_per_message": per_message * 1000,
        "writes_per_second": connected / per_message if spent and per_message > 0 else float("nan"),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
    }


def report(results: list[dict[str, Any]]) -> None:
    print()
    print(f"{'path':<16}{'clients':>8}{'delivered':>18}{'server ms/msg':>15}{'writes/s':>12}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for r in results:
        delivered = f"{r['delivered']}/{r['expected']}"
        print(f"{r['name']:<16}{r['connected']:>8}{delivered:>18}{r['server_ms_per_message']:>15.1f}"
              f"{r['writes_per_second']:>12,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}")
    raw, gateway = results
    print()
    print(f"frame: {gateway['frame_bytes']} bytes; ratio gateway/raw broadcast() write rate: "
          f"{gateway['writes_per_second'] / raw['writes_per_second']:.2f}; "
          f"slow-client drops: {gateway['slow_client_drops']}")
    print(f"budget (docs/architecture.md, Measured): 10 000 clients, p99 fan-out < 250 ms -> gateway p99 {gateway['p99_ms']:.0f} ms")


async def main(args: argparse.Namespace) -> None:
    limit = raise_open_file_limit()
    if limit < args.clients + 200:
        sys.exit(f"open-files limit {limit} is below {args.clients} clients: raise the hard limit (ulimit -Hn)")
    started = time.time()
    results = await run(args, started + args.timeout)
    print(f"done after {time.time() - started:.0f} s", flush=True)
    report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="messages per path (raw and gateway)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between messages (alternating paths)")
    parser.add_argument("--constituents", type=int, default=8, help="constituents per value (sets the size)")
    parser.add_argument("--procs", type=int, default=max(1, min(4, (os.cpu_count() or 2))), help="client processes")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait for the last deliveries")
    parser.add_argument("--timeout", type=float, default=300.0, help="upper bound of the whole run, seconds")
    asyncio.run(main(parser.parse_args()))
