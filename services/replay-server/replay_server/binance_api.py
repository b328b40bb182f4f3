"""Binance spot REST, as recorded: exchangeInfo, ticker/bookTicker and depth.

The REST views are derived from the same recorded frames the WebSocket sends (the newest
bookTicker / depth20 frame at the current position), so REST and stream agree, as on
Binance. Errors use Binance's body shape `{"code": -1121, "msg": "Invalid symbol."}`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from replay_server.app import ReplayState

ZERO = "0.00000000"


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(error: BinanceError) -> Response:
    return json_response({"code": error.code, "msg": error.msg}, error.status)


def requested_symbols(request: Request) -> list[str] | None:
    """`symbol=X` or `symbols=["X","Y"]` (a JSON array, as Binance takes it); None for all."""
    params = request.query_params
    if "symbol" in params:
        return [params["symbol"]]
    if "symbols" in params:
        try:
            symbols = orjson.loads(params["symbols"])
        except orjson.JSONDecodeError:
            symbols = None
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols) or not symbols:
            raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                      "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
        return symbols
    return None


def _listed(state: ReplayState, symbols: list[str] | None) -> list[str]:
    listed = [s["symbol"] for s in state.recording.exchange_info["symbols"]]
    if symbols is None:
        return listed
    for symbol in symbols:
        if symbol not in listed:
            raise BinanceError(-1121, "Invalid symbol.")
    return symbols


def exchange_info(request: Request, state: ReplayState) -> Response:
    info = state.recording.exchange_info
    chosen = set(_listed(state, requested_symbols(request)))
    body = {**info, "serverTime": int(time.time() * 1000),
            "symbols": [s for s in info["symbols"] if s["symbol"] in chosen]}
    return json_response(body)


def book_ticker(request: Request, state: ReplayState) -> Response:
    symbols = requested_symbols(request)
    position = state.clock.position()
    tickers = []
    for symbol in _listed(state, symbols):
        data = state.recording.latest_data(f"{symbol.lower()}@bookTicker", position)
        if data is None:  # listed but no market (e.g. status BREAK): Binance shows zeros
            data = {"b": ZERO, "B": ZERO, "a": ZERO, "A": ZERO}
        tickers.append({"symbol": symbol, "bidPrice": data["b"], "bidQty": data["B"],
                        "askPrice": data["a"], "askQty": data["A"]})
    return json_response(tickers[0] if symbols is not None and "symbol" in request.query_params else tickers)


def depth(request: Request, state: ReplayState) -> Response:
    symbol = request.query_params.get("symbol")
    if not symbol:
        raise BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    _listed(state, [symbol])
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        raise BinanceError(-1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.") \
            from None
    if not 1 <= limit <= 5000:
        raise BinanceError(-1100, "Illegal characters found in parameter 'limit'; legal range is '1-5000'.")
    data = state.recording.latest_data(f"{symbol.lower()}@depth20@100ms", state.clock.position())
    if data is None:
        return json_response({"lastUpdateId": 0, "bids": [], "asks": []})
    return json_response({"lastUpdateId": data["lastUpdateId"], "bids": data["bids"][:limit],
                          "asks": data["asks"][:limit]})


# request weights (rest-api.md), for the X-MBX-USED-WEIGHT-1M header
def weight(path: str, request: Request) -> int:
    if path.endswith("/exchangeInfo"):
        return 20
    if path.endswith("/bookTicker"):
        return 2 if "symbol" in request.query_params else 4
    if path.endswith("/depth"):
        text = request.query_params.get("limit", "100")
        limit = int(text) if text.isdigit() else 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    return 1


ENDPOINTS = {
    "/api/v3/exchangeInfo": exchange_info,
    "/api/v3/ticker/bookTicker": book_ticker,
    "/api/v3/depth": depth,
}
