"""The city's soak (issue 22 §1): a three-broker Kafka cluster, topics replicated three
times with two copies before a write counts, three instances of orders, volunteers and
dispatch, two of notify and of the console, orders flowing through four communities (one
on every partition) the whole time, while:

0. all along, the last instance of orders, volunteers and notify talk to the brokers over
   a slow link (200 ms each way, through proxies the brokers advertise to them alone);
1. one broker is killed (kill -9) and never comes back;
2. a second broker is killed for 20 s and started again — below two copies nothing can be
   written: producers wait, requests answer 202/503 and are retried, nothing is lost;
3. a third dispatch instance is cut from the brokers for 30 s while it still reaches the
   database: its partitions move to the others, and whatever it still decides must lose
   to (or agree with) theirs — the log's fence;
4. every service instance is restarted, one after another (a rolling upgrade): each
   restart moves partitions between the instances of its service;

then the fault tests' checks: every order assigned and delivered exactly once, no
volunteer above capacity, every household told once, every instance ready. For each step
it prints how long until the orders placed up to its end were all delivered (recovery).

Not part of ``make test`` (minutes): ``make cluster-soak ARGS='--rate 1'``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from doorstep_cli.localstack import FerretNode, KafkaCluster, free_port
from tests.conftest import Stack
from tests.e2e.conftest import Running, spawn, start_services, stop_services
from tests.e2e.scenario import Stream
from tests.faults import TcpProxy
from tests.soak import Placer, killed, wait_answering

INSTANCES = {"orders": 3, "volunteers": 3, "dispatch": 3, "notify": 2}
CONSOLES = 2


class Route:
    """One process's own way to the brokers: a proxy in front of each broker, on a
    listener that advertises the proxy (so the client's every connection goes through
    one of them). Made before the cluster starts (the listeners are in its properties)."""

    def __init__(self, cluster: KafkaCluster, name: str, delay: float = 0.0) -> None:
        self.proxies = []
        for node in cluster.nodes:
            proxy = TcpProxy("127.0.0.1", 0, delay=delay)
            host, port = node.route(name, proxy.port).split(":")
            proxy.upstream = (host, int(port))
            self.proxies.append(proxy)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p.port}" for p in self.proxies)

    def __enter__(self) -> Route:
        for proxy in self.proxies:
            proxy.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for proxy in self.proxies:
            proxy.__exit__(None, None, None)

    def cut(self) -> None:
        for proxy in self.proxies:
            proxy.cut()

    def restore(self) -> None:
        for proxy in self.proxies:
            proxy.restore()


class City:
    """The services of ``running`` and the extra instances beside them; the last orders,
    volunteers and notify instances on a slow route, the last dispatch one on a route that
    can be cut."""

    def __init__(self, running: Running, base: Path, slow: Route, cut: Route) -> None:
        self.running, self.base = running, base
        self.extra: dict[str, tuple[dict[str, str], subprocess.Popen[bytes]]] = {}
        routes = {
            ("orders", INSTANCES["orders"]): slow,
            ("volunteers", INSTANCES["volunteers"]): slow,
            ("notify", INSTANCES["notify"]): slow,
            ("dispatch", INSTANCES["dispatch"]): cut,
        }
        for name, count in INSTANCES.items():
            for i in range(2, count + 1):
                env = {**running.envs[name], "DOORSTEP_PORT": str(free_port())}
                if (name, i) in routes:
                    env["DOORSTEP_KAFKA_BOOTSTRAP"] = routes[(name, i)].bootstrap
                self._spawn(f"{name}-{i}", name, env)
        console_env = {
            **running.envs["orders"],
            **{f"DOORSTEP_{s.upper()}_URL": url for s, url in running.urls.items()},
        }
        console_env.pop("DOORSTEP_MONGO_DATABASE", None)
        for i in range(1, CONSOLES + 1):
            self._spawn(
                f"console-{i}", "console", {**console_env, "DOORSTEP_PORT": str(free_port())}
            )
        for label, (env, _) in self.extra.items():
            wait_answering(f"http://127.0.0.1:{env['DOORSTEP_PORT']}", label)

    def _spawn(self, label: str, service: str, env: dict[str, str]) -> None:
        proc = spawn(service, env, self.base / f"{label}.log")
        self.extra[label] = (env, proc)
        self.running.extra.append(proc)

    def rolling_restart(self) -> None:
        """Every instance in turn: stopped as an orchestrator stops it (SIGTERM), started,
        ready before the next goes."""
        for name in list(self.running.procs):
            proc = self.running.procs[name]
            proc.terminate()
            proc.wait(timeout=30)
            self.running.procs[name] = spawn(name, self.running.envs[name], self.running.logs[name])
            wait_answering(self.running.urls[name], name)
            print(f"cluster-soak:   {name} restarted", flush=True)
        for label, (env, proc) in list(self.extra.items()):
            proc.terminate()
            proc.wait(timeout=30)
            service = label.rsplit("-", 1)[0]
            self._spawn(label, service, env)
            wait_answering(f"http://127.0.0.1:{env['DOORSTEP_PORT']}", label)
            print(f"cluster-soak:   {label} restarted", flush=True)

    def all_ready(self) -> None:
        for name, url in self.running.urls.items():
            wait_answering(url, name)
        for label, (env, _) in self.extra.items():
            wait_answering(f"http://127.0.0.1:{env['DOORSTEP_PORT']}", label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1, help="orders per second per community")
    parser.add_argument("--between", type=float, default=30, help="seconds of flow between steps")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="doorstep-cluster-soak-"))
    print(f"cluster-soak: logs in {base}", flush=True)
    cluster = KafkaCluster(base / "kafka", log_dir=base)
    slow, cut = Route(cluster, "slow", delay=0.2), Route(cluster, "cut")
    ferret = FerretNode(base / "ferretdb", log_file=base / "ferretdb.log")
    ferret.start()
    started = time.monotonic()
    slow.__enter__()
    cut.__enter__()
    cluster.start()
    print(f"cluster-soak: three brokers up in {time.monotonic() - started:.0f} s", flush=True)
    running = start_services(
        Stack(cluster.bootstrap, ferret.url, "local"),
        base,
        {"DOORSTEP_TOPIC_REPLICATION": "3", "DOORSTEP_STREAM_POLL_SECONDS": "0.5"},
    )
    city = City(running, base, slow, cut)
    minutes = 8.0  # enough households that none orders twice while its order is open
    stream = Stream(running, homes_each=int(args.rate * minutes * 60) + 10, volunteers_each=3)
    placer = Placer(stream, args.rate)

    def placed() -> int:
        return sum(len(o) for o in stream.orders.values())

    def step(name: str, fault: Callable[[], None]) -> None:
        began = time.monotonic()
        fault()
        took = time.monotonic() - began
        upto = placed()
        deadline = time.monotonic() + 600
        while stream.delivered() < upto:
            assert time.monotonic() < deadline, f"{name}: not caught up in 10 minutes"
            placer.check()
            time.sleep(1)
        caught_up = time.monotonic() - began
        print(
            f"cluster-soak: {name}: {took:.0f} s; every order placed by its end delivered "
            f"{caught_up:.0f} s after it began ({upto} orders so far)",
            flush=True,
        )
        time.sleep(args.between)

    dead, flaky = cluster.nodes[2], cluster.nodes[1]

    def broker_dead_for_good() -> None:
        assert dead.proc is not None
        killed(dead.proc)

    def second_broker_away_20s() -> None:
        assert flaky.proc is not None
        killed(flaky.proc)
        time.sleep(20)
        flaky.start()

    def dispatch_cut_30s() -> None:
        cut.cut()
        time.sleep(30)
        cut.restore()

    try:
        placer.start()
        time.sleep(args.between)
        step("broker 3 killed for good", broker_dead_for_good)
        step("broker 2 away for 20 s (below two copies)", second_broker_away_20s)
        step("dispatch-3 cut from the brokers for 30 s", dispatch_cut_30s)
        step("rolling restart of every instance", city.rolling_restart)
        placer.stop()
        total = placed()
        print(f"cluster-soak: {total} orders placed; waiting for every delivery", flush=True)
        stream.wait_delivered(timeout=600)
        city.all_ready()
        stream.assert_exactly_once()
        stream.assert_households_told()
        print(
            f"cluster-soak: passed — {total} orders, each assigned and delivered once, no "
            "cadre above capacity, every household told once, with one broker gone for good",
            flush=True,
        )
    finally:
        stream.stop()
        stop_services(running)
        cluster.stop()
        ferret.stop()
        slow.__exit__()
        cut.__exit__()


if __name__ == "__main__":
    main()
