"""The live page in headless Chromium: served by the real API over real stored data, with a
stand-in gateway that speaks the ws-gateway envelope. The ticker must follow the WebSocket and
the chart must be drawn; a screenshot is kept in test-artifacts/."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import orjson
import pytest
import websockets

from syi_shared.models import IndexValue
from syi_shared.timefmt import format_utc, now_text, utc_now
from tests.conftest import REPO_ROOT, free_port
from tests.rest_api.conftest import api_process
from tests.rest_api.devtools import Browser, chromium_binary
from tests.store_timescale import records as r

BINARY = chromium_binary()
SCREENSHOT = REPO_ROOT / "test-artifacts" / "rest_api_live_page.png"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.skipif(BINARY is None, reason="chromium is not installed (Debian: apt-get install -y chromium)"),
]


class StandInGateway:
    """welcome + snapshot on connect, then whatever the test publishes, in the gateway's envelope."""

    def __init__(self, snapshot: dict) -> None:
        self.snapshot = snapshot
        self.clients: set = set()
        self.connected = asyncio.Event()

    async def handle(self, connection) -> None:
        await connection.send(self.envelope("welcome", {"stream": "syi", "snapshot": True}))
        await connection.send(self.envelope("snapshot", self.snapshot))
        self.clients.add(connection)
        self.connected.set()
        try:
            await connection.wait_closed()
        finally:
            self.clients.discard(connection)

    async def publish(self, record: dict, kind: str = "syi") -> None:
        for connection in list(self.clients):
            await connection.send(self.envelope(kind, record))

    @staticmethod
    def envelope(kind: str, data: dict) -> str:
        return orjson.dumps({"type": kind, "timestamp": now_text(), "data": data}).decode()


def constituents_with_an_exclusion(template) -> list[dict]:
    usdt = template.constituents[0].model_dump()
    usdc = {**usdt, "symbol": "USDC", "weight": 0.40, "weight_renormalised": 0.40, "counterparty_score": 0.9}
    dai = {**usdt, "symbol": "DAI", "weight": 0.15, "weight_renormalised": 0.0, "ray_decimal": None,
           "excluded_reason": "liquidity_score below 0.7"}
    return [usdt, usdc, dai]


async def test_live_page_ticker_follows_the_websocket_and_the_chart_is_drawn(api_dsn, writer):
    index_id = r.unique_symbol("L")
    newest = utc_now().replace(second=0, microsecond=0)
    template = r.index_value(format_utc(newest), 0.045)
    rows = constituents_with_an_exclusion(template)
    values = [
        r.index_value(format_utc(newest - timedelta(minutes=89 - i)),
                      round(0.045 + 0.002 * math.sin(i / 9) + i / 100_000, 7), index_id=index_id, constituents=rows)
        for i in range(90)
    ]
    await writer.write([("syi.calculated", v) for v in values])

    gateway = StandInGateway(values[-1].model_dump(mode="json"))
    ws_port = free_port()
    async with websockets.serve(gateway.handle, "127.0.0.1", ws_port):
        env = {"SYI_INDEX_ID": index_id, "SYI_WS_PUBLIC_URL": f"ws://127.0.0.1:{ws_port}/stream/syi/live"}
        with api_process(api_dsn, **env) as (base, _):
            async with Browser(BINARY) as browser:
                page = await browser.page()
                try:
                    await page.goto(f"{base}/")
                    await asyncio.wait_for(gateway.connected.wait(), 30)
                    # the API's history (90 minute values) is on the chart, the snapshot on the ticker
                    await page.wait_for("Number(document.getElementById('history-chart').dataset.points) === 90")
                    await page.wait_for("document.body.dataset.wsUpdates === '1'")
                    first = await page.evaluate("document.getElementById('syi-value').textContent")

                    update = r.index_value(format_utc(newest + timedelta(minutes=1)), 0.051234, index_id=index_id,
                                           constituents=rows)
                    await gateway.publish(update.model_dump(mode="json"))
                    await page.wait_for("document.getElementById('syi-value').textContent === '5.1234'")
                    await page.wait_for("Number(document.getElementById('history-chart').dataset.points) === 91")

                    drawn = await page.evaluate(PIXELS)
                    table = await page.evaluate(
                        "[...document.querySelectorAll('#constituents-body tr')].map(r => r.innerText)")
                    badges = await page.evaluate(
                        "['status', 'freshness', 'connection'].map(id => document.getElementById(id).textContent)")
                    premium = await page.evaluate("document.getElementById('risk-premium').textContent")
                    size = await page.screenshot(SCREENSHOT)
                finally:
                    await page.close()
    assert first == f"{values[-1].syi_percent:.4f}"
    assert drawn["painted"] > 5_000 and drawn["line"] > 300, drawn  # axes, labels and a visible series
    assert len(table) == 3 and "excluded: liquidity_score below 0.7" in table[2]
    assert table[0].startswith("USDT") and "45.00 %" in table[0]
    assert badges == ["ok", "fresh", "live"]
    assert premium.startswith("87.3 bps")  # 0.051234 − 0.0425 = 0.008734
    assert size > 10_000 and SCREENSHOT.exists()


def revision_of(value: IndexValue, syi_decimal: float, reason: str) -> IndexValue:
    made = r.index_value(value.bucket_end, syi_decimal, index_id=value.index_id, revision=value.revision + 1,
                         supersedes_cid=value.cid, published_at=now_text())
    return IndexValue.model_validate({**made.model_dump(mode="json"), "restatement_reason": reason})


# a mouse event at the n-th ring's position on the chart
POINTER = """((type, n) => {{
  const c = document.getElementById('history-chart');
  const box = c.getBoundingClientRect();
  const mark = c.chartMarks[n];
  c.dispatchEvent(new MouseEvent(type, {{clientX: box.left + mark.x, clientY: box.top + mark.y, bubbles: true}}));
  return new Date(mark.t).toISOString();
}})('{type}', {n})"""
PANEL = "[...document.querySelectorAll('#revision-body tr')].map(r => r.innerText)"


async def test_revised_points_are_ringed_and_show_their_revisions(api_dsn, writer):
    index_id = r.unique_symbol("W")
    newest = utc_now().replace(second=0, microsecond=0)
    values = [r.index_value(format_utc(newest - timedelta(minutes=29 - i)), round(0.045 + i / 10_000, 7),
                            index_id=index_id) for i in range(30)]
    stored = revision_of(values[10], 0.0475, "DAI order book delivered late")
    await writer.write([("syi.calculated", v) for v in values])
    await writer.write([("syi.calculated", stored)])

    gateway = StandInGateway(values[-1].model_dump(mode="json"))
    ws_port = free_port()
    async with websockets.serve(gateway.handle, "127.0.0.1", ws_port):
        env = {"SYI_INDEX_ID": index_id, "SYI_WS_PUBLIC_URL": f"ws://127.0.0.1:{ws_port}/stream/syi/live"}
        with api_process(api_dsn, **env) as (base, _):
            async with Browser(BINARY) as browser:
                page = await browser.page()
                try:
                    await page.goto(f"{base}/")
                    await asyncio.wait_for(gateway.connected.wait(), 30)
                    chart = "document.getElementById('history-chart').dataset"
                    await page.wait_for(f"{chart}.points === '30' && {chart}.revised === '1'")
                    note = await page.evaluate("document.getElementById('chart-note').textContent")
                    clicked = await page.evaluate(POINTER.format(type="click", n=0))
                    await page.wait_for(f"!document.getElementById('revision-panel').hidden && {PANEL}.length === 2")
                    first_panel = await page.evaluate(PANEL)

                    # a restatement arrives over the WebSocket (and, as in the stack, in the store)
                    live = revision_of(values[20], 0.0501, "methodology 3.0.1")
                    await writer.write([("syi.calculated", live)])
                    await gateway.publish(live.model_dump(mode="json"), kind="revision")
                    await page.wait_for(f"{chart}.revised === '2'")
                    point = await page.evaluate(
                        f"state.points.find(p => p.t === Date.parse('{live.bucket_end}'))")
                    hovered = await page.evaluate(POINTER.format(type="mousemove", n=1))
                    await page.wait_for(f"document.getElementById('revision-bucket').textContent.startsWith("
                                        f"'{live.bucket_end[:16].replace('T', ' ')}') && {PANEL}.length === 2")
                    second_panel = await page.evaluate(PANEL)

                    # a restatement of the bucket on the ticker moves the ticker too
                    ticker = revision_of(values[-1], 0.0512, "late T-bill")
                    await gateway.publish(ticker.model_dump(mode="json"), kind="revision")
                    await page.wait_for("document.getElementById('syi-value').textContent === '5.1200'")
                    await page.wait_for(f"{chart}.revised === '3'")
                    await page.screenshot(REPO_ROOT / "test-artifacts" / "rest_api_live_page_revisions.png")
                finally:
                    await page.close()
    assert "1 revised" in note
    assert clicked == values[10].bucket_end
    assert first_panel[0].startswith("0") and "4.6000 %" in first_panel[0] and "first publication" in first_panel[0]
    assert first_panel[1].startswith("1 (current)") and "4.7500 %" in first_panel[1]
    assert "DAI order book delivered late" in first_panel[1] and stored.cid in first_panel[1]
    assert point == {"t": point["t"], "v": 5.01, "revision": 1}
    assert hovered == values[20].bucket_end
    assert "methodology 3.0.1" in second_panel[1] and live.cid in second_panel[1]


# counts painted pixels, and pixels in the series' colour (--accent #3fb6a8)
PIXELS = """(() => {
  const c = document.getElementById('history-chart');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0, line = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0) painted++;
    if (d[i + 3] > 200 && Math.abs(d[i] - 63) < 24 && Math.abs(d[i + 1] - 182) < 24 && Math.abs(d[i + 2] - 168) < 24) line++;
  }
  return {painted, line};
})()"""
