"""The Helm chart (k8s/chart/peregrine): lint, render with default and non-default values, check
the security properties the design asks for, and have the real kube-apiserver validate every
rendered object (server-side dry run: schema, defaults, admission, Pod Security).

The Prometheus Operator's `ServiceMonitor` CRD (from its Go module, fetched by 60-helm.sh) is
installed first, so the API server validates the ServiceMonitor against its real schema. What it
cannot validate: the Strimzi `KafkaTopic`s, whose CRD is not available here (see
`test_crd_objects`).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_tools import CHART, SERVICE_MONITOR_CRD, Helm
from kubernetes import client as k8s_client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

import rules
from bus import acls
from bus import connection as kafka_connection
from sinks.config import parse_config
from streams import config as worker_config

ROOT = CHART.parents[2]
NOT_INSTALLABLE = {"KafkaTopic", "KafkaUser"}  # Strimzi publishes its CRDs on no package registry
COLLECTOR_CAPS = ["BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"]
RULE = """- rule: Shell in container
  desc: a shell started in a container
  condition: evt.type = execve and container.id != host and proc.name = bash
  output: shell in a container (user=%user.name container=%container.id)
  priority: WARNING
"""
CUSTOM = {
    "image": {"repository": "registry.example/peregrine", "tag": "1.2.3"},
    "kafka": {
        "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
        "securityProtocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "peregrine",
                 "passwordSecret": {"name": "kafka-user", "key": "password"}},
        "tls": {"caSecret": {"name": "kafka-ca", "key": "ca.crt"}},
    },
    "strimzi": {"enabled": True, "cluster": "prod"},
    "rules": {"imageFiles": [], "files": {"10-shell.yaml": RULE}},
    "metrics": {"otlpEndpoint": "http://otel-collector:4318", "serviceMonitor": {"enabled": True}},
    "worker": {"replicas": 6, "guarantee": "at_least_once"},
    "sink": {
        "perDestination": True,
        "destinations": [
            {"name": "slack-secops", "type": "slack", "webhook_url_env": "SLACK_WEBHOOK_URL",
             "route": {"min_priority": "warning"},
             "secretEnv": [{"name": "SLACK_WEBHOOK_URL", "secretName": "slack", "key": "url"}]},
            {"name": "splunk.hec", "type": "splunk", "url": "https://splunk:8088", "token_env": "HEC_TOKEN",
             "secretEnv": [{"name": "HEC_TOKEN", "secretName": "splunk", "key": "token"}]},
            {"name": "archive", "type": "file", "path": "/tmp/alerts.jsonl"},
        ],
    },
}


@pytest.fixture(scope="module")
def custom_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / "custom.yaml"
    path.write_text(yaml.safe_dump(CUSTOM))
    return path


@pytest.fixture(scope="module")
def default_objects(helm: Helm) -> list[dict[str, Any]]:
    return helm.template("peregrine")


@pytest.fixture(scope="module")
def custom_objects(helm: Helm, custom_values: Path) -> list[dict[str, Any]]:
    return helm.template("peregrine", custom_values)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[o['metadata']['name'] for o in by_kind(objects, kind)]}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_lint_with_default_and_custom_values(helm: Helm, custom_values: Path) -> None:
    assert "0 chart(s) failed" in helm.lint()
    assert "0 chart(s) failed" in helm.lint(custom_values)


def test_schema_refuses_bad_values(helm: Helm, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"collector": {"ringMB": 3}, "sink": {"destinations": [{"name": "X!"}]}}))
    with pytest.raises(AssertionError, match="ringMB"):
        helm.template("peregrine", bad)


def test_more_workers_than_partitions_is_refused(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "idle.yaml"
    values.write_text(yaml.safe_dump({"worker": {"replicas": 60}}))
    with pytest.raises(AssertionError, match=r"worker.replicas \(60\) exceeds the partitions"):
        helm.template("peregrine", values)
    values.write_text(yaml.safe_dump({"worker": {"replicas": 60},
                                      "strimzi": {"enabled": True, "partitions": {"events": 60}}}))
    assert named(helm.template("peregrine", values), "Deployment", "pg-worker")["spec"]["replicas"] == 60


def test_default_render_has_every_role(default_objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objects)
    assert kinds == sorted([
        ("ClusterRole", "pg-k8s-meta"), ("ClusterRoleBinding", "pg-k8s-meta"),
        ("ConfigMap", "pg-sink"), ("DaemonSet", "pg-collector"),
        ("Deployment", "pg-k8s-meta"), ("Deployment", "pg-sink-stdout"), ("Deployment", "pg-worker"),
        ("PodDisruptionBudget", "pg-worker"),
        ("Service", "pg-collector-metrics"), ("Service", "pg-k8s-meta-metrics"),
        ("Service", "pg-sink-metrics"), ("Service", "pg-worker-metrics"),
        ("ServiceAccount", "peregrine-k8s-meta"),
    ])


def test_collector_is_privileged_only_as_needed(default_objects: list[dict[str, Any]]) -> None:
    pod = named(default_objects, "DaemonSet", "pg-collector")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["hostPID"] is True and not pod.get("hostNetwork") and not pod.get("hostIPC")
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["privileged"] is False
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": COLLECTOR_CAPS}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host == {"tracefs": "/sys/kernel/tracing", "btf": "/sys/kernel/btf", "cgroup": "/sys/fs/cgroup",
                    "modules": "/lib/modules", "headers": "/usr/src"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert all(mounts[name].get("readOnly") is True for name in host), "host paths are mounted read-only"
    assert set(c["resources"]["limits"]) == {"cpu", "memory"}
    assert "--node=$(NODE_NAME)" in c["args"] and env_of(c)["NODE_NAME"] == {
        "fieldRef": {"fieldPath": "spec.nodeName"}}
    assert {"operator": "Exists"} in pod["tolerations"]


def unprivileged_pods(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in by_kind(objects, "Deployment"):
        yield d["metadata"]["name"], d["spec"]["template"]["spec"]


@pytest.mark.parametrize("values", ["default", "custom"])
def test_worker_sink_and_k8s_meta_run_without_privileges(
    values: str, default_objects: list[dict[str, Any]], custom_objects: list[dict[str, Any]]
) -> None:
    objects = default_objects if values == "default" else custom_objects
    for name, pod in unprivileged_pods(objects):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert not any(pod.get(k) for k in ("hostPID", "hostNetwork", "hostIPC")), name
        assert not [v for v in pod["volumes"] if "hostPath" in v], name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert "limits" in c["resources"], name


def test_k8s_meta_gets_the_rules_of_k8s_rbac(default_objects: list[dict[str, Any]]) -> None:
    text = (ROOT / "k8s" / "rbac" / "k8s-meta.yaml").read_text()
    reference = {d["kind"]: d for d in yaml.safe_load_all(text)}
    role = named(default_objects, "ClusterRole", "pg-k8s-meta")
    assert role["rules"] == reference["ClusterRole"]["rules"]
    binding = named(default_objects, "ClusterRoleBinding", "pg-k8s-meta")
    subject = {"kind": "ServiceAccount", "name": "peregrine-k8s-meta", "namespace": "peregrine"}
    assert binding["subjects"] == [subject]
    deployment = named(default_objects, "Deployment", "pg-k8s-meta")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "peregrine-k8s-meta"


def test_sink_config_is_what_the_sink_reads_and_holds_no_secret(
    custom_objects: list[dict[str, Any]],
) -> None:
    data = named(custom_objects, "ConfigMap", "pg-sink")["data"]
    assert sorted(data) == ["archive.yaml", "slack-secops.yaml", "splunk.hec.yaml"]  # one per destination
    assert not any("secretEnv" in text for text in data.values())
    deployments = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
                   for d in by_kind(custom_objects, "Deployment") if "sink" in d["metadata"]["name"]}
    assert sorted(deployments) == ["pg-sink-archive", "pg-sink-slack-secops", "pg-sink-splunk-hec"]
    slack = deployments["pg-sink-slack-secops"]
    assert "--destination=slack-secops" in slack["args"]
    assert "--config=/etc/peregrine/sink/slack-secops.yaml" in slack["args"]
    assert env_of(slack)["SLACK_WEBHOOK_URL"] == {"secretKeyRef": {"name": "slack", "key": "url"}}
    assert "HEC_TOKEN" not in env_of(slack), "a destination's pod gets only its own secrets"
    assert env_of(slack)["PEREGRINE_KAFKA_SASL_PASSWORD"] == {
        "secretKeyRef": {"name": "kafka-user", "key": "password"}}
    # The real parser, with the pod's flags and plain variables, and only the ones Kubernetes would
    # fill from that pod's Secrets: a pod must start without another destination's secret.
    plain = {k: v for k, v in env_of(slack).items() if isinstance(v, str)}
    env = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
           "PEREGRINE_KAFKA_SASL_PASSWORD": "pw", **plain}
    flags = argparse.ArgumentParser()
    kafka_connection.add_arguments(flags)
    text = data["slack-secops.yaml"]
    config = parse_config(yaml.safe_load(text), "sink.yaml", env, flags.parse_known_args(slack["args"])[0])
    assert [d.name for d in config.destinations] == ["slack-secops"]
    assert config.kafka.bootstrap_servers == "kafka-0.kafka:9093,kafka-1.kafka:9093"
    security = config.kafka.connection.security
    assert (security.protocol, security.sasl_mechanism, security.sasl_username) == (
        "SASL_SSL", "SCRAM-SHA-512", "peregrine")
    assert security.ca_file == "/etc/peregrine/kafka-ca/ca.crt"


def test_rules_configmap_loads_and_reaches_collector_and_worker(
    custom_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    data = named(custom_objects, "ConfigMap", "pg-rules")["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    ruleset = rules.load([tmp_path / n for n in sorted(data)])
    assert ruleset.event_type_ids, "the collector captures the event types these rules need"
    spec = named(custom_objects, "DaemonSet", "pg-collector")["spec"]["template"]["spec"]
    collector = spec["containers"][0]
    worker = named(custom_objects, "Deployment", "pg-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "--rules=/etc/peregrine/rules/10-shell.yaml" in collector["args"]
    assert env_of(worker)["PEREGRINE_RULES"] == "/etc/peregrine/rules/10-shell.yaml"
    assert env_of(worker)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert "--ssl-cafile=/etc/peregrine/kafka-ca/ca.crt" in worker["args"]


def test_strimzi_topics(custom_objects: list[dict[str, Any]]) -> None:
    topics = {t["spec"]["topicName"]: t for t in by_kind(custom_objects, "KafkaTopic")}
    assert sorted(topics) == ["peregrine.alerts", "peregrine.alerts.dlq", "peregrine.control",
                              "peregrine.events", "peregrine.events.dlq", "peregrine.k8s",
                              "peregrine.sink.suppressions", "peregrine.stats"]  # fmt: skip
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics.values()} == {"prod"}
    compacted = ("peregrine.k8s", "peregrine.sink.suppressions", "peregrine.control")
    assert topics["peregrine.control"]["spec"]["partitions"] == 1
    assert all(topics[n]["spec"]["config"]["cleanup.policy"] == "compact" for n in compacted)
    others = [t for n, t in topics.items() if n not in compacted]
    assert all(t["spec"]["config"]["cleanup.policy"] == "delete" for t in others)
    workers = named(custom_objects, "Deployment", "pg-worker")["spec"]["replicas"]
    assert topics["peregrine.events"]["spec"]["partitions"] >= workers, "a worker beyond the partitions idles"


# the chart's role keys and deployed objects -> bus.acls' role names
CHART_ROLES = {"collector": ("DaemonSet", "pg-collector"), "k8s-meta": ("Deployment", "pg-k8s-meta"),
               "worker": ("Deployment", "pg-worker"), "sink": ("Deployment", "pg-sink-stdout")}  # fmt: skip
_STRIMZI_TYPE = {"topic": "topic", "group": "group", "transactional_id": "transactionalId"}
_STRIMZI_PATTERN = {"literal": "literal", "prefixed": "prefix"}


def _container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    container: dict[str, Any] = named(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_worker_reads_the_new_container_wait_the_chart_sets(
    helm: Helm, default_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    """worker.k8sWaitNew reaches the worker's own option parser (`streams.config.from_args`) through
    the rendered arguments and environment; the schema keeps it within the parser's bound."""

    def wait_new(objects: list[dict[str, Any]]) -> float:
        worker = _container(objects, "Deployment", "pg-worker")
        env = {k: v for k, v in env_of(worker).items() if isinstance(v, str)}
        return worker_config.from_args(worker["args"][1:], env).k8s_wait_new

    assert wait_new(default_objects) == 3.0
    values = tmp_path / "wait.yaml"
    values.write_text(yaml.safe_dump({"worker": {"k8sWaitNew": 0.5}}))
    assert wait_new(helm.template("peregrine", values)) == 0.5
    values.write_text(yaml.safe_dump({"worker": {"k8sWaitNew": 31}}))
    with pytest.raises(AssertionError, match="k8sWaitNew"):
        helm.template("peregrine", values)


def test_the_collector_reads_the_interest_switch_the_chart_sets(
    helm: Helm, default_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """collector.interest: false reaches the collector's own option parser as PEREGRINE_NO_INTEREST
    (the kernel then keeps every event of the types the rules name, and only a restart brings new
    rules); the default leaves it on, and a rules change does not replace the collector's pod."""
    from collectors import service

    def no_interest(objects: list[dict[str, Any]]) -> bool:
        collector = _container(objects, "DaemonSet", "pg-collector")
        for name, value in env_of(collector).items():
            if isinstance(value, str):
                monkeypatch.setenv(name, value)
        parsed = service._capture_parser("collect").parse_args(collector["args"][1:])
        monkeypatch.delenv("PEREGRINE_NO_INTEREST", raising=False)
        return bool(parsed.no_interest)

    def restarted_by_rules(objects: list[dict[str, Any]]) -> bool:
        daemonset = next(o for o in objects
                         if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "pg-collector")  # fmt: skip
        return "checksum/rules" in (daemonset["spec"]["template"]["metadata"].get("annotations") or {})

    # on by default, and then a rules change reaches the collector through peregrine.control
    # (live), not by replacing its pod
    assert not no_interest(default_objects) and not restarted_by_rules(default_objects)
    values = tmp_path / "interest.yaml"
    values.write_text(yaml.safe_dump({"collector": {"interest": False}}))
    off = helm.template("peregrine", values)
    assert no_interest(off) and restarted_by_rules(off)


def test_strimzi_users_grant_each_role_exactly_its_acls(helm: Helm, tmp_path: Path) -> None:
    """strimzi.users: one KafkaUser per role whose ACLs are `bus.acls.bindings(role)` (the grants the
    real-broker test enforces), and each role's pod authenticates as its own user."""
    values = tmp_path / "users.yaml"
    strimzi = {"enabled": True, "users": True, "cluster": "prod"}
    values.write_text(yaml.safe_dump({"kafka": {"securityProtocol": "SASL_SSL"}, "strimzi": strimzi}))
    objects = helm.template("peregrine", values)
    users = {u["metadata"]["name"]: u for u in by_kind(objects, "KafkaUser")}
    assert sorted(users) == sorted(f"pg-{role}" for role in CHART_ROLES)
    for role, (kind, name) in CHART_ROLES.items():
        spec = users[f"pg-{role}"]["spec"]
        assert spec["authentication"] == {"type": "scram-sha-512"}
        granted = {(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"], op)
                   for a in spec["authorization"]["acls"] for op in a["operations"]}  # fmt: skip
        wanted = {(_STRIMZI_TYPE[b.resource_type], b.name, _STRIMZI_PATTERN[b.pattern], b.operation)
                  for b in acls.bindings(role, sink_group_prefix="pg-sink")}  # fmt: skip
        assert granted == wanted, role
        env = env_of(_container(objects, kind, name))
        assert env["PEREGRINE_KAFKA_SASL_USERNAME"] == f"pg-{role}", role
        secret = {"secretKeyRef": {"name": f"pg-{role}", "key": "password"}}
        assert env["PEREGRINE_KAFKA_SASL_PASSWORD"] == secret, role
    assert users["pg-collector"]["metadata"]["labels"]["strimzi.io/cluster"] == "prod"


def test_a_role_identity_of_its_own_overrides_the_shared_one(
    helm: Helm, custom_values: Path, tmp_path: Path
) -> None:
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({"kafka": {"sasl": {"roles": {"collector": {
        "username": "node-writer", "passwordSecret": {"name": "collector-kafka", "key": "pw"}}}}}}))
    objects = helm.template("peregrine", custom_values, own)
    collector = env_of(_container(objects, "DaemonSet", "pg-collector"))
    assert collector["PEREGRINE_KAFKA_SASL_USERNAME"] == "node-writer"
    secret = {"secretKeyRef": {"name": "collector-kafka", "key": "pw"}}
    assert collector["PEREGRINE_KAFKA_SASL_PASSWORD"] == secret
    worker = env_of(_container(objects, "Deployment", "pg-worker"))
    assert worker["PEREGRINE_KAFKA_SASL_USERNAME"] == "peregrine", "the others keep the shared identity"


def test_metrics_services_match_the_role_ports(custom_objects: list[dict[str, Any]]) -> None:
    ports = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in by_kind(custom_objects, "Service")}
    assert ports == {"pg-collector-metrics": 9464, "pg-worker-metrics": 9465, "pg-sink-metrics": 9466,
                     "pg-k8s-meta-metrics": 9467}
    (monitor,) = by_kind(custom_objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]


def test_every_role_container_is_probed_on_its_metrics_port(custom_objects: list[dict[str, Any]]) -> None:
    """The paths telemetry.health serves, on the container port the role's metrics are served on."""
    workloads = by_kind(custom_objects, "Deployment") + by_kind(custom_objects, "DaemonSet")
    assert len(workloads) >= 4
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            name = workload["metadata"]["name"]
            assert [p["name"] for p in container["ports"]] == ["metrics"], name
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, name
            assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}, name
            metrics_port = env_of(container)["PEREGRINE_METRICS_PORT"]
            assert int(metrics_port) == container["ports"][0]["containerPort"], name


# --- the real API server -------------------------------------------------------------------


def _namespace(api: k8s_client.ApiClient, level: str) -> str:
    name = f"deploy-{level}-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": level,
              "pod-security.kubernetes.io/enforce-version": "latest"}
    k8s_client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def _install_service_monitor_crd(api: k8s_client.ApiClient) -> None:
    if not SERVICE_MONITOR_CRD.exists():
        pytest.fail(f"no ServiceMonitor CRD at {SERVICE_MONITOR_CRD}: run scripts/setup (setup.d/60-helm.sh)")
    extensions = k8s_client.ApiextensionsV1Api(api)
    crd = yaml.safe_load(SERVICE_MONITOR_CRD.read_text())
    try:
        extensions.create_custom_resource_definition(crd)
    except k8s_client.ApiException as exc:
        if exc.status != 409:  # already there from the other parameter
            raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status
        if status and any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.3)
    pytest.fail("the ServiceMonitor CRD was not established within 60 s")


def _dry_run(dynamic: DynamicClient, obj: dict[str, Any], namespace: str) -> None:
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    ns = namespace if resource.namespaced else None
    body = {**obj, "metadata": {**obj["metadata"], **({"namespace": ns} if ns else {})}}
    resource.create(body=body, namespace=ns, dry_run="All")


@pytest.mark.k8s
@pytest.mark.parametrize("values", ["default", "custom"])
def test_api_server_accepts_every_object(
    values: str, kube_api: Any, helm: Helm, custom_values: Path
) -> None:
    api = kube_api.client()
    try:
        _install_service_monitor_crd(api)
        namespace = _namespace(api, "privileged")  # the collector needs hostPID and hostPath
        objects = helm.template(namespace, *([custom_values] if values == "custom" else []))
        dynamic = DynamicClient(api)
        checked = []
        for obj in objects:
            if obj["kind"] in NOT_INSTALLABLE:
                continue
            try:
                _dry_run(dynamic, obj, namespace)
            except DynamicApiError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} refused: {exc.status} {exc.body}")
            checked.append(obj["kind"])
        assert {"DaemonSet", "Deployment", "Service", "ConfigMap", "ClusterRole"} <= set(checked)
        assert ("ServiceMonitor" in checked) == (values == "custom")
    finally:
        api.close()


@pytest.mark.k8s
def test_only_the_collector_needs_more_than_the_restricted_pod_security_level(
    kube_api: Any, helm: Helm, custom_values: Path
) -> None:
    """Pods from every template, created (dry run) in a namespace enforcing `restricted`: the
    worker, sink and k8s-meta pods are admitted; the collector's is refused by Pod Security."""
    api = kube_api.client()
    try:
        namespace = _namespace(api, "restricted")
        core = k8s_client.CoreV1Api(api)
        objects = helm.template(namespace, custom_values)
        for obj in by_kind(objects, "Deployment") + by_kind(objects, "DaemonSet"):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": obj["metadata"]["name"], "namespace": namespace},
                   "spec": obj["spec"]["template"]["spec"]}
            if obj["kind"] == "DaemonSet":
                with pytest.raises(k8s_client.ApiException) as refused:
                    core.create_namespaced_pod(namespace, pod, dry_run="All")
                assert refused.value.status == 403 and "restricted" in str(refused.value.body)
                for word in ("hostPID", "hostPath", "runAsNonRoot"):
                    assert word in str(refused.value.body), word
            else:
                core.create_namespaced_pod(namespace, pod, dry_run="All")
    finally:
        api.close()


def test_only_strimzi_topics_escape_server_side_validation(custom_objects: list[dict[str, Any]]) -> None:
    """KafkaTopic (kafka.strimzi.io/v1beta2) cannot be dry-run on the API server: Strimzi's CRDs are on
    no package registry this machine reaches (its Maven artifacts carry only Java classes), so
    test_strimzi_topics checks the fields the chart sets. Nothing else may be left unvalidated."""
    kinds = sorted({o["kind"] for o in custom_objects if o["kind"] in NOT_INSTALLABLE})
    assert kinds == ["KafkaTopic"]
