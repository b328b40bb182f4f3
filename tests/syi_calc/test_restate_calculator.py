"""syi-calc's side of a restatement, without Kafka: which requests its calculator takes, how a
revision is chained and numbered, and that the step writes it at once in a transaction of its
own (with a snapshot past the request), before the closes that follow it."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from ray_calc.telemetry import RayMetrics
from syi_calc.telemetry import IndexMetrics
from syi_shared.checkpoint import load_checkpoint, parse_record
from syi_shared.methodology import audit
from syi_shared.methodology.params import load_methodology
from syi_shared.models import IndexValue, RayRecord, RestatementRequest
from syi_shared.streaming.calculators import IndexCalculator, RayCalculator, migrate_index_state
from syi_shared.streaming.clock import ClockConfig
from syi_shared.streaming.step import Arrival, CalcStep, Commit, Resume, StepConfig
from syi_shared.streaming.telemetry import StreamHealth, StreamMetrics
from syi_shared.timefmt import millis, time_text
from syi_shared.topics import EX_MKTCAP, RAY_CALCULATED, SYI_CALCULATED, SYI_RESTATEMENTS, TRAD_TBILL
from tests.ray_calc.test_step_faults import arrival, batch, outputs, ray_inputs, step_for
from tests.shared.methodology.builders import MIN, T0, mktcap, tbill

INPUTS = (RAY_CALCULATED, EX_MKTCAP, TRAD_TBILL)
PARTITIONS = tuple((topic, 0) for topic in (*INPUTS, SYI_RESTATEMENTS))
DLQ = f"{SYI_RESTATEMENTS}.dlq"


def rays(minutes: int) -> list[RayRecord]:
    methodology = load_methodology()
    step = step_for(lambda state: RayCalculator(methodology, state, RayMetrics()), ("cc.prices", "cc.orderbook", "dl.apy"))
    out = batch(step, [item for minute in range(1, minutes + 1) for item in ray_inputs(minute, 100 * minute)])
    return [RayRecord.model_validate(r) for r in outputs(list(out), RAY_CALCULATED)]


def index_step(resume: Resume | None = None, window_ms: int | None = None) -> CalcStep:
    methodology = load_methodology()
    config = ClockConfig(input_topics=INPUTS, clocked_topics=(EX_MKTCAP, TRAD_TBILL), partitions=PARTITIONS,
                         lateness_ms=0, idle_timeout_s=1e9, progress_timeout_ms=30_000)
    extra = {} if window_ms is None else {"restate_window_ms": window_ms}
    make = lambda state: IndexCalculator(methodology, state, IndexMetrics(), **extra)  # noqa: E731
    return CalcStep(StepConfig("syi-calc", "test", config, make, request_topics=(SYI_RESTATEMENTS,)),
                    StreamMetrics("syi-calc"), StreamHealth("syi-calc"), resume)


def inputs(records: list[RayRecord], first: int, last: int) -> list[Arrival]:
    """Minutes first..last: their ray records, and market caps and a T-bill stamped at the end
    of the last, so the clock lets every one of them close."""
    symbols = load_methodology().symbols
    ms = T0 + last * MIN
    items = []
    if first == 1:  # what the first minute's rebalance needs
        items += [arrival(EX_MKTCAP, mktcap(symbol, 1e10, T0 + 1_000), i) for i, symbol in enumerate(symbols)]
        items += [arrival(TRAD_TBILL, tbill(4.0, T0 - MIN), 0)]
    items += [arrival(EX_MKTCAP, mktcap(symbol, 1e10, ms), 100 * last + i) for i, symbol in enumerate(symbols)]
    items += [arrival(TRAD_TBILL, tbill(4.0, ms), last)]
    chosen = [r for r in records if time_text(T0 + first * MIN) <= r.bucket_end <= time_text(ms)]
    return items + [arrival(RAY_CALCULATED, record, 100 * last + i) for i, record in enumerate(chosen)]


def request(of: dict, offset: int, *, syi: float = 0.05, revision: int = 1, supersedes: str | None = None,
            reason: str = "a late DAI book", bucket_end: str | None = None) -> Arrival:
    record = {**of, "syi_decimal": syi, "syi_percent": syi * 100}
    value = RestatementRequest(
        request_id=uuid.uuid4().hex, index_id="SYI", bucket_end=bucket_end or of["bucket_end"],
        supersedes_cid=supersedes or of["cid"], revision=revision, reason=reason, record=record,
        requested_at="2026-11-27T12:00:00.000Z")
    return arrival(SYI_RESTATEMENTS, value, offset)


def commits(step: CalcStep, items: list[Arrival]) -> list[Commit]:
    return step.handle(items, time.time())


def messages(done: list[Commit], topic: str) -> list[dict]:
    return [orjson.loads(m.value) for commit in done for m in commit.messages if m.topic == topic]


@pytest.fixture(scope="module")
def ray_records() -> list[RayRecord]:
    return rays(6)


def published(step: CalcStep, records: list[RayRecord], last: int, first: int = 1) -> list[dict]:
    """Close the buckets T0 + first .. T0 + last minutes."""
    return messages(commits(step, inputs(records, first, last)), SYI_CALCULATED)


def test_a_request_is_published_at_once_as_the_next_revision_chained_to_the_tip(ray_records):
    step = index_step()
    values = published(step, ray_records, 4)
    assert [v["bucket_end"] for v in values][-1] == time_text(T0 + 4 * MIN)
    target, tip = values[1], values[-1]

    [commit] = commits(step, [request(target, 0)])  # no bucket closes: the revision goes alone
    assert commit.bucket_end_ms is None
    [revision] = messages([commit], SYI_CALCULATED)
    assert (revision["bucket_end"], revision["revision"], revision["supersedes_cid"]) == (
        target["bucket_end"], 1, target["cid"])
    assert revision["restatement_reason"] == "a late DAI book" and revision["syi_decimal"] == 0.05
    assert revision["prev_cid"] == tip["cid"], "one chain: the revision follows the topic's last record"
    assert revision["cid"] == audit.record_cid_of(revision) != target["cid"]
    assert revision["input_offsets"] is None and revision["close_notes"] == []
    # with a snapshot past the request: a restart resumes after it, never applying it twice
    snapshot = load_checkpoint([parse_record(raw) for raw in commit.state])
    assert snapshot.input_offsets[SYI_RESTATEMENTS] == {"0": 1}
    assert snapshot.calculator["revisions"] == {str(millis(target["bucket_end"])): [1, revision["cid"]]}

    # the next minute follows the revision; a request and a close in one batch: revision first
    done = commits(step, [request(revision, 1, syi=0.06, revision=2), *inputs(ray_records, 5, 5)])
    assert [c.bucket_end_ms for c in done] == [None, T0 + 5 * MIN]
    second, nxt = messages(done, SYI_CALCULATED)
    assert (second["revision"], second["supersedes_cid"], second["prev_cid"]) == (2, revision["cid"], revision["cid"])
    assert nxt["bucket_end"] == time_text(T0 + 5 * MIN) and nxt["prev_cid"] == second["cid"]
    assert nxt["revision"] == 0 and "restatement_reason" not in nxt


def test_stale_and_premature_requests_are_dead_lettered_with_their_reason(ray_records):
    step = index_step()
    values = published(step, ray_records, 4)
    target = values[1]
    first = messages(commits(step, [request(target, 0)]), SYI_CALCULATED)
    assert len(first) == 1

    cases = [
        (request(target, 1), "restatement_stale: bucket {b} is at revision 1 (cid {c}); the request supersedes "
                             "{t} as revision 1"),  # the same request twice
        (request(target, 2, revision=3, supersedes=first[0]["cid"]), "restatement_stale:"),  # skips a revision
        (request(values[2], 3, supersedes="bafkreiwrong"), "restatement_stale: bucket"),  # not what was published
        (request(target, 4, bucket_end=time_text(T0 + 9 * MIN)), "restatement_unpublished: bucket"),
        (request({**target, "bucket_end": values[2]["bucket_end"]}, 5, supersedes=values[3]["cid"],
                 bucket_end=values[3]["bucket_end"]), "restatement_invalid: the record is for SYI"),
    ]
    for item, reason in cases:
        done = commits(step, [item])
        assert messages(done, SYI_CALCULATED) == [], reason
        [letter] = messages(done, DLQ)  # at once, in its own transaction: the index may be idle
        expected = reason.format(b=target["bucket_end"], c=first[0]["cid"], t=target["cid"])
        assert letter["error"].startswith(expected) and letter["service"] == "syi-calc", letter["error"]
        assert letter["offset"] == item.offset and letter["key"] == item.key.decode()
    # an operator's stale request is not the service's fault: its health does not mention it
    report = step.health.report()
    assert step.health.refused_inputs == 0 and not [r for r in report.reasons if "restatement" in r]


def test_only_buckets_whose_published_cid_is_known_can_be_restated(ray_records):
    step = index_step(window_ms=2 * MIN)
    values = published(step, ray_records, 4)
    done = commits(step, [request(values[0], 0)])
    [letter] = messages(done, DLQ)
    assert letter["error"].startswith(f"restatement_unknown: bucket {values[0]['bucket_end']} was not published")
    assert len(messages(commits(step, [request(values[-1], 1)]), SYI_CALCULATED)) == 1

    # no checkpoint, but the topic holds buckets up to 10:03 (a lost state): their cids are unknown here
    lost = index_step(Resume(published_upto_ms=T0 + 3 * MIN))
    again = published(lost, ray_records, 4)
    assert [v["bucket_end"] for v in again] == [time_text(T0 + 4 * MIN)]  # the rest is already on the topic
    [letter] = messages(commits(lost, [request(values[1], 0)]), DLQ)
    assert letter["error"].startswith("restatement_unknown:")
    assert len(messages(commits(lost, [request(again[0], 1)]), SYI_CALCULATED)) == 1


def test_a_restore_reapplies_requests_silently_to_the_same_state(ray_records):
    live = index_step()
    values = published(live, ray_records, 4)
    state = orjson.loads(orjson.dumps(live.calculator.state()))
    item = request(values[2], 0)
    [revision] = messages(commits(live, [item]), SYI_CALCULATED)

    restored = index_step(Resume(clock=live.clock.state.to_dict(), calculator=state))
    restored.silent = True
    restored.replay([item], time.time())
    restored.silent = False
    assert restored._restated() == [] and restored.revisions == []  # nothing published again
    assert restored.calculator.state() == live.calculator.state()
    assert restored.calculator.engine.state.last_cid == revision["cid"]


def test_the_state_keeps_the_maps_and_an_older_state_migrates(ray_records):
    calculator = IndexCalculator(load_methodology(), None)
    state = calculator.state()
    assert (state["version"], state["published"], state["revisions"], state["restate_floor_ms"]) == (2, {}, {}, None)
    older = {k: v for k, v in state.items() if k not in ("version", "published", "revisions", "restate_floor_ms")}
    assert migrate_index_state(older) == state
    assert IndexCalculator(load_methodology(), older).state() == state
    with pytest.raises(ValueError, match="newer"):
        IndexCalculator(load_methodology(), {**state, "version": 3})

    step = index_step()
    values = published(step, ray_records, 4)
    messages(commits(step, [request(values[1], 0)]), SYI_CALCULATED)
    saved = orjson.loads(orjson.dumps(step.calculator.state()))
    restored = IndexCalculator(load_methodology(), saved)
    assert restored.state() == step.calculator.state()
    assert list(restored.published) == [millis(v["bucket_end"]) for v in values]


def test_a_revision_record_is_a_valid_index_value_with_its_reason():
    request_value = RestatementRequest.model_validate({
        "request_id": "r", "index_id": "SYI", "bucket_end": "2026-11-27T10:01:00.000Z", "supersedes_cid": "b",
        "revision": 1, "reason": "x", "record": {}, "requested_at": "2026-11-27T12:00:00.000Z"})
    assert request_value.key() == "2026-11-27T10:01:00.000Z"
    for bad in ({"revision": 0}, {"reason": "  "}, {"supersedes_cid": ""}):
        with pytest.raises(ValueError):
            RestatementRequest.model_validate({**request_value.model_dump(), **bad})
    original = IndexValue.model_validate({
        "index_id": "SYI", "bucket_end": "2026-11-27T10:01:00.000Z", "syi_decimal": 0.04, "syi_percent": 4.0,
        "methodology_version": "3.0.0", "status": "ok", "coverage": 1.0, "hhi": 5000.0, "tbill_apy_decimal": None,
        "risk_premium_decimal": None, "constituents": [], "flags": [], "inputs_max_event_time": None,
        "published_at": "2026-11-27T10:01:01.000Z", "input_cid": "i", "prev_cid": None, "cid": "c"})
    assert "restatement_reason" not in orjson.loads(original.model_dump_json())
    revised = audit.restate(original, original, "late input")
    assert (revised.revision, revised.supersedes_cid, revised.restatement_reason) == (1, "c", "late input")
    assert revised.cid == audit.record_cid_of(revised)
    with pytest.raises(ValueError, match="blank"):
        audit.restate(original, original, " ")
