"""pydantic models of every topic payload (docs/topics.md is the contract: names and units as written there).

Validation is strict where the contract is: finite numbers that are never strings (no
coercion: JSON 1 is a number, "1" is not), `...Z` UTC times, upper-case symbols, lower-case
venue ids, non-negative sizes, bids descending and asks ascending. The input topics also
carry the plausibility bounds of docs/topics.md (`syi_shared.bounds`), so every
construction and every decode sees them.
Times stay strings in the models so a record re-serialises byte-identically; use
`timefmt.millis` / `timefmt.parse_utc` for arithmetic.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from syi_shared import bounds
from syi_shared.timefmt import millis

SCHEMA_VERSION = 1

SYMBOL_PATTERN = r"^[A-Z0-9]{2,15}$"
LOWER_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# Tickers and ids are matched by pydantic-core (a tape holds millions); `validation_reason`
# words a mismatch with these rules.
_PATTERN_RULES = {
    SYMBOL_PATTERN: "must be an upper-case ticker like 'USDC'",
    LOWER_ID_PATTERN: "must be a lower-case id like 'binance' or 'aave-v3'",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _utc_text(value: str) -> str:
    millis(value)  # checks the format; the parsed value is cached for every later reader
    return value


def _shown(value: str) -> str:
    # A reason quotes the bad input, but never all of a huge one.
    return repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value)} characters)"


def _iso_date(value: str) -> str:
    if not _DATE.match(value):
        raise ValueError(f"must be a date YYYY-MM-DD, got {_shown(value)}")
    date.fromisoformat(value)
    return value


UtcTime = Annotated[str, AfterValidator(_utc_text)]
# Strict per field, not per model: a string is never read as a number (nor as a bool),
# while JSON arrays still validate as tuples and ints as floats. Every model refuses NaN and
# infinities itself (`allow_inf_nan=False`: "Input should be a finite number").
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
Finite = Number
NonNegative = Annotated[Number, Field(ge=0)]
Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
LowerId = Annotated[str, StringConstraints(pattern=LOWER_ID_PATTERN)]
IsoDate = Annotated[str, AfterValidator(_iso_date)]
Score = Annotated[Number, Field(ge=0, le=1)]

# The plausibility bounds of the input topics (docs/topics.md): errors `out_of_range:`. They
# are pydantic-core constraints (a tape holds millions of messages, a book up to 2000 numbers;
# a Python check per number was most of a backfill's time), and `validation_reason` words
# their errors like the Python bounds' (`bounds.constraint_error`).
InputTime = Annotated[str, AfterValidator(bounds.input_time)]
Price = Annotated[Number, Field(gt=0.0, le=bounds.PRICE_MAX)]
Quantity = Annotated[Number, Field(ge=0.0, le=bounds.QUANTITY_MAX)]
UsdAmount = Annotated[Number, Field(ge=0.0, le=bounds.USD_AMOUNT_MAX)]
ApyPct = Annotated[Number, Field(ge=bounds.APY_PCT_MIN, le=bounds.APY_PCT_MAX)]
RatePct = Annotated[Number, Field(ge=bounds.RATE_PCT_MIN, le=bounds.RATE_PCT_MAX)]
Level = tuple[Price, Quantity]
Levels = Annotated[list[Level], BeforeValidator(bounds.at_most_levels)]


class TopicModel(BaseModel):
    """Base of every topic value: versioned, closed to unknown-type surprises, immutable."""

    # Extra fields are allowed (docs/topics.md: adding an optional field needs no version bump).
    model_config = ConfigDict(extra="allow", frozen=True, strict=False, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION


class Observation(TopicModel):
    """An input message: observed at event_time, received at ingest_time (not before 2009-01-03)."""

    event_time: InputTime
    ingest_time: InputTime

    @model_validator(mode="after")
    def _not_in_the_future(self) -> Observation:
        # Against its own ingest_time, never the wall clock: a tape validates the same any day.
        bounds.event_not_after_ingest(self.event_time, self.ingest_time)
        return self


class PriceTick(Observation):
    """cc.prices — key `{symbol}.{venue}`."""

    symbol: Symbol
    venue: LowerId
    pair: str | None = None
    base: Symbol
    quote: Symbol
    bid: Price | None = None
    ask: Price | None = None
    price: Price

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
    bids: Levels
    asks: Levels

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
    tvl_usd: UsdAmount
    apy_base_pct: ApyPct | None
    apy_reward_pct: ApyPct | None
    apy_pct: ApyPct | None = None
    stablecoin: Flag
    exposure: Annotated[str, Field(min_length=1)]

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError(f"must be upper-case, got {_shown(value)}")
        return value

    def key(self) -> str:
        return self.pool


class MarketCap(Observation):
    """ex.mktcap — key symbol."""

    symbol: Symbol
    market_cap_usd: UsdAmount
    price_usd: Price | None
    source: LowerId

    def key(self) -> str:
        return self.symbol


class TBill(Observation):
    """trad.tbill — key series id; event_time is when the value became known, not the date."""

    series: Symbol
    observation_date: IsoDate
    rate_pct: RatePct
    basis: Literal["discount", "investment"]
    source: LowerId

    @field_validator("observation_date")
    @classmethod
    def _known_by_event_time(cls, value: str, info: ValidationInfo) -> str:
        event_time = info.data.get("event_time")  # absent when it was itself invalid
        if event_time is not None:
            bounds.observed_by_event_date(value, event_time)
        return value

    def key(self) -> str:
        return self.series


class PegMetrics(TopicModel):
    """metrics.peg — key symbol (one per symbol per minute bucket)."""

    symbol: Symbol
    bucket_end: UtcTime
    price_usd: NonNegative | None  # 0 when a tiny price times a tiny USD rate underflows
    dev_bps: Finite | None
    peg_score: Score | None
    sigma_peg_pct: NonNegative | None
    venues: Count = 0
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
    books: Count = 0
    flags: list[str] = []
    methodology_version: str

    def key(self) -> str:
        return self.symbol


class RayRecord(TopicModel):
    """ray.calculated — key symbol (one per symbol per minute bucket)."""

    symbol: Symbol
    bucket_end: UtcTime
    price_usd: NonNegative | None  # 0 when a tiny price times a tiny USD rate underflows
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
    close_notes: list[str] = []  # locator (not hashed): operational notes about the close, e.g. idle:cc.prices/2
    # locator (not hashed): {topic: {partition: next offset}} read when the bucket closed; null from a tape
    input_offsets: dict[str, dict[str, int]] | None = None
    # Hashed: the newest event time of the inputs behind the record (null: none was used), so
    # syi-calc publishes its own `inputs_max_event_time` without seeing the raw inputs. Last, so
    # records serialise in the order they always had.
    inputs_max_event_time: UtcTime | None = None

    @model_serializer(mode="wrap")
    def _as_made(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A record made without the field (before it was declared) re-serialises, and hashes
        # inside syi's input_cid, exactly as it was published: without it.
        data = handler(self)
        if self.inputs_max_event_time is None and "inputs_max_event_time" not in self.model_fields_set:
            data.pop("inputs_max_event_time", None)
        return data

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
    revision: Annotated[Count, Field(ge=0)] = 0
    supersedes_cid: str | None = None
    # Why a revision >= 1 was published (docs/methodology.md §9), hashed. Left out of the JSON
    # when None, so revision-0 records serialise, and hash, exactly as before the field existed.
    restatement_reason: str | None = Field(default=None, exclude_if=lambda reason: reason is None)
    # How `cid` and `input_cid` were computed (docs/audit.md), hashed like any other field.
    # Absent on records made before it was named (the original recipe): left out of the JSON
    # when None, so such a record re-serialises, and hashes, exactly as it was published.
    cid_recipe: str | None = Field(default=None, exclude_if=lambda recipe: recipe is None)
    input_cid: str
    prev_cid: str | None
    cid: str
    close_notes: list[str] = []  # locator (not hashed): operational notes about the close, e.g. idle:cc.prices/2
    # locator (not hashed): {topic: {partition: next offset}} read when the bucket closed; null from a tape
    input_offsets: dict[str, dict[str, int]] | None = None

    def key(self) -> str:
        return self.index_id


class RestatementRequest(TopicModel):
    """syi.restatements — key bucket_end: `syi restate` asks syi-calc, the only producer of
    syi.calculated, to publish `record` as revision `revision` of its bucket, superseding
    `supersedes_cid` (docs/topics.md, "Revisions"). syi-calc chains it and publishes it in its
    own transaction, or dead-letters the request (`restatement_stale: ...` and kin)."""

    request_id: Annotated[str, Field(min_length=1)]
    index_id: Annotated[str, Field(min_length=1)]
    bucket_end: UtcTime
    supersedes_cid: Annotated[str, Field(min_length=1)]
    revision: Annotated[Count, Field(ge=1)]
    reason: Annotated[str, Field(min_length=1)]
    record: dict[str, Any]  # the recomputed IndexValue (syi-calc sets revision, links and cid)
    requested_at: UtcTime

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("a restatement must say why (blank reason)")
        return reason

    def key(self) -> str:
        return self.bucket_end


class ProgressMarker(BaseModel):
    """`syi.progress` — a tape player's promise: every message with event_time < `upto` has been
    produced to the listed partitions, which ended at `offsets` (next offset, per topic and partition)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal[1] = 1
    source: str
    upto: UtcTime
    offsets: dict[str, dict[str, int]]
    run_start: UtcTime | None = None  # event time of the run's first message (its first bucket)
    final: bool = False  # the run is complete: nothing more will come from this source
    announced_at: UtcTime

    def key(self) -> str:
        return self.source


class DeadLetter(BaseModel):
    """`<topic>.dlq` — the original bytes, the reason and where it came from.

    `raw_value` holds at most the first 64 KiB of the original; when it was cut,
    `raw_length` (bytes) and `raw_sha256` (hex) describe the whole original.
    """

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
    raw_length: int | None = None
    raw_sha256: str | None = None

    @model_serializer(mode="wrap")
    def _only_when_cut(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The two fields describe a cut original: an envelope that holds it whole omits them.
        data = handler(self)
        if data.get("raw_length") is None and data.get("raw_sha256") is None:
            data.pop("raw_length", None)
            data.pop("raw_sha256", None)
        return data


# Models whose every numeric constraint is a plausibility bound.
_INPUT_MODELS = frozenset(model.__name__ for model in (PriceTick, OrderBook, PoolYield, MarketCap, TBill))
REASON_ERRORS_MAX = 10  # a value with thousands of bad fields still gets a one-line reason
_NUMBER_TYPES = ("float_type", "int_type", "bool_type")


def validation_reason(error: Exception) -> str:
    """A one-line reason naming the field, e.g. `price: Input should be a finite number`.

    Plausibility errors come first and carry their kind as a prefix
    (`out_of_range: market_cap_usd: 1e+308 is above 1e13`, `future: event_time ...`),
    so a reason's first word says whether the value was implausible or malformed.
    """
    errors: list[dict[str, Any]] = getattr(error, "errors", lambda: [])()
    if not errors:
        return str(error)
    if getattr(error, "title", None) in _INPUT_MODELS:
        errors = [bounds.constraint_error(item) or item for item in errors]
    errors = sorted(errors, key=lambda item: item.get("type") not in bounds.BOUND_ERRORS)  # stable
    parts = []
    for item in errors[:REASON_ERRORS_MAX]:
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = item.get("msg", "invalid")
        kind = item.get("type")
        rule = _PATTERN_RULES.get(item.get("ctx", {}).get("pattern")) if kind == "string_pattern_mismatch" else None
        if rule is not None:
            message = f"Value error, {rule}, got {_shown(item['input'])}"
        if kind in bounds.BOUND_ERRORS:
            parts.append(f"{kind}: {location}: {message}" if location else f"{kind}: {message}")
        else:
            if kind in _NUMBER_TYPES and isinstance(item.get("input"), str):
                message += ", not a string"  # the contract's numbers are JSON numbers: no coercion
            parts.append(f"{location or 'value'}: {message}")
    if len(errors) > REASON_ERRORS_MAX:
        parts.append(f"and {len(errors) - REASON_ERRORS_MAX} more errors")
    return "; ".join(parts)


class StateRecord(BaseModel):
    """`state.<service>` — one record of a calculator's checkpoint, keyed by instance id
    (syi_shared.checkpoint, docs/streaming.md): a chunk of a full snapshot, or the close mark
    of one bucket. Closed to extra fields: a new field is a new `schema_version`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Annotated[Count, Field(ge=1)]
    kind: Literal["snapshot", "close"]
    service: Annotated[str, Field(min_length=1)]
    instance: Annotated[str, Field(min_length=1)]
    bucket_end: UtcTime | None = None  # the last closed bucket (a snapshot taken before any close: null)
    # snapshot: one slice of the snapshot's JSON text
    snapshot_id: Annotated[str, Field(min_length=1)] | None = None
    chunk: Annotated[Count, Field(ge=0)] | None = None
    chunks: Annotated[Count, Field(ge=1)] | None = None
    data: str | None = None
    # close: where the inputs were read up to, and how many records the bucket published
    input_offsets: dict[str, dict[str, Count]] | None = None
    outputs: Annotated[Count, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> StateRecord:
        snapshot = ("snapshot_id", "chunk", "chunks", "data")
        close = ("bucket_end", "input_offsets", "outputs")
        needed, foreign = (snapshot, close[1:]) if self.kind == "snapshot" else (close, snapshot)
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} record needs {', '.join(missing)}")
        present = [name for name in foreign if getattr(self, name) is not None]
        if present:
            raise ValueError(f"a {self.kind} record has no {', '.join(present)}")
        if self.chunk is not None and self.chunks is not None and self.chunk >= self.chunks:
            raise ValueError(f"chunk {self.chunk} is not below chunks {self.chunks}")
        return self

    def key(self) -> str:
        return self.instance
