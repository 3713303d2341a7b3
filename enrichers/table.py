"""The worker's copy of `peregrine.k8s`, and the enrichment step that reads it per batch.

A worker feeds every record of the compacted topic to `K8sTable.apply` (from the beginning, so the
table starts as the cluster's state, then follows it). Container records are built once, when
their record arrives, so enrichment is a dict lookup and a slot store per process record: no
decoding, no allocation per event.

Limits: the table holds at most ``max_containers`` containers and ``max_services`` service IPs;
past that the least recently written entries go first (a cluster that large needs the limit
raised, and the eviction count says so). A process whose container is not in the table keeps
``P_CONTAINER = None``: its event is still evaluated, with the ``k8s.*`` fields missing, never
dropped. Not thread-safe: one table per worker process, fed and read by the same loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from enrichers.records import (
    SERVICE_KEY_PREFIX,
    ContainerMeta,
    ServiceMeta,
    decode,
    is_service_key,
    to_container_record,
)
from rules.record import HOST_CONTAINER_ID, P_CONTAINER, P_CONTAINER_ID, Container, Process

V = TypeVar("V")

DEFAULT_MAX_CONTAINERS = 500_000
DEFAULT_MAX_SERVICES = 200_000


@dataclass(slots=True)
class TableStats:
    """Counters a worker can export as metrics (cumulative since the table was made)."""

    applied: int = 0
    tombstones: int = 0
    evicted: int = 0
    enriched: int = 0
    unknown: int = 0  # lookups that missed (a container not, or not yet, in the table)


class K8sTable:
    """Container id -> container record, and service IP -> DNS name (``fd.sip.name``)."""

    __slots__ = ("_containers", "ip_names", "max_containers", "max_services", "stats")

    def __init__(
        self, max_containers: int = DEFAULT_MAX_CONTAINERS, max_services: int = DEFAULT_MAX_SERVICES
    ) -> None:
        self._containers: dict[str, Container] = {}
        self.ip_names: dict[str, str] = {}
        self.max_containers = max_containers
        self.max_services = max_services
        self.stats = TableStats()

    def __len__(self) -> int:
        return len(self._containers)

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Fold one topic record into the table; RecordError for a value that does not decode."""
        meta = decode(key, value)
        self.stats.applied += 1
        if meta is None:
            self.stats.tombstones += 1
            # keys that are not UTF-8 were never inserted: replacing bad bytes makes a harmless miss
            name = key.decode(errors="replace")
            if is_service_key(key):
                self.ip_names.pop(name[len(SERVICE_KEY_PREFIX) :], None)
            else:
                self._containers.pop(name, None)
        elif isinstance(meta, ServiceMeta):
            _put(self.ip_names, meta.ip, meta.dns_name, self.max_services, self.stats)
        else:
            self.put(meta)

    def apply_all(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            self.apply(key, value)

    def put(self, meta: ContainerMeta) -> None:
        """Insert metadata directly (benchmarks and tests that have no topic)."""
        _put(self._containers, meta.container_id, to_container_record(meta), self.max_containers, self.stats)

    def lookup(self, container_id: str) -> Container | None:
        return self._containers.get(container_id)

    def enrich(self, procs: Iterable[Process]) -> int:
        """Fill ``P_CONTAINER`` of every process whose container is known.

        Called once per decoded batch with its process records (events reference these, so one
        store per process enriches all its events). Processes already enriched are left alone.
        Returns how many container processes are still unknown (0: the batch is complete).
        """
        get = self._containers.get
        hit = miss = 0
        for p in procs:
            if p[P_CONTAINER] is None:
                cid = p[P_CONTAINER_ID]
                c = get(cid)
                if c is not None:
                    p[P_CONTAINER] = c
                    hit += 1
                elif cid != HOST_CONTAINER_ID:
                    miss += 1
        self.stats.enriched += hit
        self.stats.unknown += miss
        return miss


def _put(table: dict[str, V], key: str, value: V, limit: int, stats: TableStats) -> None:
    # Re-inserting moves the key to the end, so the front of the dict is the least recently written.
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]
        stats.evicted += 1
