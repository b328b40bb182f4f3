"""The recorded fixtures: generated deterministically, real shapes and types, the scenario's episodes."""

from __future__ import annotations

import gzip
import importlib.util
import statistics
from decimal import Decimal
from pathlib import Path

import orjson

from tests.replay_server.harness import FIXTURES, MANIFEST, REPO_ROOT, recorded_frames, snapshot


def _generator():
    spec = importlib.util.spec_from_file_location("make_replay_fixtures", REPO_ROOT / "tools/make_replay_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _content(path: Path) -> bytes:
    # compare gzip by content: compressed bytes may differ between zlib builds
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def test_generator_rewrites_the_committed_fixtures_exactly(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*") if p.is_file())
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated == committed
    for relative in committed:
        assert _content(tmp_path / relative) == _content(FIXTURES / relative), relative
    total = sum((FIXTURES / p).stat().st_size for p in committed)
    assert total < 6_000_000  # "a few MB"


def test_binance_frames_keep_binance_string_numbers_and_sorted_books() -> None:
    tickers = recorded_frames("usdcusdt@bookTicker")
    books = recorded_frames("usdcusdt@depth20@100ms")
    assert len(tickers) == MANIFEST["duration_s"]  # one per second for 4 h
    for frame in tickers[:200]:
        data = frame["data"]
        assert set(data) == {"u", "s", "b", "B", "a", "A"} and isinstance(data["u"], int)
        assert all(isinstance(data[k], str) and len(data[k].split(".")[1]) == 8 for k in "bBaA")
        assert Decimal(data["b"]) < Decimal(data["a"])
    for frame in books[:50]:
        data = frame["data"]
        assert set(data) == {"lastUpdateId", "bids", "asks"} and len(data["bids"]) == len(data["asks"]) == 20
        bids = [Decimal(p) for p, _ in data["bids"]]
        asks = [Decimal(p) for p, _ in data["asks"]]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
        assert all(isinstance(q, str) for _, q in data["bids"] + data["asks"])


def test_scenario_has_a_usdc_depeg_and_an_outlier_pool() -> None:
    depeg = MANIFEST["scenario"]["depeg"]
    mids = {f["at_ms"] // 1000: (float(f["data"]["b"]) + float(f["data"]["a"])) / 2
            for f in recorded_frames("usdcusdt@bookTicker")}
    before = [mids[s] for s in range(0, depeg["start_s"])]
    during = [mids[s] for s in range(depeg["bottom_s"], depeg["recover_s"])]
    assert all(abs(m - 1) < 0.003 for m in before)
    assert max(during) < 0.98 and min(during) > 0.96  # outside the methodology's [0.98, 1.02] band
    assert depeg["min_mid"] == min(mids.values())

    pools = snapshot("pools", 0)["data"]
    usdt = [p["apyBase"] for p in pools if p["symbol"] == "USDT" and p["stablecoin"] and p["exposure"] == "single"]
    outlier = next(p for p in pools if p["pool"] == MANIFEST["scenario"]["outlier_pool"]["pool"])
    assert outlier["outlier"] is True and outlier["apyBase"] > 10 * statistics.median(usdt)
    # the real /pools shape: things the ingester must drop are there too
    assert any(p["exposure"] == "multi" for p in pools)
    assert any(not p["stablecoin"] for p in pools)
    assert any(p["apyBase"] is None and p["stablecoin"] for p in pools)


def test_snapshots_keep_the_documented_quirks() -> None:
    assets = snapshot("stablecoins", 0)["peggedAssets"]
    assert [a["symbol"] for a in assets][:2] == ["USDT", "USDC"]  # sorted by circulating supply
    assert any(a["price"] is None for a in assets)
    assert any(a["circulatingPrevDay"] == 0 for a in assets)  # the integer 0, not an object
    assert any(a["pegType"] == "peggedEUR" for a in assets)
    fred = snapshot("fred_dtb3", 0)["observations"]
    assert fred[-1] == {"realtime_start": "2026-01-20", "realtime_end": "2026-01-20", "date": "2026-01-19",
                        "value": "."}
    assert all(isinstance(row["value"], str) for row in fred)
    quote = snapshot("cryptocompare", 0)["RAW"]["USDT"]["USD"]
    assert isinstance(quote["TYPE"], str) and isinstance(quote["FLAGS"], str) and isinstance(quote["LASTUPDATE"], int)
    assert isinstance(quote["PRICE"], float)
    exchange = orjson.loads((FIXTURES / MANIFEST["binance"]["exchange_info"]).read_bytes())
    statuses = {s["symbol"]: s["status"] for s in exchange["symbols"]}
    assert statuses["USDCUSDT"] == "TRADING" and statuses["PAXUSDT"] == "BREAK"
