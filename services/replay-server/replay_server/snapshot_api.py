"""DefiLlama, FRED and CryptoCompare, as recorded: the current snapshot, with each API's
query handling and error shapes.

* yields `/pools`, stablecoins `/stablecoins?includePrices=true`: the recorded bodies as is.
* FRED `/fred/series/observations`: needs an `api_key` (any value), `file_type=json`;
  applies `sort_order`, `offset` and `limit` like FRED; errors `{"error_code", "error_message"}`.
* CryptoCompare `/data/pricemultifull?fsyms=..&tsyms=..`: filtered to the asked symbols;
  errors are HTTP 200 with `"Response":"Error"`. LASTUPDATE (unix seconds) is moved from
  the recording's clock onto the present, so the replayed quotes look live.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from replay_server.binance_api import json_response

if TYPE_CHECKING:
    from replay_server.app import ReplayState


def pools(request: Request, state: ReplayState) -> Response:
    body = state.recording.http["pools"].current(state.clock.position())
    return Response(body, media_type="application/json")


def stablecoins(request: Request, state: ReplayState) -> Response:
    body = state.recording.http["stablecoins"].current(state.clock.position())
    if request.query_params.get("includePrices") == "true":
        return Response(body, media_type="application/json")
    parsed = orjson.loads(body)
    for asset in parsed["peggedAssets"]:
        asset.pop("price", None)
    return json_response(parsed)


def _fred_error(message: str, status: int = 400) -> Response:
    return json_response({"error_code": status, "error_message": message}, status)


def fred_observations(request: Request, state: ReplayState) -> Response:
    params = request.query_params
    if not params.get("api_key"):
        return _fred_error("Bad Request.  Variable api_key is not set.  Read https://fred.stlouisfed.org/docs/api/"
                           "api_key.html for more information.")
    if params.get("series_id") not in state.fred_series:
        return _fred_error("Bad Request.  The series does not exist.")
    if params.get("file_type") != "json":
        return _fred_error("Bad Request.  The replay server serves file_type=json only.")
    order = params.get("sort_order", "asc")
    if order not in ("asc", "desc"):
        return _fred_error("Bad Request.  Variable sort_order is not one of the values: 'asc', 'desc'.")
    try:
        offset = int(params.get("offset", "0"))
        limit = int(params.get("limit", "100000"))
    except ValueError:
        return _fred_error("Bad Request.  Variable limit is not an integer.")
    body = orjson.loads(state.recording.http["fred_dtb3"].current(state.clock.position()))
    rows = body["observations"]
    if order == "desc":
        rows = rows[::-1]
    body.update(sort_order=order, count=len(rows), offset=offset, limit=limit,
                observations=rows[offset: offset + limit])
    return json_response(body)


def _cc_error(message: str, param: str | None = None) -> Response:
    body: dict[str, Any] = {"Response": "Error", "Message": message, "HasWarning": False, "Type": 2,
                            "RateLimit": {}, "Data": {}}
    if param:
        body["ParamWithError"] = param
    return json_response(body)  # HTTP 200, as CryptoCompare does


def cryptocompare_prices(request: Request, state: ReplayState) -> Response:
    fsyms = [s for s in request.query_params.get("fsyms", "").split(",") if s]
    tsyms = [s for s in request.query_params.get("tsyms", "").split(",") if s]
    if not fsyms:
        return _cc_error("fsyms is a required param.", "fsyms")
    if not tsyms:
        return _cc_error("tsyms is a required param.", "tsyms")
    position = state.clock.position()
    snapshot = orjson.loads(state.recording.http["cryptocompare"].current(position))
    shift = round(time.time() - (state.recording.recorded_start + position))
    raw: dict[str, Any] = {}
    display: dict[str, Any] = {}
    for fsym in fsyms:
        quotes = {t: q for t, q in snapshot["RAW"].get(fsym, {}).items() if t in tsyms}
        if not quotes:
            continue
        for quote in quotes.values():
            for key in ("LASTUPDATE", "CONVERSIONLASTUPDATE"):
                quote[key] += shift
        raw[fsym] = quotes
        display[fsym] = {t: q for t, q in snapshot["DISPLAY"][fsym].items() if t in tsyms}
    if not raw:
        return _cc_error(f"There is no data for any of the toSymbols {' '.join(tsyms)} .", "tsyms")
    return json_response({"RAW": raw, "DISPLAY": display})


ENDPOINTS = {
    "/pools": pools,
    "/stablecoins": stablecoins,
    "/fred/series/observations": fred_observations,
    "/data/pricemultifull": cryptocompare_prices,
}
