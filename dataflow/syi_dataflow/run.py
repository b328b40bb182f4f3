"""A calculator's whole life: telemetry, restore + flow, SIGTERM/SIGINT -> clean stop (exit 0)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from bytewax.dataflow import Dataflow
from confluent_kafka import KafkaException
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from syi_shared.checkpoint import CheckpointError
from syi_shared.logs import get_logger
from syi_shared.streaming.settings import StreamSettings
from syi_shared.streaming.telemetry import StreamHealth
from syi_shared.telemetry import serve_telemetry
from syi_dataflow.flow import STOP

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class WithBytewaxMetrics:
    """A registry-like collector for /metrics: ours plus Bytewax's per-step metrics, read from
    Bytewax's own API (which serves the Python registry too, so those are skipped there)."""

    def __init__(self, api_port: int | None) -> None:
        self.url = f"http://127.0.0.1:{api_port}/metrics" if api_port else None

    def collect(self) -> Iterator[Any]:
        ours = list(REGISTRY.collect())
        yield from ours
        if self.url is None:
            return
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:  # noqa: S310 (loopback)
                text = response.read().decode()
        except OSError:
            return
        names = {family.name for family in ours}
        for family in text_string_to_metric_families(text):
            if family.name.startswith("bytewax_") and family.name not in names:
                yield family


def run_flow(flow: Dataflow, settings: StreamSettings) -> None:
    """Run in this process (Bytewax's `cli_main`, one worker) until the input ends or a stop."""
    from bytewax.run import cli_main

    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=settings.epoch_seconds))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_service(service: str, settings: StreamSettings,
                build: Callable[[StreamSettings, StreamHealth], Dataflow]) -> None:
    log = get_logger()
    # Before any thread exists: block the stop signals everywhere, one thread waits for them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_wait_for_stop, args=(service, settings.stop_timeout_seconds), name="stop", daemon=True).start()
    health = StreamHealth(service)
    if settings.metrics_port:
        api_port = settings.bytewax_api_port or _free_port()
        os.environ["BYTEWAX_DATAFLOW_API_ENABLED"] = "true"
        os.environ["BYTEWAX_DATAFLOW_API_PORT"] = str(api_port)
        serve_telemetry(settings.health_host, settings.metrics_port, health.report, WithBytewaxMetrics(api_port))  # type: ignore[arg-type]
    try:
        flow = build(settings, health)
    except (ValueError, RuntimeError, KafkaException, CheckpointError, TimeoutError) as exc:
        # bad methodology file, missing topics, no broker, unreadable checkpoint
        log.error("startup_failed", error=str(exc))
        raise SystemExit(2) from None
    log.info("started", instance=settings.instance(service), metrics_port=settings.metrics_port, tail=settings.tail)
    run_flow(flow, settings)
    log.info("stopped", reason="signal" if STOP.is_set() else "end of input")


def _wait_for_stop(service: str, timeout: float) -> None:
    log = get_logger(service=service)  # contextvars do not follow into this thread
    received = signal.sigwait(STOP_SIGNALS)
    log.info("stopping", signal=signal.Signals(received).name)
    STOP.set()
    time.sleep(timeout)
    # Still running: stop abruptly. Safe: what was not committed is redone from the checkpoint.
    log.warning("stop_timeout", seconds=timeout)
    os._exit(0)
