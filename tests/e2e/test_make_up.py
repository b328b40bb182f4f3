"""What a new user does: from a fresh clone, `make up`; watch the index over WebSocket and
REST; `make down`. Every port is moved to a free one so this runs beside anything else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import websockets
from confluent_kafka import Consumer

from syi_cli.stack.system import Ports
from syi_shared.timefmt import parse_utc
from tests.conftest import REPO_ROOT, free_port, free_port_pair

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return ") Z " not in stat.read_text()
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    clone = root / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    ports = {name: free_port() for name in Ports.__dataclass_fields__}
    env = {
        **os.environ,
        "SYI_STATE_DIR": str(root / "state"),
        "SYI_CACHE_DIR": str(REPO_ROOT / ".cache"),  # the Kafka jars this machine already fetched
        "SYI_KAFKA_PORT": str(free_port_pair()),
        "SYI_PG_PORT": str(free_port()),
        **{f"SYI_STACK_PORT_{name.upper()}": str(port) for name, port in ports.items()},
    }
    env.pop("VIRTUAL_ENV", None)
    up = run(["make", "up"], clone, env, timeout=720)
    try:
        assert up.returncode == 0, f"make up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        yield {"clone": clone, "env": env, "ports": ports, "up": up, "state": root / "state"}
    finally:
        pids = [int(p.read_text()) for p in (root / "state" / "pids").glob("*.pid")]
        down = run(["make", "down"], clone, env, timeout=180)
        # the last check of the user's story: nothing of ours is left running
        assert down.returncode == 0, down.stderr
        assert not list((root / "state" / "pids").glob("*.pid"))
        assert [pid for pid in pids if alive(pid)] == []
        assert len(pids) == 12  # Kafka, PostgreSQL and ten services


def test_make_up_prints_the_urls_once_the_first_value_is_published(system):
    printed = system["up"].stdout + system["up"].stderr
    assert "first index value: SYI" in printed
    assert f"ws://127.0.0.1:{system['ports']['gateway']}/stream/syi/live" in printed
    assert f"http://127.0.0.1:{system['ports']['api']}/" in printed


def test_websocket_client_gets_a_snapshot_then_a_new_value(system):
    url = f"ws://127.0.0.1:{system['ports']['gateway']}/stream/syi/live"

    async def watch() -> list[dict]:
        async with websockets.connect(url) as socket:
            seen = []
            while not any(m["type"] == "syi" for m in seen):
                seen.append(orjson.loads(await asyncio.wait_for(socket.recv(), timeout=150)))
            return seen

    messages = asyncio.run(watch())
    # the client goes away here; the last test resumes it (test_a_client_away_three_minutes_...)
    system["left"] = {"at": time.monotonic(), "seq": messages[-1]["seq"], "record": messages[-1]["data"]}
    assert [m["type"] for m in messages[:2]] == ["welcome", "snapshot"]
    snapshot, update = messages[1]["data"], messages[-1]["data"]
    assert update["bucket_end"] > snapshot["bucket_end"]
    assert update["index_id"] == "SYI" and update["methodology_version"] == "3.0.0"


def test_rest_current_equals_the_value_on_kafka(system):
    consumer = Consumer({
        "bootstrap.servers": f"127.0.0.1:{system['env']['SYI_KAFKA_PORT']}",
        "group.id": "e2e-plain-consumer",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",  # the calculators publish in transactions
    })
    consumer.subscribe(["syi.calculated"])
    on_kafka: dict[str, dict] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            if on_kafka:
                break
            continue
        if not message.error():
            record = orjson.loads(message.value())
            on_kafka[record["bucket_end"]] = record
    consumer.close()
    assert on_kafka, "no value on syi.calculated"

    api = f"http://127.0.0.1:{system['ports']['api']}"
    for _ in range(20):  # the writer and the API's one-second cache may trail Kafka a little
        with urllib.request.urlopen(f"{api}/api/index/current", timeout=10) as response:
            current = orjson.loads(response.read())
        if current["bucket_end"] in on_kafka:
            break
        time.sleep(1)
    published = on_kafka[current["bucket_end"]]
    assert current["syi_decimal"] == published["syi_decimal"]
    assert current["cid"] == published["cid"]
    assert current["syi_percent"] == published["syi_percent"]


async def test_the_live_page_shows_the_ticker_updating_and_the_chart(system):
    from tests.rest_api.devtools import Browser, chromium_binary

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup.sh --test-tools installs it)")
    async with Browser(binary) as browser:
        page = await browser.page()
        try:
            await page.goto(f"http://127.0.0.1:{system['ports']['api']}/")
            await page.wait_for("Number(document.body.dataset.wsUpdates) >= 1", timeout=60)  # the snapshot
            first = await page.evaluate("document.getElementById('syi-value').textContent")
            # the next minute's value arrives over the gateway and moves the ticker's minute on
            await page.wait_for("Number(document.body.dataset.wsUpdates) >= 2", timeout=150)
            points = await page.evaluate("Number(document.getElementById('history-chart').dataset.points)")
            rows = await page.evaluate("document.querySelectorAll('#constituents-body tr').length")
            size = await page.screenshot(REPO_ROOT / "test-artifacts" / "e2e_dashboard.png")
        finally:
            await page.close()
    assert first and first[0].isdigit()
    assert points >= 1 and rows >= 3
    assert size > 10_000


def test_a_dead_service_shows_in_status_and_restarts(system):
    syi = [str(system["clone"] / ".venv/bin/syi"), "stack"]
    pid = int((system["state"] / "pids" / "ws-gateway.pid").read_text())
    os.kill(pid, 9)
    for _ in range(50):
        if not alive(pid):
            break
        time.sleep(0.1)
    status = run([*syi, "status"], system["clone"], system["env"], 60)
    assert status.returncode == 1
    assert any("ws-gateway" in line and "dead" in line for line in status.stdout.splitlines())
    restart = run([*syi, "restart", "ws-gateway"], system["clone"], system["env"], 120)
    assert restart.returncode == 0, restart.stderr
    # restart reports once the gateway is healthy again (its topic follower caught up), not merely answering
    assert "ws-gateway: healthy" in restart.stdout + restart.stderr
    assert int((system["state"] / "pids" / "ws-gateway.pid").read_text()) != pid


def test_dashboard_answers(system):
    api = f"http://127.0.0.1:{system['ports']['api']}"
    with urllib.request.urlopen(f"{api}/", timeout=10) as response:
        assert response.status == 200
        assert "StableYield" in response.read().decode()
    with urllib.request.urlopen(f"{api}/config.json", timeout=10) as response:
        assert str(system["ports"]["gateway"]) in response.read().decode()
    status = run([str(system["clone"] / ".venv/bin/syi"), "stack", "status"], system["clone"], system["env"], 60)
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("│ healthy") == 12


def test_a_client_away_three_minutes_resumes_with_every_minute_exactly_once(system):
    """The client of the WebSocket test left after its first update; three minutes later (and
    after the gateway was SIGKILLed and restarted meanwhile) it resumes from the last seq it saw."""
    left = system["left"]
    # three minutes away, plus the publication delay of the third minute (its lateness): three
    # minutes have closed since the one it saw, whatever the phase it left at
    time.sleep(max(0.0, left["at"] + 180 + 20 - time.monotonic()))
    url = f"ws://127.0.0.1:{system['ports']['gateway']}/stream/syi/live?since_seq={left['seq']}"

    async def resume() -> tuple[dict, list[dict]]:
        async with websockets.connect(url) as socket:
            welcome = orjson.loads(await asyncio.wait_for(socket.recv(), timeout=30))
            missed = [orjson.loads(await asyncio.wait_for(socket.recv(), timeout=30))
                      for _ in range(welcome["data"].get("resumed", 0))]
            return welcome, missed

    welcome, missed = asyncio.run(resume())
    assert welcome["type"] == "welcome" and welcome["data"]["resumed"] >= 3, welcome
    records = [left["record"], *(m["data"] for m in missed)]
    assert all(m["type"] == "syi" for m in missed)
    minutes = [int(parse_utc(r["bucket_end"]).timestamp()) // 60 for r in records]
    assert minutes == list(range(minutes[0], minutes[0] + len(minutes))), "every minute once, in order"
    assert all(r["prev_cid"] == before["cid"] for before, r in zip(records, records[1:])), "the chain holds"
    seqs = [left["seq"], *(m["seq"] for m in missed)]
    assert seqs == sorted(set(seqs))
