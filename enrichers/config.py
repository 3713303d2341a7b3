"""Settings of `peregrine k8s-meta`, the one-per-cluster metadata publisher."""

from __future__ import annotations

from dataclasses import dataclass, field

from bus import topics
from bus.connection import KafkaConnection, parse_bootstrap
from bus.security import KafkaSecurity
from enrichers.errors import ConfigError


@dataclass(frozen=True, slots=True)
class K8sMetaConfig:
    """Where to watch, where to publish, and how patient to be.

    ``kubeconfig`` None with ``in_cluster`` False means the default kubeconfig lookup
    ($KUBECONFIG, then ~/.kube/config). ``node`` restricts the pod watch to one node
    (field selector ``spec.nodeName``), for a per-node publisher in very large clusters.
    """

    bootstrap_servers: str
    kubeconfig: str | None = None
    in_cluster: bool = False
    context: str | None = None
    node: str | None = None
    topic: str = topics.K8S.name
    topic_partitions: int = 1
    topic_replication: int = 1
    cluster_domain: str = "cluster.local"
    # Tombstones wait this long after a container or service disappears, so late events enrich.
    tombstone_grace_s: float = 120.0
    # Server-side end of each watch request; the watch then resumes from the last resourceVersion.
    watch_timeout_s: int = 300
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    list_page_size: int = 500
    kafka: KafkaSecurity = field(default_factory=KafkaSecurity)  # TLS/SASL; its repr hides secrets

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ConfigError("bootstrap_servers: empty (give --bootstrap-servers host:port)")
        if self.in_cluster and self.kubeconfig:
            raise ConfigError("--in-cluster and --kubeconfig exclude each other")
        if self.tombstone_grace_s < 0:
            raise ConfigError(f"tombstone_grace_s: {self.tombstone_grace_s} is negative")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError(
                f"backoff: need 0 < initial ({self.backoff_initial_s}) <= max ({self.backoff_max_s})"
            )
        if self.watch_timeout_s <= 0 or self.list_page_size <= 0:
            raise ConfigError("watch_timeout_s and list_page_size must be positive")
        if self.topic_partitions <= 0 or self.topic_replication <= 0:
            raise ConfigError("topic_partitions and topic_replication must be positive")

    @property
    def connection(self) -> KafkaConnection:
        return KafkaConnection(parse_bootstrap(self.bootstrap_servers), self.kafka)
