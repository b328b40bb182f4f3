"""This service's metrics (names from syi_shared.metric_names)."""

from __future__ import annotations

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge, histogram

SERVICE = "store-clickhouse"

MESSAGES_CONSUMED = counter(
    metric_names.MESSAGES_CONSUMED, "Messages read from Kafka, by topic", labels=("service", "topic")
)
DEAD_LETTERS = counter(
    metric_names.DEAD_LETTERS, "Invalid messages sent to <topic>.dlq", labels=("service", "topic", "reason")
)
ROWS_WRITTEN = counter(metric_names.ROWS_WRITTEN, "Rows inserted, by table", labels=("service", "table"))
DB_ERRORS = counter(metric_names.DB_ERRORS, "Failed store operations, by kind", labels=("service", "kind"))
BATCH_SECONDS = histogram(
    metric_names.STORE_BATCH_SECONDS, "Time to insert one batch and commit its offsets", labels=("service",)
)
LAST_COMMIT = gauge(metric_names.STORE_LAST_COMMIT, "Unix time of the last committed batch", labels=("service",))
