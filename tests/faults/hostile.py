"""Messages a hostile (or broken) producer can put on the topics the calculators read: one
valid value per topic, and the ways to spoil it (a 900 KB value, garbage bytes, no key,
numbers sent as strings)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from syi_shared.methodology.engine import bucket_end_of
from syi_shared.timefmt import time_text

BIG_VALUE_BYTES = 900_000  # under the broker's default 1 MB limit, far over a dead letter's 64 KiB
DLQ_RAW_LIMIT = 64 * 1024
# Event AND ingest time there: the clock-free bounds let it through, only the live clock can stop it.
FAR_FUTURE = "2100-01-01T00:00:00.000Z"


def valid(topic: str, now_ms: int) -> tuple[bytes, dict[str, Any]]:
    """A plausible value of `topic` stamped `now_ms`, and its key (the examples of docs/topics.md)."""
    stamp = {"event_time": time_text(now_ms), "ingest_time": time_text(now_ms)}
    if topic == "cc.prices":
        return b"USDC.binance", {"schema_version": 1, "symbol": "USDC", "venue": "binance", "pair": "USDCUSDT",
                                 "base": "USDC", "quote": "USDT", "bid": 0.9998, "ask": 0.9999, "price": 0.99985,
                                 **stamp}
    if topic == "cc.orderbook":
        return b"USDC.binance", {"schema_version": 1, "symbol": "USDC", "venue": "binance", "pair": "USDCUSDT",
                                 "base": "USDC", "quote": "USDT",
                                 "bids": [[0.9998, 18234567.0], [0.9997, 25011034.0]],
                                 "asks": [[0.9999, 9876543.0], [1.0, 12000000.0]], **stamp}
    if topic == "dl.apy":
        pool = "aa70268e-4b52-42bf-a116-608b370f9501"
        return pool.encode(), {"schema_version": 1, "pool": pool, "project": "aave-v3", "chain": "Ethereum",
                               "symbol": "USDC", "tvl_usd": 412345678.0, "apy_base_pct": 4.12,
                               "apy_reward_pct": None, "apy_pct": 4.12, "stablecoin": True, "exposure": "single",
                               **stamp}
    if topic == "ex.mktcap":
        return b"USDC", {"schema_version": 1, "symbol": "USDC", "market_cap_usd": 75123456789.0,
                         "price_usd": 0.9999, "source": "defillama", **stamp}
    if topic == "trad.tbill":
        return b"DTB3", {"schema_version": 1, "series": "DTB3", "observation_date": time_text(now_ms)[:10],
                         "rate_pct": 4.12, "basis": "discount", "source": "fred", **stamp}
    if topic == "ray.calculated":
        return b"USDC", {"schema_version": 1, "symbol": "USDC", "bucket_end": time_text(bucket_end_of(now_ms)),
                         "price_usd": 0.99985, "dev_bps": -1.5, "peg_score": 0.9994, "sigma_peg_pct": 0.012,
                         "depth_usd": 72000000.0, "liquidity_score": 1.0, "counterparty_score": 0.9,
                         "apy_eff_decimal": 0.0441, "s_worst": 0.9, "ray_decimal": 0.0397, "flags": [],
                         "methodology_version": "3.0.0"}
    raise KeyError(topic)


# The number each topic's "strings for numbers" variant sends as a string, and the field that
# the 900 KB variant fills (for books: more levels than any real book has).
NUMBER_FIELD = {"cc.prices": "price", "cc.orderbook": "bids", "dl.apy": "tvl_usd", "ex.mktcap": "market_cap_usd",
                "trad.tbill": "rate_pct", "ray.calculated": "price_usd"}


@dataclass(frozen=True)
class Hostile:
    kind: str  # big | garbage | null_key | string_number
    topic: str
    key: bytes | None
    value: bytes

    def __str__(self) -> str:
        return f"{self.kind} on {self.topic}"


def strings_for_numbers(topic: str, value: dict[str, Any]) -> dict[str, Any]:
    name = NUMBER_FIELD[topic]
    if topic == "cc.orderbook":  # Binance's own wire format: every level as strings
        return {**value, "bids": [[str(p), str(q)] for p, q in value["bids"]],
                "asks": [[str(p), str(q)] for p, q in value["asks"]]}
    return {**value, name: str(value[name])}


def big(topic: str, value: dict[str, Any]) -> bytes:
    """The valid value with one field grown to a list that makes it BIG_VALUE_BYTES long."""
    name = NUMBER_FIELD[topic]
    item = value[name][0] if isinstance(value[name], list) else value[name]
    room = BIG_VALUE_BYTES - len(orjson.dumps({**value, name: []}))
    grown = orjson.dumps({**value, name: [item] * (room // (len(orjson.dumps(item)) + 1))})
    return grown + b" " * (BIG_VALUE_BYTES - len(grown))  # trailing blanks: still the same JSON


def hostile_messages(topic: str, now_ms: int) -> list[Hostile]:
    key, value = valid(topic, now_ms)
    garbage = random.Random(f"{topic}-garbage").randbytes(1024)
    return [
        Hostile("big", topic, key, big(topic, value)),
        Hostile("garbage", topic, key, b"\xff\xfe\x00" + garbage),
        Hostile("null_key", topic, None, orjson.dumps(value)),
        Hostile("string_number", topic, key, orjson.dumps(strings_for_numbers(topic, value))),
    ]
