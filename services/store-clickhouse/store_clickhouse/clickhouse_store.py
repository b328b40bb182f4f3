"""The adapter to ClickHouse through clickhouse-connect: connect, create the tables, insert.

Blocking calls (clickhouse-connect has no async client on chDB): the writer calls them
from its own thread. With chDB one process owns a store path, and a process can open
only one path at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from store_clickhouse.tables import INDEX_VALUES, TABLES, Row, Table

CHDB_PREFIX = "chdb://"
_OLD_INDEX_VALUES = "index_values_before_revisions"


def safe_dsn(dsn: str) -> str:
    """The DSN without its password, for logs and health reports."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def connect(dsn: str, database: str | None = None) -> Client:
    """A client for `dsn`; with `database`, that database is created if missing and used."""
    if dsn.startswith(CHDB_PREFIX + "/"):
        Path(dsn.removeprefix(CHDB_PREFIX)).mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(dsn=dsn)
    if database is None:
        return client
    client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    # A second handle bound to the database (chDB shares the engine between handles of one path).
    bound = clickhouse_connect.get_client(dsn=dsn, database=database)
    client.close()
    return bound


class ClickHouseStore:
    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def open(cls, dsn: str, database: str | None = None) -> ClickHouseStore:
        return cls(connect(dsn, database))

    def ensure_schema(self) -> None:
        """Create every table that is missing (idempotent: CREATE TABLE IF NOT EXISTS)."""
        self._keep_every_revision()
        for table in TABLES:
            self.client.command(table.ddl)
            if "extra" in table.columns and "extra" not in self._columns(table.name):
                # made before the column existed: its rows had nothing beyond the typed columns
                self.client.command(f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS extra String DEFAULT ''")

    def _columns(self, name: str) -> set[str]:
        return {row[0] for row in self.client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {name:String}",
            parameters={"name": name},
        ).result_rows}

    def _keep_every_revision(self) -> None:
        """`index_values` made before revisions were kept was sorted by (index_id, bucket_end) and
        collapsed a bucket's revisions into the highest; a sorting key cannot be altered, so the
        rows move into a table of the current layout (every revision its merges had not yet
        collapsed is kept). Rerun after a crash midway, it finishes the move (copies collapse)."""
        def sorting_key(name: str) -> str | None:
            rows = self.client.query(
                "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
                parameters={"name": name},
            ).result_rows
            return rows[0][0] if rows else None

        key = sorting_key("index_values")
        if key is not None and "revision" not in key:
            self.client.command(f"RENAME TABLE index_values TO {_OLD_INDEX_VALUES}")
        if sorting_key(_OLD_INDEX_VALUES) is None:
            return
        old_columns = self._columns(_OLD_INDEX_VALUES)
        columns = ", ".join(c for c in INDEX_VALUES.columns if c in old_columns)
        self.client.command(INDEX_VALUES.ddl)
        self.client.command(f"INSERT INTO index_values ({columns}) SELECT {columns} FROM {_OLD_INDEX_VALUES}")
        self.client.command(f"DROP TABLE {_OLD_INDEX_VALUES}")

    def insert(self, table: Table, rows: list[Row]) -> None:
        self.client.insert(table.name, rows, column_names=list(table.columns))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.client.query(sql, parameters=parameters).named_results())

    def close(self) -> None:
        self.client.close()
