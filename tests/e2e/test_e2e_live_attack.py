"""The whole pipeline live, as root on the running kernel: `peregrine collect` (eBPF) -> Kafka ->
`peregrine worker` (Falco stable + incubating + Peregrine's rules, pod fields from `peregrine.k8s`)
-> `peregrine sink` -> the Slack stand-in and a real rsyslogd (RFC 5424 + CEF); `peregrine
k8s-meta` watches the real kube-apiserver, where the pod `mysql-db-...` (namespace default, image
mysql) owns the container whose cgroup the actions run in.

The pod exists before the worker starts (the worker waits for the Kubernetes table to catch up),
and the actions start once the worker's and the sink's consumer groups hold their partitions, so
the syscall-to-receiver latency printed by the shell test measures the pipeline, not its start.
It is reported, not asserted: the only deadline is a generous one for correctness.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_container import Container, create_pod, pod_name, run_on_pty
from e2e_pipeline import (
    Arrivals,
    Delivered,
    Pipeline,
    TopicTail,
    kafka_time_ns,
    rule_files,
    slack_destination,
    syslog_destination,
)
from kubernetes import client as k8s_client
from receivers import Receiver, serve_rsyslog

from enrichers.errors import TopicError
from enrichers.topic import read_table

pytestmark = [
    pytest.mark.e2e, pytest.mark.root, pytest.mark.kafka, pytest.mark.k8s,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

DEADLINE_S = 120.0  # correctness only (the machine is shared): an alert not there by then is lost
STARTUP_S = 240.0


@dataclass
class Live:
    pipeline: Pipeline
    container: Container
    pod: str
    api_server_ip: str
    arrivals: Arrivals

    def of_container(self, found: dict[str, Delivered]) -> dict[str, Delivered]:
        mark = f"container_id={self.container.container_id[:12]}"
        return {u: d for u, d in found.items() if mark in d.text}

    def wait_for_rules(self, rules: set[str]) -> tuple[dict[str, Delivered], dict[str, Delivered]]:
        def done(a: Arrivals) -> bool:
            found = (self.of_container(a.at_slack), self.of_container(a.at_syslog))
            return all(rules <= {d.rule for d in f.values()} for f in found)

        self.arrivals.wait(done, DEADLINE_S, self.pipeline.describe)
        self.arrivals.settle(2.0)
        return self.of_container(self.arrivals.at_slack), self.of_container(self.arrivals.at_syslog)


def _wait_published(pipeline: Pipeline, keys: set[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        try:
            if keys <= set(read_table(pipeline.bootstrap, pipeline.topic("k8s"), timeout_s=10)):
                return
        except TopicError:  # k8s-meta has not written yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"k8s-meta did not publish {keys}\n{pipeline.describe()}")


@pytest.fixture(scope="module")
def live(
    kafka_bootstrap: str, kube_api: Any, falco_rules_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One pipeline, pod and pair of receivers for both tests (its start-up was most of what each
    test cost). Each test looks only at the rules of its own actions; the shell test runs first (file
    order), since the other test's `bash -c` on a pty is a terminal shell too."""
    tmp = tmp_path_factory.mktemp("live")
    pipeline = Pipeline(kafka_bootstrap, tmp)
    api = kube_api.client()
    core = k8s_client.CoreV1Api(api)
    slack = Receiver("slack").start()
    (tmp / "rsyslog").mkdir()
    syslog = serve_rsyslog(tmp / "rsyslog", "127.0.0.1")
    rsyslog = next(syslog)
    node = f"e2e-{pipeline.setup.tag}"
    workdir = tmp / "container"
    workdir.mkdir()
    container = Container(workdir)
    pod = pod_name()
    container.create(create_pod(core, pod, node, container.container_id))
    api_ip = str(core.read_namespaced_service("kubernetes", "default").spec.cluster_ip)
    try:
        pipeline.start_k8s_meta(kube_api.kubeconfig)
        _wait_published(pipeline, {container.container_id.encode(), f"svc:{api_ip}".encode()})
        files = rule_files(falco_rules_dir)
        pipeline.start_worker(files)
        slack_entry, env = slack_destination(slack)
        # unpaced: the host's own activity raises about an alert a second (25 at rsyslogd during the
        # shell test), which Slack's default 1 message/s queued ahead of the second test's alerts
        slack_entry["pace"] = {"per_s": 0}
        pipeline.start_sink([slack_entry, syslog_destination(rsyslog)], env)
        pipeline.start_collector(node, files)
        pipeline.wait_groups_stable(STARTUP_S)
        yield Live(pipeline, container, pod, api_ip, Arrivals(slack, rsyslog))
    finally:
        pipeline.stop_all()
        container.remove()
        core.delete_namespaced_pod(pod, "default", grace_period_seconds=0)
        slack.stop()
        syslog.close()
        api.close()


def test_terminal_shell_in_a_pod_reaches_slack_and_syslog_with_pod_fields(live: Live) -> None:
    c, p = live.container, live.pipeline
    tail = TopicTail(p.bootstrap, p.topic("alerts"))
    try:
        tty_nr = run_on_pty(c.enter("bash -il"), b"exit\n")
        slack, syslog = live.wait_for_rules({"Terminal shell in container"})
    finally:
        tail.stop()
    shells = [d for d in slack.values() if d.rule == "Terminal shell in container"]
    assert len(shells) == 1, [d.text for d in shells]
    alert = shells[0]
    assert alert.uuid in syslog and syslog[alert.uuid].rule == alert.rule
    assert syslog[alert.uuid].text == alert.text
    text = alert.text
    assert f"k8s_pod_name={live.pod} k8s_ns_name=default" in text
    assert "container_image_repository=docker.io/library/mysql" in text
    assert "process=bash " in text and "parent=runc " in text and "command=bash -il " in text
    assert f"terminal={tty_nr} " in text and tty_nr != 0
    assert alert.text.startswith(f"{_clock(alert.event_ns)}: Notice A shell was spawned in a container")
    fields = dict(f["text"].split("\n", 1) for f in alert.raw["attachments"][0]["blocks"][2]["fields"])
    assert fields["k8s.ns.name"] == "default" and fields["k8s.pod.name"] == live.pod
    assert fields["proc.name"] == "bash"
    _, parsed = syslog[alert.uuid].raw
    assert f'ns="default" pod="{live.pod}"' in parsed["structured_data"]

    hops = {  # after the execve: Kafka create times of the container's first batch and of the alert,
        # when the alert became readable (transaction committed), receipt
        "first_batch": kafka_time_ns(p.bootstrap, p.topic("events"), c.container_id.encode()),
        "alert_produced": kafka_time_ns(p.bootstrap, p.topic("alerts"), alert.uuid.encode()),
        "alert_committed": tail.first(alert.uuid.encode()),
        "slack": alert.seen_ns,
        "syslog": syslog[alert.uuid].seen_ns,
    }
    latency = {k: round((v - alert.event_ns) / 1e6, 1) for k, v in hops.items()}
    seen = {"slack": len(live.arrivals.at_slack), "syslog": len(live.arrivals.at_syslog)}
    print(f"\n{json.dumps({'e2e_shell_syscall_to_receiver_ms': latency, 'alerts_seen_meanwhile': seen})}")
    assert 0 < latency["slack"] < DEADLINE_S * 1000 and 0 < latency["syslog"] < DEADLINE_S * 1000


def test_api_server_setns_kubectl_and_apt_in_a_pod_raise_their_alerts(live: Live) -> None:
    c = live.container
    connect = c.workdir / "connect.py"
    connect.write_text(
        "import socket\ns = socket.socket()\ns.setblocking(False)\n"
        f"s.connect_ex(({live.api_server_ip!r}, 443))\n"
    )
    kubectl, apt = c.binary("kubectl"), c.binary("apt")
    steps = [
        f"{kubectl} get secrets -A",
        f"/usr/bin/python3 -S {connect}",
        "unshare --uts true",
        "nsenter --uts=/proc/$$/ns/uts true",
        f"{apt} install -y netcat",
    ]
    script = "; ".join(steps)
    run_on_pty(c.enter(f"bash --norc -c '{script}'"), b"")

    want = {
        "Peregrine: Kubernetes or Docker Client Run in Container": "command=kubectl get secrets -A",
        "Contact K8S API Server From Container": f"->{live.api_server_ip}:443 ",
        "Change thread namespace": "process=nsenter ",
        "Launch Package Management Process in Container": "process=apt ",
    }
    slack, syslog = live.wait_for_rules(set(want))
    for rule, needle in want.items():
        found = [d for d in slack.values() if d.rule == rule]
        assert len(found) == 1, (rule, [d.text for d in found])
        alert = found[0]
        assert needle in alert.text, (rule, alert.text)
        assert f"k8s_pod_name={live.pod} k8s_ns_name=default" in alert.text, alert.text
        assert alert.uuid in syslog and syslog[alert.uuid].text == alert.text


def _clock(ns: int) -> str:
    """Falco's output prefix: the event's time of day, UTC, with nanoseconds."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%H:%M:%S}.{nanos:09d}"
