"""The API against a real, migrated PostgreSQL database filled through the store's own writer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import httpx
import pytest

from rest_api.app import create_app
from rest_api.settings import Settings
from store_timescale.migrations import migrate
from store_timescale.pg_writer import PgWriter
from tests.conftest import REPO_ROOT, free_port
from tests.store_timescale.databases import fresh_database


@pytest.fixture(scope="module")
async def api_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """A migrated, empty store database shared by one test module (tests use their own index ids)."""
    async with fresh_database(postgres_dsn) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield dsn


@pytest.fixture(scope="module")
async def writer(api_dsn: str) -> AsyncIterator[PgWriter]:
    pool = await asyncpg.create_pool(api_dsn, min_size=1, max_size=2)
    writer = PgWriter(pool, partitioned=True)
    await writer.start(months_ahead=1)
    yield writer
    await pool.close()


@asynccontextmanager
async def api_client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) behind httpx's ASGI transport."""
    app = create_app(Settings(**settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@contextmanager
def api_process(dsn: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m rest_api` on a free port, ready when /readyz answers 200; SIGTERM afterwards."""
    port = free_port()
    environment = {**os.environ, "SYI_POSTGRES_DSN": dsn, "SYI_API_PORT": str(port), "SYI_LOG_FORMAT": "json", **env}
    process = subprocess.Popen([sys.executable, "-m", "rest_api"], env=environment, cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"rest-api exited: {process.stdout.read().decode()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("rest-api did not become healthy in 60 s")
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
