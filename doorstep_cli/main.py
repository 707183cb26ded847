"""The `doorstep` command: run the whole system locally, set up the stack, create topics."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console

from doorstep_cli import localstack

app = typer.Typer(
    help="Doorstep: volunteer dispatch for sealed-off communities.", no_args_is_help=True
)
console = Console(stderr=True)

SERVICES = {
    "orders": 8001,
    "volunteers": 8002,
    "dispatch": 8003,
    "notify": 8004,
    "console": 8005,
    "identity": 8006,
    "field": 8007,
    "district": 8008,
}
GATEWAY_PORT = 8009  # the development SMS gateway: prints sign-in codes


@app.command()
def setup(
    browser: bool = typer.Option(False, help="Also Chromium, for the console's browser tests"),
) -> None:
    """Fetch the Kafka jars and build FerretDB into the cache (once; later runs reuse them);
    install Chromium (and fetch axe-core) for the browser tests if missing; find a Chinese font
    for contact cards (fetched into the cache if the system has none)."""
    started = time.monotonic()
    libs = localstack.kafka_libs()
    ferretdb = localstack.ferretdb_binary()
    console.print(f"Kafka jars: {libs}\nFerretDB:   {ferretdb}")
    if browser:  # first: it brings a Chinese font too
        chromium, driver = localstack.browser()
        console.print(f"Chromium:   {chromium} ({driver})")
        console.print(f"axe-core:   {localstack.axe_core()}")
    console.print(f"Card font:  {localstack.cjk_font()}")
    console.print(f"set-up took {time.monotonic() - started:.1f}s")


@app.command()
def run(
    data_dir: Path = typer.Option(Path(".data"), help="Where Kafka and FerretDB keep data"),
    kafka_port: int = typer.Option(9092, envvar="DOORSTEP_RUN_KAFKA_PORT"),
    mongo_port: int = typer.Option(27017, envvar="DOORSTEP_RUN_MONGO_PORT"),
    brokers: int = typer.Option(
        1,
        envvar="DOORSTEP_RUN_BROKERS",
        min=1,
        max=3,
        help="3: a three-broker Kafka cluster, topics replicated three times",
    ),
) -> None:
    """Run Kafka, FerretDB, every service, the console and the phone app in the foreground; Ctrl-C
    stops them all."""
    from honcho.manager import Manager
    from honcho.printer import Printer

    started = time.monotonic()
    if brokers == 3:
        cluster = localstack.KafkaCluster(data_dir.resolve() / "kafka-3", first_port=kafka_port)
        nodes = cluster.nodes
        bootstrap = cluster.bootstrap
    else:
        single = localstack.KafkaNode(
            data_dir.resolve() / "kafka", port=kafka_port, controller_port=kafka_port + 1
        )
        nodes, bootstrap = [single], single.bootstrap
    ferret = localstack.FerretNode(data_dir.resolve() / "ferretdb", port=mongo_port)
    kafka_cmds, ferret_cmd = [node.prepare() for node in nodes], ferret.prepare()

    from doorstep_cli import dev

    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DOORSTEP_KAFKA_BOOTSTRAP": bootstrap,
        "DOORSTEP_TOPIC_REPLICATION": str(min(3, len(nodes))),
        "DOORSTEP_MONGO_URL": ferret.url,
        # The issuer's key and secret: this machine's development ones unless set.
        "DOORSTEP_SIGNING_KEYS": os.environ.get("DOORSTEP_SIGNING_KEYS") or str(dev.key_path()),
        "DOORSTEP_IDENTITY_SECRET": os.environ.get("DOORSTEP_IDENTITY_SECRET")
        or dev.identity_secret(),
        "DOORSTEP_ENVIRONMENT": os.environ.get("DOORSTEP_ENVIRONMENT", "development"),
        # One notify instance here: nothing another stored to tail (a scan on SQLite).
        "DOORSTEP_STREAM_POLL_SECONDS": os.environ.get("DOORSTEP_STREAM_POLL_SECONDS", "0"),
    }
    manager = Manager(Printer(sys.stdout))
    for i, kafka_cmd in enumerate(kafka_cmds):
        manager.add_process(
            "kafka" if len(nodes) == 1 else f"kafka-{i + 1}", _shell(kafka_cmd), env=env
        )
    manager.add_process("ferretdb", _shell(ferret_cmd), env=env)
    manager.add_process(
        "sms", _shell([sys.executable, "-m", "doorstep_cli", "dev-gateway"]), env=env
    )
    for service, port in SERVICES.items():
        cmd = _shell([sys.executable, "-m", f"services.{service}"])
        extra = {"DOORSTEP_PORT": str(port)}
        if service == "identity" and "DOORSTEP_GATEWAY_URL" not in os.environ:
            extra["DOORSTEP_GATEWAY_URL"] = f"http://127.0.0.1:{GATEWAY_PORT}/sms"
        manager.add_process(service, cmd, env={**env, **extra})
    manager.add_process(
        "ready",
        _shell([sys.executable, "-m", "doorstep_cli", "wait-ready", "--since", str(started)]),
    )
    console.print(f"Kafka     {bootstrap}\nFerretDB  {ferret.url}")
    for service, port in SERVICES.items():
        if service not in ("console", "field"):
            console.print(f"{service:<11}http://127.0.0.1:{port}/docs")
    console.print(
        "Console:   make console-link ARGS='--community datong'   (prints a one-time sign-in "
        "link to http://127.0.0.1:8005; --grid g3 for a grid worker)\n"
        "Phone app: http://127.0.0.1:8007 (cadres and residents sign in with their phone; "
        "the code is printed by `sms` below)\n"
        'Sign-in:   POST http://127.0.0.1:8006/auth/code {"phone"}: the code is printed '
        "by `sms` below; make ops-account ARGS='--phone ... --name ...' for the first ops\n"
        "Tokens:    make token ARGS='--role staff --community datong'   (roles: resident "
        "--household ID, volunteer --volunteer ID, staff, ops)\n"
        "Sub-district: make console-link ARGS='--district 南关街道' (its communities on one page)\n"
        "Demo data: make seed  (Datong: 7 grids, 1,500 households, 40 cadres)"
    )
    manager.loop()
    sys.exit(manager.returncode)


@app.command("wait-ready", hidden=True)
def wait_ready(since: float = typer.Option(0.0), timeout: float = 120.0) -> None:
    """Poll every service's /readyz, say when all answer 200, then stay (honcho stops all
    processes when one exits)."""
    since = since or time.monotonic()

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            pending = dict(SERVICES)
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for service, port in list(pending.items()):
                    try:
                        r = await client.get(f"http://127.0.0.1:{port}/readyz")
                        if r.status_code == 200:
                            del pending[service]
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.5)
            if pending:
                print(f"not ready after {timeout:.0f}s: {', '.join(pending)}", flush=True)
            else:
                print(f"all services ready {time.monotonic() - since:.1f}s after start", flush=True)

    asyncio.run(poll())
    while True:
        time.sleep(3600)


@app.command()
def bench(
    rates: str = typer.Option("10,25,50,100,200", help="Offered orders/s, one step each"),
    seconds: float = typer.Option(30.0, help="Length of each step"),
    communities: int = typer.Option(4, help="Communities of Datong's shape"),
    cadres: int = typer.Option(40, help="On-duty cadres per community (capacity 10 each)"),
    out: Path = typer.Option(Path("bench-results.json"), help="Where the figures go (JSON)"),
    steps_only: bool = typer.Option(
        False, help="Only the load steps and the floor (no streams, reads or matcher)"
    ),
    brokers: int = typer.Option(
        1, min=1, max=3, help="3: a three-broker cluster, topics replicated three times"
    ),
) -> None:
    """Open-loop load against the real stack, started as `make run` starts it; prints the
    figures and, last, one `bench:` line."""
    from doorstep_cli import bench as load

    load.run(
        [float(r) for r in rates.split(",")], seconds, communities, cadres, out, steps_only, brokers
    )


@app.command()
def topics(
    names: list[str] = typer.Argument(None, help="Topics to create; default: all of them"),
    bootstrap: str = typer.Option(..., envvar="DOORSTEP_KAFKA_BOOTSTRAP"),
    partitions: int = typer.Option(12, envvar="DOORSTEP_TOPIC_PARTITIONS"),
    replication: int = typer.Option(1, envvar="DOORSTEP_TOPIC_REPLICATION", min=1, max=5),
) -> None:
    """Create every topic and its dead-letter topic (idempotent)."""
    from shared.kafka import ensure_topics
    from shared.topics import ALL

    wanted = names or list(ALL)
    unknown = set(wanted) - set(ALL)
    if unknown:
        raise typer.BadParameter(f"not a Doorstep topic: {', '.join(sorted(unknown))}")
    asyncio.run(ensure_topics(bootstrap, wanted, partitions, replication))
    console.print(f"topics ready: {', '.join(wanted)} (+ .dlq), {partitions} partitions each")


@app.command()
def token(
    role: str = typer.Option(
        ..., help="resident, volunteer, grid_worker, staff, sub_district or ops"
    ),
    community: str | None = typer.Option(None, help="community id (all roles but ops)"),
    household: str | None = typer.Option(None, help="household id (resident)"),
    volunteer: str | None = typer.Option(None, help="volunteer id (volunteer)"),
    subject: str | None = typer.Option(
        None, help="who; defaults to the role and what it is scoped to (distinct per household)"
    ),
    grid: str | None = typer.Option(None, help="grid id (grid_worker)"),
    district: str | None = typer.Option(None, help="sub-district (sub_district)"),
    hours: int = typer.Option(12, min=1, max=24 * 30),
) -> None:
    """Mint a development bearer token, signed with the issuer's key (the first of
    DOORSTEP_SIGNING_KEYS, else this machine's development key that `make run` uses)."""
    from doorstep_cli import dev
    from shared.auth import Role, mint

    try:
        the_role = Role(role)
    except ValueError:
        raise typer.BadParameter(f"role must be one of {[r.value for r in Role]}") from None
    print(
        mint(
            dev.signing_key(),
            role=the_role,
            # Distinct per scope: two development residents are two people.
            subject=subject
            or ":".join(filter(None, (role, community, household, volunteer, grid))),
            community_id=community,
            household_id=household,
            volunteer_id=volunteer,
            grid_id=grid,
            sub_district=district,
            ttl_seconds=hours * 3600,
        )
    )


@app.command("console-link")
def console_link(
    community: str | None = typer.Option(None, help="the community the person works for"),
    name: str = typer.Option("staff", help="who signs in (shown in the audit trail)"),
    district: str | None = typer.Option(
        None, help="a sub-district officer: their 街道's communities on one page"
    ),
    grid: str | None = typer.Option(None, help="a grid worker's grid: they see only it"),
    ops: bool = typer.Option(False, "--ops", help="ops: may open any community"),
    url: str = typer.Option("http://127.0.0.1:8005", envvar="DOORSTEP_CONSOLE_URL"),
) -> None:
    """Print a one-time sign-in link to the console (good for 15 minutes, once), signed
    with the issuer's key: identity turns it into a session for the person named."""
    from doorstep_cli import dev
    from services.console.session import sign_in_link

    if ops and grid:
        raise typer.BadParameter("ops see whole communities: --ops or --grid, not both")
    if district and (ops or grid or community):
        raise typer.BadParameter("a sub-district officer has no community: --district alone")
    if not district and not community:
        raise typer.BadParameter("--community (staff, grid worker, ops) or --district")
    print(sign_in_link(dev.signing_key(), url, name, community, grid, ops, district))


@app.command("seed")
def seed_demo(
    orders_url: str = typer.Option("http://127.0.0.1:8001"),
    volunteers_url: str = typer.Option("http://127.0.0.1:8002"),
    community: str = typer.Option("datong"),
    households: int = typer.Option(1500, min=1, max=20000),
    cadres: int = typer.Option(40, min=0, max=1000),
) -> None:
    """Seed a demo community like the article's into running services."""
    from doorstep_cli import dev
    from doorstep_cli.seed import seed

    started = time.monotonic()
    done = seed(
        orders_url,
        volunteers_url,
        dev.signing_key(),
        community_id=community,
        households=households,
        cadres=cadres,
    )
    console.print(
        f"[bold]{done.community_id}[/]: {done.households} households imported, "
        f"{done.already} there already ({done.rejected} rejected), {done.volunteers} cadres, "
        f"{done.on_duty} on duty "
        f"in {time.monotonic() - started:.1f}s"
    )
    console.print(f"staff token: make token ARGS='--role staff --community {done.community_id}'")


@app.command("ops-account")
def ops_account(
    phone: str = typer.Option(..., help="the phone ops sign in with"),
    name: str = typer.Option(..., help="who (shown in the audit trail)"),
    bootstrap: str = typer.Option("127.0.0.1:9092", envvar="DOORSTEP_KAFKA_BOOTSTRAP"),
    remove: bool = typer.Option(False, "--remove", help="this phone is no longer ops"),
) -> None:
    """Make a phone an ops account (the first one; ops then name staff): a command to the
    identity service, sent straight to the broker by whoever runs the stack."""
    import uuid
    from datetime import UTC, datetime

    from shared.contracts import identity as i
    from shared.events import Event
    from shared.kafka import EventPublisher
    from shared.topics import IDENTITY_COMMANDS

    account = i.phone_account(phone)
    if account is None:
        raise typer.BadParameter("not a phone number")
    command = i.Learn(
        command_id=uuid.uuid4().hex,
        account=account,
        actor="command line",
        identity=i.Identity.of("ops", name=name),
        present=not remove,
        at=datetime.now(UTC),
        source="make ops-account",
    )

    async def send() -> None:
        publisher = EventPublisher(bootstrap, client_id="doorstep-cli")
        await publisher.start()
        try:
            event = Event(id=command.command_id, source="/cli", community_id=account, data=command)
            await publisher.publish(IDENTITY_COMMANDS, event)
        finally:
            await publisher.stop()

    asyncio.run(send())
    verb = "is no longer" if remove else "is now"
    console.print(f"+{account} ({name}) {verb} ops: sign in with a code texted to it")


@app.command()
def keygen(path: Path = typer.Argument(..., help="where the new key goes (PEM, mode 600)")) -> None:
    """Make an Ed25519 signing key for the identity service (rotation: see README)."""
    from shared.keys import SigningKey

    if path.exists():
        raise typer.BadParameter(f"{path} exists: a key is never overwritten")
    key = SigningKey.generate()
    key.save(path)
    console.print(f"{path}: kid {key.kid}")


@app.command("dev-gateway", hidden=True)
def dev_gateway(port: int = typer.Option(GATEWAY_PORT)) -> None:
    """The development SMS gateway: prints what would be texted."""
    from doorstep_cli import gateway

    gateway.serve(port)


def _shell(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)
