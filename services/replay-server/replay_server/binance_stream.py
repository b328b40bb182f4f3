"""Binance combined stream `/stream?streams=a@bookTicker/b@depth20@100ms`: recorded frames
sent on the replay clock, looping, only for the requested streams.

On connect the newest frame of each requested stream is sent at once (so a client sees the
market immediately, as Binance's depth streams do), then every frame as the clock passes
its offset. Controls (drop, serverShutdown, malformed frames) reach each open connection
through `Connection.commands`.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import TYPE_CHECKING

import orjson
import structlog
from starlette.websockets import WebSocket


if TYPE_CHECKING:
    from replay_server.app import ReplayState
    from replay_server.recording import Recording

TICK_S = 0.05
MAX_CATCH_UP_S = 120.0  # more recorded time than this in one tick (big speed-up): send the current state instead

# structlog's lazy logger: bound at first use, after __main__ configured logging
log = structlog.get_logger(component="binance_stream")


class Connection:
    def __init__(self, websocket: WebSocket, streams: list[str]) -> None:
        self.websocket = websocket
        self.streams = list(dict.fromkeys(streams))
        self.commands: list[tuple[str, int]] = []
        self.closed = False
        self.resubscribed = False


def select(recording: Recording, streams: list[str]) -> tuple[list[int], list[str]]:
    """The requested streams' frames merged in time order: (offsets in ms, texts)."""
    merged: list[tuple[int, str]] = []
    for name in streams:
        frames = recording.streams.get(name)
        if frames:
            merged.extend(zip(frames.times_ms, frames.texts))
    merged.sort(key=lambda item: item[0])
    return [t for t, _ in merged], [text for _, text in merged]


def due(times: list[int], texts: list[str], start_s: float, end_s: float, duration_s: float) -> list[str]:
    """Frames whose absolute offset (loop * duration + offset) falls in (start, end]."""
    start_ms, end_ms, loop_ms = start_s * 1000, end_s * 1000, duration_s * 1000
    out: list[str] = []
    loop = int(start_ms // loop_ms)
    while loop * loop_ms <= end_ms:
        base = loop * loop_ms
        out.extend(texts[bisect.bisect_right(times, start_ms - base): bisect.bisect_right(times, end_ms - base)])
        loop += 1
    return out


def current_frames(recording: Recording, streams: list[str], position_s: float) -> list[str]:
    texts = []
    for name in streams:
        frames = recording.streams.get(name)
        if frames:
            texts.append(frames.texts[frames.latest_index(position_s * 1000)])  # -1: the previous loop's last
    return texts


def fault_frames(kind: str, streams: list[str]) -> list[str]:
    """Frames a test asks for: truncated JSON, or well-formed frames with impossible values."""
    tickers = [s for s in streams if s.endswith("@bookTicker")] or ["usdcusdt@bookTicker"]
    pair = tickers[0].split("@", 1)[0].upper()
    if kind == "malformed":
        return [f'{{"stream":"{tickers[0]}","data":{{"u":1,"s":"{pair}","b":"0.99']
    crossed = {"u": 1, "s": pair, "b": "1.01000000", "B": "100.00000000", "a": "0.99000000", "A": "100.00000000"}
    frames = [orjson.dumps({"stream": tickers[0], "data": crossed}).decode()]
    books = [s for s in streams if "@depth" in s]
    if books:
        unsorted = {"lastUpdateId": 1, "bids": [["0.99000000", "1.00000000"], ["0.99500000", "1.00000000"]],
                    "asks": [["1.00100000", "1.00000000"]]}
        frames.append(orjson.dumps({"stream": books[0], "data": unsorted}).decode())
    return frames


async def _receive(connection: Connection) -> None:
    """Reads client messages: disconnects, and SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS requests."""
    websocket = connection.websocket
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                request = orjson.loads(message.get("text") or message.get("bytes") or b"")
                method, params, request_id = request["method"], request.get("params", []), request.get("id")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if method == "SUBSCRIBE":
                connection.streams += [p for p in params if p not in connection.streams]
                connection.resubscribed = True
                await websocket.send_text(orjson.dumps({"result": None, "id": request_id}).decode())
            elif method == "UNSUBSCRIBE":
                connection.streams = [s for s in connection.streams if s not in params]
                connection.resubscribed = True
                await websocket.send_text(orjson.dumps({"result": None, "id": request_id}).decode())
            elif method == "LIST_SUBSCRIPTIONS":
                await websocket.send_text(orjson.dumps({"result": connection.streams, "id": request_id}).decode())
    except Exception:  # noqa: BLE001 - any failure here means the client is gone
        pass
    finally:
        connection.closed = True


async def binance_stream(websocket: WebSocket) -> None:
    state: ReplayState = websocket.app.state.replay
    if state.faults.refusing_ws():
        state.faults.record("/stream", 403)
        await websocket.close(code=1013)  # before accept: the client's handshake fails with HTTP 403
        return
    streams = [name for name in websocket.query_params.get("streams", "").split("/") if name]
    await websocket.accept()
    state.faults.record("/stream", 101)
    connection = Connection(websocket, streams)
    state.connections.add(connection)
    receiver = asyncio.create_task(_receive(connection))
    log.info("ws_connected", streams=len(connection.streams), connections=len(state.connections))
    try:
        await _send_loop(connection, state)
    except Exception:  # noqa: BLE001 - the client went away mid-send
        pass
    finally:
        state.connections.discard(connection)
        receiver.cancel()
        log.info("ws_closed", connections=len(state.connections))


async def _send_loop(connection: Connection, state: ReplayState) -> None:
    websocket, clock, recording = connection.websocket, state.clock, state.recording
    times, texts = select(recording, connection.streams)
    last, generation = clock.absolute(), clock.generation
    for text in current_frames(recording, connection.streams, clock.position()):
        await websocket.send_text(text)
    while not connection.closed:
        await asyncio.sleep(TICK_S)
        commands, connection.commands = connection.commands, []
        for command, count in commands:
            if command == "drop":
                await websocket.close(code=1011)
                return
            if command == "server_shutdown":
                event = {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": int(time.time() * 1000)}}
                await websocket.send_text(orjson.dumps(event).decode())
                await websocket.close(code=1001)
                return
            for _ in range(count):
                for text in fault_frames(command, connection.streams):
                    await websocket.send_text(text)
        if connection.resubscribed:
            connection.resubscribed = False
            times, texts = select(recording, connection.streams)
        now = clock.absolute()
        if clock.generation != generation or now < last or now - last > MAX_CATCH_UP_S:
            generation = clock.generation  # seeked: start again from the state at the new position
            batch = current_frames(recording, connection.streams, clock.position())
        else:
            batch = due(times, texts, last, now, clock.duration_s)
        for text in batch:
            await websocket.send_text(text)
        last = now
