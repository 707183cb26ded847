"""Two dispatch instances share the work; one is killed mid-stream. Its partitions move to
the other, which loads their communities from the log and re-arms their offer timers:
every order is still delivered, none is assigned twice, nobody goes above capacity."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from doorstep_cli.localstack import free_port
from tests.e2e.client import eventually
from tests.e2e.conftest import Running, service_env, spawn
from tests.e2e.scenario import Stream


@pytest.mark.timeout(600)
def test_killing_a_dispatch_instance_loses_and_doubles_nothing(
    services: Running, tmp_path: Path
) -> None:
    env = service_env(
        services.stack,
        "second",
        DOORSTEP_PORT=str(free_port()),
        DOORSTEP_MONGO_DATABASE=services.databases["dispatch"],
    )
    log = tmp_path / "dispatch-2.log"
    second = spawn("dispatch", env, log)
    # It joins the group, and the partitions are split between the two instances.
    eventually(
        lambda: re.search(r"dispatch.assigned.*partitions=\[\d", log.read_text()),
        timeout=60,
        what="the second instance to own partitions",
    )
    stream = Stream(services)
    try:
        stream.place(8)
        eventually(
            lambda: stream.delivered() >= len(stream.codes) // 3,
            timeout=120,
            what="a third delivered",
        )
        os.kill(
            second.pid, signal.SIGKILL
        )  # no goodbye: its partitions move after the session times out
        stream.wait_delivered()
        stream.assert_households_told()
    finally:
        stream.stop()
        if second.poll() is None:
            second.kill()
    stream.assert_exactly_once()
