"""pydantic models of every topic payload (TOPICS.md is the contract: names and units as written there).

Validation is strict where the contract is: finite numbers, `...Z` UTC times, upper-case
symbols, lower-case venue ids, non-negative sizes, bids descending and asks ascending.
Times stay strings in the models so a record re-serialises byte-identically; use
`event_dt` / `timefmt.parse_utc` for arithmetic.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from syi_shared.timefmt import parse_utc

SCHEMA_VERSION = 1

_SYMBOL = re.compile(r"^[A-Z0-9]{2,15}$")
_LOWER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _utc_text(value: str) -> str:
    parse_utc(value)
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (no NaN or Infinity)")
    return value


def _symbol(value: str) -> str:
    if not _SYMBOL.match(value):
        raise ValueError(f"must be an upper-case ticker like 'USDC', got {value!r}")
    return value


def _lower_id(value: str) -> str:
    if not _LOWER_ID.match(value):
        raise ValueError(f"must be a lower-case id like 'binance' or 'aave-v3', got {value!r}")
    return value


def _iso_date(value: str) -> str:
    if not _DATE.match(value):
        raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}")
    date.fromisoformat(value)
    return value


UtcTime = Annotated[str, AfterValidator(_utc_text)]
Finite = Annotated[float, AfterValidator(_finite)]
NonNegative = Annotated[float, AfterValidator(_finite), Field(ge=0)]
Positive = Annotated[float, AfterValidator(_finite), Field(gt=0)]
Symbol = Annotated[str, AfterValidator(_symbol)]
LowerId = Annotated[str, AfterValidator(_lower_id)]
IsoDate = Annotated[str, AfterValidator(_iso_date)]
Score = Annotated[float, AfterValidator(_finite), Field(ge=0, le=1)]
Level = tuple[Positive, NonNegative]


class TopicModel(BaseModel):
    """Base of every topic value: versioned, closed to unknown-type surprises, immutable."""

    # Extra fields are allowed (TOPICS.md: adding an optional field needs no version bump).
    model_config = ConfigDict(extra="allow", frozen=True, strict=False, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION

    def event_dt(self) -> datetime:
        return parse_utc(getattr(self, "event_time"))


class Observation(TopicModel):
    event_time: UtcTime
    ingest_time: UtcTime


class PriceTick(Observation):
    """cc.prices — key `{symbol}.{venue}`."""

    symbol: Symbol
    venue: LowerId
    pair: str | None = None
    base: Symbol
    quote: Symbol
    bid: Positive | None = None
    ask: Positive | None = None
    price: Positive

    @model_validator(mode="after")
    def _consistent(self) -> PriceTick:
        if self.symbol != self.base:
            raise ValueError(f"symbol {self.symbol!r} must equal base {self.base!r}")
        if self.bid is not None and self.ask is not None and self.bid > self.ask:
            raise ValueError(f"bid {self.bid} is above ask {self.ask} (crossed quote)")
        return self

    def key(self) -> str:
        return f"{self.symbol}.{self.venue}"


class OrderBook(Observation):
    """cc.orderbook — key `{symbol}.{venue}`; levels are [price, quantity]."""

    symbol: Symbol
    venue: LowerId
    pair: str | None = None
    base: Symbol
    quote: Symbol
    bids: list[Level]
    asks: list[Level]

    @field_validator("bids")
    @classmethod
    def _bids_descending(cls, levels: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for upper, lower in zip(levels, levels[1:]):
            if lower[0] > upper[0]:
                raise ValueError("bids must be sorted by price, descending")
        return levels

    @field_validator("asks")
    @classmethod
    def _asks_ascending(cls, levels: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for lower, upper in zip(levels, levels[1:]):
            if upper[0] < lower[0]:
                raise ValueError("asks must be sorted by price, ascending")
        return levels

    @model_validator(mode="after")
    def _symbol_is_base(self) -> OrderBook:
        if self.symbol != self.base:
            raise ValueError(f"symbol {self.symbol!r} must equal base {self.base!r}")
        return self

    def key(self) -> str:
        return f"{self.symbol}.{self.venue}"


class PoolYield(Observation):
    """dl.apy — key pool id."""

    pool: Annotated[str, Field(min_length=1)]
    project: LowerId
    chain: Annotated[str, Field(min_length=1)]
    symbol: Annotated[str, Field(min_length=1)]  # DefiLlama's pool symbol, e.g. "USDC" or "USDC-USDT"
    tvl_usd: NonNegative
    apy_base_pct: Finite | None
    apy_reward_pct: Finite | None
    apy_pct: Finite | None = None
    stablecoin: bool
    exposure: Annotated[str, Field(min_length=1)]

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError(f"must be upper-case, got {value!r}")
        return value

    def key(self) -> str:
        return self.pool


class MarketCap(Observation):
    """ex.mktcap — key symbol."""

    symbol: Symbol
    market_cap_usd: NonNegative
    price_usd: Positive | None
    source: LowerId

    def key(self) -> str:
        return self.symbol


class TBill(Observation):
    """trad.tbill — key series id; event_time is when the value became known, not the date."""

    series: Symbol
    observation_date: IsoDate
    rate_pct: Finite
    basis: Literal["discount", "investment"]
    source: LowerId

    def key(self) -> str:
        return self.series


class PegMetrics(TopicModel):
    """metrics.peg — key symbol (one per symbol per minute bucket)."""

    symbol: Symbol
    bucket_end: UtcTime
    price_usd: Positive | None
    dev_bps: Finite | None
    peg_score: Score | None
    sigma_peg_pct: NonNegative | None
    venues: int = 0
    flags: list[str] = []
    methodology_version: str

    def key(self) -> str:
        return self.symbol


class LiquidityMetrics(TopicModel):
    """metrics.liquidity — key symbol (one per symbol per minute bucket)."""

    symbol: Symbol
    bucket_end: UtcTime
    depth_usd: NonNegative | None
    liquidity_score: Score | None
    books: int = 0
    flags: list[str] = []
    methodology_version: str

    def key(self) -> str:
        return self.symbol


class RayRecord(TopicModel):
    """ray.calculated — key symbol (one per symbol per minute bucket)."""

    symbol: Symbol
    bucket_end: UtcTime
    price_usd: Positive | None
    dev_bps: Finite | None
    peg_score: Score | None
    sigma_peg_pct: NonNegative | None
    depth_usd: NonNegative | None
    liquidity_score: Score | None
    counterparty_score: Score
    apy_eff_decimal: Finite | None
    s_worst: Score | None
    ray_decimal: Finite | None
    flags: list[str]
    methodology_version: str

    def key(self) -> str:
        return self.symbol


class Constituent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    symbol: Symbol
    weight: Score
    weight_renormalised: Score
    apy_eff_decimal: Finite | None
    peg_score: Score | None
    liquidity_score: Score | None
    counterparty_score: Score
    s_worst: Score | None
    ray_decimal: Finite | None
    market_cap_usd: NonNegative | None
    excluded_reason: str | None


class IndexValue(TopicModel):
    """syi.calculated — key index id (`SYI`)."""

    index_id: Annotated[str, Field(min_length=1)]
    bucket_end: UtcTime
    syi_decimal: Finite
    syi_percent: Finite
    methodology_version: str
    status: Literal["ok", "degraded"]
    coverage: Score
    hhi: NonNegative
    tbill_apy_decimal: Finite | None
    risk_premium_decimal: Finite | None
    constituents: list[Constituent]
    flags: list[str]
    inputs_max_event_time: UtcTime | None
    published_at: UtcTime
    revision: Annotated[int, Field(ge=0)] = 0
    supersedes_cid: str | None = None
    input_cid: str
    prev_cid: str | None
    cid: str

    def key(self) -> str:
        return self.index_id


class DeadLetter(BaseModel):
    """`<topic>.dlq` — the original bytes, the reason and where it came from."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    source_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    raw_value: str
    error: str
    service: str
    failed_at: UtcTime

    def key_(self) -> str | None:
        return self.key


def validation_reason(error: Exception) -> str:
    """A one-line reason naming the field, e.g. `price: Input should be a finite number`."""
    errors: list[dict[str, Any]] = getattr(error, "errors", lambda: [])()
    if not errors:
        return str(error)
    parts = []
    for item in errors:
        location = ".".join(str(part) for part in item.get("loc", ())) or "value"
        message = item.get("msg", "invalid")
        parts.append(f"{location}: {message}")
    return "; ".join(parts)
