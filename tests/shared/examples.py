"""The example payloads of docs/topics.md, exactly as written there (metrics.peg and
metrics.liquidity, which it shows no example of, in the same style)."""

PRICE = {"schema_version": 1, "symbol": "USDC", "venue": "binance", "pair": "USDCUSDT",
         "base": "USDC", "quote": "USDT", "bid": 0.9998, "ask": 0.9999, "price": 0.99985,
         "event_time": "2026-11-27T10:00:01.234Z", "ingest_time": "2026-11-27T10:00:01.301Z"}

ORDERBOOK = {"schema_version": 1, "symbol": "USDC", "venue": "binance", "pair": "USDCUSDT",
             "base": "USDC", "quote": "USDT",
             "bids": [[0.9998, 18234567.0], [0.9997, 25011034.0]],
             "asks": [[0.9999, 9876543.0], [1.0000, 12000000.0]],
             "event_time": "2026-11-27T10:00:01.200Z", "ingest_time": "2026-11-27T10:00:01.305Z"}

APY = {"schema_version": 1, "pool": "aa70268e-4b52-42bf-a116-608b370f9501",
       "project": "aave-v3", "chain": "Ethereum", "symbol": "USDC",
       "tvl_usd": 412345678.0, "apy_base_pct": 4.12, "apy_reward_pct": None, "apy_pct": 4.12,
       "stablecoin": True, "exposure": "single",
       "event_time": "2026-11-27T10:00:00.000Z", "ingest_time": "2026-11-27T10:00:03.120Z"}

MKTCAP = {"schema_version": 1, "symbol": "USDC", "market_cap_usd": 75123456789.0,
          "price_usd": 0.9999, "source": "defillama",
          "event_time": "2026-11-27T10:00:00.000Z", "ingest_time": "2026-11-27T10:00:02.010Z"}

TBILL = {"schema_version": 1, "series": "DTB3", "observation_date": "2026-11-25",
         "rate_pct": 4.12, "basis": "discount", "source": "fred",
         "event_time": "2026-11-26T15:30:00.000Z", "ingest_time": "2026-11-26T15:30:00.000Z"}

RAY = {"schema_version": 1, "symbol": "USDC", "bucket_end": "2026-11-27T10:01:00.000Z",
       "price_usd": 0.99985, "dev_bps": -1.5, "peg_score": 0.9994, "sigma_peg_pct": 0.012,
       "depth_usd": 61234567.0, "liquidity_score": 1.0, "counterparty_score": 0.9,
       "apy_eff_decimal": 0.0412, "s_worst": 0.9, "ray_decimal": 0.03373,
       "flags": [], "methodology_version": "3.0.0"}

PEG = {"schema_version": 1, "symbol": "USDC", "bucket_end": "2026-11-27T10:01:00.000Z",
       "price_usd": 0.99985, "dev_bps": -1.5, "peg_score": 0.9994, "sigma_peg_pct": 0.012,
       "venues": 2, "flags": [], "methodology_version": "3.0.0"}

LIQUIDITY = {"schema_version": 1, "symbol": "USDC", "bucket_end": "2026-11-27T10:01:00.000Z",
             "depth_usd": 61234567.0, "liquidity_score": 1.0, "books": 1, "flags": [],
             "methodology_version": "3.0.0"}

SYI = {"schema_version": 1, "index_id": "SYI", "bucket_end": "2026-11-27T10:01:00.000Z",
       "syi_decimal": 0.0447448, "syi_percent": 4.47448, "methodology_version": "3.0.0",
       "status": "ok", "coverage": 1.0, "hhi": 5761.3,
       "tbill_apy_decimal": 0.0425, "risk_premium_decimal": 0.0022,
       "constituents": [
           {"symbol": "USDT", "weight": 0.45, "weight_renormalised": 0.45,
            "apy_eff_decimal": 0.042, "peg_score": 0.99, "liquidity_score": 1.0,
            "counterparty_score": 0.75, "s_worst": 0.75, "ray_decimal": 0.0255,
            "market_cap_usd": 1.2e11, "excluded_reason": None}],
       "flags": [], "inputs_max_event_time": "2026-11-27T10:00:59.870Z",
       "published_at": "2026-11-27T10:01:01.210Z", "revision": 0,
       "cid_recipe": "jcs-sha256-cidv1-raw",
       "input_cid": "bafkrei...", "prev_cid": "bafkrei...", "cid": "bafkrei..."}

RESTATEMENT = {"schema_version": 1, "request_id": "2f1c0a7e-restate-2026-11-27T10:01:00.000Z",
               "index_id": "SYI", "bucket_end": "2026-11-27T10:01:00.000Z",
               "supersedes_cid": "bafkrei...", "revision": 1,
               "reason": "DAI order book arrived late (ticket 42)",
               "record": {"index_id": "SYI", "bucket_end": "2026-11-27T10:01:00.000Z",
                          "syi_decimal": 0.0447612, "...": "the recomputed syi.calculated record"},
               "requested_at": "2026-11-27T12:00:00.000Z"}

DLQ = {"schema_version": 1, "source_topic": "cc.prices", "partition": 3, "offset": 1234,
       "key": "USDC.binance", "raw_value": "<the original bytes as a string, base64 when not UTF-8>",
       "error": "price: Input should be a finite number", "service": "ray-calc",
       "failed_at": "2026-11-27T10:00:02.000Z"}

BY_TOPIC = {
    "cc.prices": PRICE,
    "cc.orderbook": ORDERBOOK,
    "dl.apy": APY,
    "ex.mktcap": MKTCAP,
    "trad.tbill": TBILL,
    "metrics.peg": PEG,
    "metrics.liquidity": LIQUIDITY,
    "ray.calculated": RAY,
    "syi.calculated": SYI,
    "syi.restatements": RESTATEMENT,
}
