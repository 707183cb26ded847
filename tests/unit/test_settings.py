from __future__ import annotations

import pytest

from services.orders.settings import OrdersSettings
from shared.settings import load


def test_missing_settings_stop_the_service_with_one_line_per_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DOORSTEP_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("DOORSTEP_MONGO_URL", "postgres://nope")
    monkeypatch.setenv("DOORSTEP_PORT", "eighty")
    monkeypatch.setenv("DOORSTEP_JWT_SECRET", "short")
    with pytest.raises(SystemExit) as exc:
        load(OrdersSettings, "orders")
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[2].strip() for line in lines] == [
        "DOORSTEP_KAFKA_BOOTSTRAP",
        "DOORSTEP_JWT_SECRET",
        "DOORSTEP_MONGO_URL",
        "DOORSTEP_PORT",
    ]
    assert all(line.startswith("orders: configuration error: ") for line in lines)


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("DOORSTEP_MONGO_URL", "mongodb://127.0.0.1:27017/")
    monkeypatch.setenv("DOORSTEP_JWT_SECRET", "x" * 32)
    settings = load(OrdersSettings, "orders")
    assert settings.port == 8001 and settings.mongo_database == "orders"
