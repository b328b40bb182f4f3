"""A source stops, no replay markers (the live situation): silent partitions turn idle after
SYI_IDLE_TIMEOUT_SECONDS, buckets keep closing every minute, and the constituent whose feed
stopped is excluded with the reason the methodology gives (stale_book)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syi_cli.compute import compute_tape
from syi_cli.tape import play_tape
from syi_shared.methodology.params import load_methodology
from syi_shared.settings import ServiceSettings
from syi_shared.timefmt import millis
from tests.ray_calc.streams import MINUTE, Calculator, comparable, make_tape, tape_span, values_since, wait_for
from tests.syi_calc.test_parity import now_ms

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

STOPPED = "DAI.binance"  # DAI's only order book


def test_stopped_feed_buckets_keep_closing_and_constituent_is_excluded(provisioned: ServiceSettings, tmp_path: Path) -> None:
    first = tape_span(make_tape(tmp_path / "full.jsonl", "12m")).first_ms
    stop_at = first + 3 * MINUTE

    def dropped(line: dict[str, Any]) -> bool:
        return line["topic"] == "cc.orderbook" and line["key"] == STOPPED and millis(line["value"]["event_time"]) >= stop_at

    tape = make_tape(tmp_path / "stopped.jsonl", "12m", drop=dropped)
    batch = compute_tape(tape, load_methodology())
    want = [comparable(value.model_dump(mode="json")) for value in batch.values]

    since = now_ms()
    # Nothing but event time and idleness: dl.apy, ex.mktcap and trad.tbill say nothing after
    # the first minute and the DAI book partition goes silent, so every close after the first
    # minute needs the idle rule.
    env = {"SYI_IDLE_TIMEOUT_SECONDS": "2"}
    ray = Calculator("ray_calc", provisioned, since, tmp_path, env).start()
    syi = Calculator("syi_calc", provisioned, since, tmp_path, env).start()
    try:
        play_tape(tape, provisioned, speed=60)
        values = wait_for(
            lambda: len(v := values_since(provisioned, "syi.calculated", since)) >= len(want) and v,
            90, f"{len(want)} records",
        )
    finally:
        ray.stop(), syi.stop()

    assert [comparable(value) for value in values] == want  # every minute, as in batch
    reasons = [{row["symbol"]: row["excluded_reason"] for row in value["constituents"]} for value in values]
    assert all(reason["DAI"] is None for reason in reasons[:5])
    assert reasons[-1]["DAI"] == "stale_book"  # its last book is older than 5 minutes
    assert sum(reason["DAI"] == "stale_book" for reason in reasons) >= 3
    assert all(reason[symbol] is None for reason in reasons for symbol in ("USDT", "USDC"))
