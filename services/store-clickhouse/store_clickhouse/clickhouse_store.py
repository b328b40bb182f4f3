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

from store_clickhouse.tables import TABLES, Row, Table

CHDB_PREFIX = "chdb://"


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
        for table in TABLES:
            self.client.command(table.ddl)

    def insert(self, table: Table, rows: list[Row]) -> None:
        self.client.insert(table.name, rows, column_names=list(table.columns))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.client.query(sql, parameters=parameters).named_results())

    def close(self) -> None:
        self.client.close()
