"""Generate the demo tape: a deterministic, realistic stream of every input topic.

    .venv/bin/python tools/make_demo_tape.py                      # data/tapes/demo.jsonl.gz, 6 h 30 min
    .venv/bin/python tools/make_demo_tape.py --duration 45m --out /tmp/short.jsonl

Deterministic: a seeded RNG, a fixed start (2026-11-20T00:00:00Z, so the first bucket is a
daily rebalance) and no wall clock; gzip output carries no file name or time, so the same
arguments always give the same bytes.

What is in it (times relative to the start; episodes fall outside a shorter tape):
* cc.prices: binance pairs quoted in USDT (USDC, DAI, TUSD, FRAX, USDP and the non-candidate
  FDUSD), kraken and cryptocompare USD quotes for some coins, defillama USD prices for all six
  every 5 min. Prices every 5-15 s per (symbol, venue).
* cc.orderbook: binance books (20 levels) every 10-30 s; USDC/USDT deep (> 50 M USD within
  +-50 bps), DAI and FRAX moderate, TUSD and USDP thin.
* dl.apy: allowlisted lending pools refreshed hourly, one pool below the TVL floor, one
  outlier APY pool (dropped by the MAD rule), one pool without a base APY, and pools the
  filters reject (non-allowlisted project, multi-asset exposure).
* ex.mktcap every 30 min: TUSD below the 1e9 eligibility floor; USDT's weight hits the cap.
* trad.tbill: DTB3 known at the start, an update at 03:15.
* Depeg: USDC falls to ~0.985 USD at 02:30 on every venue, holds ~20 min, recovers by 03:05.
* Stale constituent: no FRAX price on any venue from 04:00 to 04:30.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import BaseModel

from syi_shared.models import MarketCap, OrderBook, PoolYield, PriceTick, TBill
from syi_shared.timefmt import millis, time_text

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "data" / "tapes" / "demo.jsonl.gz"
DEFAULT_START = "2026-11-20T00:00:00Z"
DEFAULT_DURATION = "6h30m"
DEFAULT_SEED = 20261120

MINUTE = 60_000
HOUR = 60 * MINUTE

# Mean USD price of each coin (FDUSD is quoted but is not a candidate).
ANCHORS = {"USDT": 1.0003, "USDC": 0.99995, "DAI": 0.9998, "TUSD": 0.9975, "FRAX": 0.9982,
           "USDP": 0.9991, "FDUSD": 0.9987}

# Episodes, as offsets from the start in ms.
DEPEG_SYMBOL = "USDC"
DEPEG_START, DEPEG_FALL, DEPEG_HOLD, DEPEG_RECOVER = 150 * MINUTE, 3 * MINUTE, 20 * MINUTE, 12 * MINUTE
DEPEG_BPS = -150.0  # USDC at about 0.985
STALE_SYMBOL = "FRAX"
STALE_START, STALE_END = 240 * MINUTE, 270 * MINUTE
TBILL_UPDATE_AT = 195 * MINUTE


@dataclass(frozen=True)
class BookSpec:
    base: str
    tick: float
    step_ticks: int       # distance between levels: thin books spread past the +-50 bps band
    depth_usd: float      # typical USD depth within +-50 bps, both sides together


# Binance pairs quoted in USDT; a book on XUSDT also measures USDT's liquidity.
BINANCE = [
    BookSpec("USDC", 0.0001, 1, 72e6),
    BookSpec("FDUSD", 0.0001, 1, 45e6),
    BookSpec("DAI", 0.0001, 1, 24e6),
    BookSpec("FRAX", 0.0001, 2, 24e6),
    BookSpec("TUSD", 0.0001, 3, 11e6),
    BookSpec("USDP", 0.0001, 4, 6e6),
]
KRAKEN = ["USDT", "USDC", "DAI"]                    # USD pairs with bid/ask
CRYPTOCOMPARE = ["USDT", "USDC", "DAI", "TUSD"]     # one USD price, no bid/ask
DEFILLAMA = ["USDT", "USDC", "DAI", "TUSD", "FRAX", "USDP"]

MARKET_CAPS = {"USDT": 1.21e11, "USDC": 7.52e10, "DAI": 5.3e9, "TUSD": 4.9e8, "FRAX": 1.12e9,
               "USDP": 1.21e9}

# (project, chain, symbol, tvl_usd, apy_base_pct, apy_reward_pct, stablecoin, exposure)
POOLS = [
    ("aave-v3", "Ethereum", "USDT", 1.21e9, 4.12, None, True, "single"),
    ("compound-v3", "Ethereum", "USDT", 3.1e8, 4.55, 0.3, True, "single"),
    ("morpho-blue", "Ethereum", "USDT", 5.4e7, 5.18, None, True, "single"),
    ("fluid-lending", "Ethereum", "USDT", 1.45e8, 4.86, 0.6, True, "single"),
    ("aave-v3", "Ethereum", "USDC", 2.05e9, 4.31, None, True, "single"),
    ("compound-v3", "Ethereum", "USDC", 5.2e8, 4.49, 0.4, True, "single"),
    ("morpho-blue", "Base", "USDC", 8.3e7, 5.07, 1.2, True, "single"),
    ("spark", "Ethereum", "USDC", 3.05e8, 4.42, None, True, "single"),
    ("fluid-lending", "Arbitrum", "USDC", 1.02e8, 4.78, None, True, "single"),
    ("morpho-blue", "Ethereum", "USDC", 2.6e7, 38.5, None, True, "single"),    # outlier: MAD drops it
    ("spark", "Ethereum", "DAI", 1.02e9, 5.01, None, True, "single"),
    ("sky-lending", "Ethereum", "DAI", 4.9e8, 4.74, None, True, "single"),
    ("aave-v3", "Ethereum", "DAI", 1.48e8, 4.21, None, True, "single"),
    ("compound-v3", "Polygon", "DAI", 4.2e6, 7.02, None, True, "single"),      # below the TVL floor
    ("aave-v3", "Ethereum", "TUSD", 1.23e7, 3.12, None, True, "single"),
    ("aave-v3", "Ethereum", "FRAX", 2.55e7, 5.46, None, True, "single"),
    ("morpho-blue", "Ethereum", "FRAX", 3.1e7, None, 6.1, True, "single"),     # no base APY
    ("aave-v3", "Ethereum", "USDP", 1.52e7, 3.83, None, True, "single"),
    ("curve-dex", "Ethereum", "USDC-USDT", 1.8e8, 2.1, 1.4, True, "multi"),    # not allowlisted, multi
]

TBILLS = [  # (offset ms, observation_date, rate_pct): event_time is when the value became known
    (250, "2026-11-18", 4.12),
    (TBILL_UPDATE_AT, "2026-11-19", 4.09),
]


def parse_duration(text: str) -> int:
    """`6h30m`, `45m`, `90s`, `2h` -> milliseconds."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or not match:
        raise argparse.ArgumentTypeError(f"duration like 6h30m, 45m or 90s, got {text!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total_ms = ((hours * 60 + minutes) * 60 + seconds) * 1000
    if total_ms <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return total_ms


class Market:
    """The 'true' USD price of every coin, second by second: a mean-reverting walk in bps
    around its anchor (Ornstein-Uhlenbeck), plus the depeg episode."""

    def __init__(self, rng: random.Random, duration_ms: int) -> None:
        seconds = duration_ms // 1000 + 2
        self._bps: dict[str, list[float]] = {}
        for symbol in ANCHORS:
            walk, x = [], 0.0
            for _ in range(seconds):
                x += -0.01 * x + 0.15 * rng.gauss(0.0, 1.0)
                walk.append(x)
            self._bps[symbol] = walk

    @staticmethod
    def _episode_bps(symbol: str, offset: int) -> float:
        if symbol != DEPEG_SYMBOL or offset < DEPEG_START:
            return 0.0
        into = offset - DEPEG_START
        if into < DEPEG_FALL:
            return DEPEG_BPS * into / DEPEG_FALL
        into -= DEPEG_FALL
        if into < DEPEG_HOLD:
            return DEPEG_BPS
        into -= DEPEG_HOLD
        return DEPEG_BPS * max(0.0, 1 - into / DEPEG_RECOVER)

    def usd(self, symbol: str, offset: int) -> float:
        bps = self._bps[symbol][offset // 1000] + self._episode_bps(symbol, offset)
        return ANCHORS[symbol] * (1 + bps / 10_000)


def in_depeg(offset: int) -> bool:
    return DEPEG_START <= offset < DEPEG_START + DEPEG_FALL + DEPEG_HOLD + DEPEG_RECOVER


class Tape:
    """Collects (event ms, sequence, line); written out in event-time order. Lines are kept
    serialized: a model costs several times its JSON, and a 30-day tape holds millions."""

    def __init__(self, start_ms: int, duration_ms: int, rng: random.Random) -> None:
        self.start, self.end, self.rng = start_ms, start_ms + duration_ms, rng
        self.events: list[tuple[int, int, bytes]] = []

    def add(self, topic: str, model: BaseModel) -> None:
        line = orjson.dumps({"topic": topic, "key": model.key(), "value": model.model_dump(mode="json")})
        # a copy of exact size: orjson's own buffer keeps at least 4 KiB allocated
        self.events.append((millis(model.event_time), len(self.events), bytes(memoryview(line))))

    def times(self, low_s: float, high_s: float, first_within_s: float = 8.0) -> Iterator[int]:
        """Irregular emission times (ms offsets): the first within the first seconds, so every
        stream is priced in the run's first bucket."""
        offset = int(self.rng.uniform(0.2, first_within_s) * 1000)
        while offset < self.end - self.start:
            yield offset
            offset += int(self.rng.uniform(low_s, high_s) * 1000)

    def stamps(self, offset: int) -> tuple[str, str]:
        event = self.start + offset
        return time_text(event), time_text(event + int(self.rng.uniform(15, 250)))

    def lines(self) -> Iterator[bytes]:
        self.events.sort(key=lambda e: (e[0], e[1]))
        for _, _, line in self.events:
            yield line


def quote(price: float, tick: float) -> tuple[float, float, float]:
    """A one-tick market around `price`: (bid, ask, mid), free of float dust."""
    decimals = round(-math.log10(tick))
    bid = round(math.floor(price / tick) * tick, decimals)
    ask = round(bid + tick, decimals)
    return bid, ask, round((bid + ask) / 2, decimals + 1)


def stale(symbol: str, offset: int) -> bool:
    return symbol == STALE_SYMBOL and STALE_START <= offset < STALE_END


def add_prices(tape: Tape, market: Market) -> None:
    rng = tape.rng
    for spec in BINANCE:
        pair = f"{spec.base}USDT"
        for offset in tape.times(5, 15):
            if stale(spec.base, offset):
                continue
            venue_noise = 1 + rng.gauss(0.0, 0.3) / 10_000
            mid = market.usd(spec.base, offset) / market.usd("USDT", offset) * venue_noise
            bid, ask, price = quote(mid, spec.tick)
            event, ingest = tape.stamps(offset)
            tape.add("cc.prices", PriceTick(symbol=spec.base, venue="binance", pair=pair, base=spec.base,
                                            quote="USDT", bid=bid, ask=ask, price=price,
                                            event_time=event, ingest_time=ingest))
    for symbol in KRAKEN:
        for offset in tape.times(5, 15):
            bid, ask, price = quote(market.usd(symbol, offset) * (1 + rng.gauss(0.0, 0.3) / 10_000), 0.0001)
            event, ingest = tape.stamps(offset)
            tape.add("cc.prices", PriceTick(symbol=symbol, venue="kraken", pair=f"{symbol}USD", base=symbol,
                                            quote="USD", bid=bid, ask=ask, price=price,
                                            event_time=event, ingest_time=ingest))
    for symbol in CRYPTOCOMPARE:
        for offset in tape.times(5, 15):
            price = round(market.usd(symbol, offset) * (1 + rng.gauss(0.0, 0.4) / 10_000), 6)
            event, ingest = tape.stamps(offset)
            tape.add("cc.prices", PriceTick(symbol=symbol, venue="cryptocompare", pair=f"{symbol}USD",
                                            base=symbol, quote="USD", price=price,
                                            event_time=event, ingest_time=ingest))
    # DefiLlama's stablecoin prices: one fetch every 5 minutes gives all six at once.
    for offset in range(1_000, tape.end - tape.start, 5 * MINUTE):
        offset += int(rng.uniform(0, 2_000))
        event, ingest = tape.stamps(offset)
        for symbol in DEFILLAMA:
            if stale(symbol, offset):
                continue
            tape.add("cc.prices", PriceTick(symbol=symbol, venue="defillama", base=symbol, quote="USD",
                                            price=round(market.usd(symbol, offset), 6),
                                            event_time=event, ingest_time=ingest))


def book_side(rng: random.Random, best: float, spec: BookSpec, direction: int, depth_usd: float,
              ) -> list[tuple[float, float]]:
    """20 levels from `best` outwards; sizes grow away from the touch, jittered, and add up to
    about `depth_usd` / 2 within the band (levels past the band add more on top)."""
    decimals = round(-math.log10(spec.tick))
    prices = [round(best + direction * i * spec.step_ticks * spec.tick, decimals) for i in range(20)]
    weights = [(1 + 0.15 * i) * rng.uniform(0.5, 1.5) for i in range(20)]
    in_band = [i for i, p in enumerate(prices) if abs(p / best - 1) <= 0.0045] or [0]
    scale = depth_usd / 2 / sum(weights[i] for i in in_band)
    return [(p, round(w * scale / p, 2)) for p, w in zip(prices, weights)]


def add_books(tape: Tape, market: Market) -> None:
    rng = tape.rng
    for spec in BINANCE:
        phase = rng.uniform(0, 2 * math.pi)
        for offset in tape.times(10, 30, first_within_s=20):
            mid = market.usd(spec.base, offset) / market.usd("USDT", offset)
            bid, ask, _ = quote(mid, spec.tick)
            # Depth breathes over a few hours; market makers pull back during the depeg.
            depth = spec.depth_usd * (1 + 0.2 * math.sin(2 * math.pi * offset / (3 * HOUR) + phase))
            depth *= rng.uniform(0.9, 1.1) * (0.5 if spec.base == DEPEG_SYMBOL and in_depeg(offset) else 1.0)
            event, ingest = tape.stamps(offset)
            tape.add("cc.orderbook", OrderBook(symbol=spec.base, venue="binance", pair=f"{spec.base}USDT",
                                               base=spec.base, quote="USDT",
                                               bids=book_side(rng, bid, spec, -1, depth),
                                               asks=book_side(rng, ask, spec, +1, depth),
                                               event_time=event, ingest_time=ingest))


def add_pools(tape: Tape) -> None:
    rng = tape.rng
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in POOLS]
    drift = [0.0] * len(POOLS)
    for offset in range(5_000, tape.end - tape.start, HOUR):
        event, ingest = tape.stamps(offset + int(rng.uniform(0, 3_000)))
        for i, (project, chain, symbol, tvl, base, reward, stable, exposure) in enumerate(POOLS):
            drift[i] += rng.gauss(0.0, 0.04)
            apy_base = None if base is None else round(base + drift[i], 4)
            parts = [x for x in (apy_base, reward) if x is not None]
            tape.add("dl.apy", PoolYield(pool=ids[i], project=project, chain=chain, symbol=symbol,
                                         tvl_usd=round(tvl * (1 + rng.gauss(0.0, 0.003)), 0),
                                         apy_base_pct=apy_base, apy_reward_pct=reward,
                                         apy_pct=round(sum(parts), 4) if parts else None,
                                         stablecoin=stable, exposure=exposure,
                                         event_time=event, ingest_time=ingest))


def add_market_caps(tape: Tape, market: Market) -> None:
    rng = tape.rng
    caps = dict(MARKET_CAPS)
    for offset in range(2_000, tape.end - tape.start, 30 * MINUTE):
        event, ingest = tape.stamps(offset + int(rng.uniform(0, 1_000)))
        for symbol, cap in caps.items():
            caps[symbol] = cap * (1 + rng.gauss(0.0, 0.0004))
            tape.add("ex.mktcap", MarketCap(symbol=symbol, market_cap_usd=round(caps[symbol], 0),
                                            price_usd=round(market.usd(symbol, offset), 6), source="defillama",
                                            event_time=event, ingest_time=ingest))


def add_tbills(tape: Tape) -> None:
    for offset, observed, rate in TBILLS:
        if offset < tape.end - tape.start:
            event, ingest = tape.stamps(offset)
            tape.add("trad.tbill", TBill(series="DTB3", observation_date=observed, rate_pct=rate,
                                         basis="discount", source="fred", event_time=event, ingest_time=ingest))


def generate(duration_ms: int, seed: int = DEFAULT_SEED, start: str = DEFAULT_START) -> Iterator[bytes]:
    """The tape's lines (without newlines), in event-time order."""
    rng = random.Random(seed)
    market = Market(rng, duration_ms)
    tape = Tape(millis(start), duration_ms, rng)
    add_tbills(tape)
    add_market_caps(tape, market)
    add_pools(tape)
    add_prices(tape, market)
    add_books(tape, market)
    return tape.lines()


def write(lines: Iterator[bytes], out: Path) -> int:
    """Write the lines; `.gz` output is gzip without a name or time in its header (reproducible)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out, "wb") as raw:
        sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out.suffix == ".gz" else raw
        try:
            for line in lines:
                sink.write(line + b"\n")
                count += 1
        finally:
            if sink is not raw:
                sink.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="tape file (.jsonl or .jsonl.gz)")
    parser.add_argument("--duration", type=parse_duration, default=DEFAULT_DURATION,
                        help=f"tape length, e.g. 6h30m or 45m (default {DEFAULT_DURATION})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--start", default=DEFAULT_START, help="first event time (UTC, ...Z)")
    args = parser.parse_args(argv)
    count = write(generate(args.duration, args.seed, args.start), args.out)
    print(f"wrote {count} messages to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
