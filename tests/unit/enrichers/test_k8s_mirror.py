"""The publisher's bookkeeping: only changes are produced, tombstones wait for the grace period."""

from __future__ import annotations

from enrichers.mirror import TopicMirror

POD = ("pods", "uid-1")


def every_key(_key: bytes, _value: bytes) -> bool:
    return True


def test_new_and_changed_records_are_produced_once() -> None:
    m = TopicMirror({}, grace_s=10)
    assert m.replace(POD, {b"c1": b"v1"}, now=0) == [(b"c1", b"v1")]
    assert m.replace(POD, {b"c1": b"v1"}, now=1) == []
    assert m.replace(POD, {b"c1": b"v2"}, now=2) == [(b"c1", b"v2")]


def test_deleted_object_is_tombstoned_after_the_grace_period_only() -> None:
    m = TopicMirror({}, grace_s=10)
    m.replace(POD, {b"c1": b"v1", b"c2": b"v2"}, now=0)
    m.remove(POD, now=5)
    assert m.due(now=14) == []
    assert sorted(m.due(now=15)) == [(b"c1", None), (b"c2", None)]
    assert m.due(now=100) == [] and m.published == {}


def test_container_that_goes_away_from_a_pod_is_tombstoned_and_one_that_returns_is_not() -> None:
    m = TopicMirror({}, grace_s=10)
    m.replace(POD, {b"old": b"v", b"keep": b"v"}, now=0)
    m.replace(POD, {b"keep": b"v", b"new": b"v"}, now=1)  # "old" restarted as "new"
    m.replace(("services", "s"), {b"svc:1": b"a"}, now=0)
    m.remove(("services", "s"), now=2)
    m.replace(("services", "t"), {b"svc:1": b"b"}, now=3)  # IP reused within the grace period
    assert m.due(now=20) == [(b"old", None)]
    assert m.published == {b"keep": b"v", b"new": b"v", b"svc:1": b"b"}


def test_restart_with_unchanged_cluster_produces_nothing_and_tombstones_what_vanished() -> None:
    published = {b"c1": b"v1", b"c2": b"v2", b"svc:1": b"s"}
    m = TopicMirror(dict(published), grace_s=10)
    out = m.sync("pods", {"uid-1": {b"c1": b"v1"}}, lambda key, _v: not key.startswith(b"svc:"), now=0)
    assert out == []
    assert m.due(now=10) == [(b"c2", None)]
    assert m.published == {b"c1": b"v1", b"svc:1": b"s"}  # the services watch answers for svc: keys


def test_relist_forgets_objects_missing_from_the_snapshot() -> None:
    m = TopicMirror({}, grace_s=0)
    m.sync("pods", {"uid-1": {b"c1": b"v"}, "uid-2": {b"c2": b"v"}}, every_key, now=0)
    assert m.sync("pods", {"uid-2": {b"c2": b"v"}}, every_key, now=1) == []
    assert m.due(now=1) == [(b"c1", None)]
