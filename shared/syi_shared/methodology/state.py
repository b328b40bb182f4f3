"""Value objects holding what must survive between minute buckets.

Both engines keep their whole memory in one of these (`RayState`, `IndexState`), so a
streaming service can snapshot it (pickle, or `to_dict()` → JSON) and resume from it.
Everything is keyed and ordered explicitly; nothing depends on arrival order.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from syi_shared.methodology.stats import fixed_mean, to_fixed
from syi_shared.models import MarketCap, OrderBook, PoolYield, PriceTick, RayRecord, TBill

# "Latest as of t" order (docs/methodology.md §0): event time, then ingest time, then position (partition, offset).
SortKey = tuple[int, int, int, int]

V = TypeVar("V", bound=BaseModel)


def _before(entries: list[tuple[SortKey, Any]], bucket_end_ms: int) -> int:
    """How many entries (ordered by SortKey) have event_time < t. The probe `((t,),)` sorts
    after every sort key of an earlier event and before every other, and no key equals it."""
    if entries and entries[-1][0][0] < bucket_end_ms:
        return len(entries)  # the usual case at a close: every observation is before t
    return bisect.bisect_left(entries, ((bucket_end_ms,),))


@dataclass
class History(Generic[V]):
    """Observations per key, ordered by SortKey, pruned as buckets close.

    Only what can still be "the latest as of" a future bucket is kept: closing bucket t
    drops everything older than the latest observation before t, and drops that one too
    when it is already stale (an older observation can only be staler).
    """

    by_key: dict[Hashable, list[tuple[SortKey, V]]] = field(default_factory=dict)

    def add(self, key: Hashable, sort_key: SortKey, value: V) -> None:
        entries = self.by_key.setdefault(key, [])
        if not entries or entries[-1][0] < sort_key:
            entries.append((sort_key, value))  # the usual case: arrivals in order
            return
        index = bisect.bisect_left(entries, sort_key, key=lambda entry: entry[0])
        if index < len(entries) and entries[index][0] == sort_key:
            entries[index] = (sort_key, value)  # the same message delivered twice
        else:
            entries.insert(index, (sort_key, value))

    def latest(self, key: Hashable, bucket_end_ms: int) -> tuple[SortKey, V] | None:
        """The latest observation with event_time < t (no pruning)."""
        entries = self.by_key.get(key)
        if not entries:
            return None
        index = _before(entries, bucket_end_ms)
        return entries[index - 1] if index else None

    def take_fresh(self, bucket_end_ms: int, max_age_ms: int) -> dict[Hashable, tuple[SortKey, V]]:
        """Every key's latest observation as of t when it is fresh, pruning what can no longer count."""
        fresh: dict[Hashable, tuple[SortKey, V]] = {}
        for key in list(self.by_key):
            entries = self.by_key[key]
            index = _before(entries, bucket_end_ms)
            if index == 0:
                continue
            latest = entries[index - 1]
            if bucket_end_ms - latest[0][0] <= max_age_ms:
                del entries[: index - 1]
                fresh[key] = latest
            else:
                del entries[:index]
                if not entries:
                    del self.by_key[key]
        return fresh

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.by_key.values())

    def to_list(self) -> list[Any]:
        return [
            [list(key) if isinstance(key, tuple) else key, [[list(sort_key), value.model_dump(mode="json")] for sort_key, value in entries]]
            for key, entries in self.by_key.items()
        ]

    @classmethod
    def from_list(cls, items: list[Any], model: type[V]) -> History[V]:
        history: History[V] = cls()
        for key, entries in items:
            history.by_key[tuple(key) if isinstance(key, list) else key] = [
                (tuple(sort_key), model.model_validate(value)) for sort_key, value in entries  # type: ignore[misc]
            ]
        return history


@dataclass
class ExactWindow:
    """Values of the buckets labelled in (t − span, t], with exact running Σx and Σx².

    The sums are integers (see stats.to_fixed), so adding and evicting never drifts and the
    mean/variance equal a fresh two-pass computation over the window, rounded once.
    """

    span_ms: int
    items: deque[tuple[int, float]] = field(default_factory=deque)
    total: int = 0
    total_sq: int = 0

    def add(self, bucket_end_ms: int, value: float) -> None:
        fixed = to_fixed(value)
        self.items.append((bucket_end_ms, value))
        self.total += fixed
        self.total_sq += fixed * fixed

    def evict(self, bucket_end_ms: int) -> None:
        oldest_kept = bucket_end_ms - self.span_ms  # labels <= t − span are outside (t − span, t]
        while self.items and self.items[0][0] <= oldest_kept:
            _, value = self.items.popleft()
            fixed = to_fixed(value)
            self.total -= fixed
            self.total_sq -= fixed * fixed

    def mean(self) -> float:
        return fixed_mean(self.total, len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return iter(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"span_ms": self.span_ms, "items": [list(item) for item in self.items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExactWindow:
        window = cls(data["span_ms"])
        for bucket_end_ms, value in data["items"]:
            window.add(bucket_end_ms, value)
        return window


@dataclass
class RayState:
    """RayEngine memory: live observations, the per-symbol peg windows, the last closed bucket."""

    prices: History[PriceTick] = field(default_factory=History)  # key (symbol, venue)
    books: History[OrderBook] = field(default_factory=History)  # key (venue, base, quote)
    pools: History[PoolYield] = field(default_factory=History)  # key pool id
    peg_losses: dict[str, ExactWindow] = field(default_factory=dict)  # Huber losses, 24 h
    peg_prices: dict[str, ExactWindow] = field(default_factory=dict)  # 100·(p − 1), 30 d
    last_bucket_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prices": self.prices.to_list(),
            "books": self.books.to_list(),
            "pools": self.pools.to_list(),
            "peg_losses": {symbol: window.to_dict() for symbol, window in self.peg_losses.items()},
            "peg_prices": {symbol: window.to_dict() for symbol, window in self.peg_prices.items()},
            "last_bucket_ms": self.last_bucket_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RayState:
        return cls(
            prices=History.from_list(data["prices"], PriceTick),
            books=History.from_list(data["books"], OrderBook),
            pools=History.from_list(data["pools"], PoolYield),
            peg_losses={symbol: ExactWindow.from_dict(window) for symbol, window in data["peg_losses"].items()},
            peg_prices={symbol: ExactWindow.from_dict(window) for symbol, window in data["peg_prices"].items()},
            last_bucket_ms=data["last_bucket_ms"],
        )


@dataclass
class IndexState:
    """IndexEngine memory: pending ray records, market caps, T-bills, weights in force, chain tip."""

    rays: dict[int, dict[str, RayRecord]] = field(default_factory=dict)  # bucket end ms -> symbol -> record
    market_caps: History[MarketCap] = field(default_factory=History)  # key symbol
    tbills: History[TBill] = field(default_factory=History)  # key series
    weights: dict[str, float] | None = None  # the weight set in force (file order), None before any
    weight_flags: tuple[str, ...] = ()  # flags that travel with the weight set (cap_infeasible)
    rebalance_due: bool = True  # the run's first bucket rebalances; a failure keeps it due
    last_bucket_ms: int | None = None
    last_cid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rays": {str(bucket): {symbol: record.model_dump(mode="json") for symbol, record in records.items()} for bucket, records in self.rays.items()},
            "market_caps": self.market_caps.to_list(),
            "tbills": self.tbills.to_list(),
            # pairs, not an object: the order is the file's, and JSON tools may sort object keys
            "weights": [[symbol, weight] for symbol, weight in self.weights.items()] if self.weights is not None else None,
            "weight_flags": list(self.weight_flags),
            "rebalance_due": self.rebalance_due,
            "last_bucket_ms": self.last_bucket_ms,
            "last_cid": self.last_cid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexState:
        return cls(
            rays={int(bucket): {symbol: RayRecord.model_validate(record) for symbol, record in records.items()} for bucket, records in data["rays"].items()},
            market_caps=History.from_list(data["market_caps"], MarketCap),
            tbills=History.from_list(data["tbills"], TBill),
            weights=_weights(data["weights"]),
            weight_flags=tuple(data["weight_flags"]),
            rebalance_due=data["rebalance_due"],
            last_bucket_ms=data["last_bucket_ms"],
            last_cid=data["last_cid"],
        )


def _weights(data: list[list[Any]] | dict[str, float] | None) -> dict[str, float] | None:
    if data is None:
        return None
    return dict(data.items()) if isinstance(data, dict) else {symbol: weight for symbol, weight in data}
