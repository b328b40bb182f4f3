"""The gateway: a websockets server on /stream/syi/live and /stream/constituents, fed by Kafka."""

from __future__ import annotations

import asyncio
import resource
import socket
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from confluent_kafka import TopicPartition
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from syi_shared.health import HealthReport
from syi_shared.logs import get_logger
from syi_shared.shutdown import Shutdown
from syi_shared.timefmt import millis
from syi_shared.topics import RAY_CALCULATED, SYI_CALCULATED
from ws_gateway.admission import Admission
from ws_gateway.envelope import message
from ws_gateway.fanout import Stream
from ws_gateway.history import History, ResumeRefused
from ws_gateway.settings import Settings
from ws_gateway.topic_follower import Record, TopicFollower

SYI_PATH = "/stream/syi/live"
CONSTITUENTS_PATH = "/stream/constituents"
SWEEP_SECONDS = 0.25


class Gateway:
    """`async with Gateway(settings) as gateway:` serves until the block ends (`gateway.port`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance = uuid.uuid4().hex[:8]
        limits = {
            "buffer_limit": settings.ws_client_buffer_bytes,
            "slow_timeout": settings.ws_slow_client_timeout_seconds,
        }
        self.syi = Stream("syi", SYI_PATH, update_type="syi", keyed=False, **limits)
        self.constituents = Stream("constituents", CONSTITUENTS_PATH, update_type="ray", keyed=True, **limits)
        self.streams = {stream.path: stream for stream in (self.syi, self.constituents)}
        self._by_topic = {SYI_CALCULATED: self.syi, RAY_CALCULATED: self.constituents}
        self.history = History(settings.ws_resume_window_seconds)
        self.admission = Admission(settings, list(self.streams), self.health)
        self.follower: TopicFollower | None = None
        self.server: Server | None = None
        self._inbox: asyncio.Queue[tuple[list[Record], Callable[[], None] | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.log = get_logger(component="gateway")  # bound after configure_logging

    async def start(self, follow_kafka: bool = True) -> None:
        """Listen, and follow the topics; `follow_kafka=False` leaves feeding to `offer` (benchmarks)."""
        settings = self.settings
        if follow_kafka:
            self.follower = TopicFollower(
                settings,
                {SYI_CALCULATED: settings.ws_resume_window_seconds,
                 RAY_CALCULATED: settings.ws_constituents_lookback_seconds},
                self.offer,
                asyncio.get_running_loop(),
                on_assigned=self._assigned,
            )
            self.follower.start()
        self.server = await serve(
            self._handle,
            settings.ws_host,
            settings.ws_port,
            ssl=settings.ssl_context(),
            process_request=self.admission,
            compression=None,  # no per-message deflate: CPU per client on the fan-out path (docs/websocket.md)
            max_size=settings.ws_max_message_bytes,
            ping_interval=settings.ws_ping_interval_seconds,
            ping_timeout=settings.ws_ping_interval_seconds,
            close_timeout=settings.ws_close_timeout_seconds,
            backlog=2048,  # thousands of clients reconnect at once after a restart
        )
        self._tasks = [asyncio.create_task(self._deliver()), asyncio.create_task(self._sweep())]
        scheme = "wss" if settings.ws_tls_cert else "ws"
        url = f"{scheme}://{settings.ws_host}:{self.port}{SYI_PATH}"
        self.log.info("listening", url=url, auth=bool(settings.api_keys))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()  # closes every connection with 1001 (going away)
            await self.server.wait_closed()
        if self.follower is not None:
            await asyncio.to_thread(self.follower.stop)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.sockets[0].getsockname()[1]

    def health(self) -> dict[str, Any]:
        """/healthz and /readyz: the follower's truth (broker, inputs, its loop) and the streams."""
        follower = self.follower
        following = follower.check() if follower is not None else HealthReport.degraded(
            "kafka: not following (values are offered in-process)", kafka="not started")
        return HealthReport.combine(
            following,
            instance=self.instance,
            connections=self.admission.connections,
            streams={
                stream.name: {
                    "subscribers": len(stream),
                    "snapshot": bool(stream.latest),
                    "last_value_at": stream.last_value_at,
                }
                for stream in self.streams.values()
            },
        ).body()

    def offer(self, batch: list[Record], then: Callable[[], None] | None = None) -> None:
        """Queue consumed values for fan-out (called on the loop; the follower uses call_soon_threadsafe);
        `then` runs once they are published."""
        self._inbox.put_nowait((batch, then))

    def _assigned(self, positions: list[TopicPartition]) -> None:
        for position in positions:
            if position.topic == SYI_CALCULATED:
                self.history.started(position.offset)

    async def _deliver(self) -> None:
        while True:
            batch, then = await self._inbox.get()
            for record in batch:
                entry = None
                if record.topic == SYI_CALCULATED:
                    entry = self.history.append(record.offset, record.raw, record.produced_ms)
                self._by_topic[record.topic].publish(record.key, record.raw, record.received_at, entry)
                # let the transports move bytes to the kernel between values of a burst
                await asyncio.sleep(0)
            if then is not None:
                then()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            for stream in self.streams.values():
                stream.sweep()

    async def _handle(self, connection: ServerConnection) -> None:
        # admission let only known stream paths through
        stream = self.streams[connection.request.path.split("?", 1)[0]]  # type: ignore[union-attr]
        if self.settings.ws_socket_send_buffer_bytes:
            sock = connection.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.ws_socket_send_buffer_bytes)
        welcome = {"stream": stream.path, "server": "ws-gateway", "instance": self.instance}
        self._join(stream, connection, welcome, parse_qs(urlsplit(connection.request.path).query))  # type: ignore[union-attr]
        try:
            async for incoming in connection:
                kind, data = reply(incoming)
                if kind == "resume":
                    kind, data = (self._resume_later(stream, connection, orjson.loads(incoming)) if stream is self.syi
                                  else ("error", message("error", {"message": "resume is offered on the index stream only"})))
                await connection.send(data, text=True)  # flow-controlled: a client that never reads stops being read
                stream.count_reply(kind, data)
        except ConnectionClosed:
            pass
        finally:
            stream.remove(connection)


    def _join(self, stream: Stream, connection: ServerConnection, welcome: dict[str, object],
              query: dict[str, list[str]]) -> None:
        """Register a client: from the snapshot, or after the position it asks to resume from."""
        if stream is not self.syi or not ({"since", "since_seq"} & query.keys()):
            stream.add(connection, welcome)
            return
        try:
            position = self._position(query.get("since", [None])[0], query.get("since_seq", [None])[0])
            missed = self.history.after(position)
        except ResumeRefused as refused:
            stream.add(connection, welcome, notice=message("error", {"message": f"cannot resume: {refused}"}))
            return
        stream.resume(connection, welcome, missed)

    def _position(self, since: object, since_seq: object) -> int:
        """The topic position a resume goes on after: `since_seq` itself, or the position of the
        `since` bucket's latest record."""
        if since_seq is not None:
            try:
                return int(str(since_seq))
            except ValueError:
                raise ResumeRefused(f"since_seq must be an integer position, not {str(since_seq)[:40]!r}") from None
        try:
            bucket_end = millis(str(since))
        except ValueError:
            raise ResumeRefused(
                f"since must be a bucket end like 2026-11-27T10:01:00.000Z, not {str(since)[:40]!r}") from None
        return self.history.position_of(bucket_end)

    def _resume_later(self, stream: Stream, connection: ServerConnection, request: dict) -> tuple[str, bytes]:
        """`{"type": "resume", "since" | "since_seq": ...}` on an open connection: the records after
        that position which came before this connection's snapshot (it has the rest already)."""
        joined = stream.joined_seq(connection)
        try:
            position = self._position(request.get("since"), request.get("since_seq"))
            missed = [e for e in self.history.after(position) if joined is None or e.seq < joined]
        except ResumeRefused as refused:
            return "error", message("error", {"message": f"cannot resume: {refused}"})
        stream.replay(connection, missed)
        return "resumed", message("resumed", {"count": len(missed), "until_seq": joined})


def reply(incoming: str | bytes) -> tuple[str, bytes]:
    """A client message's answer: `pong` to `{"type": "ping"}`, an `error` to anything else
    (`resume` is answered by the gateway, which holds the history)."""
    if isinstance(incoming, bytes):
        return "error", message("error", {"message": "binary frames are not accepted; send JSON text"})
    try:
        request = orjson.loads(incoming)
    except orjson.JSONDecodeError:
        return "error", message("error", {"message": "invalid JSON"})
    if not isinstance(request, dict) or not isinstance(request.get("type"), str):
        return "error", message("error", {"message": 'expected an object like {"type": "ping"}'})
    if request["type"] == "ping":
        return "pong", message("pong", request.get("data"))
    if request["type"] == "resume":
        return "resume", b""
    return "error", message("error", {"message": f"unknown type {request['type'][:40]!r}; supported: ping, resume"})


def raise_open_file_limit() -> int:
    """Lift the soft open-files limit to the hard one: every client is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


async def run(settings: Settings) -> None:
    log = get_logger(component="gateway")
    limit = raise_open_file_limit()
    if limit < settings.ws_max_connections + 100:
        log.warning("open_file_limit_low", limit=limit, max_connections=settings.ws_max_connections)
    shutdown = Shutdown().install_async()
    async with Gateway(settings):
        await shutdown.wait()
    log.info("stopped")
