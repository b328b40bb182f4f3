"""`syi tape record --from-archive`: a tape rebuilt from store-clickhouse's archive of the raw
inputs (docs/clickhouse.md, "The archive: rebuilding a tape"), for intervals Kafka no longer holds.

Every archived row turns back into its topic's model (`Table.model`), which re-serialises to the
bytes that were published, so the tape is the one `syi tape record` would have written then, in
a deterministic order: event time, then topic (cc.prices, cc.orderbook, dl.apy, ex.mktcap,
trad.tbill), then the table's natural key. The interval is read an hour at a time: memory is one
hour's messages, whatever the interval's length.
"""

from __future__ import annotations

import fcntl
import heapq
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from store_clickhouse.clickhouse_store import CHDB_PREFIX, connect, safe_dsn
from store_clickhouse.settings import default_dsn
from store_clickhouse.tables import INPUT_TABLES, Table

from syi_cli.tape import open_binary, tape_line
from syi_shared.timefmt import time_text

CHUNK_MS = 3_600_000  # read an hour at a time
INPUT_TOPICS = tuple(table.topic for table in INPUT_TABLES)


class ArchiveError(RuntimeError):
    """The archive cannot be read (locked, unreachable, no such tables): the message says what to do."""


@dataclass
class ArchiveResult:
    recorded: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    archived: tuple[int, int] | None = None  # first and last event time the archive holds (ms), when asked


def input_topics(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The topics to rebuild (all five raw inputs when none is named); others are a ValueError."""
    unknown = [name for name in names if name not in INPUT_TOPICS]
    if unknown:
        raise ValueError(f"not archived as raw inputs: {', '.join(unknown)} (archived: {', '.join(INPUT_TOPICS)})")
    return tuple(names) or INPUT_TOPICS


def archive_dsn(dsn: str | None = None) -> str:
    """The store to read: `dsn`, else SYI_CLICKHOUSE_DSN, else the embedded store store-clickhouse writes."""
    return dsn or os.environ.get("SYI_CLICKHOUSE_DSN") or default_dsn()


def open_archive(dsn: str, database: str | None = None) -> Client:
    if dsn.startswith(CHDB_PREFIX):
        path = Path(dsn.removeprefix(CHDB_PREFIX))
        if not path.is_dir():
            raise ArchiveError(f"no chDB store at {dsn} (has store-clickhouse run? see SYI_CLICKHOUSE_DSN)")
        if _locked(path):
            # chDB: one process owns a store path, and store-clickhouse holds it while it runs.
            raise ArchiveError(
                f"the chDB store {dsn} is open in another process (store-clickhouse?): stop it first "
                "(`syi stack down`, or stop that service), or read a copy of the folder, or use a "
                "ClickHouse server (http(s):// DSN), which can be read while it is written"
            )
    try:
        return connect(dsn, database)
    except Exception as exc:
        raise ArchiveError(f"cannot open the archive {safe_dsn(dsn)}: {exc}") from None


def _locked(path: Path) -> bool:
    """Is the chDB store at `path` held by a running engine? (it holds an flock on its `status` file)"""
    status = path / "status"
    if not status.is_file():
        return False
    with open(status, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _select(table: Table) -> str:
    # Times as epoch milliseconds (exact, and the same on every client whatever its time zone
    # handling), under names of their own: an alias named like its column would be what WHERE reads.
    columns = ", ".join(
        f"toUnixTimestamp64Milli({name}) AS {_MS}{name}" if name in table.time_columns else name
        for name in table.columns
    )
    return (
        f"SELECT {columns} FROM {table.name} FINAL "
        f"WHERE {table.event_column} >= fromUnixTimestamp64Milli({{start:Int64}}, 'UTC') "
        f"AND {table.event_column} < fromUnixTimestamp64Milli({{end:Int64}}, 'UTC') "
        f"ORDER BY {table.event_column}, {', '.join(table.natural_key)}"
    )


_MS = "ms_"


def _stored_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name.removeprefix(_MS): value for name, value in row.items()}


def archived_span(client: Client, topics: tuple[str, ...] = INPUT_TOPICS) -> tuple[int, int] | None:
    """The first and last event time (epoch ms) the archive holds for `topics`; None when empty."""
    spans = []
    for table in INPUT_TABLES:
        if table.topic in topics:
            first, last, rows = client.query(
                f"SELECT toUnixTimestamp64Milli(min({table.event_column})), "
                f"toUnixTimestamp64Milli(max({table.event_column})), count() FROM {table.name}"
            ).result_rows[0]
            if rows:
                spans.append((first, last))
    return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None


def archived_messages(
    client: Client, start_ms: int, end_ms: int, topics: tuple[str, ...] = INPUT_TOPICS, chunk_ms: int = CHUNK_MS
) -> Iterator[tuple[str, Any]]:
    """(topic, model) of every archived message with start <= event time < end, in tape order."""
    tables = [table for table in INPUT_TABLES if table.topic in topics]  # the tie order: INPUT_TABLES'
    for low in range(start_ms, end_ms, chunk_ms):
        high = min(low + chunk_ms, end_ms)
        per_table = []
        for rank, table in enumerate(tables):
            rows = client.query(_select(table), parameters={"start": low, "end": high}).named_results()
            per_table.append([(row[_MS + table.event_column], rank, table, row) for row in rows])
        for _, _, table, row in heapq.merge(*per_table, key=lambda item: item[:2]):
            assert table.model is not None  # every input table has its inverse
            yield table.topic, table.model(_stored_row(row))


def rebuild_tape(
    client: Client,
    start_ms: int,
    end_ms: int,
    out: Path,
    topics: tuple[str, ...] = INPUT_TOPICS,
    progress: Callable[[int], None] | None = None,
) -> ArchiveResult:
    """Write the archived messages of [start, end) into the tape `out` (.gz: gzip); when there are
    none, the result says which span the archive does hold."""
    topics = input_topics(topics)
    if end_ms <= start_ms:
        raise ValueError(f"--to {time_text(end_ms)} must be after --from {time_text(start_ms)}")
    result = ArchiveResult()
    try:
        with open_binary(out, "wb") as handle:
            for topic, value in archived_messages(client, start_ms, end_ms, topics):
                handle.write(tape_line(topic, value.key(), value.model_dump(mode="json")) + b"\n")
                result.recorded += 1
                result.by_topic[topic] += 1
                if progress is not None and result.recorded % 1000 == 0:
                    progress(result.recorded)
        if not result.recorded:
            result.archived = archived_span(client, topics)
    except Exception as exc:
        if "UNKNOWN_TABLE" in str(exc):
            raise ArchiveError(
                f"the archive has no table of the raw inputs ({exc.__class__.__name__}); "
                "store-clickhouse creates them when it starts"
            ) from None
        raise
    return result
