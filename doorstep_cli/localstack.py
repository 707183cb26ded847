"""The local stack: a real Kafka broker and a real MongoDB-protocol server, without Docker.

Kafka runs from Maven Central jars (deploy/kafka/pom.xml), FerretDB v1 from a Go build of
deploy/ferretdb. Downloads and builds are cached under ``$DOORSTEP_CACHE`` (default
``${XDG_CACHE_HOME:-~/.cache}/doorstep``), keyed by a hash of the files that define them, so
a fresh clone reuses them and a version bump rebuilds them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KAFKA_DIR = REPO / "deploy" / "kafka"
FERRETDB_DIR = REPO / "deploy" / "ferretdb"


class StackError(RuntimeError):
    """A local-stack process could not be set up or started."""


def cache_dir() -> Path:
    explicit = os.environ.get("DOORSTEP_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "doorstep"


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"'{tool}' is not on PATH; the local stack needs it (see README)")
    return path


def _log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def kafka_libs() -> Path:
    """The broker's runtime jars, fetched once with Maven."""
    pom = KAFKA_DIR / "pom.xml"
    target = cache_dir() / f"kafka-{_digest(pom)}"
    libs = target / "libs"
    if (target / ".complete").exists():
        return libs
    mvn = _need("mvn")
    _log(f"fetching Kafka jars into {libs} (once)")
    shutil.rmtree(target, ignore_errors=True)
    libs.mkdir(parents=True)
    started = time.monotonic()
    subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        check=True,
    )
    (target / ".complete").write_text(f"{time.monotonic() - started:.1f}s\n")
    return libs


def ferretdb_binary() -> Path:
    """FerretDB built from our own main module (see deploy/ferretdb/main.go for why), with
    the source patches in deploy/ferretdb/patches.json applied to a copy of the patched
    module that the build uses instead (``replace``; each patch says why; the module cache
    and the repository's go.mod are left as they are)."""
    sources = [FERRETDB_DIR / n for n in ("go.mod", "go.sum", "main.go", "patches.json")]
    sources += sorted((FERRETDB_DIR / "patches").glob("*.go"))
    target = cache_dir() / f"ferretdb-{_digest(*sources)}"
    binary = target / "ferretdb"
    if binary.exists():
        return binary
    go = _need("go")
    _log(f"building FerretDB into {binary} (once, about a minute)")
    target.mkdir(parents=True, exist_ok=True)
    gocache = cache_dir() / "go"
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOMODCACHE": str(gocache / "mod"),
        "GOCACHE": str(gocache / "build"),
        "GOFLAGS": "-modcacherw",
    }
    build = _patched_build_dir(go, env, target)
    tmp = target / "ferretdb.tmp"
    subprocess.run([go, "build", "-o", str(tmp), "."], cwd=build, env=env, check=True)
    tmp.rename(binary)  # atomic: a half-built binary is never taken for a cached one
    return binary


def _patched_build_dir(go: str, env: dict[str, str], target: Path) -> Path:
    """Our main module, built against patched copies of the modules patches.json names."""
    build = target / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy(FERRETDB_DIR / name, build / name)
    copies: dict[str, Path] = {}
    for patch in json.loads((FERRETDB_DIR / "patches.json").read_text()):
        module = patch["module"]
        if module not in copies:
            listed = subprocess.run(
                [go, "mod", "download", "-json", module],
                cwd=build,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            copies[module] = target / "modules" / module.rsplit("/", 1)[-1]
            shutil.rmtree(copies[module], ignore_errors=True)
            shutil.copytree(json.loads(listed.stdout)["Dir"], copies[module])
            for path in (copies[module], *copies[module].rglob("*")):
                path.chmod(path.stat().st_mode | 0o200)  # the module cache's are read-only
            subprocess.run(
                [go, "mod", "edit", f"-replace={module}={copies[module]}"],
                cwd=build,
                env=env,
                check=True,
            )
        source = copies[module] / patch["file"]
        if "add" in patch:  # a file of ours, added to the module
            shutil.copy(FERRETDB_DIR / patch["add"], source)
            continue
        text = source.read_text()
        if patch["find"] not in text:
            raise StackError(f"patch for {patch['file']} no longer applies: {patch['find']!r}")
        source.write_text(text.replace(patch["find"], patch["replace"]))
    return build


BROWSER = (Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver"))
# A Chinese font: without one, the screenshots people judge the pages by show boxes for
# every 汉字 (a phone has its own; the test machine may have none).
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
BROWSER_PACKAGES = ("chromium", "chromium-driver", "fonts-wqy-microhei")


def browser() -> tuple[Path, Path]:
    """Chromium and its driver for the console's browser tests: Debian's packages (the
    driver always matches the browser), installed with apt-get when missing. They are
    system packages, so they live outside the clone and outlive it, like the cache."""
    if all(p.exists() for p in (*BROWSER, CJK_FONT)):
        return BROWSER
    apt = shutil.which("apt-get")
    if apt is None:
        raise StackError(
            f"the browser tests need {' and '.join(map(str, BROWSER))}: install the "
            f"packages {' '.join(BROWSER_PACKAGES)} (Debian) or their equivalent"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    _log(f"installing {' '.join(BROWSER_PACKAGES)} with apt-get (once)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-q"], [apt, "install", "-y", "-q", *BROWSER_PACKAGES]):
        done = subprocess.run([*sudo, *cmd], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return BROWSER


# Noto Sans SC (Google Fonts, SIL OFL) as the npm registry ships it: the cards' font where
# the system has no Chinese TrueType font. Pinned by the tarball's sha512.
NOTO_TARBALL = "https://registry.npmjs.org/@expo-google-fonts/noto-sans-sc/-/noto-sans-sc-0.4.3.tgz"
NOTO_SHA512 = (
    "f6b0307454c51db3bfbba0acd208f68d96d6ef84c62226853509d7607dace700"
    "356f3564c1b6af88be2df18515eb8d9e1988e0f3a787e8390011099f3470e771"
)
NOTO_MEMBER = "package/400Regular/NotoSansSC_400Regular.ttf"


def cjk_font() -> Path:
    """A Chinese TrueType font for contact cards: a system one (WenQuanYi Micro Hei), else
    Noto Sans SC fetched once into the cache, where orders looks for it."""
    from services.orders import cards  # the service's own list of where fonts are

    with contextlib.suppress(cards.FontMissing):
        return cards.find_font()
    target = cache_dir() / cards.CACHED_FONT
    _log(f"fetching Noto Sans SC into {target} (once, 57 MB)")
    return npm_file(NOTO_TARBALL, NOTO_SHA512, NOTO_MEMBER, target)


# axe-core (Deque, MPL-2.0) from the npm registry: the phone app's accessibility audit runs
# it in the system Chromium. Pinned by the tarball's sha512.
AXE_TARBALL = "https://registry.npmjs.org/axe-core/-/axe-core-4.11.0.tgz"
AXE_SHA512 = (
    "8a561a9c453cbf1c417b1a4977c716338125490ab841cb422ca8a1d1349f8c87"
    "c24137b21ffeb356b98825f2cfaca4ca2516e21be71f9d96d02230252661758d"
)


def axe_core() -> Path:
    """axe.min.js, fetched once into the cache."""
    target = cache_dir() / "axe-core-4.11.0" / "axe.min.js"
    if target.exists():
        return target
    _log(f"fetching axe-core into {target} (once)")
    return npm_file(AXE_TARBALL, AXE_SHA512, "package/axe.min.js", target)


def npm_file(url: str, sha512: str, member_name: str, target: Path) -> Path:
    """One file of an npm package's tarball, checked against its pinned sha512, written
    atomically: a half-written file is never taken for one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tarball = target.parent / f"{target.name}.tgz"
    urllib.request.urlretrieve(url, tarball)
    if hashlib.sha512(tarball.read_bytes()).hexdigest() != sha512:
        tarball.unlink()
        raise StackError(f"{url}: not the pinned file (sha512 differs)")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(member_name)
        assert member is not None
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(member.read())
    tmp.rename(target)
    tarball.unlink()
    return target


def new_cluster_id() -> str:
    """A base64url UUID without padding, as `kafka-storage random-uuid` makes, that does not
    start with '-' (StorageTool's argument parser would take it for an option)."""
    while True:
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not raw.startswith("-"):
            return raw


LISTEN_PORTS = range(20_000, 32_000)  # below Linux's ephemeral range (32768-60999)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, for a process about to listen on it. Chosen below the
    ephemeral range: a port the kernel hands out (bind to 0) may be taken by some client's
    outgoing connection before the process binds it (seen: "address already in use")."""
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        if port in _handed_out:
            continue  # given to a process that may not listen yet
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # a crowded range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} before it listened")
        if _port_open(port):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not listen on port {port} within {timeout:.0f}s")


@dataclass
class KafkaNode:
    """One KRaft node (broker and controller) on loopback; alone, or one of a cluster
    (``KafkaCluster``: ``node_id``, the cluster's ``voters`` and ``replication``)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    heap: str = "512m"
    log_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    node_id: int = 1
    voters: str | None = None  # "1@127.0.0.1:port,2@…": the cluster's controllers
    replication: int = 1  # of the broker's own topics (consumer offsets, transactions)
    cluster_id: str | None = None  # shared by the nodes of a cluster
    # More client listeners, each by name: (its port, the port it advertises). A client
    # that connects to one is told of that listener's advertised address only, so a proxy
    # there carries all its traffic (a cut or slow link for one process, not all).
    routes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def route(self, name: str, advertised_port: int) -> str:
        """A client listener named ``name`` that advertises ``advertised_port`` (where a
        proxy to it will listen): the port the proxy must forward to."""
        port = free_port()
        self.routes[name.upper()] = (port, advertised_port)
        return f"127.0.0.1:{port}"

    def _properties(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    "controller.quorum.voters="
                    + (self.voters or f"1@127.0.0.1:{self.controller_port}"),
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}"
                    + "".join(f",{n}://127.0.0.1:{p}" for n, (p, _) in self.routes.items()),
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}"
                    + "".join(f",{n}://127.0.0.1:{a}" for n, (_, a) in self.routes.items()),
                    "inter.broker.listener.name=PLAINTEXT",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
                    + "".join(f",{n}:PLAINTEXT" for n in self.routes),
                    f"log.dirs={self.data_dir / 'log'}",
                    f"offsets.topic.replication.factor={self.replication}",
                    "offsets.topic.num.partitions=4",
                    f"transaction.state.log.replication.factor={self.replication}",
                    f"transaction.state.log.min.isr={min(2, self.replication)}",
                    f"share.coordinator.state.topic.replication.factor={self.replication}",
                    f"share.coordinator.state.topic.min.isr={min(2, self.replication)}",
                    # Replicated: a topic's writes wait for two copies, and a broker that
                    # was behind never becomes leader (nothing acknowledged is lost).
                    f"min.insync.replicas={min(2, self.replication)}",
                    f"default.replication.factor={self.replication}",
                    "unclean.leader.election.enable=false",
                    "group.initial.rebalance.delay.ms=0",
                    # Topics are created explicitly by the services, never by a typo.
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        return props

    def _java(self, libs: Path, *jvm_options: str) -> list[str]:
        return [
            _need("java"),
            *jvm_options,
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]

    def prepare(self) -> list[str]:
        """Write the properties, format the log dir once, and return the broker command."""
        libs = kafka_libs()
        props = self._properties()
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(self.cluster_id or new_cluster_id())
        subprocess.run(
            [
                *self._java(libs),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                id_file.read_text().strip(),
                "--config",
                str(props),
                "--ignore-formatted",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        heap = ("-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC")
        return [*self._java(libs, *heap), "kafka.Kafka", str(props)]

    def start(self, timeout: float = 90.0) -> None:
        self.proc = _spawn(self.prepare(), self.log_file)
        _wait_port(self.port, self.proc, timeout, "Kafka")

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


@dataclass
class KafkaCluster:
    """Three KRaft nodes (each broker and controller) on loopback: topics replicated three
    times, two copies before a write is acknowledged; one node may die for good."""

    data_dir: Path
    size: int = 3
    log_dir: Path | None = None
    first_port: int | None = None  # node i: this + 2i, its controller + 2i + 1; else free
    nodes: list[KafkaNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.nodes:
            return
        cluster_id_file = self.data_dir / "cluster.id"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        if self.first_port is None:
            ports = [(free_port(), free_port()) for _ in range(self.size)]
        else:
            ports = [
                (self.first_port + 2 * i, self.first_port + 2 * i + 1) for i in range(self.size)
            ]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        for i, (port, controller) in enumerate(ports):
            log = self.log_dir / f"kafka-{i + 1}.log" if self.log_dir else None
            self.nodes.append(
                KafkaNode(
                    self.data_dir / f"node-{i + 1}",
                    port=port,
                    controller_port=controller,
                    heap="384m",
                    log_file=log,
                    node_id=i + 1,
                    voters=voters,
                    replication=min(3, self.size),
                    cluster_id=cluster_id_file.read_text().strip(),
                )
            )

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float = 120.0) -> None:
        # Started together: a controller quorum needs a majority before any node serves.
        for node in self.nodes:
            node.proc = _spawn(node.prepare(), node.log_file)
        for node in self.nodes:
            assert node.proc is not None
            _wait_port(node.port, node.proc, timeout, f"Kafka node {node.node_id}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class FerretNode:
    """FerretDB on SQLite, on loopback."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    log_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def prepare(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Where it is set, Go's pprof profiles of FerretDB (what `make bench` shows it spend).
        pprof = os.environ.get("DOORSTEP_FERRETDB_PPROF")
        return [
            str(ferretdb_binary()),
            f"--listen-addr=127.0.0.1:{self.port}",
            # WAL with synchronous=NORMAL: a commit is written, not fsynced. It survives a
            # crash or kill -9 of any process (the fault tests do both); an OS crash or
            # power cut may roll back the last moments, as MongoDB's default journal
            # interval may. FULL fsynced every one-document write.
            f"--sqlite-url=file:{self.data_dir}/?_pragma=synchronous(normal)",
            *([f"--debug-addr={pprof}"] if pprof else []),
        ]

    def start(self, timeout: float = 30.0) -> None:
        self.proc = _spawn(self.prepare(), self.log_file)
        _wait_port(self.port, self.proc, timeout, "FerretDB")

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _spawn(cmd: list[str], log_file: Path | None) -> subprocess.Popen[bytes]:
    if log_file is None:
        return subprocess.Popen(cmd)
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def running_stack(base: Path, brokers: int = 1) -> Iterator[tuple[list[KafkaNode], FerretNode]]:
    """Kafka (one broker, or a cluster of three) and FerretDB on free ports in ``base``,
    stopped on exit."""
    cluster = KafkaCluster(base / "kafka", log_dir=base) if brokers > 1 else None
    nodes = cluster.nodes if cluster else [KafkaNode(base / "kafka", log_file=base / "kafka.log")]
    ferret = FerretNode(base / "ferretdb", log_file=base / "ferretdb.log")
    try:
        ferret.start()
        if cluster:
            cluster.start()
        else:
            nodes[0].start()
        yield nodes, ferret
    finally:
        for node in nodes:
            node.stop()
        ferret.stop()
