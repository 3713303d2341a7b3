"""What `peregrine.k8s` holds, what it should hold, and the records that close the gap.

The publisher starts by reading the compacted topic into ``published`` (key -> value bytes), then
feeds every snapshot and watch change through `TopicMirror`. Each call returns the records to
produce. A record is produced only when its bytes differ from what the topic already holds, so a
restarted publisher that relists an unchanged cluster produces nothing: no duplicates. Keys that the
topic holds but the cluster no longer has (deleted while the publisher was down, or between a
watch that expired and the relist) get a tombstone, like every other disappearance, after
``grace_s`` seconds: late events still enrich, and a key that comes back in time is never
tombstoned.

Pure bookkeeping: no clock (callers pass ``now``), no I/O, no Kubernetes types. Not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

Owner = tuple[str, str]  # (resource, object uid)
Produce = list[tuple[bytes, bytes | None]]


class TopicMirror:
    def __init__(self, published: dict[bytes, bytes], grace_s: float) -> None:
        self.published = published
        self.grace_s = grace_s
        self._owned: dict[Owner, dict[bytes, bytes]] = {}
        self._owner_of: dict[bytes, Owner] = {}
        self._pending: dict[bytes, float] = {}

    @property
    def pending_tombstones(self) -> int:
        return len(self._pending)

    def replace(self, owner: Owner, records: Mapping[bytes, bytes], now: float) -> Produce:
        """The object ``owner`` now stands for exactly ``records``; returns what to produce."""
        out: Produce = []
        for key, value in records.items():
            self._owner_of[key] = owner
            self._pending.pop(key, None)
            if self.published.get(key) != value:
                self.published[key] = value
                out.append((key, value))
        previous = self._owned.get(owner, {})
        for key in previous.keys() - records.keys():
            self._release(owner, key, now)
        if records:
            self._owned[owner] = dict(records)
        else:
            self._owned.pop(owner, None)
        return out

    def remove(self, owner: Owner, now: float) -> None:
        """The object is gone: its keys are tombstoned once the grace period is over (see `due`)."""
        for key in self._owned.pop(owner, {}):
            self._release(owner, key, now)

    def sync(
        self,
        resource: str,
        snapshot: Mapping[str, Mapping[bytes, bytes]],
        in_scope: Callable[[bytes, bytes], bool],
        now: float,
    ) -> Produce:
        """A full list of ``resource`` (uid -> records) replaces everything known about it.

        ``in_scope(key, value)`` says which published records this resource's watch is
        responsible for (pods on this node, service IPs): those nobody owns any more are
        scheduled for a tombstone.
        """
        out: Produce = []
        for owner in [o for o in self._owned if o[0] == resource and o[1] not in snapshot]:
            self.remove(owner, now)
        for uid, records in snapshot.items():
            out += self.replace((resource, uid), records, now)
        for key, value in self.published.items():
            if key not in self._owner_of and key not in self._pending and in_scope(key, value):
                self._pending[key] = now + self.grace_s
        return out

    def due(self, now: float) -> Produce:
        """Tombstones whose grace period is over."""
        ready = [key for key, deadline in self._pending.items() if deadline <= now]
        out: Produce = []
        for key in ready:
            del self._pending[key]
            if key not in self._owner_of and self.published.pop(key, None) is not None:
                out.append((key, None))
        return out

    def _release(self, owner: Owner, key: bytes, now: float) -> None:
        # Another object may have taken the key since (a service IP handed to a new service).
        if self._owner_of.get(key) == owner:
            del self._owner_of[key]
            if key in self.published:
                self._pending[key] = now + self.grace_s


def records_by_uid(
    objects: Iterable[Mapping[str, object]], to_records: Callable[[Mapping[str, object]], dict[bytes, bytes]]
) -> dict[str, dict[bytes, bytes]]:
    """uid -> records for a snapshot's objects."""
    out: dict[str, dict[bytes, bytes]] = {}
    for obj in objects:
        meta = obj.get("metadata")
        uid = meta.get("uid") if isinstance(meta, Mapping) else None
        if isinstance(uid, str):
            out[uid] = to_records(obj)
    return out
