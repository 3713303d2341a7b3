"""`peregrine demo`: the attack scenario through a real local pipeline, alerts printed as they arrive.

What it runs, all on this machine and all torn down at the end (also on Ctrl-C):

1. a Kafka broker (`devtools.localkafka`, needs ``./scripts/setup``), unless ``--bootstrap`` names one;
2. `peregrine replay` of the shipped capture (``devtools/data/attack_scenario.cap``, recorded live by
   the collector: an interactive bash under runc in a kubepods container, kubectl, a connect to the
   API server's service address, unshare + nsenter, apt-get) onto this run's own topics;
3. Kubernetes metadata for it, in k8s-meta's record format: the capture's containers are said to
   belong to a made-up pod ``default/mysql-db-7d9f8b6c5d-x2x4k`` (image mysql) and 10.96.0.1 to the
   ``kubernetes`` service. There is no cluster here, so this stands in for `peregrine k8s-meta`;
   the demo says so when it publishes them;
4. `peregrine worker` with the rules (default: Falco's stable and incubating rules from the
   directory ``$PEREGRINE_FALCO_RULES``, else ``../shared/falco-rules`` beside the source tree, when
   they are there; then Peregrine's own), and
5. `peregrine sink` with a file destination; the demo follows that file and prints each alert's
   output to stdout as Falco does. ``--out FILE`` keeps the Falco JSON alerts there.

Progress goes to stderr. The demo ends once alerts have stopped arriving for ``--quiet`` seconds, or
after ``--timeout``; exit status 0 when at least one alert arrived. Topics, the worker's app id and
the sink's groups carry a random suffix, so repeated demos on one broker never see each other.

Limits: each process is started with this interpreter (``python -m cli.main``); the capture is
read from the source tree (pass ``--capture`` for an installed copy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, Producer, TopicPartition

import rules
from bus import topics
from bus.connection import KafkaConnection, parse_bootstrap
from bus.errors import TopicError
from collectors.wire import decode_batch
from devtools import localkafka
from devtools.errors import DevtoolsError
from enrichers.records import ContainerMeta, Meta, ServiceMeta, encode
from rules.record import EV_PROC, HOST_CONTAINER_ID, P_CONTAINER_ID

# Package data, so the demo works from an installed wheel as well as from the source tree.
CAPTURE = Path(__file__).resolve().parent / "data" / "attack_scenario.cap"
PEREGRINE_RULES = Path(rules.__file__).resolve().parent / "data" / "peregrine_rules.yaml"
REPO = Path(__file__).resolve().parents[1]
FALCO_RULE_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml")
DEMO_POD = "mysql-db-7d9f8b6c5d-x2x4k"
API_SERVICE = ServiceMeta(ip="10.96.0.1", name="kubernetes", namespace="default",
                          dns_name="kubernetes.default.svc.cluster.local")


class DemoError(DevtoolsError):
    """A stage of the demo failed; the message says which and shows its log."""


@dataclass(frozen=True)
class Run:
    """One demo's names: topics, app id, sink group prefix, all with the same random tag."""

    bootstrap: str
    workdir: Path
    tag: str

    def topic(self, spec: topics.TopicSpec) -> str:
        return f"{spec.name}-demo-{self.tag}"


def _arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="peregrine demo",
        description="Replay the attack scenario through a local broker, worker and sink; print the alerts.",
    )
    p.add_argument("--bootstrap-servers", "--bootstrap", dest="bootstrap",
                   help="use this Kafka (host:port) instead of starting a local broker")
    p.add_argument("--capture", type=Path, default=CAPTURE, help="capture file to replay")
    p.add_argument("--rules", type=Path, action="append",
                   help="rules file, repeatable (default: Falco's stable and incubating rules from "
                   "$PEREGRINE_FALCO_RULES when there, then Peregrine's own)")
    p.add_argument("--out", type=Path, help="also keep the Falco JSON alerts in this file")
    p.add_argument("--quiet", type=float, default=5.0, help="stop once no alert arrived for this long (s)")
    p.add_argument("--timeout", type=float, default=240.0, help="give up after this long (s)")
    return p.parse_args(argv)


def default_rules() -> list[Path]:
    falco = Path(os.environ.get("PEREGRINE_FALCO_RULES", REPO.parent / "shared" / "falco-rules"))
    found = [falco / name for name in FALCO_RULE_FILES if (falco / name).is_file()]
    return [*found, PEREGRINE_RULES]


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    if not args.capture.is_file():
        print(f"peregrine demo: no capture at {args.capture} (pass --capture FILE)", file=sys.stderr)
        return 2
    rules = args.rules or default_rules()
    missing = [str(r) for r in rules if not r.is_file()]
    if missing:
        print(f"peregrine demo: rules file(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    # SIGTERM ends the demo like Ctrl-C does, so the teardown below always runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with tempfile.TemporaryDirectory(prefix="peregrine-demo-") as tmp, ExitStack() as stack:
            bootstrap = args.bootstrap or stack.enter_context(_local_broker(Path(tmp) / "kafka"))
            run = Run(bootstrap, Path(tmp), uuid.uuid4().hex[:8])
            count = demo(run, rules, args, stack)
    except DemoError as exc:
        print(f"peregrine demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("peregrine demo: interrupted; everything stopped", file=sys.stderr)
        return 130
    print(f"peregrine demo: {count} alert(s); everything stopped", file=sys.stderr)
    return 0 if count else 1


def demo(run: Run, rules: list[Path], args: argparse.Namespace, stack: ExitStack) -> int:
    """Replay, publish metadata, start the worker and the sink (stopped by `stack`), print alerts."""
    _create_topics(run)
    _status(f"replaying {args.capture}")
    _replay(run, args.capture)
    containers = _container_ids(run)
    _status(f"demo metadata (made up, no cluster here): {len(containers)} container(s) in pod "
            f"default/{DEMO_POD}; {API_SERVICE.ip} is {API_SERVICE.dns_name}")
    _publish(run, [*(_demo_pod(c) for c in sorted(containers)), API_SERVICE])
    alerts = args.out or run.workdir / "alerts.jsonl"
    alerts.touch()
    _status(f"starting a worker with {', '.join(r.name for r in rules)}")
    worker = stack.enter_context(_process(run, "worker", _worker_argv(run, rules)))
    sink_config = run.workdir / "sink.yaml"
    sink_config.write_text(json.dumps(_sink_config(run, alerts)))  # JSON is YAML
    sink = stack.enter_context(
        _process(run, "sink", ["sink", "--config", str(sink_config), "--bootstrap-servers", run.bootstrap,
                               "--log-level", "WARNING"])  # fmt: skip
    )
    _status("waiting for alerts (the worker takes a few seconds to join its group)")
    return _follow(alerts, args.quiet, args.timeout, [worker, sink], sys.stdout)


@contextmanager
def _local_broker(root: Path) -> Iterator[str]:
    _status("starting a local Kafka broker")
    try:
        cluster = localkafka.start(root, n=1)
    except localkafka.KafkaError as exc:
        raise DemoError(f"cannot start Kafka: {exc}") from None
    try:
        yield cluster.bootstrap
    finally:
        localkafka.stop(cluster)


def _create_topics(run: Run) -> None:
    try:
        topics.declare(KafkaConnection(parse_bootstrap(run.bootstrap)),
                       [spec.named(run.topic(spec)) for spec in topics.CATALOG], partitions=1)  # fmt: skip
    except TopicError as exc:
        raise DemoError(f"cannot create the topics on {run.bootstrap}: {exc}") from None


def _replay(run: Run, capture: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "replay", str(capture), "--max-rate", "--bootstrap",
         run.bootstrap, "--events-topic", run.topic(topics.EVENTS), "--stats-topic", run.topic(topics.STATS)],
        capture_output=True, text=True, env=_env(), timeout=180,
    )
    if done.returncode != 0:
        raise DemoError(f"replay failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _container_ids(run: Run) -> set[str]:
    """The containers the replayed batches reference, read back from the events topic."""
    consumer = Consumer({"bootstrap.servers": run.bootstrap, "group.id": f"demo-{run.tag}",
                         "enable.auto.commit": False})
    tp = TopicPartition(run.topic(topics.EVENTS), 0)
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=30)
        consumer.assign([TopicPartition(tp.topic, 0, low)])
        ids: set[str] = set()
        deadline = time.monotonic() + 60
        seen = low
        while seen < high and time.monotonic() < deadline:
            for message in consumer.consume(100, 1.0):
                offset, value = message.offset(), message.value()
                if message.error() is None and offset is not None and value is not None:
                    seen = offset + 1
                    ids.update(e[EV_PROC][P_CONTAINER_ID] for e in decode_batch(value).events)
    finally:
        consumer.close()
    return ids - {HOST_CONTAINER_ID}


def _demo_pod(container_id: str) -> ContainerMeta:
    return ContainerMeta(
        container_id=container_id, runtime="containerd", name="mysql", image="mysql:8.4",
        image_repository="docker.io/library/mysql", image_tag="8.4", image_digest=None, privileged=False,
        start_ts=None, mounts=(), namespace="default", pod_name=DEMO_POD,
        pod_uid="00000000-0000-4000-8000-00000000de70", labels={"app": "mysql"}, pod_ip="10.244.1.7",
        node=None,
    )


def _publish(run: Run, records: list[Meta]) -> None:
    producer = Producer({"bootstrap.servers": run.bootstrap, "enable.idempotence": True})
    for meta in records:
        key, value = encode(meta)
        producer.produce(run.topic(topics.K8S), value, key)
    if producer.flush(60) != 0:
        raise DemoError(f"Kubernetes metadata not delivered to {run.topic(topics.K8S)}")


def _worker_argv(run: Run, rules: list[Path]) -> list[str]:
    argv = ["worker", "--bootstrap", run.bootstrap, "--app-id", f"peregrine-demo-{run.tag}",
            "--partitions", "1", "--replication", "1", "--commit-interval", "0.2",
            "--datadir", str(run.workdir / "worker"), "--log-level", "warning"]
    for spec, flag in ((topics.EVENTS, "events"), (topics.STATS, "stats"), (topics.ALERTS, "alerts"),
                       (topics.EVENTS_DLQ, "dlq"), (topics.K8S, "k8s"),
                       (topics.CONTROL, "control")):  # fmt: skip
        argv += [f"--{flag}-topic", run.topic(spec)]
    for r in rules:
        argv += ["--rules", str(r)]
    return argv


def _sink_config(run: Run, alerts: Path) -> dict[str, Any]:
    return {
        "kafka": {"topic": run.topic(topics.ALERTS), "dlq_topic": run.topic(topics.ALERTS_DLQ),
                  "group_prefix": f"peregrine-demo-sink-{run.tag}"},
        "batch": {"max_alerts": 100, "max_wait_s": 0.05},
        "destinations": [{"name": "file", "type": "file", "path": str(alerts), "fsync": "never"}],
    }


def _env() -> dict[str, str]:
    # No metrics endpoint: a demo must not collide with a running Peregrine's ports.
    return {**os.environ, "PEREGRINE_METRICS_PORT": "0"}


@dataclass(frozen=True)
class Stage:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise DemoError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")


@contextmanager
def _process(run: Run, name: str, role_argv: list[str]) -> Iterator[Stage]:
    log_path = run.workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *role_argv],
                                stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        yield Stage(name, proc, log_path)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _follow(path: Path, quiet: float, timeout: float, stages: list[Stage], out: IO[str]) -> int:
    """Print each alert appended to `path` as Falco prints to stdout; return how many arrived."""
    count = 0
    start = last = time.monotonic()
    with path.open("r", encoding="utf-8") as alerts:
        pending = ""
        while True:
            now = time.monotonic()
            if (count and now - last >= quiet) or now - start >= timeout:
                return count
            chunk = alerts.read()
            if not chunk:
                for stage in stages:
                    stage.check()
                time.sleep(0.05)
                continue
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                doc = json.loads(line)
                print(f"{doc['output']}  [{doc['rule']}]", file=out, flush=True)
                count += 1
                last = time.monotonic()


def _status(text: str) -> None:
    print(f"peregrine demo: {text}", file=sys.stderr, flush=True)
