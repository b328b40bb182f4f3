"""The demo tape: reproducible from its generator, valid, and holding the scenarios it promises."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

from syi_cli.tape import BadLine, TapeMessage, read_tape
from syi_shared.models import OrderBook, PoolYield, PriceTick
from syi_shared.timefmt import parse_utc, to_millis
from tests.cli.conftest import DEMO_TAPE
from tests.conftest import REPO_ROOT

CANDIDATES = {"USDT", "USDC", "DAI", "TUSD", "FRAX", "USDP"}
START = to_millis(parse_utc("2026-11-20T00:00:00Z"))
MINUTE = 60_000


def at(hours: int, minutes: int = 0) -> int:
    return START + (hours * 60 + minutes) * MINUTE


def ms(text: str) -> int:
    return to_millis(parse_utc(text))


@pytest.fixture(scope="module")
def demo() -> list[TapeMessage]:
    items = list(read_tape(DEMO_TAPE))
    bad = [item for item in items if isinstance(item, BadLine)]
    assert not bad, f"the demo tape must be valid: {bad[:3]}"
    return items  # type: ignore[return-value]


def run_generator(out: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_demo_tape.py"), "--out", str(out), *args],
                   check=True, capture_output=True, timeout=120)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    run_generator(tmp_path / "a.jsonl.gz", "--duration", "20m")
    run_generator(tmp_path / "b.jsonl.gz", "--duration", "20m")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    messages = [item for item in read_tape(tmp_path / "a.jsonl.gz")]
    assert messages and all(isinstance(item, TapeMessage) for item in messages)
    assert max(ms(item.value.event_time) for item in messages) < START + 20 * MINUTE  # type: ignore[union-attr]


def test_committed_demo_tape_is_what_the_generator_writes(generator: ModuleType, tmp_path: Path) -> None:
    # Compare the content, not the gzip bytes (which can vary with the zlib version).
    fresh = tmp_path / "demo.jsonl"
    generator.write(generator.generate(generator.parse_duration(generator.DEFAULT_DURATION)), fresh)
    with gzip.open(DEMO_TAPE, "rb") as committed:
        assert committed.read() == fresh.read_bytes(), "regenerate with: .venv/bin/python tools/make_demo_tape.py"


def test_demo_tape_spans_six_hours_in_event_time_order(demo: list[TapeMessage]) -> None:
    times = [ms(item.value.event_time) for item in demo]  # type: ignore[attr-defined]
    assert times == sorted(times)
    assert times[0] >= START and times[0] < START + MINUTE  # the first bucket is 00:01, a daily rebalance
    assert times[-1] - times[0] >= 6 * 60 * MINUTE
    assert 20_000 < len(demo) < 150_000


def test_demo_tape_prices_all_candidates_on_several_venues_incl_usd_quotes(demo: list[TapeMessage]) -> None:
    venues: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for item in demo:
        if isinstance(item.value, PriceTick):
            venues[item.value.symbol].add((item.value.venue, item.value.quote))
    assert CANDIDATES <= set(venues)
    for symbol in CANDIDATES:
        assert any(quote == "USD" for _, quote in venues[symbol]), symbol  # DefiLlama at least
    assert ("binance", "USDT") in venues["USDC"]  # a stablecoin-quoted pair to convert
    assert {"binance", "kraken", "cryptocompare", "defillama"} <= {venue for pairs in venues.values() for venue, _ in pairs}
    first_minute = {item.value.symbol for item in demo if isinstance(item.value, PriceTick)
                    and ms(item.value.event_time) < START + MINUTE}
    assert CANDIDATES <= first_minute  # everything is priced for the first rebalance


def test_demo_tape_books_have_20_levels_with_varied_depth(demo: list[TapeMessage]) -> None:
    depth: dict[str, list[float]] = defaultdict(list)
    for item in demo:
        if isinstance(item.value, OrderBook):
            book = item.value
            assert len(book.bids) == len(book.asks) == 20 and book.quote == "USDT"
            mid = (book.bids[0][0] + book.asks[0][0]) / 2
            depth[book.base].append(sum(p * q for p, q in book.bids if p >= mid * 0.995)
                                    + sum(p * q for p, q in book.asks if p <= mid * 1.005))
    assert min(depth["USDC"][:10]) > 50e6  # deep
    assert max(depth["USDP"]) < 15e6  # thin
    assert max(depth["USDC"]) / min(depth["USDC"]) > 1.5  # liquidity moves


def test_demo_tape_has_the_depeg_episode(demo: list[TapeMessage]) -> None:
    usd_prices = [(ms(item.value.event_time), item.value.price) for item in demo
                  if isinstance(item.value, PriceTick) and item.value.symbol == "USDC" and item.value.quote == "USD"]
    before = [price for moment, price in usd_prices if moment < at(2, 25)]
    during = [price for moment, price in usd_prices if at(2, 35) <= moment < at(2, 50)]
    after = [price for moment, price in usd_prices if moment >= at(3, 10)]
    assert min(before) > 0.998 and min(after) > 0.998
    assert during and max(during) < 0.988 and min(during) > 0.98  # ~0.985 for a quarter of an hour


def test_demo_tape_has_a_stale_frax_gap(demo: list[TapeMessage]) -> None:
    frax = sorted(ms(item.value.event_time) for item in demo
                  if isinstance(item.value, PriceTick) and item.value.symbol == "FRAX")
    gaps = [(later - earlier, earlier) for earlier, later in zip(frax, frax[1:])]
    longest, since = max(gaps)
    assert longest >= 30 * MINUTE and at(3, 59) <= since < at(4, 1)
    assert sorted(gaps)[-2][0] < 60_000  # otherwise FRAX ticks steadily


def test_demo_tape_pools_cover_the_apy_rules(demo: list[TapeMessage]) -> None:
    latest: dict[str, PoolYield] = {}
    fetches: set[int] = set()
    for item in demo:
        if isinstance(item.value, PoolYield):
            latest[item.value.pool] = item.value
            fetches.add(ms(item.value.event_time))
    pools = list(latest.values())
    assert len(fetches) >= 6  # refreshed hourly
    assert {"aave-v3", "compound-v3", "morpho-blue", "spark", "sky-lending", "fluid-lending"} <= {p.project for p in pools}
    assert any(p.apy_base_pct is None for p in pools)
    assert any(p.tvl_usd < 10e6 for p in pools)
    assert any(p.exposure != "single" for p in pools)
    usdc = sorted(p.apy_base_pct for p in pools if p.symbol == "USDC" and p.apy_base_pct is not None)
    assert usdc[-1] > 5 * usdc[len(usdc) // 2]  # one outlier far above the others


def test_demo_tape_market_caps_and_tbill_update(demo: list[TapeMessage]) -> None:
    caps = {item.value.symbol: item.value.market_cap_usd for item in demo if item.topic == "ex.mktcap"}  # type: ignore[attr-defined]
    assert set(caps) == CANDIDATES
    assert caps["TUSD"] < 1e9 <= min(caps[s] for s in ("USDT", "USDC", "DAI", "FRAX", "USDP"))
    assert caps["USDT"] / sum(caps.values()) > 0.45  # the cap binds
    tbills = [item.value for item in demo if item.topic == "trad.tbill"]
    assert len(tbills) == 2 and tbills[0].rate_pct != tbills[1].rate_pct  # type: ignore[attr-defined]
    assert ms(tbills[0].event_time) < START + MINUTE  # type: ignore[attr-defined]
    assert at(1) < ms(tbills[1].event_time) < at(6)  # type: ignore[attr-defined]
