"""Reads for analysts and tests: latest prices, OHLC per minute, book depth over time, index history
(latest revision, or as of a time) and a bucket's revisions.

Duplicates (at-least-once delivery, replays) sit in the tables until ClickHouse merges
their parts; every read here uses `FINAL` (collapse at read time), so results never count a
record twice.

Also a small command line over a store (for chDB, while the writer is stopped):
    python -m store_clickhouse.queries latest
    python -m store_clickhouse.queries ohlc --symbol USDC --venue binance --start 2026-11-27T10:00:00Z
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from syi_shared.timefmt import format_utc, parse_utc

from store_clickhouse.tables import TABLES

# Optional filters: a NULL parameter means "no bound".
_T = "Nullable(DateTime64(3, 'UTC'))"
_S = "Nullable(String)"


def _rows(client: Client, sql: str, **parameters: Any) -> list[dict[str, Any]]:
    rows = list(client.query(sql, parameters=parameters).named_results())
    for row in rows:
        for name, value in row.items():
            # clickhouse-connect returns UTC columns as naive datetimes: make them aware
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=UTC)
    return rows


def latest_prices(client: Client, symbol: str | None = None) -> list[dict[str, Any]]:
    """The newest tick per (symbol, venue) (FINAL: a re-ingested tick counts once, the later ingest)."""
    return _rows(
        client,
        f"""
        SELECT symbol, venue, price, bid, ask, event_time
        FROM prices FINAL
        WHERE {{symbol:{_S}}} IS NULL OR symbol = {{symbol:{_S}}}
        ORDER BY symbol, venue, event_time DESC
        LIMIT 1 BY symbol, venue
        """,
        symbol=symbol,
    )


def ohlc_per_minute(
    client: Client,
    symbol: str,
    venue: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """Open/high/low/close and tick count per minute and venue, in [start, end)."""
    return _rows(
        client,
        f"""
        SELECT symbol, venue, toStartOfMinute(event_time) AS minute,
               argMin(price, event_time) AS open, max(price) AS high,
               min(price) AS low, argMax(price, event_time) AS close, count() AS ticks
        FROM prices FINAL
        WHERE symbol = {{symbol:String}}
          AND ({{venue:{_S}}} IS NULL OR venue = {{venue:{_S}}})
          AND ({{start:{_T}}} IS NULL OR event_time >= {{start:{_T}}})
          AND ({{end:{_T}}} IS NULL OR event_time < {{end:{_T}}})
        GROUP BY symbol, venue, minute
        ORDER BY venue, minute
        """,
        symbol=symbol, venue=venue, start=start, end=end,
    )


def depth_over_time(
    client: Client,
    symbol: str,
    venue: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    band_bps: float = 50.0,
    step_seconds: int = 60,
) -> list[dict[str, Any]]:
    """Average book depth (price × qty within ±band_bps of mid, docs/methodology.md §3) and spread per step.

    Depth is in quote units (USDT for the Binance pairs); books with an empty side are skipped.
    """
    return _rows(
        client,
        f"""
        SELECT symbol, venue,
               toStartOfInterval(event_time, INTERVAL {{step:UInt32}} SECOND) AS bucket,
               avg(book_bid_depth) AS bid_depth, avg(book_ask_depth) AS ask_depth,
               avg(book_bid_depth + book_ask_depth) AS depth, avg(book_spread_bps) AS spread_bps,
               count() AS snapshots
        FROM (
            SELECT symbol, venue, event_time,
                   (bid_prices[1] + ask_prices[1]) / 2 AS mid,
                   arraySum((p, q) -> if(p >= mid * (1 - {{band:Float64}} / 10000), p * q, 0),
                            bid_prices, bid_qtys) AS book_bid_depth,
                   arraySum((p, q) -> if(p <= mid * (1 + {{band:Float64}} / 10000), p * q, 0),
                            ask_prices, ask_qtys) AS book_ask_depth,
                   (ask_prices[1] - bid_prices[1]) / mid * 10000 AS book_spread_bps
            FROM orderbook FINAL
            WHERE symbol = {{symbol:String}} AND notEmpty(bid_prices) AND notEmpty(ask_prices)
              AND ({{venue:{_S}}} IS NULL OR venue = {{venue:{_S}}})
              AND ({{start:{_T}}} IS NULL OR event_time >= {{start:{_T}}})
              AND ({{end:{_T}}} IS NULL OR event_time < {{end:{_T}}})
        )
        GROUP BY symbol, venue, bucket
        ORDER BY venue, bucket
        """,
        symbol=symbol, venue=venue, start=start, end=end, band=float(band_bps), step=int(step_seconds),
    )


def index_history(
    client: Client,
    index_id: str = "SYI",
    start: datetime | None = None,
    end: datetime | None = None,
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per bucket, oldest first: its latest revision, or with `as_of` the latest revision
    published at or before that time (docs/methodology.md §9); every revision stays in the table."""
    return _rows(
        client,
        f"""
        SELECT index_id, bucket_end, syi_percent, syi_decimal, status, coverage,
               risk_premium_decimal, revision, supersedes_cid, published_at, cid
        FROM index_values FINAL
        WHERE index_id = {{index_id:String}}
          AND ({{start:{_T}}} IS NULL OR bucket_end >= {{start:{_T}}})
          AND ({{end:{_T}}} IS NULL OR bucket_end < {{end:{_T}}})
          AND ({{as_of:{_T}}} IS NULL OR published_at <= {{as_of:{_T}}})
        ORDER BY bucket_end, revision DESC
        LIMIT 1 BY bucket_end
        """,
        index_id=index_id, start=start, end=end, as_of=as_of,
    )


def index_revisions(client: Client, bucket_end: datetime, index_id: str = "SYI") -> list[dict[str, Any]]:
    """Every stored revision of one bucket, oldest first."""
    return _rows(
        client,
        """
        SELECT index_id, bucket_end, revision, syi_percent, syi_decimal, status, supersedes_cid,
               published_at, prev_cid, cid
        FROM index_values FINAL
        WHERE index_id = {index_id:String} AND bucket_end = {bucket_end:DateTime64(3, 'UTC')}
        ORDER BY revision
        """,
        index_id=index_id, bucket_end=bucket_end,
    )


def table_counts(client: Client) -> list[dict[str, Any]]:
    """Rows stored per table, and rows after collapsing duplicates (the difference awaits a merge)."""
    counts = []
    for table in TABLES:
        stored = client.query(f"SELECT count() FROM {table.name}").result_rows[0][0]
        unique = client.query(f"SELECT count() FROM {table.name} FINAL").result_rows[0][0]
        counts.append({"table": table.name, "rows": stored, "unique_rows": unique})
    return counts


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    raise TypeError


def main(argv: list[str] | None = None) -> None:
    from store_clickhouse.clickhouse_store import connect
    from store_clickhouse.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m store_clickhouse.queries", description=__doc__.split("\n")[0])
    parser.add_argument("query", choices=["latest", "ohlc", "depth", "index", "revisions", "counts"])
    parser.add_argument("--dsn", help="default: SYI_CLICKHOUSE_DSN or the embedded chDB store")
    parser.add_argument("--database", help="default: SYI_CLICKHOUSE_DATABASE or the DSN's")
    parser.add_argument("--symbol", help="required by ohlc and depth")
    parser.add_argument("--venue")
    parser.add_argument("--index-id", default="SYI")
    parser.add_argument("--start", type=parse_utc, help="e.g. 2026-11-27T10:00:00Z (inclusive)")
    parser.add_argument("--end", type=parse_utc, help="exclusive")
    parser.add_argument("--as-of", type=parse_utc, help="index: what had been published at this time")
    parser.add_argument("--bucket-end", type=parse_utc, help="required by revisions")
    parser.add_argument("--band-bps", type=float, default=50.0)
    parser.add_argument("--step-seconds", type=int, default=60)
    args = parser.parse_args(argv)
    if args.query in ("ohlc", "depth") and not args.symbol:
        parser.error(f"{args.query} needs --symbol")
    if args.query == "revisions" and not args.bucket_end:
        parser.error("revisions needs --bucket-end")

    settings = Settings()
    client = connect(args.dsn or settings.clickhouse_dsn, args.database or settings.clickhouse_database)
    try:
        if args.query == "latest":
            rows = latest_prices(client, args.symbol)
        elif args.query == "ohlc":
            rows = ohlc_per_minute(client, args.symbol, args.venue, args.start, args.end)
        elif args.query == "depth":
            rows = depth_over_time(
                client, args.symbol, args.venue, args.start, args.end, args.band_bps, args.step_seconds
            )
        elif args.query == "index":
            rows = index_history(client, args.index_id, args.start, args.end, args.as_of)
        elif args.query == "revisions":
            rows = index_revisions(client, args.bucket_end, args.index_id)
        else:
            rows = table_counts(client)
    finally:
        client.close()
    for row in rows:
        sys.stdout.buffer.write(orjson.dumps(row, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME) + b"\n")


if __name__ == "__main__":
    main()
