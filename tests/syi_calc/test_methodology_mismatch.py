"""syi-calc takes ray records of its own methodology_version only: a record of another version
(a ray-calc on another methodology file) is dead-lettered with `methodology_mismatch: ...`
naming both versions, /healthz says so, and the buckets keep closing instead of waiting for
candidates that ray-calc's file may not even list. Nothing of the other file is published."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from ray_calc.telemetry import RayMetrics
from syi_calc.telemetry import IndexMetrics
from syi_shared.methodology.engine import BUCKET_MS
from syi_shared.methodology.params import load_methodology
from syi_shared.models import IndexValue, RayRecord
from syi_shared.settings import ServiceSettings
from syi_shared.streaming.calculators import IndexCalculator, RayCalculator
from syi_shared.streaming.progress import bucket_end_of
from syi_shared.timefmt import millis, time_text
from syi_shared.topics import EX_MKTCAP, RAY_CALCULATED, SYI_CALCULATED, TRAD_TBILL
from tests.conftest import REPO_ROOT
from tests.ray_calc.streams import Calculator, make_tape, play, values_since, wait_for
from tests.ray_calc.test_step_faults import arrival, batch, outputs, ray_inputs, step_for
from tests.shared.methodology.builders import MIN, T0, mktcap, tbill
from tests.syi_calc.test_parity import now_ms

FOREIGN = "9.9.9"
MISMATCH = "methodology_mismatch: methodology_version '9.9.9' is not syi-calc's '3.0.0'"


def foreign_file(tmp_path: Path) -> Path:
    """methodology.toml as another version with one candidate fewer (the candidate lists differ)."""
    text = (REPO_ROOT / "methodology.toml").read_text()
    assert 'version = "3.0.0"' in text
    text = text.replace('version = "3.0.0"', f'version = "{FOREIGN}"', 1)
    text = text[:text.rindex("[[constituents]]")]  # drop the last candidate
    path = tmp_path / "foreign-methodology.toml"
    path.write_text(text)
    return path


def test_foreign_ray_records_are_dead_lettered_and_the_buckets_close_without_them():
    methodology = load_methodology()
    assert methodology.version == "3.0.0"
    ray_step = step_for(lambda state: RayCalculator(methodology, state, RayMetrics()), ("cc.prices", "cc.orderbook", "dl.apy"))
    ray_out = batch(ray_step, [item for minute in range(1, 7) for item in ray_inputs(minute, 100 * minute)])
    rays = [RayRecord.model_validate(r) for r in outputs(list(ray_out), RAY_CALCULATED)]
    # 10:01 and 10:02 from a ray-calc on another file (one candidate fewer), then ours again
    early = {time_text(T0 + MIN), time_text(T0 + 2 * MIN)}
    dropped = methodology.symbols[-1]
    foreign = [r.model_copy(update={"methodology_version": FOREIGN}) for r in rays
               if r.bucket_end in early and r.symbol != dropped]
    ours = [r for r in rays if r.bucket_end not in early]

    step = step_for(lambda state: IndexCalculator(methodology, state, IndexMetrics()), (EX_MKTCAP, TRAD_TBILL))
    caps = [arrival(EX_MKTCAP, mktcap(symbol, 1e10, T0 + 1_000), i) for i, symbol in enumerate(methodology.symbols)]
    caps += [arrival(EX_MKTCAP, mktcap(symbol, 1e10, T0 + 5 * MIN), 50 + i) for i, symbol in enumerate(methodology.symbols)]
    bill = [arrival(TRAD_TBILL, tbill(4.0, T0 - MIN), 0), arrival(TRAD_TBILL, tbill(4.0, T0 + 5 * MIN), 1)]
    out = batch(step, [*caps, *bill, *(arrival(RAY_CALCULATED, r, i) for i, r in enumerate(foreign))])
    # 10:01 and 10:02 closed at once (nothing of ours to publish) rather than waiting for the
    # dropped candidate; 10:03 waits for our records
    assert step.clock.state.last_closed_ms == T0 + 2 * MIN and outputs(list(out), SYI_CALCULATED) == []
    out += batch(step, [arrival(RAY_CALCULATED, r, len(foreign) + i) for i, r in enumerate(ours)])

    letters = outputs(list(out), "ray.calculated.dlq")
    assert len(letters) == len(foreign) and {letter["error"] for letter in letters} == {MISMATCH}
    assert sorted(letter["offset"] for letter in letters) == list(range(len(foreign)))
    values = [IndexValue.model_validate(v) for v in outputs(list(out), SYI_CALCULATED)]
    # the index goes on from the first bucket of our version, from our records only
    assert step.clock.state.last_closed_ms is not None and step.clock.state.last_closed_ms >= T0 + 5 * MIN
    assert [v.bucket_end for v in values][:2] == [time_text(T0 + 3 * MIN), time_text(T0 + 4 * MIN)]
    assert all(v.methodology_version == "3.0.0" for v in values)
    by_bucket = {(r.bucket_end, r.symbol): r for r in ours}
    for value in values:
        for row in value.constituents:
            if row.ray_decimal is not None:
                assert row.ray_decimal == by_bucket[value.bucket_end, row.symbol].ray_decimal

    report = step.health.report()
    assert report.status == "degraded" and step.health.refused_inputs == len(foreign)
    assert [reason for reason in report.reasons if reason.startswith("methodology_mismatch: ")] == [
        f"{MISMATCH} ({len(foreign)} refused since start, the newest 0 s ago)"]
    step.health.refused_at = time.time() - step.health.REFUSED_RECENT_S  # long ago: no longer news
    assert not [reason for reason in step.health.report().reasons if reason.startswith("methodology_mismatch")]


def test_a_foreign_bucket_survives_a_checkpoint():
    methodology = load_methodology()
    calculator = IndexCalculator(methodology, None)
    record = RayRecord(symbol="USDC", bucket_end=time_text(T0 + MIN), price_usd=1.0, dev_bps=0.0, peg_score=1.0,
                       sigma_peg_pct=0.0, depth_usd=1e8, liquidity_score=1.0, counterparty_score=0.9,
                       apy_eff_decimal=0.04, s_worst=0.9, ray_decimal=0.03, flags=[], methodology_version=FOREIGN)
    assert calculator.refusal(RAY_CALCULATED, record) == MISMATCH
    assert calculator.refusal(RAY_CALCULATED, record.model_copy(update={"methodology_version": "3.0.0"})) is None
    assert not calculator.ready(T0 + 2 * MIN)
    # before ray-calc's first bucket: the others were never delivered, by a ray-calc on another file
    assert calculator.ready(T0)
    restored = IndexCalculator(methodology, orjson.loads(orjson.dumps(calculator.state())))
    assert restored.ready(T0 + MIN) and not restored.ready(T0 + 2 * MIN)
    restored.close(T0 + MIN)
    assert restored.foreign_buckets == set()


@pytest.mark.integration
@pytest.mark.e2e
def test_syi_calc_refuses_a_ray_calc_on_another_methodology_file(provisioned: ServiceSettings, tmp_path: Path) -> None:
    tape = make_tape(tmp_path / "tape.jsonl", "6m")
    since = now_ms()
    ray = Calculator("ray_calc", provisioned, since, tmp_path, {"SYI_METHODOLOGY": str(foreign_file(tmp_path))}).start()
    syi = Calculator("syi_calc", provisioned, since, tmp_path).start()
    try:
        span = play(tape, provisioned)
        last = bucket_end_of(span.last_ms)

        def closed_all() -> dict | None:
            health = orjson.loads(syi.get("/healthz"))
            done = health.get("last_closed_bucket") and millis(health["last_closed_bucket"]) >= last
            return health if done else None

        health = wait_for(closed_all, 90, f"syi-calc closing every bucket up to {time_text(last)}")
        rays = values_since(provisioned, RAY_CALCULATED, since)
        letters = [v for v in values_since(provisioned, "ray.calculated.dlq", since) if v["service"] == "syi-calc"]
    finally:
        ray.stop(), syi.stop()

    assert rays and {r["methodology_version"] for r in rays} == {FOREIGN}
    assert len(letters) == len(rays) and {letter["error"] for letter in letters} == {MISMATCH}
    assert sorted(orjson.loads(letter["raw_value"])["bucket_end"] for letter in letters) == sorted(
        r["bucket_end"] for r in rays)
    assert values_since(provisioned, SYI_CALCULATED, since) == []  # nothing of the other file, under any label
    assert health["status"] == "degraded" and health["refused_inputs"] == len(rays)
    assert any(reason.startswith(MISMATCH) for reason in health["reasons"])
    assert health["buckets_closed"] >= (last - bucket_end_of(span.first_ms)) // BUCKET_MS
