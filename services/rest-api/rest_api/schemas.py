"""Response models of the API (what the OpenAPI document describes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syi_shared.models import Constituent, IndexValue, RayRecord


class IndexCurrent(IndexValue):
    """The newest `syi.calculated` record, exactly as published, plus its age."""

    age_seconds: float = Field(description="Seconds between bucket_end and now")
    stale: bool = Field(description="True when the value is older than the staleness limit (300 s by default)")


class PrototypeCurrent(IndexCurrent):
    """`/api/index/current`: the record plus the prototype's `value` (percent) and `timestamp`."""

    value: float = Field(description="The index in percent (= syi_percent)")
    timestamp: str = Field(description="The value's bucket_end")


class LiveValue(BaseModel):
    """The ticker: the newest value and whether it is fresh."""

    index_id: str
    value: float = Field(description="The index in percent (= syi_percent)")
    syi_decimal: float
    syi_percent: float
    timestamp: str = Field(description="bucket_end of the newest value")
    status: str = Field(description="'ok' or 'degraded' as published")
    coverage: float
    risk_premium_decimal: float | None
    constituents_count: int = Field(description="Constituents included in this value")
    last_update_seconds: float = Field(description="Seconds since bucket_end")
    stale: bool = Field(description="True when the newest value is older than the staleness limit")
    stale_after_seconds: float


class IndexPoint(BaseModel):
    timestamp: str = Field(description="Start of the interval (for 1m: the minute value's bucket_end)")
    syi_decimal: float = Field(description="Average over the interval, decimal (0.0447 = 4.47 %)")
    syi_percent: float = Field(description="Average over the interval, percent")
    syi_decimal_min: float
    syi_decimal_max: float
    tbill_apy_decimal: float | None
    risk_premium_decimal: float | None
    coverage: float
    samples: int = Field(description="Minute values averaged")
    revision: int | None = Field(
        default=None,
        description="1m: the minute value's revision (0 = as first published, n = its n-th restatement); "
        "null for averaged intervals",
    )


class HistoryPage(BaseModel):
    interval: str
    order: str
    start: str | None
    end: str | None
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page")
    next_offset: int | None = Field(description="Or pass as `offset`; null on the last page")


class IndexHistory(HistoryPage):
    index_id: str
    as_of: str | None = Field(
        default=None,
        description="The `as_of` time read at (null: the latest revisions); pass it again with the cursor",
    )
    items: list[IndexPoint]


class IndexRevision(IndexValue):
    """One published record of a bucket, exactly as published."""

    restatement_reason: str | None = Field(
        default=None, description="Why this revision was published (null on revision 0)")
    superseded: bool = Field(description="True when a later revision of the bucket exists")


class IndexRevisions(BaseModel):
    index_id: str
    bucket_end: str
    count: int = Field(description="Revisions published for the bucket")
    latest_revision: int = Field(description="The revision every other endpoint serves by default")
    items: list[IndexRevision] = Field(description="Oldest first: revision 0, 1, …")


class PrototypePoint(BaseModel):
    timestamp: str
    value: float = Field(description="The index in percent")
    syi_decimal: float
    syi_percent: float
    risk_premium_decimal: float | None
    samples: int


class ConstituentRow(Constituent):
    weight_percent: float = Field(description="weight × 100")
    included: bool


class Constituents(BaseModel):
    index_id: str
    bucket_end: str
    syi_decimal: float
    syi_percent: float
    status: str
    coverage: float
    included: int
    excluded: int
    constituents: list[ConstituentRow]


class PrototypeConstituent(ConstituentRow):
    name: str
    raw_apy: float | None = Field(description="apy_eff_decimal in percent")
    ray: float | None = Field(description="ray_decimal in percent")


class PrototypeConstituents(BaseModel):
    index_value: float = Field(description="The index in percent")
    timestamp: str
    constituents: list[PrototypeConstituent]
    total_constituents: int


class Summary(BaseModel):
    current: float | None = Field(description="The newest value in the window")
    first: float | None
    min: float | None
    max: float | None
    mean: float | None
    stddev: float | None


class Statistics(BaseModel):
    index_id: str
    start: str
    end: str
    days: float
    count: int
    degraded_count: int = Field(description="Values published with status other than 'ok'")
    syi_decimal: Summary
    syi_percent: Summary
    change_percent_points: float | None = Field(description="last − first, in percent points")
    mean_risk_premium_decimal: float | None


class RayCurrent(RayRecord):
    """The newest `ray.calculated` record of a symbol, exactly as published, plus its age."""

    ray_percent: float | None
    age_seconds: float
    stale: bool


class RayPoint(BaseModel):
    timestamp: str
    ray_decimal: float | None
    ray_percent: float | None
    ray_decimal_min: float | None
    ray_decimal_max: float | None
    apy_eff_decimal: float | None
    peg_score: float | None
    liquidity_score: float | None
    s_worst: float | None
    price_usd: float | None
    samples: int


class RayHistory(HistoryPage):
    symbol: str
    items: list[RayPoint]


class TBillObservation(BaseModel):
    series: str
    observation_date: str
    rate_pct: float
    basis: str
    source: str
    event_time: str


class RiskPremiumCurrent(BaseModel):
    index_id: str
    bucket_end: str
    syi_decimal: float
    syi_percent: float
    tbill_apy_decimal: float | None
    risk_premium_decimal: float | None = Field(description="syi − T-bill APY, decimal; null without a fresh T-bill")
    risk_premium_bps: float | None
    tbill: TBillObservation | None = Field(description="The newest stored T-bill observation")


class RiskPremiumPoint(BaseModel):
    timestamp: str
    risk_premium_decimal: float | None
    syi_decimal: float
    tbill_apy_decimal: float | None
    samples: int


class RiskPremiumHistory(HistoryPage):
    index_id: str
    items: list[RiskPremiumPoint]


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    detail: Any = Field(description="What went wrong")


class ValidationErrorBody(BaseModel):
    error: str = Field(description="Always 'validation_error'")
    message: str = Field(description="One line naming each invalid parameter, e.g. 'query.interval: ...'")
    detail: list[dict[str, Any]] = Field(description="Each error: loc, msg, type, input")


class Health(BaseModel):
    status: Literal["ok", "degraded", "failed"] = Field(description="ok; degraded (running, not ready); failed")
    reasons: list[str] = Field(description="Why it is not ok, e.g. 'database: error: ConnectionRefusedError'")
    database: str = Field(description="ok, or the error of the last ping")
