"""From watch events to produced records: the publisher's loop body, without Kafka or a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from enrichers.config import K8sMetaConfig
from enrichers.errors import ConfigError
from enrichers.mirror import Produce, TopicMirror
from enrichers.records import decode, encode, services_from_service
from enrichers.service import Publisher, parse_args, pod_records
from enrichers.watch import Change, Snapshot

CID = "c" * 64


def pod(labels: dict[str, str], node: str = "n1", cid: str = CID, uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": uid, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx:1"}]},
        "status": {"containerStatuses": [{"name": "app", "containerID": f"containerd://{cid}"}]},
    }


def publisher(published: dict[bytes, bytes] | None = None, **config: Any) -> tuple[Publisher, Produce]:
    sent: Produce = []
    cfg = K8sMetaConfig(bootstrap_servers="x:9092", tombstone_grace_s=5, **config)
    return Publisher(cfg, TopicMirror(published or {}, cfg.tombstone_grace_s), sent.extend), sent


def test_pod_snapshot_change_and_delete_become_records_then_a_tombstone() -> None:
    pub, sent = publisher()
    pub.handle(Snapshot("pods", [pod({"app": "web"})], "10"), now=0)
    assert [k for k, _ in sent] == [CID.encode()]
    pub.handle(Change("pods", "MODIFIED", pod({"app": "web", "v": "2"})), now=1)
    assert decode(*sent[-1]).labels == {"app": "web", "v": "2"}  # type: ignore[union-attr]
    pub.handle(Change("pods", "MODIFIED", pod({"app": "web", "v": "2"})), now=2)  # status-only churn
    assert len(sent) == 2
    pub.handle(Change("pods", "DELETED", pod({"app": "web", "v": "2"})), now=3)
    pub.tick(now=7.9)
    assert len(sent) == 2
    pub.tick(now=8)
    assert sent[-1] == (CID.encode(), None)


def test_services_resolve_the_api_server_ip() -> None:
    pub, sent = publisher()
    svc = {"metadata": {"name": "kubernetes", "namespace": "default", "uid": "s1"},
           "spec": {"clusterIP": "10.96.0.1"}}
    pub.handle(Snapshot("services", [svc], "5"), now=0)
    assert sent == [encode(services_from_service(svc, "cluster.local")[0])]
    assert decode(*sent[0]).dns_name == "kubernetes.default.svc.cluster.local"  # type: ignore[union-attr]


def test_node_publisher_tombstones_only_its_own_nodes_orphans() -> None:
    other = "d" * 64
    [mine] = pod_records(pod({}, node="n1")).values()
    [theirs] = pod_records(pod({}, node="n2", cid=other)).values()
    pub, sent = publisher({CID.encode(): mine, other.encode(): theirs}, node="n1")
    pub.handle(Snapshot("pods", [], "10"), now=0)  # n1 has no pods any more
    pub.tick(now=10)
    assert sent == [(CID.encode(), None)]


def test_command_line_builds_the_config() -> None:
    cfg = parse_args(["--kubeconfig", "k.yaml", "--bootstrap-servers", "b:9092", "--node", "n1",
                      "--tombstone-grace", "30"])
    assert (cfg.kubeconfig, cfg.bootstrap_servers) == ("k.yaml", "b:9092")
    assert (cfg.node, cfg.tombstone_grace_s) == ("n1", 30)
    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", "k", "--in-cluster"])
    with pytest.raises(ConfigError, match="tombstone_grace_s"):
        K8sMetaConfig(bootstrap_servers="b", tombstone_grace_s=-1)
