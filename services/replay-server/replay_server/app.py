"""The replay server's ASGI app: recorded APIs, the Binance stream, /healthz and /_control."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from replay_server import binance_api, snapshot_api
from replay_server.binance_api import BinanceError, error_response, json_response
from replay_server.binance_stream import Connection, binance_stream
from replay_server.faults import FaultState, HttpFault
from replay_server.recording import Recording, ReplayClock
from replay_server.settings import Settings

# structlog's lazy logger: bound at first use, after __main__ configured logging
log = structlog.get_logger(component="replay")

Handler = Callable[[Request, "ReplayState"], Response]


@dataclass
class ReplayState:
    recording: Recording
    clock: ReplayClock
    default_speed: float
    fred_series: set[str] = field(default_factory=lambda: {"DTB3"})
    faults: FaultState = field(default_factory=FaultState)
    connections: set[Connection] = field(default_factory=set)
    weight_minute: int = 0
    weight_used: int = 0

    def use_weight(self, amount: int) -> int:
        minute = int(time.time() // 60)
        if minute != self.weight_minute:
            self.weight_minute, self.weight_used = minute, 0
        self.weight_used += amount
        return self.weight_used


def fault_response(path: str, fault: HttpFault) -> Response:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    if fault.body is not None:
        return json_response(fault.body, fault.status, headers)
    if path.startswith("/api/"):
        if fault.status == 429:
            msg = ("Too many requests; current limit of IP(127.0.0.1) is 6000 requests per 1 MINUTE. "
                   "Please use WebSocket Streams for live updates to avoid polling the API.")
        elif fault.status == 418:
            banned_until = int((time.time() + (fault.retry_after or 120)) * 1000)
            msg = (f"Way too much request weight used; IP banned until {banned_until}. "
                   "Please use WebSocket Streams for live updates to avoid bans.")
        else:
            msg = "An unknown error occurred while processing the request."
        return json_response({"code": -1003 if fault.status in (418, 429) else -1000, "msg": msg},
                             fault.status, headers)
    if path.startswith("/fred/"):
        return json_response({"error_code": fault.status, "error_message": f"Injected error {fault.status}."},
                             fault.status, headers)
    # DefiLlama / CryptoCompare sit behind Cloudflare: plain-text error pages
    return Response(f"error code: {fault.status}\n", fault.status, headers, media_type="text/plain")


def recorded(handler: Handler) -> Callable[[Request], Any]:
    """Wrap an API handler with fault injection, Binance weight headers and the request log."""

    async def endpoint(request: Request) -> Response:
        state: ReplayState = request.app.state.replay
        path = request.url.path
        fault = state.faults.take(path)
        if fault is not None and not fault.malformed:
            response = fault_response(path, fault)
        else:
            try:
                response = handler(request, state)
            except BinanceError as error:
                response = error_response(error)
            if fault is not None:  # malformed: the real body cut in half, still labelled JSON
                response = Response(bytes(response.body)[: max(1, len(response.body) // 2)],
                                    fault.status, media_type="application/json")
        if path.startswith("/api/"):
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(state.use_weight(binance_api.weight(path, request)))
        state.faults.record(path, response.status_code)
        return response

    return endpoint


async def healthz(request: Request) -> Response:
    state: ReplayState = request.app.state.replay
    return json_response({
        "status": "ok",
        "position_s": round(state.clock.position(), 3),
        "duration_s": state.clock.duration_s,
        "speed": state.clock.speed,
        "ws_connections": len(state.connections),
    })


async def control(request: Request) -> Response:
    """GET: state and request log; DELETE: reset; POST: one command (see faults.py)."""
    state: ReplayState = request.app.state.replay
    if request.method == "DELETE":
        return _apply(state, {"reset": True})
    if request.method == "POST":
        if not request.app.state.control_enabled:
            return json_response({"error": "control is disabled (SYI_REPLAY_CONTROL=false)"}, 403)
        try:
            command = orjson.loads(await request.body())
            if not isinstance(command, dict):
                raise ValueError("expected a JSON object")
            return _apply(state, command)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
    return json_response({
        "position_s": state.clock.position(), "speed": state.clock.speed,
        "faults": state.faults.describe(), "refusing_ws": state.faults.refusing_ws(),
        "ws_connections": len(state.connections), "requests": list(state.faults.requests),
    })


def _apply(state: ReplayState, command: dict[str, Any]) -> Response:
    if command.get("reset"):
        state.faults.reset()
        state.clock.set_speed(state.default_speed)
    if "speed" in command:
        state.clock.set_speed(float(command["speed"]))
    if "seek_s" in command:
        state.clock.seek(float(command["seek_s"]))
    if "fail" in command or "status" in command or command.get("malformed"):
        state.faults.add_http(command)
    if "refuse_ws_s" in command:
        state.faults.refuse_ws_until = time.monotonic() + float(command["refuse_ws_s"])
    # bad frames first, so one command can send them and then close
    for key, name in (("malformed_ws", "malformed"), ("crossed_ws", "crossed"), ("drop_ws", "drop"),
                      ("server_shutdown", "server_shutdown")):
        if command.get(key):
            for connection in list(state.connections):
                connection.commands.append((name, int(command[key])))
    log.info("control", command={k: v for k, v in command.items() if k != "body"})  # bodies may carry anything
    return json_response({"ok": True, "position_s": state.clock.position(), "faults": state.faults.describe(),
                          "ws_connections": len(state.connections)})


def build_app(settings: Settings) -> Starlette:
    recording = Recording(settings.replay_fixture_dir)
    clock = ReplayClock(recording.duration_s, settings.replay_speed, settings.replay_start_s)
    routes = [Route(path, recorded(handler)) for path, handler in
              {**binance_api.ENDPOINTS, **snapshot_api.ENDPOINTS}.items()]
    routes += [
        WebSocketRoute("/stream", binance_stream),
        Route("/healthz", healthz),
        Route("/readyz", healthz),  # readiness = liveness here: it serves recorded files, ok once it answers
        Route("/_control", control, methods=["GET", "POST", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.replay = ReplayState(recording, clock, settings.replay_speed, set(settings.replay_fred_series))
    app.state.control_enabled = settings.replay_control
    return app
