import math
import re
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from syi_shared import serde
from syi_shared.models import DeadLetter, IndexValue, OrderBook, PriceTick, TBill, validation_reason
from syi_shared.topics import TOPICS, all_topics, topic
from tests.shared.examples import BY_TOPIC, DLQ, ORDERBOOK, PRICE, SYI, TBILL


@pytest.mark.parametrize("name", sorted(BY_TOPIC))
def test_topics_md_examples_are_accepted_as_written(name):
    dumped = topic(name).model.model_validate(BY_TOPIC[name]).model_dump(mode="json")
    # every field as written; optional fields the example omits come back with their defaults
    assert {key: dumped[key] for key in BY_TOPIC[name]} == BY_TOPIC[name]


def test_dead_letter_example_is_accepted():
    from syi_shared.models import DeadLetter

    assert DeadLetter.model_validate(DLQ).error == "price: Input should be a finite number"


@pytest.mark.parametrize("name", sorted(BY_TOPIC))
def test_serialisation_round_trips_byte_identically(name):
    model = topic(name).model.model_validate(BY_TOPIC[name])
    raw = serde.dumps(model)
    again = serde.loads(topic(name).model, raw)
    assert again == model
    assert serde.dumps(again) == raw


def reason(model, payload):
    with pytest.raises(ValidationError) as info:
        model.model_validate(payload)
    return validation_reason(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_price_names_the_field(bad):
    assert reason(PriceTick, {**PRICE, "price": bad}).startswith("price: ")


def test_time_without_z_suffix_is_rejected():
    assert "event_time" in reason(PriceTick, {**PRICE, "event_time": "2026-11-27T10:00:01.234+00:00"})
    assert "ingest_time" in reason(PriceTick, {**PRICE, "ingest_time": "2026-11-27 10:00:01"})


def test_lower_case_symbol_is_rejected():
    assert reason(PriceTick, {**PRICE, "symbol": "usdc", "base": "usdc"}).startswith("symbol: ")


def test_symbol_must_equal_base():
    assert "must equal base" in reason(PriceTick, {**PRICE, "base": "USDT"})


def test_crossed_quote_is_rejected():
    assert "crossed" in reason(PriceTick, {**PRICE, "bid": 1.0001, "ask": 0.9999})


def test_missing_field_is_named():
    payload = dict(PRICE)
    del payload["venue"]
    assert reason(PriceTick, payload) == "venue: Field required"


def test_negative_quantity_is_rejected():
    bad = {**ORDERBOOK, "asks": [[0.9999, -1.0]]}
    assert reason(OrderBook, bad) == "out_of_range: asks.0.1: -1.0 is below 0"


def test_bids_must_descend_and_asks_ascend():
    assert "descending" in reason(OrderBook, {**ORDERBOOK, "bids": list(reversed(ORDERBOOK["bids"]))})
    assert "ascending" in reason(OrderBook, {**ORDERBOOK, "asks": list(reversed(ORDERBOOK["asks"]))})


def test_wrong_schema_version_is_rejected():
    assert reason(TBill, {**TBILL, "schema_version": 2}).startswith("schema_version: ")


def test_observation_date_must_be_a_date():
    assert reason(TBill, {**TBILL, "observation_date": "2026-13-01"}).startswith("observation_date: ")


def test_index_status_is_ok_or_degraded():
    assert reason(IndexValue, {**SYI, "status": "broken"}).startswith("status: ")


def test_optional_new_field_is_allowed_and_kept():
    tick = PriceTick.model_validate({**PRICE, "spread_bps": 1.0})
    assert tick.model_dump()["spread_bps"] == 1.0


def test_registry_follows_architecture_table():
    assert TOPICS["cc.prices"].retention_ms == 7 * 86_400_000
    assert TOPICS["cc.orderbook"].retention_ms == 86_400_000
    # every rate as it was known then, for replays and restatements: not compacted
    assert TOPICS["trad.tbill"].retention_ms == TOPICS["syi.calculated"].retention_ms == 5 * 365 * 86_400_000
    assert all(t.cleanup_policy == "delete" for t in TOPICS.values())
    names = [t.name for t in all_topics()]
    assert len(names) == 23 and "cc.prices.dlq" in names  # 10 data topics, their .dlq, syi.progress, 2 state
    requests = TOPICS["syi.restatements"]
    assert (requests.partitions, requests.cleanup_policy, requests.retention_ms) == (1, "delete", 5 * 365 * 86_400_000)
    assert requests.consumers == ("syi-calc",) and requests.stale_after_s is None


def test_canonical_json_sorts_keys_without_spaces():
    assert serde.canonical_json({"b": 1, "a": [1.5, None]}) == b'{"a":[1.5,null],"b":1}'


DOCS_TOPICS = Path(__file__).resolve().parents[2] / "docs" / "topics.md"


def docs_topics_examples() -> list[tuple[str, dict]]:
    """(topic, value) of every JSON example in docs/topics.md; the topic is the first
    backticked name of the paragraph the example follows."""
    pattern = re.compile(r"(?ms)^`([^`]+)`[^\n]*\n(?:[^\n]+\n)*?```json\n(.*?)```")
    return [(match.group(1), orjson.loads(match.group(2))) for match in pattern.finditer(DOCS_TOPICS.read_text())]


def test_docs_topics_md_examples_are_valid_values_of_their_topic():
    examples = docs_topics_examples()
    assert {name for name, _ in examples} == {*BY_TOPIC, "<topic>.dlq"} - {"metrics.peg", "metrics.liquidity"}
    for name, value in examples:
        model = DeadLetter if name == "<topic>.dlq" else topic(name).model
        dumped = model.model_validate(value).model_dump(mode="json")
        assert {key: dumped[key] for key in value} == value, name
