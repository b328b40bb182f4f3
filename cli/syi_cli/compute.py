"""Batch calculator: a tape in, one `syi.calculated` value per minute bucket out.

It drives the same engines as the streaming services (`iter_run`), so a tape computed
here and the same tape streamed through Kafka give the same records but for `published_at`.
`published_at` defaults to the bucket end, which keeps the output byte-identical run after
run; `now` stamps the wall-clock time instead.

`stream_tape` yields each bucket as it closes, reading the tape one line at a time, so a
backfill's memory is the methodology's windows, not the tape (docs/operations.md, "Backfills");
`compute_tape` collects the same into lists for callers that want them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from syi_shared.methodology import Position, RayBucket
from syi_shared.methodology.engine import INDEX_INPUT_TOPICS, RAY_TOPICS, RunOutput, iter_run, time_text
from syi_shared.methodology.params import Methodology
from syi_shared.models import IndexValue
from syi_shared.serde import dumps
from syi_shared.timefmt import now_text

from syi_cli.tape import BadLine, ReadProgress, read_tape

PublishedAt = Literal["bucket-end", "now"]
INPUT_TOPICS = RAY_TOPICS | INDEX_INPUT_TOPICS


@dataclass
class ComputeResult:
    values: list[IndexValue]
    ray_buckets: list[RayBucket]
    invalid: list[BadLine] = field(default_factory=list)
    messages: int = 0


@dataclass
class ComputeCounts:
    """What a streamed compute has done so far."""

    messages: int = 0  # valid input lines
    invalid: int = 0  # invalid lines skipped
    buckets: int = 0  # buckets closed
    values: int = 0  # index values among them


def stream_tape(
    path: Path,
    methodology: Methodology,
    published_at: PublishedAt = "bucket-end",
    on_invalid: Callable[[BadLine], None] | None = None,
    counts: ComputeCounts | None = None,
    progress: ReadProgress | None = None,
) -> Iterator[RunOutput]:
    """Every bucket from the first input's to the last input's, each as soon as it closes;
    lines of other topics are ignored, invalid input lines are skipped (and passed to
    `on_invalid`). Raises `OutOfOrder` for a tape out of event-time order by more than an hour."""
    counts = counts if counts is not None else ComputeCounts()

    def messages() -> Iterator[tuple[str, BaseModel, Position]]:
        for item in read_tape(path, only=INPUT_TOPICS, progress=progress):
            if isinstance(item, BadLine):
                counts.invalid += 1
                if on_invalid is not None:
                    on_invalid(item)
                continue
            counts.messages += 1
            yield item.topic, item.value, (0, item.line)  # a tape's position is its line number

    stamp = time_text if published_at == "bucket-end" else (lambda _bucket_end: now_text())
    for ray_bucket, value in iter_run(messages(), methodology, stamp):
        counts.buckets += 1
        counts.values += value is not None
        yield ray_bucket, value


def compute_tape(
    path: Path,
    methodology: Methodology,
    published_at: PublishedAt = "bucket-end",
    on_invalid: Callable[[BadLine], None] | None = None,
) -> ComputeResult:
    """`stream_tape` collected: every bucket's ray records and index value in memory."""
    result = ComputeResult([], [])

    def invalid(bad: BadLine) -> None:
        result.invalid.append(bad)
        if on_invalid is not None:
            on_invalid(bad)

    counts = ComputeCounts()
    for ray_bucket, value in stream_tape(path, methodology, published_at, invalid, counts):
        result.ray_buckets.append(ray_bucket)
        if value is not None:
            result.values.append(value)
    result.messages = counts.messages
    return result


def write_values(values: Iterable[IndexValue], sink: IO[bytes]) -> None:
    for value in values:
        sink.write(dumps(value) + b"\n")


def write_rays(ray_buckets: Iterable[RayBucket], sink: IO[bytes]) -> None:
    """ray.calculated values, bucket by bucket, candidates in methodology-file order."""
    for bucket in ray_buckets:
        for record in bucket.rays:
            sink.write(dumps(record) + b"\n")


class ComputeDisplay:
    """Progress of a compute on stderr, only when stderr is a terminal (tests and pipes read
    stdout and stderr unchanged): the tape's bytes read, buckets closed, rate."""

    def __init__(self, console: Console, counts: ComputeCounts, reading: ReadProgress, every: float = 0.25) -> None:
        self.console, self.counts, self.reading, self.every = console, counts, reading, every
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._began = self._shown = 0.0

    def __enter__(self) -> ComputeDisplay:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("computing"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("compute", total=None, status="")
        self._began = time.monotonic()
        return self

    def update(self) -> None:
        if self._progress is None or self._task is None:
            return
        now = time.monotonic()
        if now - self._shown < self.every:
            return  # a bucket takes about a millisecond: redraw a few times a second, not per bucket
        self._shown = now
        seconds = max(now - self._began, 1e-9)
        status = (f"{self.counts.buckets} buckets ({self.counts.buckets / seconds:,.0f}/s), "
                  f"{self.reading.lines:,} lines ({self.reading.lines / seconds:,.0f}/s)")
        self._progress.update(self._task, total=self.reading.total_bytes or None,
                              completed=self.reading.bytes_read, status=status)

    def print(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
