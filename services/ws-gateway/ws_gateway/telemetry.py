"""ws-gateway metrics (names from syi_shared.metric_names; labels stay low-cardinality)."""

from __future__ import annotations

from syi_shared import metric_names as names
from syi_shared.metrics import counter, gauge, histogram

SERVICE = "ws-gateway"

SUBSCRIBERS = gauge(names.WS_SUBSCRIBERS, "Open WebSocket connections, by stream", labels=("stream",))
MESSAGES_SENT = counter(names.WS_MESSAGES_SENT, "Messages written to clients", labels=("stream", "type"))
BYTES_SENT = counter(names.WS_BYTES_SENT, "Bytes of messages written to clients", labels=("stream",))
SLOW_CLIENT_DROPS = counter(
    names.WS_SLOW_CLIENT_DROPS, "Clients closed (4000) for staying behind", labels=("stream",)
)
CONFLATED = counter(names.WS_CONFLATED_MESSAGES, "Values a slow client skipped (newest kept)", labels=("stream",))
AUTH_FAILURES = counter(
    names.WS_AUTH_FAILURES, "Connections refused for a missing or wrong API key", labels=("reason",)
)
REJECTED = counter(names.WS_REJECTED_CONNECTIONS, "Connections refused, by reason", labels=("reason",))
# Kafka receipt of a value -> written to every client's socket buffer
FANOUT_LATENCY = histogram(
    names.WS_FANOUT_LATENCY,
    "Kafka receipt to written to every client",
    labels=("stream",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CONSUMED = counter(names.MESSAGES_CONSUMED, "Messages consumed, by topic", labels=("service", "topic"))
DEAD_LETTERS = counter(names.DEAD_LETTERS, "Messages sent to a DLQ", labels=("service", "topic", "reason"))
