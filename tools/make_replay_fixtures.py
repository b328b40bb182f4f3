"""Generate the replay server's recorded API traffic: deterministic, realistic, small.

    .venv/bin/python tools/make_replay_fixtures.py                 # writes fixtures/replay/
    .venv/bin/python tools/make_replay_fixtures.py --out /tmp/rp   # somewhere else

The files keep the real APIs' shapes and JSON types exactly (Binance numbers as strings,
FRED values as strings with "." for missing, DefiLlama numbers or null, CryptoCompare RAW
numbers with string TYPE/FLAGS...); the values are synthetic. A seeded RNG and no wall
clock: the same script always writes the same content (gzip without name or time).

The scenario (4 h recorded from 2026-01-20T13:00:00Z, played in a loop by the server):
* Binance: USDCUSDT, FDUSDUSDT, TUSDUSDT, USDPUSDT, DAIUSDT bookTicker frames every second
  per pair and depth20 snapshots every 10 s; exchangeInfo also lists pairs that do not trade.
* Depeg: USDC slides from 1.0000 to ~0.975 USD from 01:45, holds, recovers by 02:25 (on
  Binance, DefiLlama and CryptoCompare alike).
* DefiLlama /pools hourly (~100 pools: the six stablecoins' lending pools, one USDT pool with
  an outlier APY, pools with null APYs, LP/multi-exposure, non-stable and other pools);
  /stablecoins?includePrices=true every 10 min (with a null price, a `0` circulatingPrev*).
* FRED DTB3: the latest row is "." (MLK day); a new observation appears at 03:00.
* CryptoCompare pricemultifull every 10 min.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "fixtures" / "replay"

SEED = 20260120
RECORDED_START = datetime(2026, 1, 20, 13, 0, tzinfo=UTC)
DURATION_S = 4 * 3600
DEPTH_EVERY_S = 10
POOLS_EVERY_S = 3600
STABLECOINS_EVERY_S = 600
CRYPTOCOMPARE_EVERY_S = 600
FRED_UPDATE_AT_S = 3 * 3600

# USDC's depeg episode: ramp down, hold, recover (seconds into the recording, bps below 1).
DEPEG = {"symbol": "USDC", "start_s": 6300, "bottom_s": 6900, "recover_s": 7800, "end_s": 8700, "depth_bps": 250.0}

# symbol -> (steady USD price, OU noise in bps per sqrt(s))
SYMBOLS = {
    "USDT": (1.0002, 0.25),
    "USDC": (0.99995, 0.2),
    "DAI": (0.99985, 0.35),
    "TUSD": (0.9978, 0.8),
    "FRAX": (0.9974, 0.7),
    "USDP": (0.99965, 0.5),
    "FDUSD": (0.9991, 0.5),
}

# pair -> (base, quote, typical top-level quantity, spread ticks choices)
PAIRS = {
    "USDCUSDT": ("USDC", "USDT", 14_000_000, (1, 1, 1, 1, 2)),
    "FDUSDUSDT": ("FDUSD", "USDT", 3_000_000, (1, 1, 2)),
    "TUSDUSDT": ("TUSD", "USDT", 140_000, (1, 2, 3, 4)),
    "USDPUSDT": ("USDP", "USDT", 650_000, (1, 2, 2, 3)),
    "DAIUSDT": ("DAI", "USDT", 800_000, (1, 1, 2, 3)),
}
TICK = 0.0001
LEVELS = 20


def fmt8(value: float) -> str:
    """Binance's string number form: 8 decimals."""
    return f"{value:.8f}"


# ---------------------------------------------------------------- price paths (USD, per second)


def depeg_target_bps(second: int) -> float:
    d = DEPEG
    if second < d["start_s"] or second >= d["end_s"]:
        return 0.0
    if second < d["bottom_s"]:
        return -d["depth_bps"] * (second - d["start_s"]) / (d["bottom_s"] - d["start_s"])
    if second < d["recover_s"]:
        return -d["depth_bps"]
    return -d["depth_bps"] * (d["end_s"] - second) / (d["end_s"] - d["recover_s"])


def usd_paths(rng: random.Random) -> dict[str, list[float]]:
    """Mean-reverting (Ornstein-Uhlenbeck) deviations in bps around each coin's steady price."""
    paths: dict[str, list[float]] = {}
    for symbol, (steady, noise) in SYMBOLS.items():
        x = 0.0
        values = []
        for second in range(DURATION_S):
            target = depeg_target_bps(second) if symbol == DEPEG["symbol"] else 0.0
            stress = 4.0 if target < -50 else 1.0  # a depegged market is noisier
            x += 0.02 * (target - x) + noise * stress * rng.gauss(0.0, 1.0)
            values.append(steady * (1.0 + x / 10_000.0))
        paths[symbol] = values
    return paths


# ---------------------------------------------------------------- Binance


def exchange_info() -> dict:
    def entry(symbol: str, base: str, quote: str, status: str) -> dict:
        return {
            "symbol": symbol, "status": status, "baseAsset": base, "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": status == "TRADING", "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.00010000", "maxPrice": "1000.00000000",
                 "tickSize": "0.00010000"},
                {"filterType": "LOT_SIZE", "minQty": "1.00000000", "maxQty": "9000000000.00000000",
                 "stepSize": "1.00000000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    symbols = [entry(pair, base, quote, "TRADING") for pair, (base, quote, _, _) in PAIRS.items()]
    symbols += [
        entry("FDUSDUSDC", "FDUSD", "USDC", "TRADING"),
        entry("EURIUSDT", "EURI", "USDT", "TRADING"),
        entry("PAXUSDT", "PAX", "USDT", "BREAK"),  # renamed to USDP long ago: listed, not trading
        entry("BUSDUSDT", "BUSD", "USDT", "BREAK"),  # wound down
    ]
    return {
        "timezone": "UTC",
        "serverTime": int(RECORDED_START.timestamp() * 1000),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": symbols,
    }


def ws_frames(rng: random.Random, usd: dict[str, list[float]]) -> list[dict]:
    """Combined-stream frames: bookTicker every second per pair, depth20 every DEPTH_EVERY_S."""
    frames: list[dict] = []
    for index, (pair, (base, quote, top_qty, spreads)) in enumerate(PAIRS.items()):
        stream = pair.lower()
        update_id = 4_000_000_000 + index * 123_456_789
        bid_qty = [top_qty * rng.lognormvariate(0.3, 0.5) for _ in range(LEVELS)]
        ask_qty = [top_qty * rng.lognormvariate(0.3, 0.5) for _ in range(LEVELS)]
        spread = 1
        for second in range(DURATION_S):
            mid = usd[base][second] / usd[quote][second]
            if rng.random() < 0.2:
                spread = rng.choice(spreads)
            best_bid = math.floor(mid / TICK - spread / 2 + 0.5) * TICK
            best_ask = best_bid + spread * TICK
            update_id += rng.randint(20, 400)
            # the top of the book churns every second; deeper levels drift slowly
            bid_qty[0] = top_qty * rng.lognormvariate(0.0, 0.6)
            ask_qty[0] = top_qty * rng.lognormvariate(0.0, 0.6)
            at_ms = second * 1000 + 97 * index + rng.randint(0, 150)
            frames.append({
                "at_ms": at_ms,
                "stream": f"{stream}@bookTicker",
                "data": {"u": update_id, "s": pair, "b": fmt8(best_bid), "B": fmt8(round(bid_qty[0])),
                         "a": fmt8(best_ask), "A": fmt8(round(ask_qty[0]))},
            })
            if second % DEPTH_EVERY_S == 0:
                for side in (bid_qty, ask_qty):
                    for level in range(1, LEVELS):
                        if rng.random() < 0.25:
                            side[level] = max(1.0, side[level] * rng.lognormvariate(0.0, 0.15))
                frames.append({
                    "at_ms": at_ms + 1,
                    "stream": f"{stream}@depth20@100ms",
                    "data": {
                        "lastUpdateId": update_id,
                        "bids": [[fmt8(best_bid - k * TICK), fmt8(round(bid_qty[k]))] for k in range(LEVELS)],
                        "asks": [[fmt8(best_ask + k * TICK), fmt8(round(ask_qty[k]))] for k in range(LEVELS)],
                    },
                })
    frames.sort(key=lambda frame: (frame["at_ms"], frame["stream"]))
    return frames


# ---------------------------------------------------------------- DefiLlama yields /pools

# (chain, project, symbol, tvl_usd, apy_base, apy_reward, pool id or None)
INDEX_POOLS = [
    ("Ethereum", "aave-v3", "USDT", 1_210_000_000, 4.08, None, None),
    ("Arbitrum", "aave-v3", "USDT", 182_000_000, 4.61, None, None),
    ("Ethereum", "compound-v3", "USDT", 254_000_000, 4.27, 0.41, None),
    ("Ethereum", "fluid-lending", "USDT", 91_000_000, 5.02, 0.6, None),
    ("Plasma", "fluid-lending", "USDT", 22_400_000, 62.4, 8.1, "outlier"),
    ("Ethereum", "aave-v3", "USDC", 1_787_346_450, 3.29338, None, "aa70268e-4b52-42bf-a116-608b370f9501"),
    ("Ethereum", "compound-v3", "USDC", 388_854_060, 3.01208, 0.28, "7da72d09-56ca-4ec5-a45f-59114353e487"),
    ("Base", "aave-v3", "USDC", 351_000_000, 4.19, None, None),
    ("Ethereum", "morpho-blue", "USDC", 120_500_000, 4.91, 0.35, None),
    ("Ethereum", "spark", "USDC", 212_000_000, 4.5, None, None),
    ("Ethereum", "fluid-lending", "USDC", 141_000_000, 5.11, 0.52, None),
    ("Ethereum", "morpho-blue", "USDC", 48_000_000, None, 5.1, None),  # only rewards: apyBase null
    ("Arbitrum", "aave-v3", "USDC", 4_200_000, 4.4, None, None),  # below the methodology's TVL floor
    ("Ethereum", "spark", "DAI", 1_105_000_000, 4.5, None, None),
    ("Ethereum", "sky-lending", "DAI", 2_010_000_000, 4.25, None, None),
    ("Ethereum", "aave-v3", "DAI", 95_000_000, 3.62, None, None),
    ("Ethereum", "aave-v3", "TUSD", 12_300_000, 2.08, None, None),
    ("Ethereum", "aave-v3", "FRAX", 14_100_000, 3.91, None, None),
    ("Ethereum", "fraxlend", "FRAX", 31_000_000, 6.45, None, None),  # not on the project allowlist
    ("Ethereum", "aave-v3", "USDP", 11_200_000, 2.93, None, None),
    ("BSC", "venus-core-pool", "USDT", 402_000_000, 3.1, 0.8, None),
    ("BSC", "venus-core-pool", "USDC", 96_000_000, 3.4, 0.6, None),
]

# pools the ingester must drop: multi exposure, not stablecoin, other symbols
OTHER_POOLS = [
    ("Ethereum", "curve-dex", "DAI-USDC-USDT", 172_000_000, 1.12, 0.9, True, "multi"),
    ("Ethereum", "uniswap-v3", "USDC-USDT", 54_000_000, 3.9, None, True, "multi"),
    ("Arbitrum", "uniswap-v3", "USDC-USDT", 18_000_000, 6.1, None, True, "multi"),
    ("Ethereum", "lido", "STETH", 23_908_962_564, 2.235, None, False, "single"),
    ("Ethereum", "aave-v3", "WETH", 2_400_000_000, 1.87, None, False, "single"),
    ("Ethereum", "aave-v3", "WBTC", 1_300_000_000, 0.02, None, False, "single"),
    ("Ethereum", "ethena-usde", "SUSDE", 3_900_000_000, 6.8, None, True, "single"),
    ("Arbitrum", "aave-v3", "USDC.E", 21_000_000, 3.8, None, True, "single"),
    ("Ethereum", "sky-lending", "USDS", 4_100_000_000, 4.5, None, True, "single"),
    ("Ethereum", "pendle", "PT-SUSDE-26MAR2026", 610_000_000, 9.2, None, True, "single"),
    ("Solana", "kamino-lend", "USDC", 0, None, None, True, "single"),  # empty pool: nulls everywhere
]

FILLER_PROJECTS = ["uniswap-v3", "curve-dex", "balancer-v2", "aerodrome-slipstream", "pancakeswap-amm-v3",
                   "convex-finance", "yearn-finance", "beefy", "gmx-v2-perps", "rocket-pool", "jito-liquid-staking"]
FILLER_CHAINS = ["Ethereum", "Arbitrum", "Base", "BSC", "Solana", "OP Mainnet", "Polygon", "Avalanche"]
FILLER_TOKENS = ["WETH", "WBTC", "ARB", "OP", "SOL", "JITOSOL", "CRV", "CVX", "GMX", "BAL", "AERO", "CAKE", "RETH"]


def _pool_row(rng: random.Random, *, chain, project, symbol, tvl, apy_base, apy_reward, pool_id,
              stablecoin, exposure, outlier=False) -> dict:
    apy = None if apy_base is None and apy_reward is None else round((apy_base or 0) + (apy_reward or 0), 5)
    has_history = tvl > 0
    return {
        "chain": chain, "project": project, "symbol": symbol, "tvlUsd": tvl,
        "apyBase": apy_base, "apyReward": apy_reward, "apy": apy,
        "rewardTokens": [f"0x{rng.getrandbits(160):040x}"] if apy_reward else None,
        "pool": pool_id,
        "apyPct1D": round(rng.gauss(0, 0.1), 5) if has_history else None,
        "apyPct7D": round(rng.gauss(0, 0.3), 5) if has_history else None,
        "apyPct30D": round(rng.gauss(0, 0.6), 5) if has_history and rng.random() < 0.9 else None,
        "stablecoin": stablecoin, "ilRisk": "yes" if exposure == "multi" else "no", "exposure": exposure,
        "predictions": (
            {"predictedClass": rng.choice(["Stable/Up", "Down"]), "predictedProbability": rng.randint(51, 90),
             "binnedConfidence": rng.randint(1, 3)}
            if has_history and rng.random() < 0.8
            else {"predictedClass": None, "predictedProbability": None, "binnedConfidence": None}
        ),
        "poolMeta": None,
        "mu": round((apy or 0) * rng.uniform(0.8, 1.3), 5), "sigma": round(rng.uniform(0.01, 0.3), 5),
        "count": rng.randint(30, 1500), "outlier": outlier,
        "underlyingTokens": [f"0x{rng.getrandbits(160):040x}"],
        "il7d": None, "apyBase7d": None,
        "apyMean30d": round((apy or 0) * rng.uniform(0.9, 1.1), 5) if has_history else None,
        "volumeUsd1d": round(tvl * rng.uniform(0.01, 0.3), 2) if exposure == "multi" else None,
        "volumeUsd7d": round(tvl * rng.uniform(0.1, 2.0), 2) if exposure == "multi" else None,
        "apyBaseInception": None,
    }


def pools_snapshots(rng: random.Random) -> list[dict]:
    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    index_ids = [pid if pid and pid != "outlier" else new_id() for *_, pid in INDEX_POOLS]
    other_ids = [new_id() for _ in OTHER_POOLS]
    fillers = []
    for _ in range(66):
        a, b = rng.sample(FILLER_TOKENS, 2)
        single = rng.random() < 0.3
        fillers.append((rng.choice(FILLER_CHAINS), rng.choice(FILLER_PROJECTS), a if single else f"{a}-{b}",
                        int(rng.lognormvariate(16, 2)), round(rng.uniform(0.1, 25), 5),
                        round(rng.uniform(0, 12), 5) if rng.random() < 0.4 else None, new_id(),
                        "single" if single else "multi"))
    snapshots = []
    for hour in range(DURATION_S // POOLS_EVERY_S):
        data = []
        for (chain, project, symbol, tvl, base, reward, pid), pool_id in zip(INDEX_POOLS, index_ids):
            drift = 1 + rng.gauss(0, 0.02)
            # USDC borrow demand rises while it trades below peg (the depeg hour)
            stress = 1.35 if symbol == "USDC" and hour == 1 else 1.0
            data.append(_pool_row(
                rng, chain=chain, project=project, symbol=symbol,
                tvl=int(tvl * (1 + rng.gauss(0, 0.005))) if tvl else 0,
                apy_base=None if base is None else round(base * drift * stress, 5),
                apy_reward=reward, pool_id=pool_id, stablecoin=True, exposure="single",
                outlier=pid == "outlier"))
        for (chain, project, symbol, tvl, base, reward, stable, exposure), pool_id in zip(OTHER_POOLS, other_ids):
            data.append(_pool_row(rng, chain=chain, project=project, symbol=symbol, tvl=tvl,
                                  apy_base=None if base is None else round(base * (1 + rng.gauss(0, 0.02)), 5),
                                  apy_reward=reward, pool_id=pool_id, stablecoin=stable, exposure=exposure))
        for chain, project, symbol, tvl, base, reward, pool_id, exposure in fillers:
            data.append(_pool_row(rng, chain=chain, project=project, symbol=symbol, tvl=tvl, apy_base=base,
                                  apy_reward=reward, pool_id=pool_id, stablecoin=False, exposure=exposure))
        rng.shuffle(data)
        snapshots.append({"status": "success", "data": data})
    return snapshots


# ---------------------------------------------------------------- DefiLlama stablecoins

# symbol -> (id, name, gecko_id, pegType, priceSource, pegMechanism, circulating, chains)
PEGGED = [
    ("USDT", "1", "Tether", "tether", "peggedUSD", "defillama", "fiat-backed", 184.19e9,
     ["Tron", "Ethereum", "BSC", "Solana"]),
    ("USDC", "2", "USD Coin", "usd-coin", "peggedUSD", "chainlink", "fiat-backed", 74.5e9,
     ["Ethereum", "Solana", "Base", "Arbitrum"]),
    ("USDS", "209", "Sky Dollar", "usds", "peggedUSD", "defillama", "crypto-backed", 7.9e9, ["Ethereum"]),
    ("DAI", "5", "Dai", "dai", "peggedUSD", "chainlink", "crypto-backed", 5.36e9, ["Ethereum", "Gnosis", "Base"]),
    ("USDe", "146", "Ethena USDe", "ethena-usde", "peggedUSD", "defillama", "crypto-backed", 5.1e9,
     ["Ethereum", "Arbitrum"]),
    ("FDUSD", "119", "First Digital USD", "first-digital-usd", "peggedUSD", "defillama", "fiat-backed", 1.92e9,
     ["BSC", "Ethereum"]),
    ("USDP", "11", "Pax Dollar", "paxos-standard", "peggedUSD", "chainlink", "fiat-backed", 1.25e9, ["Ethereum"]),
    ("PYUSD", "120", "PayPal USD", "paypal-usd", "peggedUSD", "defillama", "fiat-backed", 0.98e9,
     ["Ethereum", "Solana"]),
    ("TUSD", "7", "TrueUSD", "true-usd", "peggedUSD", "defillama", "fiat-backed", 0.49e9,
     ["Tron", "Ethereum", "BSC"]),
    ("FRAX", "6", "Frax", "frax", "peggedUSD", "chainlink", "algorithmic", 0.32e9, ["Ethereum", "Fraxtal"]),
    ("EURC", "50", "EURC", "euro-coin", "peggedEUR", "defillama", "fiat-backed", 0.21e9, ["Ethereum", "Base"]),
    ("USD0", "211", "Usual USD", None, "peggedUSD", "defillama", "fiat-backed", 0.17e9, ["Ethereum"]),  # price null
    ("USDX", "244", "Stables Labs USDX", "usdx", "peggedUSD", "defillama", "crypto-backed", 0.02e9, ["BSC"]),
]


def stablecoins_snapshots(rng: random.Random, usd: dict[str, list[float]]) -> list[dict]:
    snapshots = []
    for at_s in range(0, DURATION_S, STABLECOINS_EVERY_S):
        assets = []
        for symbol, pid, name, gecko, peg, source, mechanism, circulating, chains in PEGGED:
            grow = 1 + 0.00002 * at_s / STABLECOINS_EVERY_S + rng.gauss(0, 0.00005)
            now = round(circulating * grow, 5)
            def amount(value: float, peg: str = peg) -> dict:
                return {peg: value}
            new_coin = symbol == "USDX"  # no history yet: DefiLlama's handler gives the integer 0
            prev_day = 0 if new_coin else amount(round(now * (1 - rng.uniform(-0.002, 0.004)), 2))
            prev_week = 0 if new_coin else amount(round(now * (1 - rng.uniform(-0.01, 0.02)), 2))
            prev_month = 0 if new_coin else amount(round(now * (1 - rng.uniform(-0.03, 0.06)), 2))
            shares = [rng.uniform(0.2, 1.0) for _ in chains]
            chain_circulating = {}
            for chain, share in zip(chains, shares):
                part = round(now * share / sum(shares), 2)
                chain_circulating[chain] = {
                    "current": amount(part),
                    "circulatingPrevDay": 0 if new_coin else amount(round(part * 0.999, 2)),
                    "circulatingPrevWeek": 0 if new_coin else amount(round(part * 0.995, 2)),
                    "circulatingPrevMonth": 0 if new_coin else amount(round(part * 0.98, 2)),
                }
            if symbol in usd:
                price = round(usd[symbol][at_s], 6)
            elif peg == "peggedEUR":
                price = round(1.163 + rng.gauss(0, 0.0005), 6)
            else:
                price = round(1.0 + rng.gauss(0, 0.0004), 6)
            asset = {"id": pid, "name": name, "symbol": symbol, "gecko_id": gecko, "pegType": peg,
                     "priceSource": source, "pegMechanism": mechanism,
                     "circulating": amount(now), "circulatingPrevDay": prev_day,
                     "circulatingPrevWeek": prev_week, "circulatingPrevMonth": prev_month,
                     "chainCirculating": chain_circulating, "chains": chains,
                     "price": None if gecko is None else price}
            assets.append(asset)
        assets.sort(key=lambda a: -next(iter(a["circulating"].values())))
        snapshots.append({"peggedAssets": assets, "peggedCategories": ["stablecoins", "yield-bearing-stablecoins"]})
    return snapshots


# ---------------------------------------------------------------- FRED DTB3


def business_days(end: date, count: int) -> list[date]:
    days: list[date] = []
    day = end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return sorted(days)


def fred_snapshots(rng: random.Random) -> list[dict]:
    holidays = {date(2026, 1, 1), date(2026, 1, 19)}  # New Year, Martin Luther King Jr. Day
    days = business_days(date(2026, 1, 19), 60)
    rate = 3.71
    rows = []
    for day in days:
        rate += rng.gauss(-0.002, 0.01)
        value = "." if day in holidays else f"{rate:.2f}"
        rows.append((day.isoformat(), value))
    later = rows + [("2026-01-20", f"{rate - 0.02:.2f}")]

    def response(observations: list[tuple[str, str]], today: str) -> dict:
        return {
            "realtime_start": today, "realtime_end": today,
            "observation_start": "1600-01-01", "observation_end": "9999-12-31",
            "units": "lin", "output_type": 1, "file_type": "json", "order_by": "observation_date",
            "sort_order": "asc", "count": len(observations), "offset": 0, "limit": 100000,
            "observations": [{"realtime_start": today, "realtime_end": today, "date": d, "value": v}
                             for d, v in observations],
        }

    return [response(rows, "2026-01-20"), response(later, "2026-01-20")]


# ---------------------------------------------------------------- CryptoCompare


def cryptocompare_snapshots(rng: random.Random, usd: dict[str, list[float]]) -> list[dict]:
    supply = {"USDT": 184.1e9, "USDC": 74.4e9, "DAI": 5.3e9, "TUSD": 0.49e9, "FRAX": 0.32e9, "USDP": 1.24e9,
              "FDUSD": 1.9e9}
    snapshots = []
    recorded = int(RECORDED_START.timestamp())
    for at_s in range(0, DURATION_S, CRYPTOCOMPARE_EVERY_S):
        raw, display = {}, {}
        for symbol in ("USDT", "USDC", "DAI", "TUSD", "FRAX", "USDP", "FDUSD"):
            price = round(usd[symbol][max(0, at_s - 3)] * (1 + rng.gauss(0, 0.00003)), 6)
            window = usd[symbol][max(0, at_s - 3600): at_s + 1]
            volume = round(rng.lognormvariate(17, 1.5), 2)
            last_update = recorded + at_s - rng.randint(0, 20)
            raw[symbol] = {"USD": {
                "TYPE": "5", "MARKET": "CCCAGG", "FROMSYMBOL": symbol, "TOSYMBOL": "USD", "FLAGS": "2052",
                "PRICE": price, "LASTUPDATE": last_update, "MEDIAN": round(price * (1 + rng.gauss(0, 0.00002)), 6),
                "LASTVOLUME": round(rng.uniform(10, 5000), 2), "LASTVOLUMETO": round(rng.uniform(10, 5000), 2),
                "LASTTRADEID": f"{last_update}.{rng.randint(100, 999)}",
                "VOLUMEDAY": volume, "VOLUMEDAYTO": round(volume * price, 2),
                "VOLUME24HOUR": round(volume * 2.1, 2), "VOLUME24HOURTO": round(volume * 2.1 * price, 2),
                "OPENDAY": round(window[0], 6), "HIGHDAY": round(max(window), 6), "LOWDAY": round(min(window), 6),
                "OPEN24HOUR": round(window[0], 6), "HIGH24HOUR": round(max(window), 6),
                "LOW24HOUR": round(min(window), 6), "LASTMARKET": rng.choice(["Kraken", "Coinbase", "Bitstamp"]),
                "VOLUMEHOUR": round(volume / 20, 2), "VOLUMEHOURTO": round(volume / 20 * price, 2),
                "OPENHOUR": round(window[0], 6), "HIGHHOUR": round(max(window), 6), "LOWHOUR": round(min(window), 6),
                "TOPTIERVOLUME24HOUR": round(volume * 2, 2), "TOPTIERVOLUME24HOURTO": round(volume * 2 * price, 2),
                "CHANGE24HOUR": round(price - window[0], 6), "CHANGEPCT24HOUR": round(100 * (price / window[0] - 1), 6),
                "CHANGEDAY": round(price - window[0], 6), "CHANGEPCTDAY": round(100 * (price / window[0] - 1), 6),
                "CHANGEHOUR": 0.0, "CHANGEPCTHOUR": 0.0,
                "CONVERSIONTYPE": "direct", "CONVERSIONSYMBOL": "", "CONVERSIONLASTUPDATE": last_update,
                "SUPPLY": supply[symbol], "MKTCAP": round(supply[symbol] * price, 1), "MKTCAPPENALTY": 0,
                "CIRCULATINGSUPPLY": supply[symbol], "CIRCULATINGSUPPLYMKTCAP": round(supply[symbol] * price, 1),
                "TOTALVOLUME24H": round(volume * 30, 1), "TOTALVOLUME24HTO": round(volume * 30 * price, 1),
                "TOTALTOPTIERVOLUME24H": round(volume * 29, 1),
                "TOTALTOPTIERVOLUME24HTO": round(volume * 29 * price, 1),
                "IMAGEURL": f"/media/{rng.randint(30000000, 39999999)}/{symbol.lower()}.png",
            }}
            display[symbol] = {"USD": {
                "FROMSYMBOL": symbol, "TOSYMBOL": "$", "MARKET": "CryptoCompare Index", "PRICE": f"$ {price:.2f}",
                "LASTUPDATE": "Just now", "CHANGEPCT24HOUR": f"{100 * (price / window[0] - 1):.2f}",
                "MKTCAP": f"$ {supply[symbol] * price / 1e9:.2f} B",
                "CIRCULATINGSUPPLY": f"{symbol} {supply[symbol]:,.1f}",
                "IMAGEURL": raw[symbol]["USD"]["IMAGEURL"],
            }}
        snapshots.append({"RAW": raw, "DISPLAY": display})
    return snapshots


# ---------------------------------------------------------------- writing


def dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def write(out: Path, relative: str, payload: bytes) -> str:
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return relative


def gzip_bytes(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as handle:
        handle.write(payload)
    return buffer.getvalue()


def generate(out: Path) -> dict:
    rng = random.Random(SEED)
    usd = usd_paths(rng)
    frames = ws_frames(rng, usd)
    manifest: dict = {
        "generator": "tools/make_replay_fixtures.py",
        "seed": SEED,
        "recorded_start": RECORDED_START.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "duration_s": DURATION_S,
        "scenario": {},
        "binance": {
            "exchange_info": write(out, "binance/exchangeInfo.json", dump(exchange_info())),
            "ws_frames": write(out, "binance/ws_frames.jsonl.gz",
                               gzip_bytes(b"".join(dump(frame) for frame in frames))),
        },
        "http": {},
    }
    pools = pools_snapshots(rng)
    manifest["http"]["pools"] = [
        {"at_s": i * POOLS_EVERY_S, "file": write(out, f"defillama/pools_{i:02d}.json", dump(body))}
        for i, body in enumerate(pools)
    ]
    stablecoins = stablecoins_snapshots(rng, usd)
    manifest["http"]["stablecoins"] = [
        {"at_s": i * STABLECOINS_EVERY_S, "file": write(out, f"defillama/stablecoins_{i:02d}.json", dump(body))}
        for i, body in enumerate(stablecoins)
    ]
    fred = fred_snapshots(rng)
    manifest["http"]["fred_dtb3"] = [
        {"at_s": at_s, "file": write(out, f"fred/DTB3_{i:02d}.json", dump(body))}
        for i, (at_s, body) in enumerate(zip((0, FRED_UPDATE_AT_S), fred))
    ]
    cryptocompare = cryptocompare_snapshots(rng, usd)
    manifest["http"]["cryptocompare"] = [
        {"at_s": i * CRYPTOCOMPARE_EVERY_S, "file": write(out, f"cryptocompare/pricemultifull_{i:02d}.json",
                                                          dump(body))}
        for i, body in enumerate(cryptocompare)
    ]
    outlier = next(row for row in pools[0]["data"] if row["outlier"])
    usdc_mids = [
        (float(f["data"]["b"]) + float(f["data"]["a"])) / 2 for f in frames if f["stream"] == "usdcusdt@bookTicker"
    ]
    manifest["scenario"] = {
        "depeg": {**DEPEG, "pair": "USDCUSDT", "min_mid": round(min(usdc_mids), 6)},
        "outlier_pool": {"pool": outlier["pool"], "symbol": outlier["symbol"], "project": outlier["project"],
                         "apy_base_pct": outlier["apyBase"]},
        "fred_new_observation": {"at_s": FRED_UPDATE_AT_S, "date": "2026-01-20"},
        "binance_pairs": list(PAIRS),
        "binance_not_trading": ["PAXUSDT", "BUSDUSDT"],
    }
    (out / "manifest.json").write_bytes(json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default fixtures/replay)")
    args = parser.parse_args()
    manifest = generate(args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB); USDC depeg min mid {manifest['scenario']['depeg']['min_mid']}")


if __name__ == "__main__":
    main()
