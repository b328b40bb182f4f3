"""The restatement policy as `syi restate` applies it: which recomputed buckets are material."""

from __future__ import annotations

import orjson

from syi_cli.restate import latest_revisions, plan
from syi_shared.models import IndexValue
from tests.shared.examples import SYI


def value(bucket_end: str = SYI["bucket_end"], **changes) -> IndexValue:
    return IndexValue.model_validate({**SYI, "bucket_end": bucket_end, **changes})


def published(**changes) -> dict:
    return {**SYI, **changes}


def test_a_change_below_the_threshold_is_not_material():
    [change] = plan([value(syi_decimal=SYI["syi_decimal"] + 0.9e-6)], {SYI["bucket_end"]: published()}, 0.1)
    assert not change.material and change.reasons == ()
    assert round(change.delta_bp, 6) == 0.009


def test_a_change_at_the_threshold_is_material_and_says_by_how_much():
    [change] = plan([value(syi_decimal=SYI["syi_decimal"] - 1.5e-5)], {SYI["bucket_end"]: published()}, 0.1)
    assert change.material
    assert change.reasons == ("Δ -0.150 bp ≥ 0.1 bp",)


def test_another_status_or_constituent_set_is_material_whatever_the_value():
    excluded = [{**c, "excluded_reason": "peg"} if c["symbol"] == "USDT" else c for c in SYI["constituents"]]
    [status] = plan([value(status="degraded")], {SYI["bucket_end"]: published()}, 0.1)
    [members] = plan([value(constituents=excluded)], {SYI["bucket_end"]: published()}, 0.1)
    assert status.reasons == ("status ok → degraded",)
    assert members.reasons == ("constituents -USDT",)


def test_a_bucket_never_published_is_listed_but_not_restated():
    [change] = plan([value("2026-11-27T10:05:00.000Z")], {}, 0.1)
    assert change.old is None and not change.material


def test_the_comparison_is_with_the_latest_revision_of_each_bucket_in_the_interval():
    rows = [published(), published(revision=1, syi_decimal=0.05), published(bucket_end="2026-11-27T10:02:00.000Z"),
            published(bucket_end="2026-11-27T09:59:00.000Z")]
    latest = latest_revisions([orjson.dumps(r) for r in rows], "2026-11-27T10:00:00.000Z", "2026-11-27T10:01:00.000Z")
    assert list(latest) == [SYI["bucket_end"]]
    assert latest[SYI["bucket_end"]]["revision"] == 1
    [change] = plan([value(syi_decimal=0.05)], latest, 0.1)
    assert not change.material, "the revision already says 0.05"
