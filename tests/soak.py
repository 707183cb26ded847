"""A fault soak: orders flow without pause through four communities (one on every
partition) while faults follow one another on real processes — kill -9 and pause of every
service, of the broker and of the database itself — then the same checks as the fault
tests: every order placed is assigned and delivered exactly once, no volunteer goes above
capacity, and every service is ready again, with no restart by hand.

Not part of ``make test`` (it runs for minutes): ``make soak ARGS='--minutes 10'``.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from doorstep_cli.localstack import FerretNode, KafkaNode, free_port
from tests.conftest import Stack
from tests.e2e.conftest import (
    SERVICES,
    Running,
    restart,
    spawn,
    start_services,
    stop_services,
)
from tests.e2e.scenario import Stream
from tests.e2e.test_faults import wait_ready


def paused(proc: subprocess.Popen[bytes], seconds: float) -> None:
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(proc.pid, signal.SIGCONT)


def killed(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


OWNERS = ("orders", "volunteers", "dispatch")


class Placer:
    """Orders placed at a steady ``rate`` per community in a thread of its own, through
    whatever happens meanwhile (each retried as a client would); ``stop`` waits for the
    last and raises what went wrong."""

    def __init__(self, stream: Stream, rate: float) -> None:
        self.stream, self.rate = stream, rate
        self.error: list[BaseException] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._place, daemon=True)

    def _place(self) -> None:
        try:
            while not self._stopping.is_set():
                due = time.monotonic() + 1 / self.rate
                self.stream.place(1, timeout=600)
                time.sleep(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # reported by the main thread
            self.error.append(exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=600)
        self.check()

    def check(self) -> None:
        if self.error:
            raise self.error[0]


class Soak:
    def __init__(
        self, kafka: KafkaNode, ferret: FerretNode, running: Running, base: Path, second: bool
    ) -> None:
        self.kafka, self.ferret, self.running, self.base = kafka, ferret, running, base
        # With ``second``: two instances of every owner, sharing the partitions.
        self.second: dict[str, subprocess.Popen[bytes]] = {}
        self.second_env: dict[str, dict[str, str]] = {}
        if second:
            for name in OWNERS:
                env = {**running.envs[name], "DOORSTEP_PORT": str(free_port())}
                self.second_env[name] = env
                self._spawn_second(name)
            for name, env in self.second_env.items():
                wait_answering(f"http://127.0.0.1:{env['DOORSTEP_PORT']}", name)

    def _spawn_second(self, name: str) -> None:
        proc = spawn(name, self.second_env[name], self.base / f"{name}-2.log")
        self.second[name] = proc
        self.running.extra.append(proc)

    def faults(self) -> dict[str, Callable[[], None]]:
        found: dict[str, Callable[[], None]] = {
            "database-kill-9": self.database_killed,
            "database-paused-15s": lambda: paused(self._ferret(), 15),
            "broker-kill-9": self.broker_killed,
            "broker-paused-20s": lambda: paused(self._kafka(), 20),
        }
        for name in SERVICES:
            found[f"{name}-kill-9"] = functools.partial(self.service_killed, name)
            found[f"{name}-paused-20s"] = functools.partial(self.service_paused, name, 20)
        for name in self.second:
            found[f"{name}-second-kill-9"] = functools.partial(self.second_killed, name)
            found[f"{name}-second-paused-40s"] = functools.partial(self.second_paused, name, 40)
        return found

    def second_killed(self, name: str) -> None:
        killed(self.second[name])
        self._spawn_second(name)
        wait_answering(f"http://127.0.0.1:{self.second_env[name]['DOORSTEP_PORT']}", name)

    def second_paused(self, name: str, seconds: float) -> None:
        # Past the consumer session: its partitions move to the first, and it comes back
        # with its old state in memory (it must lose every race for the next entry).
        paused(self.second[name], seconds)

    def service_killed(self, name: str) -> None:
        killed(self.running.procs[name])
        restart(self.running, name)

    def service_paused(self, name: str, seconds: float) -> None:
        paused(self.running.procs[name], seconds)

    def _ferret(self) -> subprocess.Popen[bytes]:
        assert self.ferret.proc is not None
        return self.ferret.proc

    def _kafka(self) -> subprocess.Popen[bytes]:
        assert self.kafka.proc is not None
        return self.kafka.proc

    def database_killed(self) -> None:
        killed(self._ferret())
        time.sleep(3)
        self.ferret.start()

    def broker_killed(self) -> None:
        killed(self._kafka())
        time.sleep(5)
        self.kafka.start()


def wait_answering(url: str, name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"a second {name} not ready in {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--gap", type=float, default=15, help="seconds between two faults")
    parser.add_argument("--rate", type=float, default=1, help="orders per second per community")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--second", action="store_true", help="two instances of every owner, both faulted"
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    chance = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="doorstep-soak-"))
    print(f"soak: seed={seed} logs in {base}", flush=True)
    kafka = KafkaNode(base / "kafka", log_file=base / "kafka.log")
    ferret = FerretNode(base / "ferretdb", log_file=base / "ferretdb.log")
    ferret.start()
    kafka.start()
    running = start_services(Stack(kafka.bootstrap, ferret.url, "local"), base)
    # Enough households that none orders again while its last order is open (a second
    # open order of a household is held for staff as a possible duplicate).
    homes = int(args.rate * args.minutes * 60) + 10
    # Every fourth order is a relative's parcel, announced and scanned in at the gate.
    stream = Stream(running, homes_each=homes, volunteers_each=3, parcels_every=4)
    placer = Placer(stream, args.rate)
    soak = Soak(kafka, ferret, running, base, args.second)
    faults = soak.faults()
    try:
        placer.start()
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end and not placer.error:
            name = chance.choice(sorted(faults))
            began = time.monotonic()
            faults[name]()
            print(f"soak: {name} ({time.monotonic() - began:.0f} s)", flush=True)
            time.sleep(args.gap)
        placer.stop()
        total = sum(len(o) for o in stream.orders.values())
        print(f"soak: {total} orders placed; waiting for every delivery", flush=True)
        stream.wait_delivered(timeout=600)
        print(f"soak: ready again after {wait_ready(running):.1f} s", flush=True)
        stream.assert_exactly_once()
        stream.assert_households_told()
        stream.assert_parcels_accounted_for()
        parcels = sum(len(p) for p in stream.parcels.values())
        print(
            f"soak: passed — {total} orders ({parcels} parcels through the gate), each "
            "assigned and delivered once, every parcel delivered",
            flush=True,
        )
    finally:
        stream.stop()
        stop_services(running)
        kafka.stop()
        ferret.stop()


if __name__ == "__main__":
    main()
