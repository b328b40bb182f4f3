"""kafka_consumer_lag as the store writers set it: partition end minus the offset reached."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from syi_shared.consumer_lag import CONSUMER_LAG, record_consumer_lag


class FakeConsumer:
    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.calls: list[dict] = []

    def get_watermark_offsets(self, place: TopicPartition, **kwargs) -> tuple[int, int]:
        self.calls.append(kwargs)
        return 0, self.ends[place.partition]


def lag(group: str, partition: int) -> float:
    return CONSUMER_LAG.labels(group, "lag.test", str(partition))._value.get()


def test_lag_is_end_minus_offset_and_skips_unconsumed_and_unknown_ends() -> None:
    consumer = FakeConsumer({0: 10, 1: 5, 2: -1, 3: 7})
    reached = [TopicPartition("lag.test", 0, 4), TopicPartition("lag.test", 1, 9),
               TopicPartition("lag.test", 2, 3), TopicPartition("lag.test", 3, -1001)]
    record_consumer_lag(consumer, "g-lag", reached, timeout=2.0)
    assert (lag("g-lag", 0), lag("g-lag", 1)) == (6, 0)  # never negative
    assert consumer.calls == [{"timeout": 2.0}] * 3  # partition 3: nothing consumed, not asked
    record_consumer_lag(consumer, "g-lag-cached", reached[:1], cached=True)
    assert lag("g-lag-cached", 0) == 6 and consumer.calls[-1] == {"cached": True}
