"""The Bytewax sink: each `Commit` the step emits becomes one Kafka transaction
(`syi_shared.streaming.transactions`). Bytewax's own delivery is at-least-once; exactly-once
comes from the transaction holding the outputs and the checkpoint together."""

from __future__ import annotations

from collections.abc import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from syi_shared.streaming.step import Commit
from syi_shared.streaming.transactions import TransactionalWriter


class TransactionPartition(StatelessSinkPartition[Commit]):
    def __init__(self, writer: TransactionalWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[Commit]) -> None:
        for commit in items:
            self.writer.write(commit)

    def close(self) -> None:
        self.writer.close()


class TransactionSink(DynamicSink[Commit]):
    def __init__(self, make_writer: Callable[[], TransactionalWriter]) -> None:
        self.make_writer = make_writer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> TransactionPartition:
        return TransactionPartition(self.make_writer())
