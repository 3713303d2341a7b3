"""A real Apache Kafka broker (KRaft, combined broker+controller) on loopback, from jars.

`peregrine kafka up|down|status` and the test fixtures both use this module. The jars come from
Maven Central through `scripts/setup` (no tarball, no Docker); each node runs ``kafka.Kafka`` with
``java`` directly, which is exactly what ``bin/kafka-server-start.sh`` runs. Replication settings
follow the node count: internal topics need replication <= brokers or the group coordinator and
transactions never become available and Faust hangs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools.errors import DevtoolsError

DEFAULT_DIR = Path(os.environ.get("PEREGRINE_KAFKA_DIR", Path.home() / ".local/share/peregrine/kafka"))
STATE_FILE = "peregrine-kafka.json"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.req.name = kafka.request.logger
logger.req.level = warn
"""


class KafkaError(DevtoolsError):
    """The local broker could not be prepared, started or reached; the message says what to do."""


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    sasl_port: int | None = None  # the secured listener, when prepared with SASL users

    @property
    def log_file(self) -> Path:
        return self.directory / "stdout.log"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and _pid_alive(self.pid)


@dataclass
class Cluster:
    root: Path
    nodes: list[Node] = field(default_factory=list)
    cluster_id: str = ""
    # Where clients connect. Loopback unless pods must reach the broker: they reach the host only
    # at a routable address of its own (tests/cluster), never at its 127.0.0.1.
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    @property
    def sasl_bootstrap(self) -> str:
        """The secured listeners (SASL_PLAINTEXT, PLAIN, ACLs enforced); empty when not secured."""
        return ",".join(f"127.0.0.1:{n.sasl_port}" for n in self.nodes if n.sasl_port is not None)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for n in self.nodes:
            try:
                text = n.log_file.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            out.append(f"--- node {n.node_id} ({n.log_file})\n" + "\n".join(text))
        return "\n".join(out)


def kafka_libs() -> Path:
    """The directory of broker jars that scripts/setup fetched (newest version in the cache)."""
    explicit = os.environ.get("PEREGRINE_KAFKA_LIBS")
    if explicit:
        libs = Path(explicit)
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaError(f"PEREGRINE_KAFKA_LIBS={libs} holds no kafka_2.13 jar")
        return libs
    cache = Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache/peregrine"))
    found = sorted(cache.glob("kafka-*/libs/.complete"))
    if not found:
        raise KafkaError(f"no Kafka jars under {cache}: run ./scripts/setup (it fetches them from Maven)")
    return found[-1].parent


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java not found: run ./scripts/setup (it installs openjdk-17-jre-headless)")
    return java


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now; a race with another process shows up as a start failure."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _cluster_id() -> str:
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _properties(node: Node, voters: str, n: int, host: str) -> str:
    rf = min(n, 3)
    isr = 2 if n >= 3 else 1
    return f"""\
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}
advertised.listeners=PLAINTEXT://{host}:{node.port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={node.directory / "data"}
num.partitions=4
default.replication.factor={rf}
min.insync.replicas={isr}
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=4
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=16777216
""" + (_FAILOVER if n > 1 else "")


# A killed node's partitions move to other leaders once the controller fences it: after Kafka's
# default 9 s without a heartbeat, most of what the 3-node failover test waited. A live broker
# heartbeats every 0.5 s, so 3 s is still six missed beats.
_FAILOVER = """\
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
"""


def _secured(node: Node, users: Mapping[str, str]) -> str:
    """A SASL/PLAIN listener beside the plaintext one, and the authorizer that enforces ACLs there.
    The plaintext and controller listeners stay on loopback and authenticate as ANONYMOUS, made the
    super user: that is the admin (tests apply ACLs through it; the brokers talk through it)."""
    jaas = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return f"""\
listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port},\
SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{node.port},SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required {jaas};
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
"""


def _java_cmd(node: Node, main_class: str, *args: str, heap: str) -> list[str]:
    return [
        java_binary(),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={node.directory / 'logs'}",
        f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
        "-cp",
        f"{kafka_libs()}/*",
        main_class,
        *args,
    ]


def prepare(
    root: Path, n: int = 1, ports: Sequence[int] | None = None, sasl_users: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Cluster:
    """Write configs and format storage for n nodes under root (wiped first). With ``sasl_users``
    (name -> password) each node also listens with SASL/PLAIN and enforces ACLs there (`_secured`).
    ``host``: the address of the plaintext listeners (the controllers stay on loopback)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    chosen = list(ports) if ports else free_ports(2 * n)
    if len(chosen) != 2 * n:
        raise KafkaError(f"need {2 * n} ports for {n} nodes, got {len(chosen)}")
    cluster = Cluster(root=root, cluster_id=_cluster_id(), host=host)
    for i in range(n):
        d = root / f"node{i + 1}"
        (d / "logs").mkdir(parents=True)
        cluster.nodes.append(
            Node(node_id=i + 1, port=chosen[2 * i], controller_port=chosen[2 * i + 1], directory=d)
        )
    voters = ",".join(f"{x.node_id}@127.0.0.1:{x.controller_port}" for x in cluster.nodes)
    for node in cluster.nodes:
        properties = _properties(node, voters, n, host)
        if sasl_users:
            (node.sasl_port,) = free_ports(1)
            # later keys win in a Java properties file: the secured listeners replace the plain ones
            properties += _secured(node, sasl_users)
        (node.directory / "server.properties").write_text(properties)
        (node.directory / "log4j2.properties").write_text(_LOG4J2)
        cmd = _java_cmd(
            node,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster.cluster_id,
            "-c",
            str(node.directory / "server.properties"),
            heap="256m",
        )
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise KafkaError(f"formatting node {node.node_id} failed:\n{done.stdout}\n{done.stderr}")
    return cluster


def start_node(node: Node, heap: str = "512m") -> None:
    cmd = _java_cmd(node, "kafka.Kafka", str(node.directory / "server.properties"), heap=heap)
    with open(node.log_file, "ab") as log:
        # own session: a Ctrl-C in the caller's terminal must not kill a broker started with `up`
        node.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    node.pid = node.process.pid


def wait_ready(cluster: Cluster, timeout: float = 90.0, brokers: int | None = None) -> None:
    """Block until the metadata reports every broker (an open port alone is not readiness)."""
    from confluent_kafka.admin import AdminClient

    want = brokers if brokers is not None else len(cluster.nodes)
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 0})
    while time.monotonic() < deadline:
        dead = [n.node_id for n in cluster.nodes if (n.process or n.pid) and not n.alive()]
        if dead and brokers is None:
            raise KafkaError(f"broker node(s) {dead} exited during start-up\n{cluster.log_tail()}")
        try:
            md = admin.list_topics(timeout=2)
            if len(md.brokers) >= want:
                return
        except Exception:  # noqa: BLE001 - not reachable yet is the normal case while starting
            pass
        time.sleep(0.3)
    raise KafkaError(f"Kafka not ready after {timeout:.0f}s\n{cluster.log_tail()}")


def start(
    root: Path, n: int = 1, heap: str = "512m", timeout: float = 90.0, host: str = "127.0.0.1"
) -> Cluster:
    """Prepare, start all nodes together (a controller quorum needs a majority up), wait."""
    cluster = prepare(root, n, host=host)
    for node in cluster.nodes:
        start_node(node, heap)
    try:
        wait_ready(cluster, timeout)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def stop_node(node: Node, timeout: float = 30.0, kill: bool = False) -> None:
    """SIGTERM = controlled shutdown; SIGKILL when asked or after the timeout."""
    if not node.alive():
        return
    pid = node.process.pid if node.process is not None else node.pid
    assert pid is not None
    _signal(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while node.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if node.alive():
        _signal(pid, signal.SIGKILL)
        while node.alive():
            time.sleep(0.05)


def stop(cluster: Cluster, timeout: float = 30.0) -> None:
    # All at once: stopping one by one leaves the last nodes waiting for a controller quorum.
    for node in cluster.nodes:
        if node.alive():
            pid = node.process.pid if node.process is not None else node.pid
            assert pid is not None
            _signal(pid, signal.SIGTERM)
    for node in cluster.nodes:
        stop_node(node, timeout)


def kill(cluster: Cluster) -> None:
    """SIGKILL every node: for a broker whose data is thrown away after (the tests'), where a
    controlled shutdown is seconds spent for nothing (9 s for the TLS test broker)."""
    for node in cluster.nodes:
        stop_node(node, kill=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.lower()
    except OSError:
        pass
    return ""


# --- `peregrine kafka up|down|status` ---------------------------------------------------------


def _state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def _load_state(directory: Path) -> Cluster | None:
    try:
        data = json.loads(_state_path(directory).read_text())
    except (OSError, ValueError):
        return None
    cluster = Cluster(root=directory, cluster_id=data.get("cluster_id", ""))
    for n in data["nodes"]:
        cluster.nodes.append(
            Node(n["node_id"], n["port"], n["controller_port"], Path(n["directory"]), pid=n["pid"])
        )
    return cluster


def _save_state(cluster: Cluster) -> None:
    nodes = [
        {"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port,
         "directory": str(n.directory), "pid": n.pid}
        for n in cluster.nodes
    ]
    data = {"cluster_id": cluster.cluster_id, "bootstrap": cluster.bootstrap, "nodes": nodes}
    _state_path(cluster.root).write_text(json.dumps(data, indent=2))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="peregrine kafka", description="a local Kafka broker on 127.0.0.1")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="start a single-node KRaft broker (keeps running after this command)")
    up.add_argument("--port", type=int, default=9092, help="PLAINTEXT port (default 9092; 0 = any free)")
    up.add_argument("--controller-port", type=int, default=0, help="controller port (default: any free)")
    up.add_argument("--heap", default="1g")
    for p in (up, sub.add_parser("down", help="stop it"), sub.add_parser("status", help="is it up?")):
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"data and logs (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    try:
        if args.action == "up":
            return _up(directory, args.port, args.controller_port, args.heap)
        if args.action == "down":
            return _down(directory)
        return _status(directory)
    except KafkaError as exc:
        print(f"peregrine kafka {args.action}: {exc}", file=sys.stderr)
        return 1


def _up(directory: Path, port: int, controller_port: int, heap: str) -> int:
    current = _load_state(directory)
    if current is not None and all(n.alive() for n in current.nodes):
        print(f"already running: bootstrap {current.bootstrap} (data in {directory})")
        return 0
    if current is not None and (current.nodes[0].directory / "server.properties").exists():
        cluster = current  # restart on the existing data: `down` then `up` keeps the topics
    else:
        p = port or free_ports(1)[0]
        c = controller_port or next(x for x in free_ports(2) if x != p)
        cluster = prepare(directory, 1, [p, c])
    start_node(cluster.nodes[0], heap)
    _save_state(cluster)
    try:
        wait_ready(cluster)
    except KafkaError:
        stop(cluster)
        raise
    print(f"Kafka up: bootstrap {cluster.bootstrap} (data and logs in {directory})")
    print("stop it with `peregrine kafka down`")
    return 0


def _down(directory: Path) -> int:
    cluster = _load_state(directory)
    if cluster is None:
        print(f"no broker state in {directory}: nothing to stop")
        return 0
    stop(cluster)
    _state_path(directory).unlink(missing_ok=True)
    print("Kafka stopped")
    return 0


def _status(directory: Path) -> int:
    cluster = _load_state(directory)
    if cluster is None or not all(n.alive() for n in cluster.nodes):
        print("Kafka is down")
        return 3
    print(f"Kafka is up: bootstrap {cluster.bootstrap}, pid {cluster.nodes[0].pid}, data in {directory}")
    return 0
