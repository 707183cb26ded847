"""The four services as real processes (``python -m services.<name>``) against the real
broker and database of the session's stack."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from doorstep_cli.localstack import free_port
from shared.keys import SigningKey
from tests.conftest import Stack
from tests.gateway import GatewayServer, running_gateway

if TYPE_CHECKING:
    from selenium import webdriver

    from tests.e2e.client import Community

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("orders", "volunteers", "dispatch", "notify", "identity", "district")
# The tests hold the issuer's key, as a developer does (make token): they mint tokens
# for any role; every service checks them with identity's published public key.
SIGNING_KEY = SigningKey.generate()
KEY_FILE = Path(tempfile.mkdtemp(prefix="doorstep-e2e-")) / "issuer.pem"
SIGNING_KEY.save(KEY_FILE)
IDENTITY_SECRET = "e2e-identity-secret-e2e-identity-secret"
SMS_SECRET = "e2e-sms-secret-e2e-sms-secret-e2e-sms"
OFFER_TIMEOUT = 8.0  # short for the lapse scenario; long enough for a loaded CI machine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Running:
    urls: dict[str, str]
    databases: dict[str, str]
    stack: Stack
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    envs: dict[str, dict[str, str]]
    extra: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)  # more instances

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])

    def warnings(self, pattern: str = r"consumer_stalled|background\.crashed|dead_lettered") -> str:
        """What every service logged that a failed fault test should show (the services'
        logs are gone with the CI machine; the test's output is not)."""
        return "\n".join(
            f"{name}: {line[:300]}"
            for name, path in self.logs.items()
            for line in path.read_text(errors="replace").splitlines()
            if re.search(pattern, line)
        )


def service_env(stack: Stack, run_id: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "DOORSTEP_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "DOORSTEP_MONGO_URL": stack.mongo_url,
        "DOORSTEP_TOPIC_PARTITIONS": "4",
        "DOORSTEP_SIGNING_KEYS": str(KEY_FILE),
        "DOORSTEP_IDENTITY_SECRET": IDENTITY_SECRET,
        "DOORSTEP_ENVIRONMENT": "development",
        "DOORSTEP_CODES_PER_ADDRESS_HOUR": "100000",  # every test asks from 127.0.0.1
        "DOORSTEP_JWKS_REFRESH_SECONDS": "1",  # a retired key is dropped within a second
        "DOORSTEP_OFFER_TIMEOUT_SECONDS": str(OFFER_TIMEOUT),
        "DOORSTEP_STREAM_POLL_SECONDS": "0.2",
        "DOORSTEP_SHIFT_CHECK_SECONDS": "1",
        "DOORSTEP_SMS_SECRET": SMS_SECRET,
        "DOORSTEP_ALARM_REPEAT_SECONDS": "1",
        "DOORSTEP_ALARM_TRIES": "2",
        **extra,
    }


def start_services(stack: Stack, workdir: Path, env_extra: dict[str, str] | None = None) -> Running:
    run_id = uuid.uuid4().hex[:8]
    procs, urls, logs, databases, envs = {}, {}, {}, {}, {}
    ports = {name: free_port() for name in SERVICES}
    jwks = f"http://127.0.0.1:{ports['identity']}/.well-known/jwks.json"
    for name in SERVICES:
        port = ports[name]
        log = workdir / f"{name}.log"
        env = service_env(
            stack,
            run_id,
            DOORSTEP_PORT=str(port),
            DOORSTEP_MONGO_DATABASE=f"{name}_{run_id}",
            DOORSTEP_JWKS_URL=jwks,
            **(env_extra or {}),
        )
        envs[name] = env
        procs[name] = spawn(name, env, log)
        urls[name] = f"http://127.0.0.1:{port}"
        databases[name] = f"{name}_{run_id}"
        logs[name] = log
    running = Running(urls, databases, stack, procs, logs, envs)
    wait_ready(running, SERVICES)
    return running


def spawn(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def restart(running: Running, name: str) -> None:
    """Start a service again (after a kill) on its port, with its database."""
    running.procs[name] = spawn(name, running.envs[name], running.logs[name])
    wait_ready(running, (name,))


def wait_ready(running: Running, names: tuple[str, ...], timeout: float = 90) -> None:
    procs, urls = running.procs, running.urls
    deadline = time.monotonic() + timeout
    pending = set(names)
    with httpx.Client(timeout=2) as client:
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if procs[name].poll() is not None:
                    stop_services(running)
                    raise RuntimeError(f"{name} exited:\n{running.log_tail(name)}")
                try:
                    if client.get(f"{urls[name]}/readyz").status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
    if pending:
        stop_services(running)
        raise RuntimeError(f"not ready in {timeout:.0f}s: {pending}")


def stop_services(running: Running) -> None:
    procs = [*running.procs.values(), *running.extra]
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def gateway() -> Iterator[GatewayServer]:
    with running_gateway() as server:
        yield server


@pytest.fixture(scope="session")
def services(
    stack: Stack, gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    running = start_services(
        stack, tmp_path_factory.mktemp("services"), {"DOORSTEP_GATEWAY_URL": gateway.url}
    )
    try:
        yield running
    finally:
        stop_services(running)


@pytest.fixture()
def community(services: Running) -> Iterator[Community]:
    from tests.e2e.client import Community

    with httpx.Client(timeout=120) as http:
        yield Community(services, http, f"c{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def front_end(
    name: str, services: Running, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A web front end (``console``, ``field``) as a real process, in front of these
    services; its URL while it runs."""
    port = free_port()
    log = tmp_path_factory.mktemp(name) / f"{name}.log"
    env = {
        **services.envs["orders"],
        "DOORSTEP_PORT": str(port),
        "DOORSTEP_ORDERS_URL": services.urls["orders"],
        "DOORSTEP_VOLUNTEERS_URL": services.urls["volunteers"],
        "DOORSTEP_DISPATCH_URL": services.urls["dispatch"],
        "DOORSTEP_NOTIFY_URL": services.urls["notify"],
        "DOORSTEP_IDENTITY_URL": services.urls["identity"],
        "DOORSTEP_DISTRICT_URL": services.urls["district"],
    }
    env.pop("DOORSTEP_MONGO_DATABASE", None)
    running = Running(
        urls={name: f"http://127.0.0.1:{port}"},
        databases={},
        stack=services.stack,
        procs={name: spawn(name, env, log)},
        logs={name: log},
        envs={name: env},
    )
    wait_ready(running, (name,))
    try:
        yield running.urls[name]
    finally:
        stop_services(running)


@pytest.fixture(scope="module")
def field(services: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The field app as a real process, in front of the session's services."""
    with field_app(services, tmp_path_factory) as url:
        yield url


def field_app(services: Running, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return front_end("field", services, tmp_path_factory)


@pytest.fixture()
def phone() -> Iterator[webdriver.Chrome]:
    """A phone: Chromium emulating a 360-px Android screen, with a fresh profile."""
    from tests.e2e.phone import open_phone  # it needs the client, which needs this module

    driver = open_phone()
    try:
        yield driver
    finally:
        driver.quit()
