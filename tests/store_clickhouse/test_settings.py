"""Settings: the embedded default store, and bad configuration refused naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from store_clickhouse.clickhouse_store import safe_dsn
from store_clickhouse.settings import Settings
from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("SYI_CLICKHOUSE_DSN", "SYI_STATE_DIR", "SYI_CLICKHOUSE_TOPICS", "SYI_HEALTH_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_default_store_is_chdb_in_the_repository_state_dir():
    settings = Settings()
    assert settings.clickhouse_dsn == f"chdb://{(REPO_ROOT / '.stack' / 'chdb').resolve()}"
    assert settings.health_port == 9105
    assert settings.clickhouse_topics == [
        "cc.prices", "cc.orderbook", "dl.apy", "ex.mktcap", "trad.tbill", "syi.calculated",
    ]


def test_state_dir_and_dsn_come_from_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SYI_STATE_DIR", str(tmp_path))
    assert Settings().clickhouse_dsn == f"chdb://{tmp_path.resolve() / 'chdb'}"
    monkeypatch.setenv("SYI_CLICKHOUSE_DSN", "https://analyst:pw@ch.example:8443/syi")
    assert Settings().clickhouse_dsn == "https://analyst:pw@ch.example:8443/syi"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SYI_CLICKHOUSE_DSN", "postgresql://localhost/syi", "SYI_CLICKHOUSE_DSN"),
        ("SYI_CLICKHOUSE_TOPICS", '["cc.prices", "metrics.peg"]', "SYI_CLICKHOUSE_TOPICS"),
        ("SYI_CLICKHOUSE_TOPICS", '["dl.apy", "dl.apy"]', "SYI_CLICKHOUSE_TOPICS"),
        ("SYI_CLICKHOUSE_TOPICS", "[]", "SYI_CLICKHOUSE_TOPICS"),
        ("SYI_CLICKHOUSE_BATCH_MAX_MESSAGES", "0", "SYI_CLICKHOUSE_BATCH_MAX_MESSAGES"),
    ],
)
def test_bad_configuration_is_refused_naming_the_setting(monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


def test_dsn_password_is_masked_for_logs():
    assert safe_dsn("http://writer:s3cret@ch:8123/syi") == "http://writer:***@ch:8123/syi"
    assert safe_dsn("chdb:///var/lib/syi/chdb") == "chdb:///var/lib/syi/chdb"
