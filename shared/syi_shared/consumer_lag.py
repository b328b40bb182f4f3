"""`kafka_consumer_lag` for group consumers that poll Kafka themselves (the store writers):
how many messages lie between a partition's end and the offset the group has reached.

(The Bytewax calculators get theirs from Bytewax, renamed in `streaming.StreamMetrics`.)
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from syi_shared import metric_names
from syi_shared.metrics import gauge

CONSUMER_LAG = gauge(
    metric_names.KAFKA_CONSUMER_LAG, "Messages behind the partition end", labels=("group", "topic", "partition")
)


def record_consumer_lag(
    consumer: Consumer, group: str, reached: Iterable[TopicPartition], *, cached: bool = False, timeout: float = 2.0
) -> None:
    """Set the gauge for each partition from `reached` (positions or committed offsets).

    `cached=True` uses the end the consumer last fetched (no broker round trip). Partitions with
    nothing consumed yet (negative offset) or no known end are left alone.
    """
    for place in reached:
        if place.offset < 0:
            continue
        if cached:
            _, high = consumer.get_watermark_offsets(place, cached=True)
        else:
            _, high = consumer.get_watermark_offsets(place, timeout=timeout)
        if high < 0:
            continue
        CONSUMER_LAG.labels(group, place.topic, str(place.partition)).set(max(high - place.offset, 0))
