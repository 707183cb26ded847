"""The compose stack cannot run here (no Docker engine), so its structure is checked."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.dispatch.settings import DispatchSettings
from services.identity.settings import IdentitySettings
from services.notify.settings import NotifySettings
from services.orders.settings import OrdersSettings
from services.volunteers.settings import VolunteersSettings
from shared import topics

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
SETTINGS = {
    "orders": OrdersSettings,
    "volunteers": VolunteersSettings,
    "dispatch": DispatchSettings,
    "notify": NotifySettings,
    "identity": IdentitySettings,
}


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(COMPOSE.read_text())


def test_every_long_running_service_has_a_healthcheck_and_waits_for_its_dependencies() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        if spec.get("restart") == "no":  # one-shot jobs
            continue
        assert "healthcheck" in spec, name
    for name in SETTINGS:
        deps = services[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["mongo"]["condition"] == "service_healthy"
        assert deps["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
    assert services["kafka-ui"]["profiles"] == ["dev"]


def test_every_variable_given_to_a_service_is_one_its_settings_read() -> None:
    services = compose()["services"]
    for name, cls in SETTINGS.items():
        prefix = cls.model_config["env_prefix"]
        known = {prefix + field.upper() for field in cls.model_fields}
        given = set(services[name]["environment"])
        assert given <= known, f"{name}: unknown {given - known}"
        required = {
            prefix + f.upper() for f, info in cls.model_fields.items() if info.is_required()
        }
        assert required <= given, f"{name}: missing {required - given}"


def test_topic_names_in_the_stack_match_the_contracts() -> None:
    text = COMPOSE.read_text()
    named = set(re.findall(r"\b[a-z]+\.(?:events|commands)(?:\.dlq)?\b", text))
    assert named <= {*topics.ALL, *(topics.dlq(t) for t in topics.ALL)}
    command = compose()["services"]["topics"]["command"]
    assert command[:4] == ["python", "-m", "doorstep_cli", "topics"]
    assert sorted(command[4:]) == sorted(topics.ALL)
