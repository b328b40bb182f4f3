"""Versioned, idempotent schema migrations, applied at start-up.

The SQL lives in `sql/NNNN_name[.mode].sql`. A file without a mode applies to both
storage modes; `.plain.sql` and `.timescale.sql` are the two variants of one version.
`schema_migrations` records what was applied (and in which mode), so a second start applies
nothing. The storage mode is chosen once, on the first migration, and then read back.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import asyncpg

from syi_shared.logs import get_logger

Mode = Literal["plain", "timescale"]

# Serialises concurrent starts of several writers (any fixed 64-bit number).
_LOCK_KEY = 7_104_001
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_PARTITION_BY = re.compile(r"\{\{partition_by:(\w+)\}\}")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    mode       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def render(sql: str, mode: Mode) -> str:
    """Resolve the `{{partition_by:column}}` placeholder for the storage mode."""
    if mode == "plain":
        return _PARTITION_BY.sub(r"PARTITION BY RANGE (\1)", sql)
    return _PARTITION_BY.sub("", sql)


def load_migrations(mode: Mode) -> list[Migration]:
    """The migrations of `mode`, ordered by version; a version may be a no-op in one mode."""
    by_version: dict[int, Migration] = {}
    for entry in resources.files(__package__).joinpath("sql").iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version, name, variant = int(match[1]), match[2], match[3]
        if variant is not None and variant != mode:
            by_version.setdefault(version, Migration(version, name, ""))
            continue
        if version in by_version and by_version[version].sql:
            raise RuntimeError(f"two migrations with version {version:04d}")
        by_version[version] = Migration(version, name, render(entry.read_text(), mode))
    return [by_version[v] for v in sorted(by_version)]


async def timescale_available(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"))


async def _choose_mode(conn: asyncpg.Connection, wanted: str) -> Mode:
    log = get_logger(component="migrations")
    recorded = await conn.fetchval("SELECT mode FROM schema_migrations ORDER BY version LIMIT 1")
    if recorded:
        if wanted != "auto" and wanted != {"timescale": "on", "plain": "off"}[recorded]:
            log.warning("storage_mode_fixed", recorded=recorded, requested=wanted)
        return recorded
    available = await timescale_available(conn)
    if wanted == "on" and not available:
        raise RuntimeError("SYI_TIMESCALE=on but the timescaledb extension is not available on this server")
    return "timescale" if available and wanted != "off" else "plain"


async def migrate(conn: asyncpg.Connection, timescale: str = "auto") -> tuple[Mode, list[int]]:
    """Apply every pending migration, each in its own transaction; returns (mode, versions applied)."""
    log = get_logger(component="migrations")
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_LEDGER)
        mode = await _choose_mode(conn, timescale)
        if mode == "timescale":
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done: list[int] = []
        for migration in load_migrations(mode):
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    # an applied file was edited: the database keeps what ran; say so loudly
                    log.warning("migration_changed_after_apply", version=migration.version, name=migration.name)
                continue
            async with conn.transaction():
                if migration.sql.strip():
                    await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, mode, checksum) VALUES ($1, $2, $3, $4)",
                    migration.version, migration.name, mode, migration.checksum,
                )
            log.info("migration_applied", version=migration.version, name=migration.name, mode=mode)
            done.append(migration.version)
        return mode, done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
