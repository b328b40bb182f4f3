"""The replay server as a real process: recorded APIs, the looping WebSocket, fault injection."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.replay_server.harness import MANIFEST, ReplayServer, frame_at, snapshot

pytestmark = pytest.mark.integration


def get(replay: ReplayServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{replay.url}{path}", params=params, timeout=10)


def test_exchange_info_reports_status_and_rejects_unknown_symbols(replay: ReplayServer) -> None:
    body = get(replay, "/api/v3/exchangeInfo", symbols='["USDCUSDT","PAXUSDT"]').json()
    assert {s["symbol"]: (s["status"], s["baseAsset"], s["quoteAsset"]) for s in body["symbols"]} == {
        "USDCUSDT": ("TRADING", "USDC", "USDT"), "PAXUSDT": ("BREAK", "PAX", "USDT")}
    unknown = get(replay, "/api/v3/exchangeInfo", symbols='["USDCUSDT","FOOUSDT"]')
    assert unknown.status_code == 400 and unknown.json() == {"code": -1121, "msg": "Invalid symbol."}


def test_rest_views_show_the_recorded_state_at_the_clock(replay: ReplayServer) -> None:
    replay.control(seek_s=1234.5, speed=0)
    ticker = frame_at("daiusdt@bookTicker", 1234.5)
    book = frame_at("daiusdt@depth20@100ms", 1234.5)
    assert get(replay, "/api/v3/ticker/bookTicker", symbol="DAIUSDT").json() == {
        "symbol": "DAIUSDT", "bidPrice": ticker["b"], "bidQty": ticker["B"], "askPrice": ticker["a"],
        "askQty": ticker["A"]}
    many = get(replay, "/api/v3/ticker/bookTicker", symbols='["DAIUSDT","USDCUSDT"]').json()
    assert [row["symbol"] for row in many] == ["DAIUSDT", "USDCUSDT"]
    depth = get(replay, "/api/v3/depth", symbol="DAIUSDT", limit="5")
    assert depth.json() == {"lastUpdateId": book["lastUpdateId"], "bids": book["bids"][:5], "asks": book["asks"][:5]}
    assert int(depth.headers["X-MBX-USED-WEIGHT-1M"]) > 0


async def test_stream_sends_only_requested_streams_and_follows_the_clock(replay: ReplayServer) -> None:
    replay.control(seek_s=100)
    wanted = {"usdcusdt@bookTicker", "tusdusdt@depth20@100ms"}
    async with connect(f"{replay.ws_url}/stream?streams={'/'.join(sorted(wanted))}") as websocket:
        frames = []
        deadline = time.monotonic() + 15
        while sum(f["stream"] == "usdcusdt@bookTicker" for f in frames) < 4 and time.monotonic() < deadline:
            frames.append(orjson.loads(await asyncio.wait_for(websocket.recv(), 10)))
    assert {f["stream"] for f in frames} == wanted  # the first two: the current state of each stream
    tickers = [f["data"] for f in frames if f["stream"] == "usdcusdt@bookTicker"]
    assert [t["u"] for t in tickers] == sorted(t["u"] for t in tickers) and len({t["u"] for t in tickers}) == 4
    assert all(isinstance(t["b"], str) for t in tickers)


async def test_stream_loops_at_the_end_of_the_recording(replay: ReplayServer) -> None:
    first = frame_at("usdcusdt@bookTicker", 1.0)["u"]
    replay.control(seek_s=MANIFEST["duration_s"] - 1.5)
    async with connect(f"{replay.ws_url}/stream?streams=usdcusdt@bookTicker") as websocket:
        seen = []
        while first not in seen:
            seen.append(orjson.loads(await asyncio.wait_for(websocket.recv(), 10))["data"]["u"])
    assert seen[0] > first  # started at the end of the recording, then wrapped to its start


async def test_stream_faults_drop_refuse_and_server_shutdown(replay: ReplayServer) -> None:
    url = f"{replay.ws_url}/stream?streams=usdcusdt@bookTicker"
    async with connect(url) as websocket:
        await asyncio.wait_for(websocket.recv(), 10)
        replay.control(drop_ws=True)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(websocket.recv(), 10)
    replay.control(refuse_ws_s=1.5)
    with pytest.raises(InvalidStatus):
        async with connect(url):
            pass
    await asyncio.sleep(1.6)
    async with connect(url) as websocket:
        await asyncio.wait_for(websocket.recv(), 10)
        replay.control(server_shutdown=True, malformed_ws=1)
        received = []
        with pytest.raises(ConnectionClosed):
            while True:
                received.append(await asyncio.wait_for(websocket.recv(), 10))
    assert any(text.startswith('{"stream":"usdcusdt@bookTicker","data":{"u":1,') and not text.endswith("}")
               for text in received)  # the truncated frame
    assert orjson.loads(received[-1])["stream"] == "!serverShutdown"
    assert [r["status"] for r in replay.requests("/stream")] == [101, 403, 101]


def test_http_faults_then_normal_answers(replay: ReplayServer) -> None:
    replay.control(fail=429, retry_after=2, times=1, path="/api/v3/depth")
    replay.control(status=500, times=2, path="/pools")
    replay.control(malformed=True, path="/stablecoins")
    replay.control(status=200, body={"Response": "Error", "Message": "over limit", "Type": 99}, path="/data/")
    limited = get(replay, "/api/v3/depth", symbol="USDCUSDT")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2" and limited.json()["code"] == -1003
    assert get(replay, "/api/v3/depth", symbol="USDCUSDT").status_code == 200
    assert [get(replay, "/pools").status_code for _ in range(3)] == [500, 500, 200]
    cut = get(replay, "/stablecoins", includePrices="true")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)
    assert get(replay, "/stablecoins", includePrices="true").json()["peggedAssets"]
    assert get(replay, "/data/pricemultifull", fsyms="USDT", tsyms="USD").json()["Response"] == "Error"
    assert [r["status"] for r in replay.requests("/api/v3/depth")] == [429, 200]


def test_fred_and_cryptocompare_views(replay: ReplayServer) -> None:
    replay.control(seek_s=60, speed=0)
    missing_key = get(replay, "/fred/series/observations", series_id="DTB3", file_type="json")
    assert missing_key.status_code == 400 and "api_key" in missing_key.json()["error_message"]
    newest = get(replay, "/fred/series/observations", series_id="DTB3", api_key="x" * 32, file_type="json",
                 sort_order="desc", limit="2").json()
    assert [o["date"] for o in newest["observations"]] == ["2026-01-19", "2026-01-16"]
    assert newest["observations"][0]["value"] == "." and newest["count"] == 60 and newest["limit"] == 2
    replay.control(seek_s=MANIFEST["scenario"]["fred_new_observation"]["at_s"] + 1)
    later = get(replay, "/fred/series/observations", series_id="DTB3", api_key="k", file_type="json",
                sort_order="desc", limit="1").json()
    assert later["observations"][0]["date"] == "2026-01-20"

    prices = get(replay, "/data/pricemultifull", fsyms="USDC,NOPE", tsyms="USD").json()
    assert set(prices["RAW"]) == {"USDC"}
    quote = prices["RAW"]["USDC"]["USD"]
    assert quote["PRICE"] == snapshot("cryptocompare", 10801)["RAW"]["USDC"]["USD"]["PRICE"]
    assert abs(quote["LASTUPDATE"] - time.time()) < 120  # recorded times moved onto the present
    no_fsyms = get(replay, "/data/pricemultifull", tsyms="USD")
    assert no_fsyms.status_code == 200 and no_fsyms.json()["Response"] == "Error"


def test_stablecoins_carry_prices_only_when_asked(replay: ReplayServer) -> None:
    with_prices = get(replay, "/stablecoins", includePrices="true").json()["peggedAssets"]
    without = get(replay, "/stablecoins").json()["peggedAssets"]
    assert "price" in with_prices[0] and "price" not in without[0]
    assert len(get(replay, "/pools").json()["data"]) == len(snapshot("pools", 0)["data"])
