from pydantic import SecretStr

from syi_shared.settings import KafkaSettings, ServiceSettings


def test_bootstrap_from_code_wins_over_default():
    assert ServiceSettings(kafka_bootstrap_servers="h:1").kafka_config()["bootstrap.servers"] == "h:1"


def test_bootstrap_from_short_and_nested_environment(monkeypatch):
    monkeypatch.setenv("SYI_KAFKA_BOOTSTRAP_SERVERS", "short:1")
    assert ServiceSettings().kafka_config()["bootstrap.servers"] == "short:1"
    monkeypatch.delenv("SYI_KAFKA_BOOTSTRAP_SERVERS")
    monkeypatch.setenv("SYI_KAFKA__BOOTSTRAP_SERVERS", "nested:2")
    assert ServiceSettings().kafka_config()["bootstrap.servers"] == "nested:2"


def test_sasl_ssl_settings_become_librdkafka_properties(monkeypatch):
    monkeypatch.setenv("SYI_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SYI_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SYI_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("SYI_KAFKA__SASL_PASSWORD", "s3cret")
    config = ServiceSettings().kafka_config()
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.password"] == "s3cret"
    assert "s3cret" not in repr(ServiceSettings())  # secrets never show in logs or reprs


def test_env_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("SYI_LOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    assert ServiceSettings().log_level == "DEBUG"


def test_plaintext_has_no_security_extras():
    assert KafkaSettings(sasl_password=SecretStr("x"), sasl_username=None).client_config()["sasl.password"] == "x"
    assert set(KafkaSettings().client_config()) == {"bootstrap.servers", "security.protocol"}
