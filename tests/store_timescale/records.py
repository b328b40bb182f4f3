"""Topic records for storage and API tests, built from the docs/topics.md examples with overrides."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from syi_shared.models import IndexValue, LiquidityMetrics, MarketCap, PegMetrics, PoolYield, RayRecord, TBill
from syi_shared.timefmt import format_utc, parse_utc
from tests.shared import examples


def unique_symbol(prefix: str = "T") -> str:
    """An upper-case ticker no other test uses (topics are shared by the whole session)."""
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


def minutes(start: str, count: int, step: int = 1) -> list[str]:
    first = parse_utc(start)
    return [format_utc(first + timedelta(minutes=i * step)) for i in range(count)]


def shifted(text: str, seconds: float) -> str:
    return format_utc(parse_utc(text) + timedelta(seconds=seconds))


def index_value(bucket_end: str, syi_decimal: float, **changes: Any) -> IndexValue:
    data = {
        **examples.SYI,
        "bucket_end": bucket_end,
        "syi_decimal": syi_decimal,
        "syi_percent": round(syi_decimal * 100, 10),
        "inputs_max_event_time": shifted(bucket_end, -0.13),
        "published_at": shifted(bucket_end, 1.21),
        "cid": f"bafkrei{uuid.uuid4().hex}",
        **changes,
    }
    if data.get("tbill_apy_decimal") is not None and "risk_premium_decimal" not in changes:
        data["risk_premium_decimal"] = round(syi_decimal - data["tbill_apy_decimal"], 10)
    return IndexValue.model_validate(data)


def ray(symbol: str, bucket_end: str, ray_decimal: float, **changes: Any) -> RayRecord:
    return RayRecord.model_validate({**examples.RAY, "symbol": symbol, "bucket_end": bucket_end,
                                     "ray_decimal": ray_decimal, **changes})


def peg(symbol: str, bucket_end: str, **changes: Any) -> PegMetrics:
    return PegMetrics.model_validate({**examples.PEG, "symbol": symbol, "bucket_end": bucket_end, **changes})


def liquidity(symbol: str, bucket_end: str, **changes: Any) -> LiquidityMetrics:
    return LiquidityMetrics.model_validate({**examples.LIQUIDITY, "symbol": symbol, "bucket_end": bucket_end,
                                            **changes})


def pool_yield(pool: str, event_time: str, **changes: Any) -> PoolYield:
    return PoolYield.model_validate({**examples.APY, "pool": pool, "event_time": event_time,
                                     "ingest_time": shifted(event_time, 3), **changes})


def market_cap(symbol: str, event_time: str, **changes: Any) -> MarketCap:
    return MarketCap.model_validate({**examples.MKTCAP, "symbol": symbol, "event_time": event_time,
                                     "ingest_time": shifted(event_time, 2), **changes})


def tbill(series: str, observation_date: str, rate_pct: float, **changes: Any) -> TBill:
    changes.setdefault("ingest_time", changes.get("event_time", examples.TBILL["ingest_time"]))  # known when seen
    return TBill.model_validate({**examples.TBILL, "series": series, "observation_date": observation_date,
                                 "rate_pct": rate_pct, **changes})


def at(moment: datetime) -> str:
    return format_utc(moment)
