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
        for store in ("kafka-1", "kafka-2", "kafka-3", "mongo-1"):
            assert deps[store]["condition"] == "service_healthy", (name, store)
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


def test_kafka_is_three_brokers_that_keep_three_copies_and_acknowledge_two() -> None:
    services = compose()["services"]
    brokers = [services[f"kafka-{i}"]["environment"] for i in (1, 2, 3)]
    assert [b["KAFKA_NODE_ID"] for b in brokers] == [1, 2, 3]
    for i, broker in enumerate(brokers, 1):
        assert broker["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka-{i}:9092"
        assert broker["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@kafka-") == 3
        assert broker["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert broker["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert broker["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert broker["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    assert len({tuple(services[f"kafka-{i}"]["volumes"]) for i in (1, 2, 3)}) == 3
    assert services["topics"]["environment"]["DOORSTEP_TOPIC_REPLICATION"] == "3"
    for name in SETTINGS:
        env = services[name]["environment"]
        assert env["DOORSTEP_TOPIC_REPLICATION"] == "3"
        assert env["DOORSTEP_KAFKA_BOOTSTRAP"].split(",") == [f"kafka-{i}:9092" for i in (1, 2, 3)]


def test_mongodb_is_a_replica_set_written_and_read_by_majority() -> None:
    services = compose()["services"]
    for i in (1, 2, 3):
        assert services[f"mongo-{i}"]["command"] == ["mongod", "--replSet", "rs0", "--bind_ip_all"]
    initiate = services["mongo-1"]["healthcheck"]["test"][-1]
    assert "rs.initiate" in initiate and all(f"mongo-{i}:27017" in initiate for i in (1, 2, 3))
    for name in SETTINGS:
        url = services[name]["environment"]["DOORSTEP_MONGO_URL"]
        hosts, _, options = url.removeprefix("mongodb://").partition("/?")
        assert hosts.split(",") == [f"mongo-{i}:27017" for i in (1, 2, 3)]
        assert {"replicaSet=rs0", "w=majority", "readConcernLevel=majority"} <= set(
            options.split("&")
        )


def test_identity_takes_the_persons_address_from_the_stacks_own_network_only() -> None:
    stack = compose()
    subnets = [c["subnet"] for c in stack["networks"]["default"]["ipam"]["config"]]
    trusted = stack["services"]["identity"]["environment"]["DOORSTEP_TRUSTED_PROXIES"]
    assert trusted.split(",") == subnets
