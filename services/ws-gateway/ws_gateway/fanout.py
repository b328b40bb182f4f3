"""Fan-out of one stream to its clients, and the slow-client policy.

Each value is framed once and written to every client without awaiting any of them
(`websockets.broadcast`), so one slow socket never delays the others. A client whose send
buffer holds more than `buffer_limit` bytes is *behind*: it is skipped and only the newest
frame is kept for it (conflation); when its buffer drains it gets that newest frame, and when it
stays behind longer than `slow_timeout` seconds it is closed with code 4000.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from websockets.asyncio.server import ServerConnection, broadcast

from syi_shared.logs import get_logger
from syi_shared.timefmt import millis
from ws_gateway import telemetry
from ws_gateway.envelope import frame, message
from ws_gateway.history import Entry

SLOW_CLIENT_CLOSE_CODE = 4000
SLOW_CLIENT_CLOSE_REASON = "slow client: fell behind"


@dataclass(eq=False)
class Client:
    connection: ServerConnection
    pending: bytes | None = None  # the newest frame held back while the client is behind
    behind_since: float | None = None
    joined_seq: int | None = None  # the newest position written to it before its live updates began


class Stream:
    """One WebSocket path: its latest value(s) for snapshots and its connected clients."""

    def __init__(
        self,
        name: str,
        path: str,
        update_type: str,
        keyed: bool,
        buffer_limit: int,
        slow_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.path = path
        self.update_type = update_type
        self.keyed = keyed  # True: the snapshot is the newest value per key; False: the newest value
        self.buffer_limit = buffer_limit
        self.slow_timeout = slow_timeout
        self.clock = clock
        self.latest: dict[str, bytes] = {}
        self.latest_seq: int | None = None  # the unkeyed (index) stream's snapshot position
        self.last_value_at: float | None = None
        self._clients: dict[ServerConnection, Client] = {}
        self._behind: set[Client] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.log = get_logger(component="fanout", stream=name)  # bound after configure_logging
        self._subscribers = telemetry.SUBSCRIBERS.labels(name)
        self._latency = telemetry.FANOUT_LATENCY.labels(name)
        self._conflated = telemetry.CONFLATED.labels(name)
        self._bytes = telemetry.BYTES_SENT.labels(name)
        self._sent_updates = telemetry.MESSAGES_SENT.labels(name, update_type)

    def __len__(self) -> int:
        return len(self._clients)

    def snapshot_json(self) -> bytes | None:
        if not self.latest:
            return None
        if self.keyed:
            return b"[" + b",".join(self.latest[key] for key in sorted(self.latest)) + b"]"
        return next(iter(self.latest.values()))

    def add(self, connection: ServerConnection, welcome: dict[str, object], notice: bytes | None = None) -> None:
        """Write the welcome (and a `notice` after it) and the snapshot, then register; nothing
        awaits in between, so no value can fall between the snapshot and the first update."""
        snapshot = self.snapshot_json()
        self.write([connection], message("welcome", {**welcome, "snapshot": snapshot is not None}), "welcome")
        if notice is not None:
            self.write([connection], notice, "error")
        if snapshot is not None:
            self.write([connection], frame("snapshot", snapshot, self.latest_seq), "snapshot")
        self._register(connection, self.latest_seq)

    def resume(self, connection: ServerConnection, welcome: dict[str, object], missed: list[Entry]) -> None:
        """Write the welcome and every record the client missed, in order, then register; as in
        `add`, nothing awaits in between, so the live updates go on from the last one written."""
        self.write([connection], message("welcome", {**welcome, "snapshot": False, "resumed": len(missed)}), "welcome")
        self.replay(connection, missed)
        self._register(connection, missed[-1].seq if missed else self.latest_seq)

    def replay(self, connection: ServerConnection, entries: list[Entry]) -> None:
        for entry in entries:
            self.write([connection], frame(self.kind_of(entry), entry.raw, entry.seq), self.update_type)

    def kind_of(self, entry: Entry) -> str:
        return "revision" if entry.revision else self.update_type

    def joined_seq(self, connection: ServerConnection) -> int | None:
        client = self._clients.get(connection)
        return client.joined_seq if client is not None else None

    def _register(self, connection: ServerConnection, joined_seq: int | None) -> None:
        self._clients[connection] = Client(connection, joined_seq=joined_seq)
        self._subscribers.set(len(self._clients))

    def remove(self, connection: ServerConnection) -> None:
        client = self._clients.pop(connection, None)
        if client is not None:
            self._behind.discard(client)
            self._subscribers.set(len(self._clients))

    def publish(self, key: str, raw: bytes, received_at: float, entry: Entry | None = None) -> None:
        """A new value (its JSON exactly as consumed): remember it and send it to every client.
        On the index stream `entry` gives its position (`seq`) and whether it is a revision; a
        revision of an older bucket is sent but leaves the snapshot (the newest bucket) as it is."""
        kind, seq = (self.update_type, None) if entry is None else (self.kind_of(entry), entry.seq)
        if entry is None or not entry.revision or self._is_newest(entry):
            if not self.keyed:
                self.latest.clear()
            self.latest[key] = raw
            self.latest_seq = seq
        self.last_value_at = time.time()
        data = frame(kind, raw, seq)
        now = self.clock()
        limit = self.buffer_limit
        ready: list[ServerConnection] = []
        lagging: list[ServerConnection] = []
        for connection in self._clients:  # the hot loop: one cheap check per client
            (lagging if connection.transport.get_write_buffer_size() > limit else ready).append(connection)
        if self._behind:  # drained since the last sweep: this newer value replaces the held one
            late = set(lagging)
            for client in [c for c in self._behind if c.connection not in late]:
                self._conflated.inc()
                self._caught_up(client)
        for connection in lagging:
            client = self._clients[connection]
            if client.pending is not None:
                self._conflated.inc()
            client.pending = data
            if client.behind_since is None:
                client.behind_since = now
                self._behind.add(client)
        self.write(ready, data, self.update_type)
        self._latency.observe(self.clock() - received_at)

    def _is_newest(self, entry: Entry) -> bool:
        """Whether a revision is of the snapshot's bucket (or a newer one)."""
        current = next(iter(self.latest.values()), None)
        return current is None or entry.bucket_end_ms >= millis(orjson.loads(current)["bucket_end"])

    def sweep(self) -> None:
        """Called a few times a second: catch up drained clients, close those behind too long."""
        now = self.clock()
        for client in list(self._behind):
            if self._buffered(client) <= self.buffer_limit:
                pending = client.pending
                self._caught_up(client)
                if pending is not None:
                    self.write([client.connection], pending, self.update_type)
            elif client.behind_since is not None and now - client.behind_since > self.slow_timeout:
                self._drop(client)

    def write(self, connections: Iterable[ServerConnection], data: bytes, kind: str) -> None:
        targets = list(connections)
        if not targets:
            return
        broadcast(targets, data, text=True)  # non-blocking, UTF-8 JSON as text frames
        sent = len(targets)
        counter = self._sent_updates if kind == self.update_type else telemetry.MESSAGES_SENT.labels(self.name, kind)
        counter.inc(sent)
        self._bytes.inc(sent * len(data))

    def count_reply(self, kind: str, data: bytes) -> None:
        """Account for a message the connection handler sent itself (pong, error)."""
        telemetry.MESSAGES_SENT.labels(self.name, kind).inc()
        self._bytes.inc(len(data))

    @staticmethod
    def _buffered(client: Client) -> int:
        return client.connection.transport.get_write_buffer_size()

    def _caught_up(self, client: Client) -> None:
        client.pending = None
        client.behind_since = None
        self._behind.discard(client)

    def _drop(self, client: Client) -> None:
        self.remove(client.connection)
        telemetry.SLOW_CLIENT_DROPS.labels(self.name).inc()
        self.log.info("slow_client_dropped", peer=_peer(client.connection))
        # close() sends the close frame behind what is queued and aborts after close_timeout
        task = asyncio.get_running_loop().create_task(
            client.connection.close(SLOW_CLIENT_CLOSE_CODE, SLOW_CLIENT_CLOSE_REASON)
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"
