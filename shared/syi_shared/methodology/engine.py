"""The two incremental engines both the batch calculator and the Bytewax services drive.

The formulas are docs/methodology.md's (§n below is its section n).
A caller observes input messages, then closes minute buckets in ascending order with no
gaps. `close_bucket(t)` sees only observations with event_time < t, so a streaming caller
may observe later messages early. Results depend only on the messages (event time,
ingest time, position), never on arrival order or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from syi_shared.methodology import audit
from syi_shared.methodology.apy import effective_apy, pool_counts
from syi_shared.methodology.index import aggregate, exclusion_reason, status
from syi_shared.methodology.liquidity import book_depth, liquidity_score, measures
from syi_shared.methodology.params import Methodology
from syi_shared.methodology.peg import dev_bps, dev_pct, huber, score_from_mean_loss, sigma_from_sums
from syi_shared.methodology.prices import USD, VenueQuote, symbol_price, to_usd, usd_reference
from syi_shared.methodology.ray import ray as ray_of
from syi_shared.methodology.ray import s_worst as s_worst_of
from syi_shared.methodology.state import ExactWindow, IndexState, RayState, SortKey
from syi_shared.methodology.tbill import discount_to_apy, risk_premium
from syi_shared.methodology.weights import CandidateView, rebalance
from syi_shared.models import (
    Constituent,
    IndexValue,
    LiquidityMetrics,
    MarketCap,
    OrderBook,
    PegMetrics,
    PoolYield,
    PriceTick,
    RayRecord,
    TBill,
)
from syi_shared.timefmt import millis, time_text
from syi_shared.topics import CC_ORDERBOOK, CC_PRICES, DL_APY, EX_MKTCAP, RAY_CALCULATED, TRAD_TBILL

Position = tuple[int, int]  # (partition, offset) on Kafka, (0, line number) in a tape

BUCKET_MS = 60_000
DAY_MS = 86_400_000
INDEX_ID = "SYI"
TBILL_SERIES = "DTB3"

# Flags, listed on a record in this order.
STALE_PRICE = "stale_price"
STALE_BOOK = "stale_book"
NO_APY = "no_apy"
USD_REFERENCE_ASSUMED = "usd_reference_assumed"
APY_HIGH = "apy_high"
APY_CAPPED = "apy_capped"
REBALANCED = "rebalanced"
REBALANCE_FAILED = "rebalance_failed"
CAP_INFEASIBLE = "cap_infeasible"
NO_TBILL = "no_tbill"

def bucket_end_of(event_time_ms: int) -> int:
    """The END (ms) of the minute bucket holding an event: [t − 60 s, t)."""
    return event_time_ms // BUCKET_MS * BUCKET_MS + BUCKET_MS


def sort_key(value: Any, position: Position) -> SortKey:
    return (millis(value.event_time), millis(value.ingest_time), position[0], position[1])


def _check_next(last_ms: int | None, bucket_end_ms: int) -> None:
    if bucket_end_ms % BUCKET_MS:
        raise ValueError(f"bucket end {bucket_end_ms} is not a whole minute")
    if last_ms is not None and bucket_end_ms != last_ms + BUCKET_MS:
        raise ValueError(f"buckets close in order without gaps: expected {time_text(last_ms + BUCKET_MS)}, got {time_text(bucket_end_ms)}")


def _max_ms(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


@dataclass(frozen=True)
class RayBucket:
    """Everything ray-calc publishes for one bucket, one entry per candidate in file order."""

    bucket_end_ms: int
    peg: list[PegMetrics]
    liquidity: list[LiquidityMetrics]
    rays: list[RayRecord]


class RayEngine:
    """cc.prices, cc.orderbook, dl.apy → metrics.peg, metrics.liquidity, ray.calculated."""

    INPUT_TOPICS = (CC_PRICES, CC_ORDERBOOK, DL_APY)

    def __init__(self, methodology: Methodology, state: RayState | None = None) -> None:
        self.methodology = methodology
        self._state = state if state is not None else RayState()

    @property
    def state(self) -> RayState:
        return self._state

    def observe(self, topic: str, value: PriceTick | OrderBook | PoolYield, position: Position = (0, 0)) -> None:
        key = sort_key(value, position)
        if topic == CC_PRICES and isinstance(value, PriceTick):
            self._state.prices.add((value.symbol, value.venue), key, value)
        elif topic == CC_ORDERBOOK and isinstance(value, OrderBook):
            self._state.books.add((value.venue, value.base, value.quote), key, value)
        elif topic == DL_APY and isinstance(value, PoolYield):
            self._state.pools.add(value.pool, key, value)
        else:
            raise ValueError(f"RayEngine does not take {type(value).__name__} from topic {topic!r}")

    def close_bucket(self, bucket_end_ms: int) -> RayBucket:
        state, m, t = self._state, self.methodology, bucket_end_ms
        _check_next(state.last_bucket_ms, t)
        version, bucket_text = m.version, time_text(t)
        candidates = m.symbols

        # §2.1: latest fresh price per (symbol, venue); §2.2: USD references from USD quotes.
        quotes: dict[str, list[VenueQuote]] = {}
        for (symbol, venue), (key, tick) in state.prices.take_fresh(t, m.freshness_seconds.price_ms).items():
            quotes.setdefault(symbol, []).append(VenueQuote(venue, tick.quote, tick.price, key[0]))
        references: dict[str, float] = {}
        reference_event: dict[str, int] = {}
        for symbol, symbol_quotes in quotes.items():
            reference = usd_reference(symbol_quotes)
            if reference is not None:
                references[symbol] = reference
                reference_event[symbol] = max(q.event_ms for q in symbol_quotes if q.quote == USD)

        # §3.1–3.2: depth of every fresh, two-sided book, in USD.
        depths: dict[str, list[tuple[float, bool, int | None]]] = {symbol: [] for symbol in candidates}
        for (venue, base, quote), (key, book) in sorted(state.books.take_fresh(t, m.freshness_seconds.orderbook_ms).items()):
            depth = book_depth(book.bids, book.asks, m.liquidity.band_bps)
            if depth is None:
                continue
            depth_usd, assumed = to_usd(depth, quote, references)
            used_ms = _max_ms(key[0], None if assumed or quote == USD else reference_event.get(quote))
            for symbol in candidates:
                if measures(base, quote, symbol, candidates):
                    depths[symbol].append((depth_usd, assumed, used_ms))

        # §4.1: latest fresh observation per pool, kept when it passes the filters.
        rates: dict[str, list[tuple[float, float]]] = {symbol: [] for symbol in candidates}
        apy_used_ms: dict[str, int] = {}
        for _, (key, pool) in sorted(state.pools.take_fresh(t, m.freshness_seconds.apy_ms).items()):
            if pool.symbol in rates and pool_counts(pool, pool.symbol, m.apy):
                rates[pool.symbol].append((pool.tvl_usd, pool.apy_base_pct))  # type: ignore[arg-type]  # not None here
                apy_used_ms[pool.symbol] = max(key[0], apy_used_ms.get(pool.symbol, key[0]))

        peg_rows, liquidity_rows, ray_rows = [], [], []
        for candidate in m.constituents:
            symbol = candidate.symbol
            symbol_quotes = sorted(quotes.get(symbol, []), key=lambda q: q.venue)
            price = symbol_price(symbol_quotes, references)
            price_used_ms = _max_ms(
                price.max_event_ms,
                *(reference_event.get(q.quote) for q in symbol_quotes if q.quote != USD),
            )
            peg_score, sigma, dev = self._peg_windows(symbol, t, price.price)

            book_entries = depths[symbol]
            depth_usd = math.fsum(entry[0] for entry in book_entries) if book_entries else None
            books_assumed = any(entry[1] for entry in book_entries)
            liquidity = liquidity_score(depth_usd, m.liquidity.reference_depth_usd) if depth_usd is not None else None

            apy = effective_apy(rates[symbol], m.apy)

            worst = s_worst_of(peg_score, liquidity, candidate.counterparty_score)
            ray_value = ray_of(apy.value, worst, m.ray.kappa) if apy.value is not None and worst is not None else None

            peg_flags = [STALE_PRICE] if price.price is None else []
            peg_flags += [USD_REFERENCE_ASSUMED] if price.assumed else []
            liquidity_flags = [STALE_BOOK] if depth_usd is None else []
            liquidity_flags += [USD_REFERENCE_ASSUMED] if books_assumed else []
            ray_flags = [flag for flag, on in (
                (STALE_PRICE, price.price is None),
                (STALE_BOOK, depth_usd is None),
                (NO_APY, apy.value is None),
                (USD_REFERENCE_ASSUMED, price.assumed or books_assumed),
                (APY_HIGH, apy.high),
                (APY_CAPPED, apy.capped),
            ) if on]
            newest = _max_ms(price_used_ms, *(entry[2] for entry in book_entries), apy_used_ms.get(symbol))

            peg_rows.append(PegMetrics(
                symbol=symbol, bucket_end=bucket_text, price_usd=price.price, dev_bps=dev,
                peg_score=peg_score, sigma_peg_pct=sigma, venues=price.venues, flags=peg_flags,
                methodology_version=version,
            ))
            liquidity_rows.append(LiquidityMetrics(
                symbol=symbol, bucket_end=bucket_text, depth_usd=depth_usd, liquidity_score=liquidity,
                books=len(book_entries), flags=liquidity_flags, methodology_version=version,
            ))
            ray_rows.append(RayRecord(
                symbol=symbol, bucket_end=bucket_text, price_usd=price.price, dev_bps=dev,
                peg_score=peg_score, sigma_peg_pct=sigma, depth_usd=depth_usd, liquidity_score=liquidity,
                counterparty_score=candidate.counterparty_score, apy_eff_decimal=apy.value, s_worst=worst,
                ray_decimal=ray_value, flags=ray_flags, methodology_version=version,
                inputs_max_event_time=time_text(newest) if newest is not None else None,
            ))

        state.last_bucket_ms = t
        return RayBucket(t, peg_rows, liquidity_rows, ray_rows)

    def _peg_windows(self, symbol: str, t: int, price: float | None) -> tuple[float | None, float | None, float | None]:
        """Add this bucket's price to the 24 h loss and 30 d σ windows; (peg_score, σ, dev_bps)."""
        peg = self.methodology.peg
        losses = self._state.peg_losses.setdefault(symbol, ExactWindow(peg.window_minutes * BUCKET_MS))
        devs = self._state.peg_prices.setdefault(symbol, ExactWindow(peg.sigma_window_days * DAY_MS))
        losses.evict(t)
        devs.evict(t)
        if price is None:
            return None, None, None
        dev = dev_bps(price)
        losses.add(t, huber(dev, peg.huber_delta_bps))
        devs.add(t, dev_pct(price))
        score = score_from_mean_loss(losses.mean(), peg.huber_delta_bps, peg.zero_score_bps)
        return score, sigma_from_sums(devs.total, devs.total_sq, len(devs)), dev


class IndexEngine:
    """ray.calculated, ex.mktcap, trad.tbill → syi.calculated (with rebalances and the audit chain)."""

    INPUT_TOPICS = (RAY_CALCULATED, EX_MKTCAP, TRAD_TBILL)

    def __init__(self, methodology: Methodology, state: IndexState | None = None) -> None:
        self.methodology = methodology
        self._state = state if state is not None else IndexState()
        self._inputs = audit.InputHasher(audit.RECIPE)

    @property
    def state(self) -> IndexState:
        return self._state

    def observe(self, topic: str, value: RayRecord | MarketCap | TBill, position: Position = (0, 0)) -> None:
        if topic == RAY_CALCULATED and isinstance(value, RayRecord):
            bucket = millis(value.bucket_end)
            if self._state.last_bucket_ms is None or bucket > self._state.last_bucket_ms:
                self._state.rays.setdefault(bucket, {})[value.symbol] = value
        elif topic == EX_MKTCAP and isinstance(value, MarketCap):
            self._state.market_caps.add(value.symbol, sort_key(value, position), value)
        elif topic == TRAD_TBILL and isinstance(value, TBill):
            self._state.tbills.add(value.series, sort_key(value, position), value)
        else:
            raise ValueError(f"IndexEngine does not take {type(value).__name__} from topic {topic!r}")

    def close_bucket(self, bucket_end_ms: int, published_at: str) -> IndexValue | None:
        state, m, t = self._state, self.methodology, bucket_end_ms
        _check_next(state.last_bucket_ms, t)
        state.last_bucket_ms = t
        rays = {symbol: record for symbol, record in state.rays.pop(t, {}).items() if symbol in m.symbols}
        for bucket in [bucket for bucket in state.rays if bucket < t]:
            del state.rays[bucket]  # records of buckets already closed can no longer count
        caps = {symbol: cap for symbol, (_, cap) in state.market_caps.take_fresh(t, m.freshness_seconds.market_cap_ms).items()}
        tbill = state.tbills.take_fresh(t, m.freshness_seconds.tbill_ms).get(TBILL_SERIES)
        tbill_used = tbill[1] if tbill is not None and tbill[1].basis == "discount" else None

        flags: list[str] = []
        caps_used: dict[str, MarketCap] = {}
        if state.rebalance_due or t % DAY_MS == BUCKET_MS:
            views = []
            for symbol in m.symbols:
                record, cap = rays.get(symbol), caps.get(symbol)
                views.append(CandidateView(
                    symbol=symbol,
                    market_cap_usd=cap.market_cap_usd if cap is not None else None,
                    price_usd=record.price_usd if record is not None else None,
                    liquidity_score=record.liquidity_score if record is not None else None,
                    sigma_peg_pct=record.sigma_peg_pct if record is not None else None,
                ))
                if cap is not None:
                    caps_used[symbol] = cap  # every market cap a rebalance looked at is an input
            outcome = rebalance(views, m)
            if outcome.weights is not None:
                state.weights = {symbol: outcome.weights[symbol] for symbol in m.symbols if symbol in outcome.weights}
                state.weight_flags = (CAP_INFEASIBLE,) if outcome.cap_infeasible else ()
                state.rebalance_due = False
                flags.append(REBALANCED)
            else:
                state.rebalance_due = True
                flags.append(REBALANCE_FAILED)
        if state.weights is None:
            return None

        reasons = {symbol: exclusion_reason(rays.get(symbol)) for symbol in state.weights}
        included = {symbol: weight for symbol, weight in state.weights.items() if reasons[symbol] is None}
        if not included:
            return None
        result = aggregate(included, {symbol: rays[symbol].ray_decimal for symbol in included})  # type: ignore[misc]

        rows = []
        for symbol, weight in state.weights.items():
            record, cap = rays.get(symbol), caps.get(symbol)
            if cap is not None:
                caps_used[symbol] = cap
            rows.append(Constituent(
                symbol=symbol,
                weight=weight,
                weight_renormalised=result.renormalised.get(symbol, 0.0),
                apy_eff_decimal=record.apy_eff_decimal if record is not None else None,
                peg_score=record.peg_score if record is not None else None,
                liquidity_score=record.liquidity_score if record is not None else None,
                counterparty_score=m.candidate(symbol).counterparty_score,
                s_worst=record.s_worst if record is not None else None,
                ray_decimal=record.ray_decimal if reasons[symbol] is None and record is not None else None,
                market_cap_usd=cap.market_cap_usd if cap is not None else None,
                excluded_reason=reasons[symbol],
            ))

        flags += list(state.weight_flags)
        tbill_apy = discount_to_apy(tbill_used.rate_pct / 100) if tbill_used is not None else None
        if tbill_apy is None:
            flags.append(NO_TBILL)

        inputs: list[tuple[str, BaseModel]] = [(RAY_CALCULATED, record) for record in rays.values()]
        inputs += [(EX_MKTCAP, cap) for cap in caps_used.values()]
        inputs += [(TRAD_TBILL, tbill_used)] if tbill_used is not None else []
        newest = _max_ms(
            *(millis(record.inputs_max_event_time) for record in rays.values() if record.inputs_max_event_time),
            *(millis(cap.event_time) for cap in caps_used.values()),
            millis(tbill_used.event_time) if tbill_used is not None else None,
        )

        body: dict[str, Any] = {
            "schema_version": 1,
            "index_id": INDEX_ID,
            "bucket_end": time_text(t),
            "syi_decimal": result.syi,
            "syi_percent": result.syi * 100,
            "methodology_version": m.version,
            "status": status(len(included), result.coverage, m.weights.n_min),
            "coverage": result.coverage,
            "hhi": result.hhi,
            "tbill_apy_decimal": tbill_apy,
            "risk_premium_decimal": risk_premium(result.syi, tbill_apy),
            "constituents": [row.model_dump(mode="json") for row in rows],
            "flags": _ordered_flags(flags),
            "inputs_max_event_time": time_text(newest) if newest is not None else None,
            "revision": 0,
            "supersedes_cid": None,
            "cid_recipe": audit.RECIPE,  # how input_cid and cid are computed (docs/audit.md)
            "input_cid": self._inputs.input_cid(inputs),
            "prev_cid": state.last_cid,
        }
        value = IndexValue.model_validate({**body, "published_at": published_at, "cid": ""})
        cid = audit.record_cid_of(value)
        value = value.model_copy(update={"cid": cid})
        state.last_cid = cid
        return value


_FLAG_ORDER = (REBALANCED, REBALANCE_FAILED, CAP_INFEASIBLE, NO_TBILL)


def _ordered_flags(flags: list[str]) -> list[str]:
    return [flag for flag in _FLAG_ORDER if flag in flags]


RAY_TOPICS = frozenset(RayEngine.INPUT_TOPICS)
INDEX_INPUT_TOPICS = frozenset((EX_MKTCAP, TRAD_TBILL))


# How far (in event time) an input may come after a later one in a run's input and still
# count: a run closes bucket t once it has read an input of bucket t + REORDER_MS. Tapes are
# in event-time order (docs/topics.md, "Tapes"), so this only bounds what a run holds back;
# short enough that an input's times are still in timefmt.millis's cache when it is observed.
REORDER_MS = 5 * BUCKET_MS

RunOutput = tuple[RayBucket, IndexValue | None]  # a closed bucket: what ray-calc and syi-calc publish


class OutOfOrder(ValueError):
    """An input of a bucket a run already closed: its input is out of event-time order by more than the run's reorder window."""

    def __init__(self, position: Position, event_ms: int, next_bucket_ms: int, reorder_ms: int) -> None:
        super().__init__(
            f"input at position {position[1]} has event time {time_text(event_ms)}, but buckets up to "
            f"{time_text(next_bucket_ms - BUCKET_MS)} are closed already: the input is out of event-time order by more "
            f"than {reorder_ms // BUCKET_MS} min (sort it by event time)")
        self.position, self.event_ms, self.next_bucket_ms = position, event_ms, next_bucket_ms


class BatchRun:
    """A batch run's bucket loop: inputs in (about) event-time order in, closed buckets out.

    `feed` holds an input back until its bucket closes and closes every bucket that the
    inputs read so far cannot change any more (all but the last `reorder_ms` of event time);
    `finish` closes the rest, up to the last input's bucket. What a run holds is the engines'
    state (bounded by the methodology's windows) plus `reorder_ms` of inputs, whatever the
    length of its input.
    """

    def __init__(self, methodology: Methodology, published_at: Callable[[int], str], reorder_ms: int = REORDER_MS) -> None:
        self.ray_engine, self.index_engine = RayEngine(methodology), IndexEngine(methodology)
        self.published_at = published_at
        self.reorder_ms = reorder_ms
        self.pending: dict[int, list[tuple[str, Any, Position]]] = {}  # bucket end -> inputs held back
        self.next_bucket_ms: int | None = None  # None until the first close (the first bucket is the smallest held)
        self.newest_bucket_ms: int | None = None

    def held(self) -> int:
        """Inputs read but not observed yet (their bucket is still open)."""
        return sum(len(inputs) for inputs in self.pending.values())

    def feed(self, topic: str, value: BaseModel, position: Position) -> Iterator[RunOutput]:
        if topic not in RAY_TOPICS and topic not in INDEX_INPUT_TOPICS:
            return  # e.g. ray.calculated in a recorded tape: the run computes its own
        event_ms = millis(value.event_time)  # type: ignore[attr-defined]
        t = bucket_end_of(event_ms)
        if self.next_bucket_ms is not None and t < self.next_bucket_ms:
            raise OutOfOrder(position, event_ms, self.next_bucket_ms, self.reorder_ms)
        self.pending.setdefault(t, []).append((topic, value, position))
        if self.newest_bucket_ms is not None and t <= self.newest_bucket_ms:
            return
        self.newest_bucket_ms = t
        close = self.next_bucket_ms if self.next_bucket_ms is not None else min(self.pending)
        while close + self.reorder_ms <= t:
            yield self._close(close)
            close += BUCKET_MS

    def finish(self) -> Iterator[RunOutput]:
        if self.newest_bucket_ms is None:
            return
        close = self.next_bucket_ms if self.next_bucket_ms is not None else min(self.pending)
        while close <= self.newest_bucket_ms:
            yield self._close(close)
            close += BUCKET_MS

    def _close(self, t: int) -> RunOutput:
        for topic, value, position in self.pending.pop(t, ()):
            if topic in RAY_TOPICS:
                self.ray_engine.observe(topic, value, position)
            else:
                self.index_engine.observe(topic, value, position)
        ray_bucket = self.ray_engine.close_bucket(t)
        for record in ray_bucket.rays:
            self.index_engine.observe(RAY_CALCULATED, record)
        self.next_bucket_ms = t + BUCKET_MS
        return ray_bucket, self.index_engine.close_bucket(t, self.published_at(t))


def iter_run(
    messages: Iterable[tuple[str, BaseModel, Position]],
    methodology: Methodology,
    published_at: Callable[[int], str],
    reorder_ms: int = REORDER_MS,
) -> Iterator[RunOutput]:
    """Batch, streamed: every bucket from the first input's to the last's, exactly as streaming
    does it, each yielded as soon as it closes (`RunOutput`: the ray bucket and the index value,
    None when the bucket publishes none). Inputs must be in event-time order give or take
    `reorder_ms`; an input later than that raises `OutOfOrder`.

    Messages of other topics (e.g. ray.calculated in a recorded tape) are ignored: the run
    computes its own ray records.
    """
    run = BatchRun(methodology, published_at, reorder_ms)
    for topic, value, position in messages:
        yield from run.feed(topic, value, position)
    yield from run.finish()


def compute_run(
    messages: Iterable[tuple[str, BaseModel, Position]],
    methodology: Methodology,
    published_at: Callable[[int], str],
) -> tuple[list[RayBucket], list[IndexValue]]:
    """`iter_run` collected into lists, for inputs in any order (they are in memory anyway):
    sorted by bucket first (stable, so ties keep their order)."""
    inputs = [message for message in messages if message[0] in RAY_TOPICS or message[0] in INDEX_INPUT_TOPICS]
    inputs.sort(key=lambda message: bucket_end_of(millis(message[1].event_time)))  # type: ignore[attr-defined]
    ray_buckets: list[RayBucket] = []
    values: list[IndexValue] = []
    for ray_bucket, value in iter_run(inputs, methodology, published_at):
        ray_buckets.append(ray_bucket)
        if value is not None:
            values.append(value)
    return ray_buckets, values
