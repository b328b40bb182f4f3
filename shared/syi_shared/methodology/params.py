"""The methodology file (docs/methodology.md §10): one TOML file, loaded into a frozen, validated model.

Every key is required (a file that forgets one fails loudly rather than silently taking a
default), unknown keys are refused (a typo must not be ignored), and errors name the key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from syi_shared.topics import DAY_MS

# shared/syi_shared/methodology/params.py -> parents[3] is the repository root.
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "methodology.toml"
ENV_VAR = "SYI_METHODOLOGY"

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction01 = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class MethodologyError(ValueError):
    """A methodology file that cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Freshness(_Section):
    """Maximum ages in seconds; `*_ms` give the integer milliseconds the engines compare."""

    price: PositiveInt
    orderbook: PositiveInt
    apy: PositiveInt
    market_cap: PositiveInt
    tbill: PositiveInt

    @property
    def price_ms(self) -> int:
        return self.price * 1000

    @property
    def orderbook_ms(self) -> int:
        return self.orderbook * 1000

    @property
    def apy_ms(self) -> int:
        return self.apy * 1000

    @property
    def market_cap_ms(self) -> int:
        return self.market_cap * 1000

    @property
    def tbill_ms(self) -> int:
        return self.tbill * 1000


class Peg(_Section):
    huber_delta_bps: PositiveFloat
    zero_score_bps: PositiveFloat
    window_minutes: PositiveInt
    sigma_window_days: PositiveInt


class Liquidity(_Section):
    band_bps: PositiveFloat
    reference_depth_usd: PositiveFloat


class Apy(_Section):
    min_tvl_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    mad_k: PositiveFloat
    cap_decimal: PositiveFloat
    high_flag_decimal: PositiveFloat
    projects: tuple[str, ...]

    @field_validator("projects")
    @classmethod
    def _not_empty(cls, projects: tuple[str, ...]) -> tuple[str, ...]:
        if not projects:
            raise ValueError("the project allowlist is empty: no pool could ever count")
        return projects


class Ray(_Section):
    kappa: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Restatement(_Section):
    # A recomputed bucket is restated when its value moves by at least this much (docs/methodology.md §9).
    materiality_bp: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.1


class Weights(_Section):
    cap: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    compliance_factor: Fraction01
    n_min: PositiveInt


class Eligibility(_Section):
    min_market_cap_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    peg_low: PositiveFloat
    peg_high: PositiveFloat
    min_liquidity_score: Fraction01

    @model_validator(mode="after")
    def _ordered(self) -> Eligibility:
        if self.peg_low > self.peg_high:
            raise ValueError(f"peg_low {self.peg_low} is above peg_high {self.peg_high}")
        return self


class Candidate(_Section):
    symbol: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,15}$")]
    counterparty_score: Fraction01
    compliance_flag: bool


class Methodology(_Section):
    version: Annotated[str, Field(min_length=1)]
    freshness_seconds: Freshness
    peg: Peg
    liquidity: Liquidity
    apy: Apy
    ray: Ray
    # The one section with a default: files written before restatements existed keep loading.
    restatement: Restatement = Restatement()
    weights: Weights
    eligibility: Eligibility
    constituents: tuple[Candidate, ...]

    @field_validator("constituents")
    @classmethod
    def _unique(cls, candidates: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
        if not candidates:
            raise ValueError("no candidate constituents")
        seen: set[str] = set()
        for candidate in candidates:
            if candidate.symbol in seen:
                raise ValueError(f"symbol {candidate.symbol!r} is listed twice")
            seen.add(candidate.symbol)
        return candidates

    @property
    def symbols(self) -> tuple[str, ...]:
        """Candidate symbols in file order: the order of every per-constituent output."""
        return tuple(candidate.symbol for candidate in self.constituents)

    def candidate(self, symbol: str) -> Candidate:
        for candidate in self.constituents:
            if candidate.symbol == symbol:
                return candidate
        raise KeyError(symbol)

    def warm_up_start_ms(self, first_bucket_ms: int) -> int:
        """Where a tape must begin for the minutes from `first_bucket_ms` on to recompute as a run
        that started long before (docs/operations.md, "Restating"): 00:00 UTC (a rebalance) at
        least the σ window, the longest memory, before it; a T-bill's freshness earlier still,
        so the warm-up's own first minute has a rate (FRED publishes on business days only)."""
        start = first_bucket_ms - self.peg.sigma_window_days * DAY_MS - self.freshness_seconds.tbill_ms
        return start - start % DAY_MS


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ())) or "(file)"
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_methodology(data: dict[str, object], source: str = "<methodology>") -> Methodology:
    """Validate an already-parsed TOML document."""
    try:
        return Methodology.model_validate(data)
    except ValidationError as exc:
        raise MethodologyError(f"{source}: {_describe(exc)}") from None


def load_methodology(path: str | Path | None = None) -> Methodology:
    """Load `path`, else $SYI_METHODOLOGY, else <repo>/methodology.toml."""
    chosen = Path(path) if path is not None else Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)
    try:
        raw = chosen.read_bytes()
    except OSError as exc:
        raise MethodologyError(f"{chosen}: cannot read the methodology file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MethodologyError(f"{chosen}: not valid TOML ({exc})") from None
    return parse_methodology(data, str(chosen))


# --------------------------------------------------------------------------- what a change touches
# `syi restate --from-topics` starts from the calculators' checkpoints (docs/operations.md,
# "Restating"), so a change is only recomputed there when its effect is not already baked into
# a checkpoint. A parameter (dotted, as `parameter_changes` names it) is one of:
# * ray: ray-calc applies it afresh at every close, and a rebalance does not look at it;
# * ray-windowed: ray-calc's checkpoint holds its effect (the peg windows' lengths and Huber
#   losses; inputs dropped once stale under the old ages), and what a rebalance looks at
#   (price, σ) may move with it;
# * ray-rebalance: ray-calc applies it at every close, but it moves what a rebalance looks at
#   (the liquidity score), so syi-calc's weights in force hold its effect;
# * candidates: the list itself (every engine, every window, the weights);
# * windowed: syi-calc's checkpointed histories were pruned by it (an input stale under the old
#   age is gone, and a longer new age would need it);
# * rebalance: it shapes the weights in force, which syi-calc's checkpoint holds until the next
#   rebalance (daily at 00:01 UTC);
# * index: applied afresh at every close (or not to the values at all).
# A parameter in none of these (one added later and not classified here) is "unclassified",
# which a recomputation from the checkpoints refuses.
KINDS: dict[str, tuple[str, ...]] = {
    "ray": ("peg.zero_score_bps", "apy", "ray", "constituents.*.counterparty_score"),
    "ray-windowed": ("freshness_seconds.price", "freshness_seconds.orderbook", "freshness_seconds.apy",
                     "peg.window_minutes", "peg.sigma_window_days", "peg.huber_delta_bps"),
    "ray-rebalance": ("liquidity",),
    "candidates": ("constituents",),
    "windowed": ("freshness_seconds.market_cap", "freshness_seconds.tbill"),
    "rebalance": ("weights.cap", "weights.compliance_factor", "weights.n_min", "eligibility",
                  "constituents.*.compliance_flag"),
    "index": ("version", "restatement.materiality_bp"),
}
RAY_KINDS = ("ray", "ray-windowed", "ray-rebalance")


def flat_parameters(methodology: Methodology, same_symbols: bool) -> dict[str, object]:
    data = methodology.model_dump(mode="json")
    flat: dict[str, object] = {}
    for name, value in data.items():
        if name == "constituents" and same_symbols:
            for candidate in value:
                flat.update({f"constituents.{candidate['symbol']}.{key}": item
                             for key, item in candidate.items() if key != "symbol"})
        elif name == "constituents":
            flat[name] = [candidate["symbol"] for candidate in value]  # another list: the whole list changed
        elif isinstance(value, dict):
            flat.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            flat[name] = value
    return flat


def parameter_changes(old: Methodology, new: Methodology) -> list[str]:
    """The dotted names of the parameters `new` sets otherwise than `old` (a candidate's by
    symbol, e.g. `constituents.USDT.compliance_flag`; `constituents` when the list differs)."""
    same = old.symbols == new.symbols
    before, after = flat_parameters(old, same), flat_parameters(new, same)
    return sorted(name for name in {*before, *after} if before.get(name) != after.get(name))


def parameter_kind(name: str) -> str:
    """Its kind in `KINDS` (above), or "unclassified", for a name from `parameter_changes`."""
    parts = name.split(".")
    generic = ".".join(["constituents", "*", *parts[2:]]) if parts[0] == "constituents" and len(parts) == 3 else name
    for kind, names in KINDS.items():
        if generic in names or (parts[0] in names and parts[0] != "constituents"):  # a whole section
            return kind
    return "unclassified"
