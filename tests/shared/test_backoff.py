"""The ingesters' shared retry pieces: jittered backoff, Retry-After, the HTTP error kind."""

from __future__ import annotations

from syi_shared.backoff import backoff_s, retry_after_seconds
from syi_shared.source_health import http_error_kind


def test_backoff_is_half_fixed_half_random_up_to_the_cap() -> None:
    for attempt in range(12):
        cap = min(60.0, 0.5 * 2**attempt)
        assert cap / 2 <= backoff_s(attempt, 0.5, 60.0) <= cap


def test_retry_after_reads_seconds_and_ignores_anything_else() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None


def test_http_error_kind_labels_429_5xx_and_other_4xx() -> None:
    assert [http_error_kind(s) for s in (429, 500, 503, 400, 404, 418)] == [
        "http_429", "http_5xx", "http_5xx", "http_4xx", "http_4xx", "http_4xx"]
