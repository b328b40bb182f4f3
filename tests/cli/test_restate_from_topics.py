"""What `syi restate --from-topics` may recompute from syi-calc's checkpoint: the classification
of the methodology's parameters, the refusals that need no broker, and the ray records relabelled
to the new file's version."""

from __future__ import annotations

import pytest

from syi_cli.restate import Refused, _relabel, _relabelled_state, check_baseline, from_topics_changes
from syi_shared.methodology.params import (
    Methodology,
    flat_parameters,
    load_methodology,
    parameter_changes,
    parameter_kind,
)
from syi_shared.models import RayRecord
from tests.shared.examples import SYI


def changed(base: Methodology, **sections) -> Methodology:
    """`base` with `section={key: value}` changed (a top-level key: its value), version 3.0.1."""
    data = base.model_dump(mode="json")
    for section, values in sections.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    return Methodology.model_validate({**data, "version": "3.0.1"})


def test_every_parameter_of_the_file_is_classified() -> None:
    for name in flat_parameters(load_methodology(), same_symbols=True):
        assert parameter_kind(name) != "unclassified", name


@pytest.mark.parametrize(("name", "kind"), [
    ("version", "index"), ("restatement.materiality_bp", "index"),
    ("peg.zero_score_bps", "ray"), ("apy.projects", "ray"), ("apy.mad_k", "ray"), ("ray.kappa", "ray"),
    ("constituents.USDT.counterparty_score", "ray"),
    ("freshness_seconds.price", "ray-windowed"), ("freshness_seconds.apy", "ray-windowed"),
    ("peg.window_minutes", "ray-windowed"), ("peg.sigma_window_days", "ray-windowed"),
    ("peg.huber_delta_bps", "ray-windowed"),  # the loss window holds Huber losses
    ("liquidity.band_bps", "ray-rebalance"), ("liquidity.reference_depth_usd", "ray-rebalance"),
    ("constituents", "candidates"),
    ("freshness_seconds.market_cap", "windowed"), ("freshness_seconds.tbill", "windowed"),
    ("weights.cap", "rebalance"), ("weights.n_min", "rebalance"), ("weights.compliance_factor", "rebalance"),
    ("eligibility.peg_low", "rebalance"), ("constituents.DAI.compliance_flag", "rebalance"),
    ("weights.someday", "unclassified"),
])
def test_parameter_kinds(name: str, kind: str) -> None:
    assert parameter_kind(name) == kind


def test_changes_are_named_by_dotted_path_and_candidate() -> None:
    base = load_methodology()
    flagged = [{**c, "compliance_flag": c["symbol"] == "DAI"} for c in base.model_dump(mode="json")["constituents"]]
    new = changed(base, weights={"cap": 0.3}, constituents=flagged)
    assert parameter_changes(base, new) == ["constituents.DAI.compliance_flag", "version", "weights.cap"]
    fewer = changed(base, constituents=base.model_dump(mode="json")["constituents"][:-1])
    assert parameter_changes(base, fewer) == ["constituents", "version"]
    assert parameter_changes(base, base) == []


def test_another_list_of_candidates_is_refused_pointing_to_the_archive() -> None:
    base = load_methodology()
    with pytest.raises(Refused, match="another list of candidates") as refused:
        from_topics_changes(base, changed(base, constituents=base.model_dump(mode="json")["constituents"][:-1]))
    assert "syi tape record --from-archive" in str(refused.value) and "--tape" in str(refused.value)


def test_other_changes_are_grouped_by_kind() -> None:
    base = load_methodology()
    new = changed(base, weights={"cap": 0.3}, freshness_seconds={"tbill": 86400}, restatement={"materiality_bp": 1},
                  ray={"kappa": 3.0}, peg={"window_minutes": 60}, liquidity={"band_bps": 40})
    assert from_topics_changes(base, new) == {
        "windowed": ["freshness_seconds.tbill"], "ray-rebalance": ["liquidity.band_bps"],
        "ray-windowed": ["peg.window_minutes"], "ray": ["ray.kappa"], "index": ["restatement.materiality_bp", "version"],
        "rebalance": ["weights.cap"]}


def test_the_baseline_must_be_the_version_the_interval_was_published_under() -> None:
    base = load_methodology()
    check_baseline(base, {"a": {**SYI, "methodology_version": base.version}})
    check_baseline(base, {"a": {**SYI, "methodology_version": "9.9.9", "revision": 1}})  # restated before: any
    with pytest.raises(Refused, match="published under methodology_version 9.9.9"):
        check_baseline(base, {"a": {**SYI, "methodology_version": "9.9.9"}})


def test_rays_of_the_baseline_are_relabelled_and_no_others() -> None:
    ray = RayRecord.model_validate({
        "symbol": "USDT", "bucket_end": SYI["bucket_end"], "price_usd": 1.0, "dev_bps": 0.0, "peg_score": 1.0,
        "sigma_peg_pct": 0.0, "depth_usd": 1e8, "liquidity_score": 1.0, "counterparty_score": 0.75,
        "apy_eff_decimal": 0.05, "s_worst": 0.75, "ray_decimal": 0.04, "flags": [], "methodology_version": "3.0.0",
        "inputs_max_event_time": SYI["bucket_end"]})
    relabel = _relabel("3.0.0", "3.0.1")
    assert relabel(ray).methodology_version == "3.0.1"
    other = ray.model_copy(update={"methodology_version": "2.0.0"})
    assert relabel(other) is other  # refused by syi-calc as it was live
    state = {"engine": {"rays": {"60000": {"USDT": ray.model_dump(mode="json")}}, "weights": None}}
    assert _relabelled_state(state, relabel)["engine"]["rays"]["60000"]["USDT"]["methodology_version"] == "3.0.1"
    assert _relabelled_state({}, relabel) == {}


def test_ray_recomputation_starts_at_the_oldest_ray_syi_calc_still_needs() -> None:
    from syi_cli.restate import _pending_from

    assert _pending_from({"engine": {"rays": {"180000": {}, "240000": {}}}}, 180000) == 180000
    assert _pending_from({"engine": {"rays": {"120000": {}}}}, None) == 120000  # read before the run's first close
    assert _pending_from({"engine": {"rays": {}}}, None) is None  # the run's start: from ray-calc's start
    assert _pending_from({}, None) is None
