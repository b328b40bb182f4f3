"""Against the real broker: every topic's example round-trips; bad values land in the DLQ."""

from __future__ import annotations

import base64
import hashlib
import random
import time

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


USDC = b"USDC.binance"
BIG = orjson.dumps({**PRICE, "symbol": "X" * 900_000})  # about 900 KB, under the broker's 1 MB default
GARBAGE = random.Random(7).randbytes(900_000)  # not UTF-8: kept as base64
# (key, raw value, reason the dead letter must start with); the last one is valid.
CASES = [
    (b"bad-json", b'{"symbol": "USDC",', "value: invalid JSON"),
    (b"bad-type", orjson.dumps({**PRICE, "price": "cheap"}), "price: Input should be a valid number, not a string"),
    (b"bad-string-number", orjson.dumps({**PRICE, "price": "0.99985"}), "price: Input should be a valid number"),
    (b"bad-nan", orjson.dumps({**PRICE, "price": 1.0}).replace(b'"price":1.0', b'"price":NaN'), "value: invalid JSON"),
    (b"bad-missing", orjson.dumps({k: v for k, v in PRICE.items() if k != "venue"}), "venue: Field required"),
    (b"bad-future", orjson.dumps({**PRICE, "event_time": "2100-01-01T00:00:00.000Z"}), "future: event_time 2100-"),
    (b"bad-range", orjson.dumps({**PRICE, "price": 1e308}), "out_of_range: price: 1e+308 is above 1e6"),
    (b"WRONG.key", orjson.dumps(PRICE), "key: expected 'USDC.binance', got 'WRONG.key'"),
    (None, orjson.dumps(PRICE), "key: expected 'USDC.binance', got null"),
    (b"bad-big", BIG, "symbol: Value error, must be an upper-case ticker like 'USDC', got 'XXX"),
    (b"bad-garbage", GARBAGE, "value: invalid JSON"),
    (USDC, orjson.dumps(PRICE), None),
]
BROKER_DEFAULT_MAX_BYTES = 1_048_588  # message.max.bytes of a broker left at its defaults


def test_malformed_values_land_in_dlq_with_reason_and_consumer_keeps_going(provisioned, unique_group):
    assert 850_000 < len(BIG) < 1_000_000
    producer = make_producer(provisioned)
    for key, raw, _ in CASES:
        # one partition keeps one order; the header tells this run's messages from others'
        producer.produce("cc.prices", key=key, value=raw, partition=0, headers={"test": unique_group})
    assert producer.flush(30) == 0

    consumer = make_consumer(unique_group, provisioned, **{"session.timeout.ms": 6000})
    consumer.subscribe(["cc.prices"])
    ours, decoded = [], []
    deadline = time.monotonic() + 30
    while len(ours) < len(CASES) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        if (message.headers() or []) != [("test", unique_group.encode())]:
            continue
        ours.append(message)
        decoded.append(decode_or_dead_letter(message, producer, unique_group))
    consumer.close()
    assert producer.flush(30) == 0  # the broker took every dead letter, the big ones too
    assert [m.key() for m in ours] == [key for key, _, _ in CASES]
    assert decoded[:-1] == [None] * (len(CASES) - 1)
    assert decoded[-1] is not None and decoded[-1].symbol == "USDC"

    dlq = [m for m in read_to_end(["cc.prices.dlq"], provisioned) if orjson.loads(m.value())["service"] == unique_group]
    assert len(dlq) == len(CASES) - 1
    assert all(len(m.value()) < BROKER_DEFAULT_MAX_BYTES for m in dlq)
    letters = [DeadLetter.model_validate(orjson.loads(m.value())) for m in dlq]
    for (key, raw, reason), letter, message in zip(CASES, letters, dlq):
        assert letter.error.startswith(reason), (key, letter.error)
        assert message.key() == key and letter.key == (key.decode() if key is not None else None)
        assert letter.source_topic == "cc.prices" and letter.partition == 0 and letter.offset is not None
    by_key = {letter.key: letter for letter in letters}
    assert by_key["bad-missing"].raw_value == CASES[4][1].decode() and by_key["bad-missing"].raw_length is None
    big, garbage = by_key["bad-big"], by_key["bad-garbage"]
    assert big.raw_value == BIG[:65_536].decode()
    assert (big.raw_length, big.raw_sha256) == (len(BIG), hashlib.sha256(BIG).hexdigest())
    assert base64.b64decode(garbage.raw_value) == GARBAGE[:65_536]
    assert (garbage.raw_length, garbage.raw_sha256) == (len(GARBAGE), hashlib.sha256(GARBAGE).hexdigest())


def test_read_to_end_reads_committed_records_below_the_commit_markers_and_skips_aborted_ones(kafka_settings):
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test.txn.{random.randrange(1 << 30)}"
    admin = AdminClient(kafka_settings.kafka_config())  # kept alive until the topic exists
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    producer = make_producer(kafka_settings, **{"transactional.id": f"test-{name}"})
    producer.init_transactions(30)
    for batch, commit in ((b"a", True), (b"x", False), (b"b", True)):
        producer.begin_transaction()
        for i in range(3):
            producer.produce(name, key=b"k", value=batch + str(i).encode())
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    values = [m.value() for m in read_to_end([name], kafka_settings, timeout=30)]
    # three transactions = nine records + three markers: the last record is not at high - 1
    assert values == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]
