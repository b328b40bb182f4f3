"""ingest-fred: poll the newest observations, publish each new one once to trad.tbill.

"New" means an observation date later than the last one published for the series. That
date is read back from trad.tbill at start-up (a small compacted topic), so a restart
does not publish the same observation again; if the read fails, the newest observation is
published once more (consumers upsert on series + date, so that is harmless).
On the first run ever, only the newest observation is published: older rows were not
"seen first" now in any useful sense. event_time = when this poll first saw the value.

The last date advances only when Kafka acknowledged the observation (one at a time, in date
order): a delivery that fails is retried by the publisher until it is delivered, and while Kafka
is away the loop waits instead of polling on, so no observation is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import httpx
from pydantic import ValidationError

from ingest_fred import telemetry
from ingest_fred.fred_client import USER_AGENT, FredClient, FredError, Observation
from ingest_fred.settings import Settings
from ingest_fred.telemetry import FRED, Health
from syi_shared.kafka import read_to_end
from syi_shared.backoff import backoff_s
from syi_shared.logs import get_logger
from syi_shared.models import TBill, validation_reason
from syi_shared.publisher import Publisher
from syi_shared.serde import loads
from syi_shared.timefmt import now_text
from syi_shared.topics import TRAD_TBILL

TOPIC = TRAD_TBILL
MISSING_KEY = "FRED_API_KEY is not set (SYI_FRED_API_KEY works too): trad.tbill is not published"


def last_published_date(settings: Settings) -> str | None:
    """The newest observation_date on trad.tbill for the configured series (blocking)."""
    newest = None
    for message in read_to_end([TOPIC], settings, timeout=30.0):
        if message.key() != settings.fred_series.encode():
            continue
        try:
            date = loads(TBill, message.value()).observation_date
        except (ValueError, TypeError):  # not ours to judge here: consumers dead-letter it
            continue
        newest = date if newest is None or date > newest else newest
    return newest


class FredIngester:
    def __init__(self, settings: Settings, publisher: Publisher | None = None,
                 read_back: Callable[[Settings], str | None] = last_published_date) -> None:
        self.settings = settings
        self.log = get_logger(component="fred", series=settings.fred_series)
        self._publisher = publisher
        self.read_back = read_back
        self.health = Health(stale_after_s=2 * settings.fred_poll_interval_s + 60)
        self.last_date: str | None = None
        key = settings.fred_api_key
        if key is None or not key.get_secret_value().strip():
            self.health.disabled[FRED] = MISSING_KEY

    async def run(self, stop: asyncio.Event) -> None:
        if self.health.disabled:
            # stay up and say so (health degraded, with the reason): restarting cannot conjure a key
            self.log.error("fred_api_key_missing", setting="FRED_API_KEY", detail=MISSING_KEY)
            await stop.wait()
            return
        assert self.settings.fred_api_key is not None
        publisher = self._publisher or Publisher(telemetry.SERVICE, self.settings, watch=self.health.broker)
        self.health.publishing = publisher.check
        self.health.broker.start_probe(self.settings.kafka_config())  # /healthz knows when Kafka is gone
        try:
            await self._poll_until(stop, publisher)
        finally:
            self.health.broker.stop_probe()
            left = await asyncio.to_thread(publisher.flush, 10.0)
            self.log.info("stopped", unflushed=left)

    async def _poll_until(self, stop: asyncio.Event, publisher: Publisher) -> None:
        assert self.settings.fred_api_key is not None
        try:
            self.last_date = await asyncio.to_thread(self.read_back, self.settings)
            self.log.info("resumed", last_published=self.last_date)
        except Exception as exc:  # noqa: BLE001 - Kafka trouble must not stop ingestion
            self.log.warning("read_back_failed", topic=TOPIC, error=f"{type(exc).__name__}: {exc}")
        self.health.last_observation = self.last_date
        timeout = httpx.Timeout(self.settings.fred_http_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, headers={"User-Agent": USER_AGENT}) as http:
            client = FredClient(http, self.settings.fred_url, self.settings.fred_api_key)
            # any exception but FredError is logged, counted and retried by the supervisor
            polling = asyncio.create_task(self.health.tasks.run("poll_fred",
                                                                partial(self.poll_forever, client, publisher)))
            delivering = asyncio.create_task(self.health.tasks.run(
                "deliver", partial(publisher.pumping, 0.2, partial(self.health.tasks.progressed, "deliver"))))
            try:
                await stop.wait()
            finally:
                polling.cancel()
                delivering.cancel()
                await asyncio.gather(polling, delivering, return_exceptions=True)

    async def poll_forever(self, client: FredClient, publisher: Publisher) -> None:
        interval = self.settings.fred_poll_interval_s
        failures = 0
        while True:
            await publisher.room()  # paused while values wait for Kafka
            try:
                rows = await client.latest(self.settings.fred_series, self.settings.fred_observations_limit)
                await self.publish_new(rows, publisher)
                self.health.success(FRED)
                failures, delay = 0, interval
            except FredError as exc:
                self.health.error(FRED, exc.kind)
                self.log.warning("source_error", source="fred", kind=exc.kind, detail=str(exc))
                delay = max(backoff_s(failures, self.settings.retry_initial_s, interval), exc.retry_after or 0.0)
                failures += 1
            self.health.tasks.progressed("poll_fred")  # a round done, even a failed poll
            await asyncio.sleep(delay)

    async def publish_new(self, rows: list[Observation], publisher: Publisher) -> int:
        """Publish the observations after `last_date`, oldest first, each acknowledged before the next."""
        known = sorted((row for row in rows if row.value is not None), key=lambda row: row.date)
        if self.last_date is None:
            fresh = known[-1:]
        else:
            fresh = [row for row in known if row.date > self.last_date]
        received = now_text()
        published = 0
        for row in fresh:
            try:
                value = TBill(series=self.settings.fred_series, observation_date=row.date, rate_pct=row.value,
                              basis=self.settings.fred_basis, source="fred", event_time=received,
                              ingest_time=received)
            except ValidationError as exc:
                self.health.error(FRED, "invalid")
                self.log.warning("source_error", source="fred", kind="invalid", detail=validation_reason(exc))
                continue
            delivery = publisher.publish(TOPIC, value)
            if not await publisher.settled(delivery):  # rejected for good: try again next poll, say so
                self.log.error("not_delivered", topic=TOPIC, observation_date=row.date, state=delivery.state,
                               error=delivery.error)
                break
            self.last_date = row.date
            published += 1
            self.log.info("published", topic=TOPIC, observation_date=row.date, rate_pct=row.value)
            self.health.last_observation = self.last_date
        self.health.last_observation = self.last_date
        return published

