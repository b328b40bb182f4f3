"""`syi compute`: deterministic output, invalid lines, --ray-out, the methodology file, the demo scenarios."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from syi_cli.compute import compute_tape
from syi_shared.methodology import load_methodology
from syi_shared.models import IndexValue, RayRecord
from syi_shared.timefmt import parse_utc, to_millis
from tests.cli.conftest import DEMO_TAPE, make_tape, syi
from tests.conftest import REPO_ROOT
from tests.shared.examples import MKTCAP, PRICE, SYI, TBILL

SYMBOLS = ["USDT", "USDC", "DAI", "TUSD", "FRAX", "USDP"]


def ms(text: str) -> int:
    return to_millis(parse_utc(text))


def values(raw: bytes) -> list[IndexValue]:
    return [IndexValue.model_validate_json(line) for line in raw.splitlines()]


@pytest.fixture(scope="module")
def short_tape(generator: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tape(generator, tmp_path_factory.mktemp("compute") / "short.jsonl", "15m")


@pytest.fixture(scope="module")
def demo_values(demo_index: Path) -> list[IndexValue]:
    return values(demo_index.read_bytes())


def test_same_tape_twice_gives_byte_identical_output(demo_index: Path) -> None:
    again = syi("compute", "--tape", str(DEMO_TAPE))
    assert again.returncode == 0, again.stderr
    assert again.stdout == demo_index.read_bytes() and again.stdout
    assert "390 buckets" in again.stderr and "0 invalid lines" in again.stderr


def test_one_value_per_bucket_in_order_stamped_with_the_bucket_end(demo_values: list[IndexValue]) -> None:
    ends = [ms(value.bucket_end) for value in demo_values]
    assert ends == list(range(ms("2026-11-20T00:01:00Z"), ms("2026-11-20T06:30:00Z") + 1, 60_000))
    assert all(value.published_at == value.bucket_end for value in demo_values)
    assert demo_values[0].prev_cid is None and "rebalanced" in demo_values[0].flags
    assert all(later.prev_cid == earlier.cid for earlier, later in zip(demo_values, demo_values[1:]))


def test_invalid_lines_are_reported_by_number_and_unknown_topics_ignored(short_tape: Path, tmp_path: Path) -> None:
    clean = syi("compute", "--tape", str(short_tape))
    assert clean.returncode == 0 and clean.stdout, clean.stderr
    lines = short_tape.read_bytes().splitlines()
    junk = [
        (3, b'{"topic": "cc.prices", "key": '),                                       # not JSON
        (10, orjson.dumps({"topic": "cc.prices", "key": "USDC.binance",
                           "value": {**PRICE, "price": "n/a"}})),                     # invalid value
        (20, orjson.dumps({"topic": "news.feed", "key": "x", "value": {"a": 1}})),    # unknown topic: ignored
        (30, orjson.dumps({"topic": "syi.calculated", "key": "SYI", "value": SYI})),  # not an input: ignored
        # the consumers' rules: plausibility bounds and the key check
        (40, orjson.dumps({"topic": "ex.mktcap", "key": "USDC", "value": {**MKTCAP, "market_cap_usd": 1e308}})),
        (50, orjson.dumps({"topic": "cc.prices", "key": "USDC.binance",
                           "value": {**PRICE, "event_time": "2100-01-01T00:00:00.000Z"}})),
        (60, orjson.dumps({"topic": "cc.prices", "key": None, "value": PRICE})),
        (70, orjson.dumps({"topic": "trad.tbill", "key": "DTB3", "value": {**TBILL, "rate_pct": 1e308}})),
        (80, orjson.dumps({"topic": "cc.prices", "key": "USDC.binance", "value": {**PRICE, "price": "0.99985"}})),
    ]
    for position, line in junk:
        lines.insert(position - 1, line)  # so the junk sits at that 1-based line number
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join(lines) + b"\n")

    done = syi("compute", "--tape", str(mixed))

    assert done.returncode == 0, done.stderr
    assert "line 3: invalid JSON" in done.stderr and "line 10: price:" in done.stderr
    assert "line 20" not in done.stderr and "line 30" not in done.stderr
    assert "line 40: out_of_range: market_cap_usd: 1e+308 is above 1e13" in done.stderr
    assert "line 50: future: event_time 2100-01-01T00:00:00.000Z is more than 5 s after ingest_time" in done.stderr
    assert "line 60: key: expected 'USDC.binance', got null" in done.stderr
    assert "line 70: out_of_range: rate_pct: 1e+308 is above 50" in done.stderr
    assert "line 80: price: Input should be a valid number, not a string" in done.stderr
    assert "7 invalid lines skipped" in done.stderr
    assert done.stdout == clean.stdout  # the skipped lines change nothing


def test_ray_out_writes_one_record_per_candidate_and_bucket(short_tape: Path, tmp_path: Path) -> None:
    done = syi("compute", "--tape", str(short_tape), "--ray-out", str(tmp_path / "rays.jsonl"))
    assert done.returncode == 0, done.stderr
    rays = [RayRecord.model_validate_json(line) for line in (tmp_path / "rays.jsonl").read_bytes().splitlines()]
    assert len(rays) == 15 * len(SYMBOLS)
    assert [r.symbol for r in rays[:6]] == SYMBOLS  # methodology-file order
    assert [r.bucket_end for r in rays[::6]] == [v.bucket_end for v in values(done.stdout)]


def test_published_at_now_changes_only_published_at(short_tape: Path) -> None:
    rules = load_methodology()
    fixed = compute_tape(short_tape, rules).values
    live = compute_tape(short_tape, rules, published_at="now").values
    assert [v.cid for v in live] == [v.cid for v in fixed]  # published_at is not hashed
    assert all(v.published_at != v.bucket_end for v in live)
    assert [v.model_copy(update={"published_at": ""}) for v in live] == \
           [v.model_copy(update={"published_at": ""}) for v in fixed]


def test_methodology_file_is_chosen_by_flag_or_environment(short_tape: Path, tmp_path: Path) -> None:
    text = (REPO_ROOT / "methodology.toml").read_text()
    assert "cap = 0.45" in text
    uncapped = tmp_path / "uncapped.toml"
    uncapped.write_text(text.replace("cap = 0.45", "cap = 0.9"))
    default = values(syi("compute", "--tape", str(short_tape)).stdout)
    by_flag = syi("compute", "--tape", str(short_tape), "--methodology", str(uncapped))
    by_env = syi("compute", "--tape", str(short_tape), env={**os.environ, "SYI_METHODOLOGY": str(uncapped)})
    assert by_flag.returncode == 0 and by_flag.stdout == by_env.stdout
    weight = {c.symbol: c.weight for c in values(by_flag.stdout)[0].constituents}
    assert weight["USDT"] > 0.5 and default[0].constituents[0].weight == 0.45

    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace("n_min = 3\n", ""))
    failed = syi("compute", "--tape", str(short_tape), "--methodology", str(broken))
    assert failed.returncode == 2 and "weights.n_min" in failed.stderr and not failed.stdout


def test_demo_weights_cap_binds_and_ineligible_coins_stay_out(demo_values: list[IndexValue]) -> None:
    first = demo_values[0]
    weights = {c.symbol: c.weight for c in first.constituents}
    assert set(weights) == {"USDT", "USDC", "DAI", "FRAX"}  # TUSD: market cap < 1e9; USDP: thin books
    assert weights["USDT"] == pytest.approx(0.45, abs=1e-12)
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)
    assert first.status == "ok" and first.tbill_apy_decimal is not None


def test_demo_stale_frax_is_excluded_then_returns(demo_values: list[IndexValue]) -> None:
    def frax(value: IndexValue) -> str | None:
        return next(c.excluded_reason for c in value.constituents if c.symbol == "FRAX")

    stale = [v for v in demo_values if frax(v) is not None]
    assert stale and {frax(v) for v in stale} == {"stale_price"}
    assert ms("2026-11-20T04:10:00Z") <= ms(stale[0].bucket_end) and ms(stale[-1].bucket_end) <= ms("2026-11-20T04:32:00Z")
    assert all(v.coverage < 1 for v in stale) and frax(demo_values[-1]) is None


def test_demo_depeg_lowers_usdc_peg_score_and_tbill_update_shows(demo_values: list[IndexValue]) -> None:
    def usdc_peg(value: IndexValue) -> float:
        return next(c.peg_score for c in value.constituents if c.symbol == "USDC")  # type: ignore[return-value]

    before = [usdc_peg(v) for v in demo_values if ms(v.bucket_end) <= ms("2026-11-20T02:30:00Z")]
    after = [usdc_peg(v) for v in demo_values if ms(v.bucket_end) >= ms("2026-11-20T03:10:00Z")]
    assert min(before) > 0.99 and max(after) < 0.96
    rates = sorted({(v.tbill_apy_decimal, v.bucket_end) for v in demo_values}, key=lambda pair: pair[1])
    changes = [b for (rate_a, _), (rate_b, b) in zip(rates, rates[1:]) if rate_a != rate_b]
    assert changes == ["2026-11-20T03:16:00.000Z"]
