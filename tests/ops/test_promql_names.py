"""The PromQL reader the rule and dashboard tests rely on: it must find every metric a query
selects and nothing else, or those tests would pass for the wrong reason."""

from __future__ import annotations

import pytest

from tests.ops.ops_tools import promql_metric_names, unknown_metrics


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("histogram_quantile(0.95, sum by (job, le) (rate(syi_calculation_latency_seconds_bucket[5m]))) > 5",
         {"syi_calculation_latency_seconds_bucket"}),
        ('(time() - max(syi_newest_event_timestamp_seconds{topic="dl.apy"}) > 1800) or '
         '(sum(increase(syi_messages_published_total{topic="dl.apy"}[30m])) == 0)',
         {"syi_newest_event_timestamp_seconds", "syi_messages_published_total"}),
        ('syi_constituent_score{symbol=~"$symbol",score="peg"} * 100', {"syi_constituent_score"}),
        ("sum(rate(syi_ws_bytes_sent_total[$__rate_interval])) / 1e3", {"syi_ws_bytes_sent_total"}),
        ("syi:index_updates_per_minute", {"syi:index_updates_per_minute"}),
        ('up{job!="prometheus"} == 0', {"up"}),
        ("rate(kafka_consumer_lag[5m] offset 1h) unless on (group) absent(up)", {"kafka_consumer_lag", "up"}),
        ('sum(rate(syi_api_requests_total{status=~"5..", route="a (b)"}[5m]))', {"syi_api_requests_total"}),
    ],
)
def test_reads_the_metric_names_of_an_expression(expr, names):
    assert promql_metric_names(expr) == names


def test_flags_names_outside_the_registry_but_accepts_histogram_series_and_builtins():
    assert unknown_metrics("rate(syi_api_request_latency_seconds_count[5m]) + up") == set()
    assert unknown_metrics("rate(syi_made_up_total[5m]) + syi_freshness_seconds") == {"syi_made_up_total"}
