"""One registry of metric names: `syi_<what>_<unit>`, low-cardinality labels.

Services create their collectors from these names (see `telemetry.py` of each service),
so dashboards and alert rules can rely on one spelling.
"""

from __future__ import annotations

# Pipeline-wide
MESSAGES_PUBLISHED = "syi_messages_published_total"  # labels: service, topic: values handed to the producer
# the ingesters' delivery (syi_shared.publisher, docs/ingestion.md "Delivery"):
MESSAGES_DELIVERED = "syi_messages_delivered_total"  # labels: service, topic: acknowledged by Kafka
DELIVERY_FAILURES = "syi_delivery_failures_total"  # labels: service, topic, kind (librdkafka error name)
MESSAGES_CONFLATED = "syi_messages_conflated_total"  # labels: service, topic: replaced by a newer value of the key
MESSAGES_BACKLOGGED = "syi_messages_backlogged_total"  # labels: service, topic: found the producer full, waited
PUBLISH_BACKLOG = "syi_publish_backlog_messages"  # gauge, labels: service: waiting for room (sources paused)
MESSAGES_CONSUMED = "syi_messages_consumed_total"  # labels: service, topic
DEAD_LETTERS = "syi_dead_letters_total"  # labels: service, topic, reason
SOURCE_ERRORS = "syi_source_errors_total"  # labels: service, source, kind
SOURCE_RECONNECTS = "syi_source_reconnects_total"  # labels: service, source
SOURCE_LAST_SUCCESS = "syi_source_last_success_timestamp_seconds"  # labels: service, source
TASK_FAILURES = "syi_task_failures_total"  # labels: service, task: unexpected exceptions in background tasks (each retried)
KAFKA_CONSUMER_LAG = "kafka_consumer_lag"  # labels: group, topic, partition (established name, no `syi_` prefix)

# Calculation
CALCULATION_LATENCY = "syi_calculation_latency_seconds"  # histogram: newest input event time → publish
FRESHNESS = "syi_freshness_seconds"  # gauge: now − newest published bucket end
BUCKET_EMIT_DELAY = "syi_bucket_emit_delay_seconds"  # histogram: publish − bucket end
LATE_ITEMS = "syi_late_items_total"  # labels: service, topic
DEGRADED_BUCKETS = "syi_degraded_buckets_total"  # labels: service; buckets published degraded after a failed close
INDEX_UPDATES = "syi_index_updates_total"
INDEX_VALUE = "syi_index_value_percent"
RISK_PREMIUM = "syi_risk_premium_decimal"
CONSTITUENT_COMPLETENESS = "constituent_data_completeness"  # established name, no `syi_` prefix
DATA_QUALITY = "syi_data_quality_score"

# Delivery
WS_SUBSCRIBERS = "syi_ws_subscribers"
WS_MESSAGES_SENT = "syi_ws_messages_sent_total"
WS_BYTES_SENT = "syi_ws_bytes_sent_total"
WS_SLOW_CLIENT_DROPS = "syi_ws_slow_client_drops_total"
WS_AUTH_FAILURES = "syi_ws_auth_failures_total"
WS_FANOUT_LATENCY = "syi_ws_fanout_latency_seconds"
API_REQUESTS = "syi_api_requests_total"  # labels: route, status
API_LATENCY = "syi_api_request_latency_seconds"  # labels: route
DB_ERRORS = "syi_db_errors_total"  # labels: service, kind
ROWS_WRITTEN = "syi_rows_written_total"  # labels: service, table
WS_REJECTED_CONNECTIONS = "syi_ws_rejected_connections_total"  # labels: reason (origin, api_key, limit, per_ip, not_found)
WS_CONFLATED_MESSAGES = "syi_ws_conflated_messages_total"  # labels: stream; values a slow client skipped
STORE_BATCH_SECONDS = "syi_store_batch_seconds"  # histogram, labels: service (COPY + upsert + commit of one batch)
STORE_LAST_COMMIT = "syi_store_last_commit_timestamp_seconds"  # gauge, labels: service

# Operations (ops/: dashboards and alert rules read these; see docs/operations.md)
NEWEST_EVENT = "syi_newest_event_timestamp_seconds"  # gauge, labels: service, topic: event time of the newest value handled (freshness SLAs: dl.apy 30 min, metrics.peg 10 min)
CONSTITUENT_RAY = "syi_constituent_ray_decimal"  # gauge, labels: symbol: the constituent's RAY in the newest index value
CONSTITUENT_WEIGHT = "syi_constituent_weight_ratio"  # gauge, labels: symbol: renormalised weight in the newest index value
CONSTITUENT_SCORE = "syi_constituent_score"  # gauge, labels: symbol, score (peg, liquidity, counterparty, worst)
INDEX_UPDATES_PER_MINUTE = "syi:index_updates_per_minute"  # recording rule (ops/prometheus/rules): rate of INDEX_UPDATES × 60
