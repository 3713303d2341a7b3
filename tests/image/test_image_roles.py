"""Every role started from the image (podman, host networking) against the session's real Kafka
broker: replay -> worker -> sink into a file, k8s-meta against the real kube-apiserver, and the
collector as root with only the capabilities eBPF needs, capturing an exec on the host.

Topics are test-unique (``peregrine.<name>-<tag>``). Containers are removed at teardown; a failing
test shows the container's log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from image_harness import RULES, SITE, Container, run, start

pytestmark = [pytest.mark.image, pytest.mark.kafka]

CAPTURE = f"{SITE}/devtools/data/attack_scenario.cap"
RULE_FILES = [
    f"{RULES}/{n}" for n in ("falco_rules.yaml", "falco-incubating_rules.yaml", "peregrine_rules.yaml")
]
METRICS_OFF = ["-e", "PEREGRINE_METRICS_PORT=0"]
# What the collector's container gets, as the chart's DaemonSet gives it (hostPID, read-only mounts).
COLLECTOR_MOUNTS = [
    "--pid=host",
    "--user=0:0",
    "--read-only",
    "--tmpfs=/tmp",
    "-v",
    "/sys/kernel/tracing:/sys/kernel/tracing:ro",
    "-v",
    "/sys/kernel/btf:/sys/kernel/btf:ro",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "-v",
    "/lib/modules:/lib/modules:ro",
    "-v",
    "/usr/src:/usr/src:ro",
]
# The capabilities the collector needs on this kernel (6.18, Debian's bcc 0.26): with BPF and
# PERFMON alone bcc fails at its first map ("could not open bpf map: counters, error: Operation not
# permitted"); SYS_ADMIN is required (and alone would do). The chart's DaemonSet adds DAC_READ_SEARCH
# and SYS_PTRACE for container ids and other users' /proc entries, which this exec does not need.
COLLECTOR_CAPS = ["BPF", "PERFMON", "SYS_ADMIN"]


def _topics(bootstrap: str, tag: str) -> dict[str, str]:
    names = {n: f"peregrine.{n}-{tag}" for n in ("events", "stats", "alerts", "dlq", "k8s")}
    new = [NewTopic(names[n], 1, 1) for n in ("events", "stats", "alerts", "dlq")]
    new.append(NewTopic(names["k8s"], 1, 1, config={"cleanup.policy": "compact"}))
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures resolve
    for future in admin.create_topics(new).values():
        future.result(30)
    return names


def _consume(
    bootstrap: str,
    topic: str,
    done: Callable[[list[bytes]], bool],
    timeout: float,
    alive: Callable[[], str | None],
) -> list[bytes]:
    """Values of `topic` (read_committed, from the start) until `done(values)`; fails on timeout or
    when `alive()` names a dead container."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"image-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(values):
            problem = alive()
            if problem:
                raise AssertionError(problem)
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met in {timeout:.0f} s ({len(values)} records)")
            values += [m.value() or b"" for m in consumer.consume(500, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return values


def _watch(*containers: Container) -> Callable[[], str | None]:
    def check() -> str | None:
        for c in containers:
            code = c.exit_code()
            if code is not None:
                return f"container {c.name} exited {code}:\n{c.logs()[-4000:]}"
        return None

    return check


def _wait_log(container: Container, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = container.logs()
        if needle in text:
            return text
        if container.exit_code() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(
        f"{container.name} never logged {needle!r} (exit {container.exit_code()}):\n"
        f"{container.logs()[-4000:]}"
    )


def _expected_rules(image: str) -> Counter[str]:
    """What the rule engine in the image says about the capture, offline (`peregrine rules test`)."""
    done = run(image, "rules", "test", "--events", CAPTURE, "--rules", *RULE_FILES)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return Counter(json.loads(line)["rule"] for line in done.stdout.splitlines() if line.strip())


def test_worker_and_sink_deliver_the_replayed_attack(
    image: str, containers: list[Container], kafka_bootstrap: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = _topics(kafka_bootstrap, tag)
    expected = _expected_rules(image)
    assert expected, "the shipped rules raise nothing on the attack capture"

    worker_args = [
        "worker",
        "--bootstrap",
        kafka_bootstrap,
        "--app-id",
        f"peregrine-worker-{tag}",
        "--partitions",
        "1",
        "--replication",
        "1",
        "--datadir",
        "/tmp/worker",
        "--k8s-wait",
        "1",
        "--log-level",
        "info",
    ]
    for name in ("events", "stats", "alerts", "dlq", "k8s"):
        worker_args += [f"--{name}-topic", topics[name]]
    for f in RULE_FILES:
        worker_args += ["--rules", f]
    worker = start(containers, image, *worker_args, options=METRICS_OFF)

    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the sink runs as the image's user (10001)
    config_dir = tmp_path / "sink"
    config_dir.mkdir()
    (config_dir / "sink.yaml").write_text(
        json.dumps(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "topic": topics["alerts"],
                    "dlq_topic": topics["dlq"],
                    "group_prefix": f"peregrine-sink-{tag}",
                },
                "batch": {"max_alerts": 100, "max_wait_s": 0.05},
                "destinations": [{"name": "file", "type": "file", "path": "/out/alerts.jsonl"}],
            }
        )
    )
    sink = start(
        containers,
        image,
        "sink",
        "--config",
        "/etc/peregrine/sink/sink.yaml",
        options=[*METRICS_OFF, "-v", f"{config_dir}:/etc/peregrine/sink:ro", "-v", f"{out}:/out"],
    )

    replay = run(
        image,
        "replay",
        CAPTURE,
        "--max-rate",
        "--bootstrap",
        kafka_bootstrap,
        "--events-topic",
        topics["events"],
        "--stats-topic",
        topics["stats"],
        timeout=180,
    )
    assert replay.returncode == 0, f"replay from the image failed:\n{replay.stdout}\n{replay.stderr}"

    total = sum(expected.values())
    alerts = _consume(kafka_bootstrap, topics["alerts"], lambda v: len(v) >= total, 240, _watch(worker, sink))
    assert Counter(json.loads(a)["rule"] for a in alerts) == expected

    delivered = out / "alerts.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = delivered.read_text().splitlines() if delivered.exists() else []
        if len(lines) >= total:
            break
        problem = _watch(sink)()
        assert problem is None, problem
        time.sleep(0.5)
    else:
        raise AssertionError(f"the sink wrote {len(lines)} of {total} alerts:\n{sink.logs()[-4000:]}")
    assert Counter(json.loads(line)["rule"] for line in lines) == expected
    assert delivered.stat().st_uid == 10001  # written by the image's non-root user


@pytest.mark.k8s
def test_k8s_meta_publishes_what_the_api_server_holds(
    image: str, containers: list[Container], kafka_bootstrap: str, kube_api: Any, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = _topics(kafka_bootstrap, tag)
    conf = tmp_path / "kube"
    conf.mkdir()
    shutil.copy(kube_api.root / "certs" / "apiserver.crt", conf / "ca.crt")
    kubeconfig = kube_api.write_kubeconfig(conf / "kubeconfig", kube_api.token, "peregrine-admin")
    text = json.loads(kubeconfig.read_text())
    text["clusters"][0]["cluster"]["certificate-authority"] = "/etc/peregrine/kube/ca.crt"
    kubeconfig.write_text(json.dumps(text))
    for f in conf.iterdir():
        f.chmod(0o644)
    meta = start(
        containers,
        image,
        "k8s-meta",
        "--kubeconfig",
        "/etc/peregrine/kube/kubeconfig",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--topic",
        topics["k8s"],
        options=[*METRICS_OFF, "-v", f"{conf}:/etc/peregrine/kube:ro"],
    )
    # The API server always holds the `kubernetes` Service of namespace default.
    records = _consume(
        kafka_bootstrap, topics["k8s"], lambda v: any(b"kubernetes" in r for r in v), 120, _watch(meta)
    )
    assert records


@pytest.mark.root
def test_collector_captures_an_exec_and_publishes_it(
    image: str, containers: list[Container], kafka_bootstrap: str, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the collector needs root")
    tag = uuid.uuid4().hex[:8]
    topics = _topics(kafka_bootstrap, tag)
    caps = ["--cap-drop=ALL", *(f"--cap-add={c}" for c in COLLECTOR_CAPS)]
    collector = start(
        containers,
        image,
        "collect",
        "--bootstrap",
        kafka_bootstrap,
        "--node",
        f"image-{tag}",
        "--events-topic",
        topics["events"],
        "--stats-topic",
        topics["stats"],
        "--event-types",
        "execve",
        options=[*METRICS_OFF, *COLLECTOR_MOUNTS, *caps],
    )
    _wait_log(collector, "peregrine collector ready", 240)

    marker = tmp_path / f"pg-image-marker-{tag}"
    shutil.copy("/bin/true", marker)
    needle = f"pg-image-arg-{tag}".encode()

    def exec_and_check(values: list[bytes]) -> bool:
        if any(needle in v for v in values):
            return True
        subprocess.run([str(marker), needle.decode()], check=True)
        return False

    events = _consume(kafka_bootstrap, topics["events"], exec_and_check, 120, _watch(collector))
    (batch,) = [v for v in events if needle in v][:1]
    assert marker.name.encode() in batch, "the exec's executable is not in the event"
