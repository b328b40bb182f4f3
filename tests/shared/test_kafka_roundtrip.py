"""Against the real broker: every topic's example round-trips; bad values land in the DLQ."""

from __future__ import annotations

import orjson
import pytest

from syi_shared import serde
from syi_shared.admin import provision_topics
from syi_shared.codec import decode_or_dead_letter
from syi_shared.kafka import make_consumer, make_producer, read_to_end
from syi_shared.models import DeadLetter
from syi_shared.topics import topic
from tests.shared.examples import BY_TOPIC, PRICE

pytestmark = pytest.mark.integration


def consume(settings, topics, group, count, timeout=30.0):
    import time

    consumer = make_consumer(group, settings, **{"session.timeout.ms": 6000})
    consumer.subscribe(topics)
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            messages.append(message)
            consumer.store_offsets(message)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return messages


def test_provisioning_twice_changes_nothing(kafka_settings):
    first = provision_topics(kafka_settings)
    second = provision_topics(kafka_settings)
    assert set(second.values()) == {"exists"}
    assert set(first) == set(second)


@pytest.mark.parametrize("name", sorted(BY_TOPIC))
def test_valid_message_is_consumed_back_equal(provisioned, unique_group, name):
    value = topic(name).model.model_validate(BY_TOPIC[name])
    producer = make_producer(provisioned)
    producer.produce(name, key=value.key().encode(), value=serde.dumps(value), headers={"test": unique_group})
    assert producer.flush(10) == 0
    # the topic may hold other tests' messages: ours carries this test's header
    messages = [
        m for m in read_to_end([name], provisioned)
        if (m.headers() or []) == [("test", unique_group.encode())]
    ]
    assert len(messages) == 1, f"expected our one message on {name}"
    decoded = decode_or_dead_letter(messages[0], make_producer(provisioned), "test")
    assert decoded == value
    assert messages[0].key() == value.key().encode()


BAD_VALUES = {
    "bad json": b'{"symbol": "USDC",',
    "wrong type": orjson.dumps({**PRICE, "price": "cheap"}),
    "nan": orjson.dumps({**PRICE, "price": 1.0}).replace(b'"price":1.0', b'"price":NaN'),
    "missing field": orjson.dumps({k: v for k, v in PRICE.items() if k != "venue"}),
}


def test_malformed_values_land_in_dlq_with_reason_and_consumer_keeps_going(provisioned, unique_group):
    producer = make_producer(provisioned)
    good = serde.dumps(topic("cc.prices").model.model_validate(PRICE))
    sent = [(f"bad-{kind}".encode(), raw) for kind, raw in BAD_VALUES.items()] + [(b"good", good)]
    for key, raw in sent:
        # one partition keeps one order; the header tells this run's messages from others'
        producer.produce("cc.prices", key=key, value=raw, partition=0, headers={"test": unique_group})
    producer.flush(10)

    consumer = make_consumer(unique_group, provisioned, **{"session.timeout.ms": 6000})
    consumer.subscribe(["cc.prices"])
    import time

    ours, decoded = [], []
    deadline = time.monotonic() + 30
    while len(ours) < len(sent) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        if (message.headers() or []) != [("test", unique_group.encode())]:
            continue
        ours.append(message)
        decoded.append(decode_or_dead_letter(message, producer, "test-consumer"))
    consumer.close()
    producer.flush(10)
    assert [m.key() for m in ours] == [k for k, _ in sent]
    assert decoded[:-1] == [None] * len(BAD_VALUES)
    assert decoded[-1] is not None and decoded[-1].symbol == "USDC"

    letters = [
        DeadLetter.model_validate(orjson.loads(m.value()))
        for m in read_to_end(["cc.prices.dlq"], provisioned)
    ]
    by_key = {letter.key: letter for letter in letters if letter.service == "test-consumer"}
    assert by_key["bad-bad json"].error.startswith("value: invalid JSON")
    assert by_key["bad-wrong type"].error.startswith("price: Input should be a valid number")
    assert by_key["bad-nan"].error.startswith("value: invalid JSON")
    assert by_key["bad-missing field"].error == "venue: Field required"
    assert by_key["bad-missing field"].raw_value == BAD_VALUES["missing field"].decode()
    assert by_key["bad-nan"].source_topic == "cc.prices" and by_key["bad-nan"].offset is not None
