"""The tape player's side of the progress-marker convention (ProgressAnnouncer): what a
player calls, and what lands on `syi.progress`."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from syi_cli.tape import BadLine, read_tape
from syi_shared.kafka import make_consumer, make_producer
from syi_shared.serde import dumps
from syi_shared.settings import ServiceSettings
from syi_shared.models import ProgressMarker
from syi_shared.streaming.progress import PROGRESS_TOPIC_NAME, ProgressAnnouncer, bucket_end_of
from syi_shared.timefmt import millis
from tests.ray_calc.streams import make_tape, values_since
from tests.syi_calc.test_parity import now_ms

pytestmark = pytest.mark.integration


def test_announcer_marks_minutes_with_end_offsets_and_a_final_marker(provisioned: ServiceSettings, tmp_path: Path) -> None:
    since = now_ms()
    tape = [item for item in read_tape(make_tape(tmp_path / "t.jsonl", "3m")) if not isinstance(item, BadLine)]
    producer = make_producer(provisioned)
    announcer = ProgressAnnouncer(provisioned, producer, min_interval=0.0, heartbeat=3600)
    for item in tape:  # what a player does around each message
        announcer.before(millis(item.value.event_time))
        producer.produce(item.topic, key=item.key.encode(), value=dumps(item.value))
    announcer.finish(millis(tape[-1].value.event_time))

    markers = [ProgressMarker.model_validate(v) for v in values_since(provisioned, PROGRESS_TOPIC_NAME, since)]
    assert len(markers) == announcer.announced == 1 + 2 + 1  # start, two minute crossings, final
    first, *middle, final = markers
    assert first.run_start == tape[0].value.event_time and first.upto == tape[0].value.event_time
    assert [millis(m.upto) % 60_000 < 15_000 for m in middle] == [True, True]  # just after each boundary
    assert final.final and millis(final.upto) == bucket_end_of(millis(tape[-1].value.event_time))
    uptos = [millis(m.upto) for m in markers]
    assert uptos == sorted(uptos)
    # Every message with an event time before a marker's `upto` sits below its offsets.
    consumer = make_consumer("syi-test-offsets", provisioned)
    try:
        for topic, partitions in final.offsets.items():
            for partition, offset in partitions.items():
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, int(partition)), timeout=10)
                assert offset == high
    finally:
        consumer.close()
    produced_before = sum(1 for item in tape if millis(item.value.event_time) < millis(middle[0].upto))
    grown = sum(middle[0].offsets[t][p] - first.offsets[t][p] for t in first.offsets for p in first.offsets[t])
    assert grown == produced_before
