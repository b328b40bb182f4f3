"""store-timescale's metrics (names from syi_shared.metric_names)."""

from __future__ import annotations

from syi_shared import metric_names
from syi_shared.metrics import counter, gauge, histogram

SERVICE = "store-timescale"

messages_consumed = counter(
    metric_names.MESSAGES_CONSUMED, "Messages consumed, by topic", labels=("service", "topic")
)
rows_written = counter(
    metric_names.ROWS_WRITTEN, "Rows inserted or changed, by table", labels=("service", "table")
)
dead_letters = counter(
    metric_names.DEAD_LETTERS, "Invalid messages sent to <topic>.dlq", labels=("service", "topic", "reason")
)
db_errors = counter(metric_names.DB_ERRORS, "Database errors, by kind", labels=("service", "kind"))
batch_seconds = histogram(
    metric_names.STORE_BATCH_SECONDS, "Seconds to write and commit one batch", labels=("service",)
)
last_commit = gauge(
    metric_names.STORE_LAST_COMMIT, "Unix time of the last committed batch", labels=("service",)
)
