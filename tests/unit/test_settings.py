from __future__ import annotations

from pathlib import Path

import pytest

from services.identity.settings import IdentitySettings
from services.orders.settings import OrdersSettings
from shared.keys import SigningKey
from shared.settings import load


def test_missing_settings_stop_the_service_with_one_line_per_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DOORSTEP_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("DOORSTEP_MONGO_URL", "postgres://nope")
    monkeypatch.setenv("DOORSTEP_PORT", "eighty")
    monkeypatch.setenv("DOORSTEP_JWKS_URL", "ftp://keys")
    # uvicorn would take a mistyped host as a name that never matches, and say nothing
    monkeypatch.setenv("DOORSTEP_TRUSTED_PROXIES", "10.0.0.0/33,proxy.example")
    with pytest.raises(SystemExit) as exc:
        load(OrdersSettings, "orders")
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[2].strip() for line in lines] == [
        "DOORSTEP_KAFKA_BOOTSTRAP",
        "DOORSTEP_JWKS_URL",
        "DOORSTEP_TRUSTED_PROXIES",
        "DOORSTEP_MONGO_URL",
        "DOORSTEP_PORT",
    ]
    assert all(line.startswith("orders: configuration error: ") for line in lines)


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("DOORSTEP_MONGO_URL", "mongodb://127.0.0.1:27017/")
    settings = load(OrdersSettings, "orders")
    assert settings.port == 8001 and settings.mongo_database == "orders"


def test_identity_refuses_a_key_others_may_read_or_a_weak_secret_outside_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "issuer.pem"
    SigningKey.generate().save(key)
    monkeypatch.setenv("DOORSTEP_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("DOORSTEP_MONGO_URL", "mongodb://127.0.0.1:27017/")
    monkeypatch.setenv("DOORSTEP_SIGNING_KEYS", str(key))
    monkeypatch.setenv("DOORSTEP_IDENTITY_SECRET", "q8Zt1vN4mW7xK2pR5sL9dF3gH6jB0cY!")
    assert load(IdentitySettings, "identity").keys[0].kid
    key.chmod(0o644)
    with pytest.raises(SystemExit):
        load(IdentitySettings, "identity")
    assert "readable by others" in capsys.readouterr().err
    monkeypatch.setenv("DOORSTEP_ENVIRONMENT", "development")  # make run and the tests
    assert load(IdentitySettings, "identity").keys
    monkeypatch.setenv("DOORSTEP_ENVIRONMENT", "production")
    key.chmod(0o600)
    monkeypatch.setenv("DOORSTEP_IDENTITY_SECRET", "change-me-change-me-change-me-change-me")
    with pytest.raises(SystemExit):
        load(IdentitySettings, "identity")
    assert "weak" in capsys.readouterr().err
    monkeypatch.setenv("DOORSTEP_IDENTITY_SECRET", "q8Zt1vN4mW7xK2pR5sL9dF3gH6jB0cY!")
    (tmp_path / "rsa.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "rsa.pem").chmod(0o600)
    monkeypatch.setenv("DOORSTEP_SIGNING_KEYS", str(tmp_path / "rsa.pem"))
    with pytest.raises(SystemExit):
        load(IdentitySettings, "identity")
