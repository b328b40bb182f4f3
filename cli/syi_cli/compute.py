"""Batch calculator: a tape in, one `syi.calculated` value per minute bucket out.

It drives the same engines as the streaming services (`compute_run`), so a tape computed
here and the same tape streamed through Kafka give the same records but for `published_at`.
`published_at` defaults to the bucket end, which keeps the output byte-identical run after
run; `now` stamps the wall-clock time instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel

from syi_shared.methodology import Position, RayBucket, compute_run
from syi_shared.methodology.engine import INDEX_INPUT_TOPICS, RAY_TOPICS, time_text
from syi_shared.methodology.params import Methodology
from syi_shared.models import IndexValue
from syi_shared.serde import dumps
from syi_shared.timefmt import now_text

from syi_cli.tape import BadLine, read_tape

PublishedAt = Literal["bucket-end", "now"]
INPUT_TOPICS = RAY_TOPICS | INDEX_INPUT_TOPICS


@dataclass
class ComputeResult:
    values: list[IndexValue]
    ray_buckets: list[RayBucket]
    invalid: list[BadLine] = field(default_factory=list)
    messages: int = 0


def compute_tape(
    path: Path,
    methodology: Methodology,
    published_at: PublishedAt = "bucket-end",
    on_invalid: Callable[[BadLine], None] | None = None,
) -> ComputeResult:
    """Every bucket from the first input's to the last input's; lines of other topics are ignored,
    invalid input lines are skipped (and passed to `on_invalid`)."""
    result = ComputeResult([], [])

    def messages() -> Iterator[tuple[str, BaseModel, Position]]:
        for item in read_tape(path, only=INPUT_TOPICS):
            if isinstance(item, BadLine):
                result.invalid.append(item)
                if on_invalid is not None:
                    on_invalid(item)
                continue
            result.messages += 1
            yield item.topic, item.value, (0, item.line)  # a tape's position is its line number

    stamp = time_text if published_at == "bucket-end" else (lambda _bucket_end: now_text())
    result.ray_buckets, result.values = compute_run(messages(), methodology, stamp)
    return result


def write_values(values: list[IndexValue], sink: IO[bytes]) -> None:
    for value in values:
        sink.write(dumps(value) + b"\n")


def write_rays(ray_buckets: list[RayBucket], sink: IO[bytes]) -> None:
    """ray.calculated values, bucket by bucket, candidates in methodology-file order."""
    for bucket in ray_buckets:
        for record in bucket.rays:
            sink.write(dumps(record) + b"\n")
