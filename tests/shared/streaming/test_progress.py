"""retry_until_ready: which Kafka errors mean "not yet" (retried) and which are real (raised)."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from syi_shared.streaming.progress import retry_until_ready


def failing(codes: list[int]):
    """A call that raises each code once, then answers."""
    remaining = list(codes)

    def call() -> str:
        if remaining:
            raise KafkaException(KafkaError(remaining.pop(0)))
        return "answer"

    return call


@pytest.mark.parametrize("code", [
    KafkaError.LEADER_NOT_AVAILABLE,  # topics just created
    KafkaError.OFFSET_NOT_AVAILABLE,  # a leader moving after a broker died (three-broker cluster)
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.NOT_COORDINATOR,
])
def test_waits_through_errors_that_mean_not_yet(code):
    assert retry_until_ready(failing([code, code]), timeout=5) == "answer"


def test_raises_real_errors_at_once():
    with pytest.raises(KafkaException) as raised:
        retry_until_ready(failing([KafkaError.TOPIC_AUTHORIZATION_FAILED]), timeout=5)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_gives_up_after_the_timeout():
    with pytest.raises(KafkaException):
        retry_until_ready(failing([KafkaError.LEADER_NOT_AVAILABLE] * 1000), timeout=0.5)
