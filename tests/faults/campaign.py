"""The kill campaign (docs/streaming.md, "Exactly once"): a generated tape played through a broker
of its own at a fixed speed, while ray-calc and syi-calc are SIGKILLed at random moments and
restarted after a short random pause, the broker is SIGKILLed and started again once, and
syi-calc is restarted once from a fresh, empty working directory (a lost volume: it keeps no
local state, so nothing is lost; the directory must still be empty at the end). Then, read with
`read_committed`, every output topic must hold exactly one record per bucket (per symbol and
bucket for ray-calc's), each equal but for its locator fields to the uninterrupted batch run's
(`syi compute` of the same tape), syi.calculated's chain unbroken, and the store-timescale
writer's PostgreSQL rows the same records as the topic.

`run_campaign` is the whole of it, for the test (short form, tests/faults/test_kill_campaign.py)
and the benchmark (long form, bench/kill_campaign.py); it returns the figures, not a verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from syi_cli.compute import ComputeResult, compute_tape
from syi_cli.tape import play_tape
from syi_shared.kafka import base_config, read_to_end
from syi_shared.methodology.params import load_methodology
from syi_shared.settings import ServiceSettings
from syi_shared.topics import state_topic
from tests.conftest import REPO_ROOT, free_port
from tests.faults.broker import OwnBroker
from tests.faults.feed import now_ms
from tests.faults.pipeline import Pipeline
from tests.ray_calc.streams import comparable, make_tape, tape_span, wait_for
from tests.store_timescale.databases import fresh_database

# What each calculator publishes, one record per bucket per key.
RAY_TOPICS = ("ray.calculated", "metrics.peg", "metrics.liquidity")
INDEX_TOPIC = "syi.calculated"
SERVICE = {"ray_calc": "ray-calc", "syi_calc": "syi-calc"}
BROKER_DOWN_S = (2.0, 5.0)  # how long the broker stays dead (random in this range)
BROKER_QUIET_S = 30.0  # no calculator kill this long after the broker's kill: its restart is one fault
# Nor this long before: a calculator still starting when the broker dies exits (`startup_failed`,
# exit 2, for its orchestrator to start it again): a crash the campaign would count, not a test
# of what a kill leaves behind.
BROKER_QUIET_BEFORE_S = 20.0
MIN_GAP_S = 8.0  # between two kills of the same calculator: each run gets to start and close some buckets
# Written into a calculator's working directory and not state: Bytewax's dataflow API (enabled for
# /metrics) renders the flow's graph there at each start.
NOT_STATE = frozenset({"dataflow.json"})


@dataclass(frozen=True)
class CampaignConfig:
    tape_minutes: int = 90
    speed: float = 36.0  # x the tape's pace: 90 minutes in 150 s
    kills: int = 3  # SIGKILLs of each calculator
    broker_restart: bool = True
    fresh_restart: bool = True  # syi-calc stopped once and started from a fresh empty directory
    seed: int = 13
    max_pause_s: float = 3.0  # a killed calculator is started again after a random pause up to this
    settle_s: float = 180.0  # after the tape: how long the outputs may take to be complete

    @property
    def play_s(self) -> float:
        return self.tape_minutes * 60 / self.speed


@dataclass(frozen=True)
class Event:
    at_s: float  # after the tape started playing
    target: str  # "ray_calc" | "syi_calc" | "broker" | "fresh" (syi-calc from a fresh directory)
    # Kill when the calculator next closes a bucket (its health's last closed bucket moves: the
    # bucket's transaction is being written), not at once: how a kill lands inside a close.
    at_close: bool = False


@dataclass
class TopicFigures:
    """One output topic against the batch run."""

    expected: int = 0  # records the batch run has
    records: int = 0  # committed records on the topic
    missing: int = 0  # expected keys not on the topic
    duplicates: int = 0  # records beyond the first of their key
    mismatches: int = 0  # records unlike the batch run's (locators aside), or of an unexpected key
    aborted: int = 0  # records of aborted transactions (read_uncommitted minus read_committed)


@dataclass
class CampaignResult:
    config: CampaignConfig
    kills: dict[str, int] = field(default_factory=lambda: {"ray_calc": 0, "syi_calc": 0})
    broker_restarts: int = 0
    fresh_restarts: int = 0
    crashes: dict[str, int] = field(default_factory=lambda: {"ray_calc": 0, "syi_calc": 0})  # exits we did not cause
    aborted_closes: dict[str, int] = field(default_factory=dict)  # per state topic: closes a kill aborted
    topics: dict[str, TopicFigures] = field(default_factory=dict)
    chain_breaks: int = 0
    store_mismatches: int = 0
    local_files: list[str] = field(default_factory=list)  # what syi-calc wrote in its fresh directory
    recompute_clean: bool | None = None  # `syi verify --recompute`; None while the command does not exist
    recompute_report: str = ""  # what it said when not clean
    verify_clean: bool | None = None  # `syi verify --topic syi.calculated` (the chain, by the CLI)
    problems: list[str] = field(default_factory=list)  # the first few differences, for a failure message
    timeline: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    logs: str = ""

    @property
    def buckets(self) -> int:
        return self.topics[INDEX_TOPIC].expected if INDEX_TOPIC in self.topics else 0

    def total(self, name: str) -> int:
        return sum(getattr(figures, name) for figures in self.topics.values())

    @property
    def kills_in_close(self) -> int:
        return sum(self.aborted_closes.values())

    def failures(self) -> dict[str, Any]:
        """Every figure that must be zero (or clean) and is not."""
        found: dict[str, Any] = {
            "missing": self.total("missing"), "duplicates": self.total("duplicates"),
            "mismatches": self.total("mismatches"), "chain_breaks": self.chain_breaks,
            "store_mismatches": self.store_mismatches, "local_files": len(self.local_files),
        }
        found = {name: value for name, value in found.items() if value}
        if self.recompute_clean is False:
            found["recompute"] = "not clean"
        if self.verify_clean is False:
            found["verify"] = "not clean"
        return found

    def summary(self) -> str:
        c = self.config
        lines = [
            f"kill campaign: {c.tape_minutes} min tape at {c.speed:g}x, seed {c.seed}, {self.wall_s:.0f} s wall",
            f"kills: ray-calc {self.kills['ray_calc']}, syi-calc {self.kills['syi_calc']}; "
            f"broker restarts {self.broker_restarts}; fresh-directory restarts {self.fresh_restarts}; "
            f"crashes {sum(self.crashes.values())}",
            "kills inside a bucket close (aborted close marks): "
            + ", ".join(f"{topic} {count}" for topic, count in self.aborted_closes.items()),
            f"buckets: {self.buckets}",
            f"{'topic':<20} {'expected':>9} {'records':>8} {'missing':>8} {'dupl.':>6} {'mismatch':>9} {'aborted':>8}",
        ]
        for topic, f in self.topics.items():
            lines.append(f"{topic:<20} {f.expected:>9} {f.records:>8} {f.missing:>8} {f.duplicates:>6} "
                         f"{f.mismatches:>9} {f.aborted:>8}")
        lines += [
            f"missing {self.total('missing')}, duplicates {self.total('duplicates')}, "
            f"mismatches {self.total('mismatches')}, chain breaks {self.chain_breaks}, "
            f"store mismatches {self.store_mismatches}",
            f"syi verify --topic: {_clean(self.verify_clean)}; syi verify --recompute: {_clean(self.recompute_clean)}",
            f"files syi-calc left in its fresh directory: {len(self.local_files)} {self.local_files[:5]}",
        ]
        if self.recompute_clean is False:
            lines.append(f"syi verify --recompute said: {self.recompute_report}")
        if self.problems:
            lines += ["first problems:", *(f"  {problem}" for problem in self.problems[:10])]
        return "\n".join(lines)


def _clean(value: bool | None) -> str:
    return {True: "clean", False: "NOT clean", None: "not available"}[value]


# --------------------------------------------------------------------------- the schedule


def schedule(config: CampaignConfig, rng: random.Random) -> list[Event]:
    """When what dies, in seconds after the tape started: the broker once around the middle,
    each calculator's kills spread over the tape (one at a random moment in each of `kills`
    equal slots), none in the broker's quiet window; syi-calc's fresh restart in its own slot."""
    play = config.play_s
    first, last = 0.08 * play, 0.85 * play
    events: list[Event] = []
    quiet = (0.0, 0.0)
    if config.broker_restart:
        at = rng.uniform(0.4, 0.5) * play
        events.append(Event(at, "broker"))
        quiet = (at - BROKER_QUIET_BEFORE_S, at + BROKER_QUIET_S)
    span = (last - first) - (quiet[1] - quiet[0])

    def moment(u: float) -> float:  # a point of the timeline without the quiet window
        t = first + u
        return t + (quiet[1] - quiet[0]) if t >= quiet[0] and quiet[1] > quiet[0] else t

    plans = {"ray_calc": ["ray_calc"] * config.kills,
             "syi_calc": ["syi_calc"] * config.kills + (["fresh"] if config.fresh_restart else [])}
    for targets in plans.values():
        slots = len(targets)
        if not slots:
            continue
        width = span / slots
        rng.shuffle(targets)
        for index, target in enumerate(targets):
            inner = max(0.0, width - MIN_GAP_S)
            at_close = target != "fresh" and index % 2 == 1  # every other kill waits for a close
            events.append(Event(moment(index * width + MIN_GAP_S / 2 + rng.uniform(0, inner)), target, at_close))
    return sorted(events, key=lambda event: event.at_s)


# --------------------------------------------------------------------------- the processes


class StoreWriter:
    """store-timescale as a process against the campaign's broker, into a database of its own."""

    def __init__(self, settings: ServiceSettings, dsn: str, log_dir: Path) -> None:
        self.log_path = log_dir / "store_timescale.log"
        env = {
            **os.environ,
            "SYI_POSTGRES_DSN": dsn,
            "SYI_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_config()["bootstrap.servers"],
            "SYI_GROUP_ID": f"store-timescale-campaign-{os.getpid()}",
            "SYI_HEALTH_PORT": str(free_port()),
            "SYI_LOG_FORMAT": "json",
            "SYI_RETENTION_ENABLED": "false",  # the tape's minutes must stay
        }
        log = open(self.log_path, "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen([sys.executable, "-m", "store_timescale"], env=env, cwd=REPO_ROOT,
                                        stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def database(postgres_dsn: str) -> Iterator[str]:
    """An empty database of the campaign's own on the cluster of `postgres_dsn` (dropped after)."""
    loop = asyncio.new_event_loop()
    manager = fresh_database(postgres_dsn)
    try:
        yield loop.run_until_complete(manager.__aenter__())
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


async def _index_rows(dsn: str) -> list[dict[str, Any]]:
    try:
        connection = await asyncpg.connect(dsn)
    except OSError:
        return []
    try:
        rows = await connection.fetch(
            "SELECT index_id, bucket_end, revision, cid, prev_cid, record FROM index_values ORDER BY bucket_end")
    except asyncpg.UndefinedTableError:
        return []  # the writer has not migrated yet
    finally:
        await connection.close()
    return [{**dict(row), "record": orjson.loads(row["record"]) if isinstance(row["record"], str) else row["record"]}
            for row in rows]


def index_rows(dsn: str) -> list[dict[str, Any]]:
    return asyncio.run(_index_rows(dsn))


class Killer:
    """Carries out the schedule while the tape plays: SIGKILL (or the fresh-directory restart),
    then the start again after a random pause; restarts any calculator that exited on its own
    (as an orchestrator would) and counts it as a crash."""

    def __init__(self, config: CampaignConfig, pipeline: Pipeline, broker: OwnBroker, fresh_dir: Path,
                 result: CampaignResult, rng: random.Random) -> None:
        self.config, self.pipeline, self.broker, self.fresh_dir = config, pipeline, broker, fresh_dir
        self.result, self.rng = result, rng
        self.calculators = {"ray_calc": pipeline.ray, "syi_calc": pipeline.syi}
        self.restarts: dict[str, float] = {}  # module -> monotonic time of its pending start
        self.watches = {module: CloseWatch(pipeline.ray.settings, SERVICE[module], calculator.instance)
                        for module, calculator in self.calculators.items()}
        self.began = time.monotonic()

    def close(self) -> None:
        for watch in self.watches.values():
            watch.stop()

    def note(self, text: str) -> None:
        self.result.timeline.append(f"{time.monotonic() - self.began:7.1f} s  {text}")

    def run(self, events: list[Event], playing: Callable[[], bool]) -> None:
        queue = list(events)
        while queue or self.restarts:
            now = time.monotonic() - self.began
            if queue and queue[0].at_s <= now:
                self.fire(queue.pop(0))
            for module, due in list(self.restarts.items()):
                if due <= time.monotonic():
                    del self.restarts[module]
                    self.start(module)
            self.supervise()
            if queue and not playing():
                self.note(f"the tape is over: {len(queue)} faults not fired")
                queue = []  # only the pending starts remain
            time.sleep(0.05)

    def fire(self, event: Event) -> None:
        if event.target == "broker":
            self.broker.kill()
            self.result.broker_restarts += 1
            down = self.rng.uniform(*BROKER_DOWN_S)
            self.note(f"broker SIGKILLed, down {down:.1f} s")
            time.sleep(down)
            started = time.monotonic()
            self.broker.start()
            self.note(f"broker back (start took {time.monotonic() - started:.1f} s)")
            return
        module = "syi_calc" if event.target == "fresh" else event.target
        calculator = self.calculators[module]
        if module in self.restarts or calculator.process is None or calculator.process.poll() is not None:
            self.note(f"{module} not running at its {event.target} event: skipped")
            return
        if event.target == "fresh":
            # `syi stack restart` of a calculator whose volume was lost: a clean stop, then the
            # start from an empty directory (it has no local state at all any more).
            calculator.stop(signal.SIGTERM)
            calculator.workdir = self.fresh_dir
            self.result.fresh_restarts += 1
            self.note(f"{module} stopped (SIGTERM), starting from the fresh directory {self.fresh_dir}")
            self.start(module)
            return
        moment = self.await_close(module) if event.at_close else "at once"
        assert calculator.stop(signal.SIGKILL) == -signal.SIGKILL
        self.result.kills[module] += 1
        pause = self.rng.uniform(0, self.config.max_pause_s)
        self.note(f"{module} SIGKILLed {moment} (run {calculator.runs}), restart in {pause:.1f} s")
        self.restarts[module] = time.monotonic() + pause

    def await_close(self, module: str, timeout: float = 15.0) -> str:
        """Return as soon as the next close mark of `module` reaches the broker, uncommitted: its
        bucket's transaction is then between its last record and its commit (a few ms to tens of
        ms, measured), so a kill now most likely aborts it; the figures count the ones that did."""
        watch = self.watches[module]
        watch.arrived.clear()
        if watch.arrived.wait(timeout):
            return f"at the close of {watch.bucket}"
        return f"after waiting {timeout:.0f} s for a close"

    def start(self, module: str) -> None:
        calculator = self.calculators[module]
        calculator.start(wait=False)
        self.note(f"{module} started (run {calculator.runs})")

    def supervise(self) -> None:
        for module, calculator in self.calculators.items():
            if module in self.restarts or calculator.process is None:
                continue
            code = calculator.process.poll()
            if code is not None:
                self.result.crashes[module] += 1
                # librdkafka's own lines (%n|...) say little; a traceback is what tells why
                said = [line for line in calculator.log_tail(200).splitlines() if not line.startswith("%")][-25:]
                self.note(f"{module} exited by itself with {code}: started again; its last words:\n" + "\n".join(said))
                self.start(module)


class CloseWatch:
    """Follows a state topic with `read_uncommitted` from its end: `arrived` is set when a close
    mark of `instance` reaches the broker, before its transaction commits."""

    def __init__(self, settings: ServiceSettings, service: str, instance: str) -> None:
        self.key = instance.encode()
        self.arrived = threading.Event()
        self.bucket: str | None = None
        self._stop = threading.Event()
        self.consumer = Consumer({
            **base_config(settings), "group.id": "syi-campaign-watch", "enable.auto.commit": False,
            "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 5,
        })
        self.consumer.assign([TopicPartition(state_topic(service), 0, OFFSET_END)])
        self.thread = threading.Thread(target=self._follow, name=f"watch-{service}", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            message = self.consumer.poll(0.01)
            if message is None or message.error() or message.key() != self.key:
                continue
            record = orjson.loads(message.value())
            if record.get("kind") == "close":
                self.bucket = record.get("bucket_end")
                self.arrived.set()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.consumer.close()


# --------------------------------------------------------------------------- reading the outcome


def _read_all(settings: ServiceSettings, topic: str, isolation: str, since_ms: int,
              timeout: float = 60.0) -> list[Any]:
    """Every message of `topic` since `since_ms`, read with the given isolation level, to the
    partitions' ends (EOF: the high watermark for read_uncommitted, the last stable offset else)."""
    if isolation == "read_committed":
        return read_to_end([topic], settings, timeout, since_ms=since_ms)
    consumer = Consumer({**base_config(settings), "group.id": "syi-campaign", "enable.auto.commit": False,
                         "isolation.level": isolation, "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout)
        assignment, open_ = [], set()
        for start in starts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, start.partition), timeout=timeout)
            offset = start.offset if start.offset >= 0 else high
            if offset < high:
                assignment.append(TopicPartition(topic, start.partition, offset))
                open_.add(start.partition)
        consumer.assign(assignment)
        messages = []
        deadline = time.monotonic() + timeout
        while open_:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} ({isolation}) to its end in {timeout} s")
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    open_.discard(message.partition())
                continue
            messages.append(message)
        return messages
    finally:
        consumer.close()


def aborted_closes(settings: ServiceSettings, service: str, instance: str, since_ms: int) -> int:
    """Close marks of `instance` written but never committed: each is a bucket transaction that a
    kill (or the broker's) aborted after its close mark reached the broker."""
    topic = state_topic(service)

    def closes(isolation: str) -> int:
        return sum(1 for message in _read_all(settings, topic, isolation, since_ms)
                   if message.key() == instance.encode() and orjson.loads(message.value()).get("kind") == "close")

    return closes("read_uncommitted") - closes("read_committed")


def _ray_keys(batch: ComputeResult, topic: str) -> dict[tuple[str, str], dict[str, Any]]:
    attribute = {"ray.calculated": "rays", "metrics.peg": "peg", "metrics.liquidity": "liquidity"}[topic]
    return {(value.symbol, comparable(value)["bucket_end"]): comparable(value)
            for bucket in batch.ray_buckets for value in getattr(bucket, attribute)}


def compare_topic(settings: ServiceSettings, topic: str, want: dict[Any, dict[str, Any]],
                  key: Callable[[dict[str, Any]], Any], since_ms: int,
                  problems: list[str]) -> tuple[TopicFigures, list[dict[str, Any]]]:
    """The committed records of `topic` against the batch run's, keyed by `key`."""
    committed = [orjson.loads(m.value()) for m in _read_all(settings, topic, "read_committed", since_ms)]
    uncommitted = _read_all(settings, topic, "read_uncommitted", since_ms)
    figures = TopicFigures(expected=len(want), records=len(committed), aborted=len(uncommitted) - len(committed))
    seen: Counter[Any] = Counter()
    for record in committed:
        k = key(record)
        seen[k] += 1
        if seen[k] > 1:
            figures.duplicates += 1
            problems.append(f"{topic} {k}: published {seen[k]} times")
        if k not in want:
            figures.mismatches += 1
            problems.append(f"{topic} {k}: not in the batch run")
        elif comparable(record) != want[k]:
            figures.mismatches += 1
            got = comparable(record)
            differs = sorted(name for name in {*want[k], *got} if want[k].get(name) != got.get(name))
            shown = "; ".join(f"{name}: {_short(got.get(name))} (batch {_short(want[k].get(name))})"
                              for name in differs if name not in ("cid", "prev_cid"))
            problems.append(f"{topic} {k}: differs from the batch run in {differs}: {shown}")
    missing = [k for k in want if k not in seen]
    figures.missing = len(missing)
    problems.extend(f"{topic} {k}: missing" for k in missing[:5])
    return figures, committed


def _short(value: Any, limit: int = 160) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def chain_breaks(records: list[dict[str, Any]], problems: list[str]) -> int:
    """Records whose prev_cid is not the cid of the record before them on the topic (null first)."""
    breaks, previous = 0, None
    for record in records:
        if record.get("prev_cid") != previous:
            breaks += 1
            problems.append(f"chain: {record['bucket_end']} has prev_cid {record.get('prev_cid')}, "
                            f"the record before it cid {previous}")
        previous = record.get("cid")
    return breaks


def store_mismatches(rows: list[dict[str, Any]], records: list[dict[str, Any]], problems: list[str]) -> int:
    """Rows of PostgreSQL's index_values unlike the topic's records, and records it lacks."""
    on_topic = {(r["index_id"], r["bucket_end"]): r for r in records}
    count, stored = 0, set()
    for row in rows:
        record = row["record"]
        key = (row["index_id"], record.get("bucket_end"))
        stored.add(key)
        topic_record = on_topic.get(key)
        if topic_record is None or row["cid"] != topic_record["cid"] or row["revision"] != topic_record.get("revision", 0) \
                or comparable(record) != comparable(topic_record):
            count += 1
            problems.append(f"store: {key} revision {row['revision']} cid {row['cid']} is not the topic's record")
    for key in on_topic.keys() - stored:
        count += 1
        problems.append(f"store: {key} is on the topic, not in PostgreSQL")
    return count


def syi_command(settings: ServiceSettings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYI_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_config()["bootstrap.servers"]}
    return subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "syi"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def verify_topic_clean(settings: ServiceSettings) -> bool:
    """`syi verify --topic syi.calculated`: the chain and every cid, checked by the CLI."""
    return syi_command(settings, "verify", "--topic", INDEX_TOPIC).returncode == 0


def recompute_clean(settings: ServiceSettings, since_ms: int, instance: str = "syi-calc") -> tuple[bool | None, str]:
    """`syi verify --recompute --topic syi.calculated`: every record re-derived from syi-calc's
    checkpoint (instance `instance`) and the input topics must equal the published one. None
    while the command does not exist; with what it printed. `since_ms`: the campaign's broker
    holds nothing older, so the whole topic is checked."""
    if "--recompute" not in syi_command(settings, "verify", "--help", timeout=60).stdout:
        return None, ""
    done = syi_command(settings, "verify", "--topic", INDEX_TOPIC, "--recompute", "--instance", instance)
    return done.returncode == 0, " ".join((done.stdout + done.stderr).split())[-800:]


# --------------------------------------------------------------------------- the campaign


def run_campaign(config: CampaignConfig, workdir: Path, postgres_dsn: str | None,
                 say: Callable[[str], None] = lambda _text: None) -> CampaignResult:
    """The whole campaign in `workdir` (broker data, logs, tape); `postgres_dsn`: a cluster to
    create the writer's database on (None: no store check)."""
    result = CampaignResult(config)
    rng = random.Random(config.seed)
    began = time.monotonic()
    logs = workdir / "logs"
    fresh_dir = workdir / "fresh-syi-calc"
    logs.mkdir(parents=True, exist_ok=True)
    fresh_dir.mkdir()

    tape = make_tape(workdir / "campaign.jsonl", f"{config.tape_minutes}m")
    say(f"batch run of the {config.tape_minutes} min tape ...")
    batch = compute_tape(tape, load_methodology())
    span = tape_span(tape)
    events = schedule(config, rng)

    broker = OwnBroker(workdir / "broker").start()
    settings = broker.provision()
    since = now_ms()
    pipeline = Pipeline(settings, since, logs)
    store: StoreWriter | None = None
    player_errors: list[BaseException] = []
    with database(postgres_dsn) if postgres_dsn else contextlib.nullcontext() as dsn:
        try:
            if dsn is not None:
                store = StoreWriter(settings, dsn, logs)
            say("starting ray-calc and syi-calc ...")
            pipeline.start()

            def player() -> None:
                try:
                    play_tape(tape, settings, speed=config.speed, announce_progress=True)
                except BaseException as exc:  # noqa: BLE001 (reported by the campaign)
                    player_errors.append(exc)

            thread = threading.Thread(target=player, name="tape", daemon=True)
            killer = Killer(config, pipeline, broker, fresh_dir, result, rng)
            say(f"playing {span.messages} messages at {config.speed:g}x ({config.play_s:.0f} s), "
                f"{len(events)} faults scheduled ...")
            thread.start()
            try:
                killer.run(events, thread.is_alive)
            finally:
                killer.close()
            thread.join()
            if player_errors:
                raise RuntimeError(f"the tape player failed: {player_errors[0]!r}") from player_errors[0]
            killer.note("tape played")

            say("waiting for every bucket ...")
            want_index = {comparable(v)["bucket_end"]: comparable(v) for v in batch.values}

            def complete() -> bool:
                killer.supervise()
                index = read_to_end([INDEX_TOPIC], settings, 60, since_ms=since)
                return {orjson.loads(m.value())["bucket_end"] for m in index} >= want_index.keys()

            with contextlib.suppress(AssertionError):  # incomplete: the figures say what is missing
                wait_for(complete, config.settle_s, "every bucket on syi.calculated", interval=2)
            killer.note("outputs settled")
            pipeline.stop()  # a clean stop: no transaction left open

            say("comparing with the batch run ...")
            problems = result.problems
            result.topics[INDEX_TOPIC], index = compare_topic(
                settings, INDEX_TOPIC, want_index, lambda r: r["bucket_end"], since, problems)
            for topic in RAY_TOPICS:
                result.topics[topic], _ = compare_topic(
                    settings, topic, _ray_keys(batch, topic), lambda r: (r["symbol"], r["bucket_end"]), since,
                    problems)
            result.chain_breaks = chain_breaks(index, problems)
            for module, calculator in killer.calculators.items():
                topic = state_topic(SERVICE[module])
                result.aborted_closes[topic] = aborted_closes(settings, SERVICE[module], calculator.instance, since)
            result.verify_clean = verify_topic_clean(settings)
            result.recompute_clean, result.recompute_report = recompute_clean(settings, since, pipeline.syi.instance)
            if dsn is not None and store is not None:
                want_rows = len(index)
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: len(index_rows(dsn)) >= want_rows, 60, "the store to catch up", interval=1)
                result.store_mismatches = store_mismatches(index_rows(dsn), index, problems)
            result.local_files = sorted(name for name in (str(p.relative_to(fresh_dir)) for p in fresh_dir.rglob("*"))
                                        if name not in NOT_STATE)
        finally:
            result.logs = pipeline.logs(40) + (f"\n--- store_timescale\n{store.log_tail()}" if store else "")
            pipeline.stop()
            if store is not None:
                store.stop()
            broker.stop()
    result.wall_s = time.monotonic() - began
    return result


def clean_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
