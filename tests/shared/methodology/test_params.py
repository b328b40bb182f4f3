"""The methodology file: defaults of docs/methodology.md §10, selection by path/env, errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from syi_shared.methodology.params import DEFAULT_PATH, ENV_VAR, MethodologyError, load_methodology, parse_methodology
from syi_shared.settings import ServiceSettings


def _default_document() -> dict:
    return tomllib.loads(DEFAULT_PATH.read_text())


def test_default_file_is_the_repository_file_with_every_section_10_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    m = load_methodology()
    assert DEFAULT_PATH == Path(__file__).resolve().parents[3] / "methodology.toml"
    assert m.version == "3.0.0"
    f = m.freshness_seconds
    assert (f.price, f.orderbook, f.apy, f.market_cap, f.tbill) == (600, 300, 7200, 172800, 604800)
    assert (f.price_ms, f.orderbook_ms, f.apy_ms) == (600_000, 300_000, 7_200_000)
    assert (m.peg.huber_delta_bps, m.peg.zero_score_bps, m.peg.window_minutes, m.peg.sigma_window_days) == (10, 200, 1440, 30)
    assert (m.liquidity.band_bps, m.liquidity.reference_depth_usd) == (50, 50_000_000)
    assert (m.apy.min_tvl_usd, m.apy.mad_k, m.apy.cap_decimal, m.apy.high_flag_decimal) == (10_000_000, 3.0, 0.5, 0.25)
    assert m.apy.projects == ("aave-v3", "compound-v3", "morpho-blue", "spark", "sky-lending", "fluid-lending")
    assert m.ray.kappa == 2.0
    assert (m.weights.cap, m.weights.compliance_factor, m.weights.n_min) == (0.45, 0.75, 3)
    e = m.eligibility
    assert (e.min_market_cap_usd, e.peg_low, e.peg_high, e.min_liquidity_score) == (1e9, 0.98, 1.02, 0.7)
    assert [(c.symbol, c.counterparty_score, c.compliance_flag) for c in m.constituents] == [
        ("USDT", 0.75, False), ("USDC", 0.90, False), ("DAI", 0.85, False),
        ("TUSD", 0.80, False), ("FRAX", 0.75, False), ("USDP", 0.85, False),
    ]
    assert m.symbols == ("USDT", "USDC", "DAI", "TUSD", "FRAX", "USDP")


def test_environment_variable_selects_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "m.toml"
    other.write_text(DEFAULT_PATH.read_text().replace('version = "3.0.0"', 'version = "3.0.1-test"'))
    monkeypatch.setenv(ENV_VAR, str(other))
    assert load_methodology().version == "3.0.1-test"
    # The services' settings read the same variable.
    assert ServiceSettings().methodology is not None and str(ServiceSettings().methodology) == str(other)
    # An explicit path wins over the environment.
    assert load_methodology(DEFAULT_PATH).version == "3.0.0"


def test_methodology_is_frozen() -> None:
    m = load_methodology(DEFAULT_PATH)
    with pytest.raises(Exception):
        m.weights.cap = 0.9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda d: d["weights"].pop("cap"), "weights.cap: Field required"),
        (lambda d: d["freshness_seconds"].__setitem__("price", "ten"), "freshness_seconds.price"),
        (lambda d: d["freshness_seconds"].__setitem__("price", -1), "freshness_seconds.price"),
        (lambda d: d["peg"].__setitem__("huber_delta", 10), "peg.huber_delta: Extra inputs are not permitted"),
        (lambda d: d["constituents"][2].__setitem__("counterparty_score", 1.5), "constituents.2.counterparty_score"),
        (lambda d: d["constituents"].append(dict(d["constituents"][0])), "symbol 'USDT' is listed twice"),
        (lambda d: d["eligibility"].__setitem__("peg_low", 1.5), "peg_low 1.5 is above peg_high"),
        (lambda d: d["apy"].__setitem__("projects", []), "apy.projects"),
        (lambda d: d.pop("version"), "version: Field required"),
    ],
)
def test_bad_file_names_the_key(mutate, named: str) -> None:
    document = _default_document()
    mutate(document)
    with pytest.raises(MethodologyError) as error:
        parse_methodology(document, "bad.toml")
    assert named in str(error.value)
    assert str(error.value).startswith("bad.toml: ")


def test_unreadable_or_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MethodologyError, match="missing.toml: cannot read"):
        load_methodology(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("version = \n")
    with pytest.raises(MethodologyError, match="broken.toml: not valid TOML"):
        load_methodology(broken)


@pytest.mark.parametrize("first, start", [
    ("2026-11-20T00:10:00Z", "2026-10-14T00:00:00.000Z"),  # 30 days (σ), 7 (T-bill freshness), then 00:00 UTC
    ("2026-11-20T00:00:00Z", "2026-10-14T00:00:00.000Z"),  # already at 00:00: not a day earlier
    ("2026-11-19T23:59:00Z", "2026-10-13T00:00:00.000Z"),
])
def test_warm_up_starts_at_midnight_a_sigma_window_and_a_tbill_freshness_before(first: str, start: str) -> None:
    from syi_shared.timefmt import millis, time_text

    assert time_text(load_methodology(DEFAULT_PATH).warm_up_start_ms(millis(first))) == start
