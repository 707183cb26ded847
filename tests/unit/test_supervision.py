"""How background work outlives its failures: the supervisor's restarts, and waits on the
Kafka client that are bounded for real."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.kafka import within
from shared.runtime import supervise


async def test_a_cancellation_from_inside_the_body_restarts_it_like_a_crash() -> None:
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise asyncio.CancelledError  # what aiokafka's close can end with

    await asyncio.wait_for(supervise("consumer", body), 10)
    assert runs == 2


async def test_a_supervised_task_told_to_stop_stops() -> None:
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("consumer", body))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_call_that_swallows_its_cancellation_is_abandoned_at_the_bound() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # swallowed: asyncio.wait_for would wait this out

    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(0.2, stubborn())
    assert time.monotonic() - began < 1


async def test_a_call_cancelled_from_within_is_an_error_not_a_stop() -> None:
    async def cancelled_inside() -> None:
        raise asyncio.CancelledError

    with pytest.raises(RuntimeError, match="cancelled from within"):
        await within(1, cancelled_inside())


async def test_a_call_done_in_time_gives_its_result() -> None:
    async def answer() -> int:
        return 42

    assert await within(1, answer()) == 42


def test_aiokafkas_expected_start_up_warnings_are_held_back_until_the_consumers_run() -> None:
    import logging

    from shared.log import StartingQuietly

    quiet = StartingQuietly()
    warning = logging.LogRecord("aiokafka", logging.WARNING, "", 0, "coordinator dead", (), None)
    error = logging.LogRecord("aiokafka", logging.ERROR, "", 0, "unexpected", (), None)
    assert not quiet.filter(warning) and quiet.filter(error)
    quiet.started()
    assert quiet.filter(warning)
    assert StartingQuietly(at_most=-1).filter(warning)  # never held back for ever
