"""One Kafka transaction per `Commit` (a bucket's outputs, its dead letters, its close mark and
any snapshot), with a transactional producer whose id is the calculator instance's: starting it
fences any older copy still running and aborts what that copy left open (docs/streaming.md,
"Exactly once").

A transaction that fails for a reason Kafka says is passing (broker restart, coordinator
moved, timeout) is aborted and written again, with backoff, for as long as it takes: the step
waits (backpressure) rather than lose or skip a bucket. A fatal error (the producer was fenced:
after a broker outage longer than the transaction timeout the coordinator bumps the epoch) gets
a new producer under the same id, which writes the same transaction again; fenced more than
`MAX_REINITS` times in `REINIT_WINDOW_S` means another copy is really running, and the process
ends (its restart resumes from the checkpoint).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException, Producer

from syi_shared.kafka import PRODUCER_DEFAULTS
from syi_shared.logs import get_logger
from syi_shared.streaming.step import Commit

TIMEOUT_S = 30.0
MAX_REINITS = 3
REINIT_WINDOW_S = 300.0
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class FatalTransactionError(RuntimeError):
    """The producer can no longer write (fenced by a newer instance, or another fatal error)."""


def transactional_id(instance: str) -> str:
    return f"syi-{instance}"


class TransactionalWriter:
    def __init__(self, config: dict[str, Any], instance: str, state_topic: str) -> None:
        self.log = get_logger(step="sink", instance=instance)
        self.state_topic = state_topic
        self.key = instance.encode()
        self.config = {
            **config, **PRODUCER_DEFAULTS, "transactional.id": transactional_id(instance),
            "transaction.timeout.ms": 60_000,
        }
        self.producer = self._start()
        self.committed = 0
        self.reinits: list[float] = []

    def _start(self) -> Producer:
        producer = Producer(self.config)
        self._retrying(producer.init_transactions, "init_transactions")
        return producer

    def _reinit(self, error: str) -> None:
        now = time.monotonic()
        self.reinits = [at for at in self.reinits if now - at < REINIT_WINDOW_S] + [now]
        if len(self.reinits) > MAX_REINITS:
            raise FatalTransactionError(f"fenced {len(self.reinits)} times in {REINIT_WINDOW_S:.0f} s: is another "
                                        f"copy running with the same SYI_INSTANCE_ID? last error: {error}")
        self.log.warning("producer_fenced", error=error, note="a new producer takes over the same transactional id")
        self.producer = self._start()

    def write(self, commit: Commit) -> None:
        attempt = 0
        while True:
            try:
                self.producer.begin_transaction()
                for message in commit.messages:
                    self._produce(message.topic, message.key, message.value)
                for record in commit.state:
                    self._produce(self.state_topic, self.key, record)
                self._retrying(lambda: self.producer.commit_transaction(TIMEOUT_S), "commit_transaction")
                self.committed += 1
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal():
                    self._reinit(str(error))
                    continue
                self.log.warning("transaction_failed", error=str(error), bucket_ms=commit.bucket_end_ms, attempt=attempt)
                try:
                    self._abort()
                except FatalTransactionError as fatal:
                    self._reinit(str(fatal))
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value)
                return
            except BufferError:
                self.producer.poll(0.1)  # the local queue is full: let deliveries drain it

    def _abort(self) -> None:
        try:
            self._retrying(lambda: self.producer.abort_transaction(TIMEOUT_S), "abort_transaction")
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise FatalTransactionError(str(exc.args[0])) from exc
            # no transaction in progress (begin failed): nothing to abort

    def _retrying(self, call: Any, what: str) -> None:
        """Kafka says some failures may simply be retried (the same call again)."""
        attempt = 0
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or error.fatal() or error.txn_requires_abort():
                    raise
                self.log.warning("transaction_retry", call=what, error=str(error), attempt=attempt)
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1

    def close(self, timeout: float = 10.0) -> None:
        self.producer.flush(timeout)
