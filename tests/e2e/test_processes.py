"""The services as processes: they start, serve health and metrics, and refuse bad config."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from shared.auth import Role
from tests.conftest import Stack
from tests.e2e.client import auth, token
from tests.e2e.conftest import REPO, Running, service_env


def test_every_service_is_ready_and_serves_health_and_metrics(services: Running) -> None:
    with httpx.Client(timeout=5) as client:
        for name, url in services.urls.items():
            assert client.get(f"{url}/healthz").json() == {"status": "ok"}, name
            ready = client.get(f"{url}/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {
                "mongo": "ok",
                "kafka": "ok",
                "consumers": "ok",
                "keys": "ok",  # it can check tokens: it knows identity's keys
            }
            metrics = client.get(f"{url}/metrics").text
            for metric in (
                "doorstep_events_published_total",
                "doorstep_events_handled_total",
                "doorstep_event_handle_seconds",
                "http_requests_total",
            ):
                assert f"# TYPE {metric}" in metrics, (name, metric)
            # Which paths exist is not told to strangers: 401 first, then 404.
            stranger = client.get(f"{url}/v1/no-such-thing")
            assert stranger.status_code == 401
            missing = client.get(f"{url}/v1/no-such-thing", headers=auth(token(Role.ops)))
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"


def test_a_bad_setting_stops_the_process_at_once_naming_the_variable(stack: Stack) -> None:
    env = service_env(stack, "x", DOORSTEP_PORT="not-a-port")
    env.pop("DOORSTEP_KAFKA_BOOTSTRAP")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "services.dispatch"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert time.monotonic() - started < 10
    assert result.stderr.strip().splitlines() == [
        "dispatch: configuration error: DOORSTEP_KAFKA_BOOTSTRAP: Field required",
        "dispatch: configuration error: DOORSTEP_PORT: "
        "Input should be a valid integer, unable to parse string as an integer",
    ]
