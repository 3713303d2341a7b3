"""Every role that talks to Kafka, over TLS and SASL/SCRAM, against a real broker (`tls_broker`):
its SSL listener (server certificate from a CA made at fixture time), its SASL_SSL listener with
SCRAM-SHA-512 and SCRAM-SHA-256, and its MTLS listener that demands a client certificate.

* the collector's publishing path (`peregrine replay` of the attack capture): every batch arrives,
  configured by flags or by ``PEREGRINE_KAFKA_*`` variables, over TLS, SCRAM and mutual TLS with an
  encrypted client key; a wrong SCRAM password stops it with a clear message without the password;
* k8s-meta's records: written and read back over SCRAM with k8s-meta's own producer and reader;
* `peregrine worker` (Faust/aiokafka), its security from the environment: over SASL_SSL/SCRAM it
  turns the replayed batches into exactly the alerts the rule engine computes, once each, which
  `peregrine sink` (from the same variables) then delivers; with a CA it must not
  trust or a wrong password the worker exits at once and says why;
* a client that does not trust the broker's CA is refused within a bounded time, with an error that
  says the certificate could not be verified, and replay stops at once on it (exit 2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tls_broker
import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from tls_broker import KEY_PASSWORD, PASSWORD, USER, TlsBroker, read_values

import rules
from bus.clients import librdkafka_security
from bus.security import KafkaSecurity
from collectors.capture import read_capture
from collectors.wire import decode_batch
from enrichers.config import K8sMetaConfig
from enrichers.records import ContainerMeta, ServiceMeta, decode, encode, key_of
from enrichers.table import K8sTable
from enrichers.topic import ensure_topic, producer, read_table
from streams import config as worker_config

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"
PEREGRINE_RULES = REPO / "rules" / "data" / "peregrine_rules.yaml"
BATCHES = sorted(frame.value for frame in read_capture(str(CAPTURE)) if frame.kind == "events")
WRONG_PASSWORD = "wrong-scram-password"


@pytest.fixture(scope="module")
def broker() -> Iterator[TlsBroker]:
    started = tls_broker.start()
    try:
        yield started
    finally:
        tls_broker.stop(started)


# `peregrine` as `python -m cli.main` runs it, that also prints how many threads the process still
# has when the interpreter starts to exit (librdkafka's threads are native: /proc lists them)
_COUNT_THREADS_AT_EXIT = """
import atexit, os, runpy, sys
atexit.register(lambda: print(f"threads at exit: {len(os.listdir('/proc/self/task'))}", file=sys.stderr))
runpy.run_module("cli.main", run_name="__main__", alter_sys=True)
"""


def _replay(bootstrap: str, topic: str, env: dict[str, str], *flags: str, timeout: float = 180,
            count_threads: bool = False) -> subprocess.CompletedProcess[str]:
    program = ["-c", _COUNT_THREADS_AT_EXIT] if count_threads else ["-m", "cli.main"]
    return subprocess.run(
        [sys.executable, *program, "replay", str(CAPTURE), "--max-rate", "--bootstrap", bootstrap,
         "--events-topic", topic, "--stats-topic", f"{topic}.stats", *flags],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def _scram_env(broker: TlsBroker, mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "PEREGRINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PEREGRINE_KAFKA_SSL_CAFILE": broker.ca_file,
        "PEREGRINE_KAFKA_SASL_MECHANISM": mechanism,
        "PEREGRINE_KAFKA_SASL_USERNAME": USER,
        "PEREGRINE_KAFKA_SASL_PASSWORD": password,
    }


def _topic(name: str) -> str:
    return f"tls-{name}-{uuid.uuid4().hex[:8]}"


def test_replay_publishes_over_tls_with_the_ca_from_flags(broker: TlsBroker) -> None:
    topic = _topic("events")
    done = _replay(broker.ssl, topic, {}, "--security-protocol", "SSL", "--ssl-cafile", broker.ca_file)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"replayed": {"events": len(BATCHES), "stats": 1},
                                                        "undelivered": 0}  # fmt: skip
    security = KafkaSecurity("SSL", ca_file=broker.ca_file)
    assert sorted(read_values(broker.ssl, topic, len(BATCHES), security)) == BATCHES


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_replay_publishes_over_sasl_ssl_with_scram_from_the_environment(
    broker: TlsBroker, mechanism: str
) -> None:
    topic = _topic("events")
    done = _replay(broker.sasl_ssl, topic, _scram_env(broker, mechanism))
    assert done.returncode == 0, done.stderr[-2000:]
    assert PASSWORD not in done.stderr + done.stdout
    assert sorted(read_values(broker.sasl_ssl, topic, len(BATCHES), broker.scram(mechanism))) == BATCHES


def test_replay_with_a_wrong_scram_password_stops_and_says_why(broker: TlsBroker) -> None:
    done = _replay(broker.sasl_ssl, _topic("refused"), _scram_env(broker, "SCRAM-SHA-512", WRONG_PASSWORD),
                   timeout=60)  # fmt: skip
    # a negative code (SIGSEGV, SIGABRT) would be the crash at exit the next test guards against
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"Kafka at {broker.sasl_ssl} refused our credentials" in done.stderr
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in done.stderr
    assert WRONG_PASSWORD not in done.stderr + done.stdout


@pytest.mark.parametrize("password", [PASSWORD, WRONG_PASSWORD])
def test_replay_ends_its_kafka_client_threads_before_exit(broker: TlsBroker, password: str) -> None:
    done = _replay(broker.sasl_ssl, _topic("exit"), _scram_env(broker, "SCRAM-SHA-512", password), timeout=60,
                   count_threads=True)  # fmt: skip
    assert done.returncode == (0 if password == PASSWORD else 2), done.stderr[-3000:]
    assert "threads at exit: 1\n" in done.stderr, done.stderr[-3000:]


def test_replay_over_mutual_tls_with_an_encrypted_client_key(broker: TlsBroker) -> None:
    topic = _topic("events")
    env = {"PEREGRINE_KAFKA_SECURITY_PROTOCOL": "SSL", "PEREGRINE_KAFKA_SSL_CAFILE": broker.ca_file,
           "PEREGRINE_KAFKA_SSL_CERTFILE": broker.client_cert,
           "PEREGRINE_KAFKA_SSL_KEYFILE": broker.client_key,
           "PEREGRINE_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD}  # fmt: skip
    done = _replay(broker.mtls, topic, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert KEY_PASSWORD not in done.stderr + done.stdout
    security = KafkaSecurity("SSL", ca_file=broker.ca_file, cert_file=broker.client_cert,
                             key_file=broker.client_key, key_password=KEY_PASSWORD)  # fmt: skip
    assert sorted(read_values(broker.mtls, topic, len(BATCHES), security)) == BATCHES


def _pod(container_id: str) -> ContainerMeta:
    return ContainerMeta(
        container_id=container_id, runtime="containerd", name="mysql", image="mysql:8.4",
        image_repository="docker.io/library/mysql", image_tag="8.4", image_digest=None, privileged=False,
        start_ts=None, mounts=(), namespace="default", pod_name=f"mysql-{container_id[:5]}",
        pod_uid=container_id, labels={"app": "mysql"}, pod_ip="10.244.1.7", node="node-1",
    )  # fmt: skip


def test_k8s_meta_records_over_sasl_ssl_with_scram(broker: TlsBroker) -> None:
    """k8s-meta's record format through its own producer and reader, a deleted pod as a tombstone."""
    security = broker.scram("SCRAM-SHA-256")
    config = K8sMetaConfig(bootstrap_servers=broker.sasl_ssl, topic=_topic("k8s"), kafka=security)
    assert PASSWORD not in repr(config)
    gone, kept = _pod("a" * 64), _pod("b" * 64)
    service = ServiceMeta(ip="10.96.0.1", name="kubernetes", namespace="default",
                          dns_name="kubernetes.default.svc.cluster.local")  # fmt: skip
    ensure_topic(config)
    p = producer(config)
    for meta in (gone, kept, service):
        p.produce(config.topic, value=encode(meta)[1], key=key_of(meta))
    p.produce(config.topic, value=None, key=key_of(gone))
    assert p.flush(30) == 0
    table = read_table(broker.sasl_ssl, config.topic, security=security)
    assert {key: decode(key, value) for key, value in table.items()} == {key_of(kept): kept,
                                                                        key_of(service): service}  # fmt: skip


@pytest.mark.parametrize("trusted", ["no CA", "another CA"])
def test_a_librdkafka_client_that_does_not_trust_the_ca_is_refused(broker: TlsBroker, trusted: str) -> None:
    ca_file = None if trusted == "no CA" else broker.other_ca_file
    errors: list[str] = []
    conf: dict[str, Any] = {"bootstrap.servers": broker.ssl, "log_level": 0,
                            "error_cb": lambda e: errors.append(e.str()),
                            **librdkafka_security(KafkaSecurity("SSL", ca_file=ca_file))}  # fmt: skip
    admin = AdminClient(conf)
    # the refusal is the TLS handshake's, at once: wait for it rather than out a metadata timeout
    deadline = time.monotonic() + 10
    while not any("certificate verify failed" in e for e in errors) and time.monotonic() < deadline:
        admin.poll(0.1)
    assert any("certificate verify failed" in e for e in errors), errors[:3]
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1)


def test_replay_that_does_not_trust_the_ca_stops_and_says_why(broker: TlsBroker) -> None:
    try:
        done = _replay(broker.ssl, _topic("untrusted"), {}, "--security-protocol", "SSL",
                       "--ssl-cafile", broker.other_ca_file, timeout=20)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("replay was still retrying after 20 s")
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"Kafka at {broker.ssl}" in done.stderr and "certificate verify failed" in done.stderr


def _expected_rules() -> Counter[str]:
    ruleset = rules.load([PEREGRINE_RULES])
    table = K8sTable()  # the worker's table: the k8s topic is empty here
    out: Counter[str] = Counter()
    for frame in read_capture(str(CAPTURE)):
        if frame.kind == "events":
            batch = decode_batch(frame.value)
            table.enrich(batch.procs)
            out.update(rule.name for _, rule in ruleset.evaluate(batch.events))
    return out


def _worker_argv(broker: TlsBroker, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """`peregrine worker` flags on test-unique topics and app id, and the topics by role."""
    tag = uuid.uuid4().hex[:8]
    topics = {name: f"tls-{name}-{tag}" for name in ("events", "stats", "alerts", "dlq", "k8s")}
    argv = ["--bootstrap", broker.sasl_ssl, "--rules", str(PEREGRINE_RULES), "--app-id", f"tls-worker-{tag}",
            "--partitions", "2", "--replication", "1", "--session-timeout", "6", "--heartbeat-interval", "1",
            "--commit-interval", "0.5", "--datadir", str(tmp_path / "worker"), "--k8s-wait", "5"]  # fmt: skip
    for name, topic in topics.items():
        argv += [f"--{name}-topic", topic]
    return argv, topics


def _worker_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "PEREGRINE_METRICS_PORT": "0"}


@pytest.mark.parametrize(("problem", "says"), [
    ("another CA", "certificate verify failed"),
    ("a wrong password", "Authentication failed during authentication due to invalid credentials"),
])  # fmt: skip
def test_worker_that_cannot_log_in_exits_and_says_why(
    broker: TlsBroker, tmp_path: Path, problem: str, says: str
) -> None:
    env = _scram_env(broker, "SCRAM-SHA-512", WRONG_PASSWORD if problem == "a wrong password" else PASSWORD)
    if problem == "another CA":
        env["PEREGRINE_KAFKA_SSL_CAFILE"] = broker.other_ca_file
    argv, _ = _worker_argv(broker, tmp_path)
    done = subprocess.run([sys.executable, "-m", "cli.main", "worker", *argv], env=_worker_env(env),
                          capture_output=True, text=True, timeout=90, cwd=REPO)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "peregrine worker: cannot create the topics" in output and says in output, output[-3000:]
    assert WRONG_PASSWORD not in output and PASSWORD not in output


@contextmanager
def _running(role_argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `peregrine` role as a real process, its output in `log`; SIGTERM (then SIGKILL) at exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *role_argv], env=_worker_env(env),
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _sink_config(broker: TlsBroker, alerts_topic: str, out: Path) -> dict[str, Any]:
    """The sink's file: where to deliver; TLS and SCRAM come from the same variables as every role's."""
    kafka = {
        "bootstrap_servers": broker.sasl_ssl, "topic": alerts_topic, "dlq_topic": f"{alerts_topic}.dlq",
        "group_prefix": f"{alerts_topic}-sink",
    }  # fmt: skip
    return {"kafka": kafka, "batch": {"max_wait_s": 0.05},
            "destinations": [{"name": "file", "type": "file", "path": str(out)}]}  # fmt: skip


def _wait_for_lines(
    path: Path, n: int, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> list[str]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.2)
    raise AssertionError(f"{len(lines)} of {n} lines in {path} (exit {proc.poll()})\n"
                         f"{log.read_text(errors='replace')[-3000:]}")  # fmt: skip


def test_replay_worker_and_sink_over_sasl_ssl_with_scram(broker: TlsBroker, tmp_path: Path) -> None:
    """The pipeline's Kafka roles in a row, every hop over SASL_SSL/SCRAM: the replayed batches
    become exactly the alerts the rule engine computes, once each, and the sink delivers them."""
    want = _expected_rules()
    n = sum(want.values())
    assert n > 0
    env = _scram_env(broker, "SCRAM-SHA-512")
    argv, topics = _worker_argv(broker, tmp_path)
    config = worker_config.from_args(argv, env)  # what the worker process below builds from the same input
    assert config.security == broker.scram("SCRAM-SHA-512")

    worker_log = tmp_path / "worker.log"
    with _running(["worker", *argv], env, worker_log) as worker:
        done = _replay(broker.sasl_ssl, topics["events"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        alerts = read_values(broker.sasl_ssl, topics["alerts"], n, config.security, idle_s=120)
        assert worker.poll() is None, worker_log.read_text(errors="replace")[-3000:]
    text = worker_log.read_text(errors="replace")
    assert Counter(json.loads(a)["rule"] for a in alerts) == want, text[-3000:]
    assert PASSWORD not in text
    # read again from the start with room for one more: a duplicate would show up
    assert len(read_values(broker.sasl_ssl, topics["alerts"], n + 1, config.security, idle_s=3)) == n

    sink_yaml, delivered, sink_log = tmp_path / "sink.yaml", tmp_path / "alerts.jsonl", tmp_path / "sink.log"
    sink_yaml.write_text(yaml.safe_dump(_sink_config(broker, topics["alerts"], delivered)))
    with _running(["sink", "--config", str(sink_yaml)], env, sink_log) as sink:
        lines = _wait_for_lines(delivered, n, sink, sink_log, 120)
    assert sorted(json.loads(line)["uuid"] for line in lines) == sorted(json.loads(a)["uuid"] for a in alerts)
    assert PASSWORD not in sink_log.read_text(errors="replace")
