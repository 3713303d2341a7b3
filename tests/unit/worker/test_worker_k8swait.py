"""The wait for a new container's Kubernetes record (`streams.k8swait`): which batches wait, once per
container id, within the bound, and the batch enriched again afterwards; against a real `K8sTable`."""

from __future__ import annotations

import asyncio

from enrichers.records import ContainerMeta, encode
from enrichers.table import K8sTable
from rules.record import (
    HOST_CONTAINER_ID,
    K_POD_NAME,
    P_CONTAINER,
    P_CONTAINER_ID,
    P_NAME,
    P_START,
    PROCESS_LEN,
    Process,
)
from streams.k8swait import Budget, K8sWait, NewContainers, Waited

NOW = 1_800_000_000_000_000_000
S = 1_000_000_000


def cid(n: int) -> str:
    return f"{n:064x}"


def meta(n: int) -> ContainerMeta:
    return ContainerMeta(
        container_id=cid(n), runtime="containerd", name="app", image="nginx:1", image_repository="nginx",
        image_tag="1", image_digest=None, privileged=False, start_ts=None, mounts=(), namespace="shop",
        pod_name=f"web-{n}", pod_uid=f"uid-{n}", labels={}, pod_ip=None, node="n1",
    )


def proc(container_id: str, start_ns: int = NOW, name: str = "sh") -> Process:
    p: Process = [None] * PROCESS_LEN
    p[P_CONTAINER_ID] = container_id
    p[P_START] = start_ns
    p[P_NAME] = name
    return p


def test_only_new_unknown_container_processes_are_waited_for_once_per_id() -> None:
    new = NewContainers(new_s=10.0)
    known = proc(cid(1))
    known[P_CONTAINER] = (1,)  # enriched already
    procs = [known, proc(HOST_CONTAINER_ID), proc(cid(2)), proc(cid(2)), proc(cid(3), NOW - 11 * S),
             proc(cid(4), NOW - 9 * S), proc(cid(5), NOW + 2 * S), proc(cid(6), None),  # type: ignore[arg-type]
             # a pod's sandbox, and runc's init before and after it names itself
             proc(cid(8), name="pause"), proc(cid(9), name="runc"), proc(cid(9), name="exe"),
             proc(cid(9), name="runc:[2:INIT]")]
    assert list(new.to_wait_for(procs, NOW)) == [cid(2), cid(4), cid(5)]
    # The same containers in the next batches: no second wait, whatever their processes.
    assert not new.to_wait_for([proc(cid(2)), proc(cid(4), NOW + 1)], NOW + S)
    assert new.to_wait_for([proc(cid(7))], NOW + S) == {cid(7): "sh"}
    # the container's own first process decides
    assert new.to_wait_for([proc(cid(9), name="sleep")], NOW + S) == {cid(9): "sleep"}


def test_remembered_ids_are_bounded_and_the_oldest_forgotten_first() -> None:
    new = NewContainers(max_ids=3)
    for n in range(5):
        assert list(new.to_wait_for([proc(cid(n))], NOW)) == [cid(n)]
    assert len(new) == 3
    assert list(new.to_wait_for([proc(cid(4)), proc(cid(0))], NOW)) == [cid(0)]  # 0 was forgotten, 4 kept


def test_a_batch_waits_until_the_feed_applies_its_container_then_is_enriched() -> None:
    table = K8sTable()
    wait = K8sWait(5.0, table.lookup, table.enrich)
    procs = [proc(cid(1)), proc(cid(1)), proc(HOST_CONTAINER_ID)]

    async def feed() -> None:
        await asyncio.sleep(0)
        table.apply(*encode(meta(9)))  # another container first: the batch keeps waiting
        wait.applied()
        await asyncio.sleep(0)
        table.apply(*encode(meta(1)))
        wait.applied()

    async def run() -> Waited | None:
        fed = asyncio.create_task(feed())
        waited = await wait.settle(procs, NOW)
        await fed
        return waited

    waited = asyncio.run(run())
    assert waited is not None and waited.found and waited.containers == 1
    assert waited.seconds < 5.0  # woken by the feed, not by the bound
    assert [p[P_CONTAINER][K_POD_NAME] for p in procs[:2]] == ["web-1", "web-1"]
    assert procs[2][P_CONTAINER] is None


def test_a_container_that_never_comes_costs_one_bounded_wait() -> None:
    table = K8sTable()
    wait = K8sWait(0.05, table.lookup, table.enrich)

    async def run() -> list[Waited | None]:
        return [await wait.settle([proc(cid(1))], NOW), await wait.settle([proc(cid(1))], NOW + S)]

    first, second = asyncio.run(run())
    assert first is not None and not first.found and first.seconds >= 0.05
    assert second is None  # already waited for: the next batches of that container go at once


def test_zero_turns_the_wait_off_and_a_known_container_never_waits() -> None:
    table = K8sTable()
    table.apply(*encode(meta(1)))
    off = K8sWait(0.0, table.lookup, table.enrich)
    assert asyncio.run(off.settle([proc(cid(2))], NOW)) is None
    assert len(off.new) == 0
    on = K8sWait(5.0, table.lookup, table.enrich)
    procs = [proc(cid(1))]
    table.enrich(procs)  # what decoding did
    assert asyncio.run(on.settle(procs, NOW)) is None


def test_a_node_announcing_new_containers_in_every_batch_gets_a_bounded_share_of_waiting() -> None:
    """Container ids and start times are the node's to say: past the budget, batches go at once."""
    table = K8sTable()
    wait = K8sWait(0.05, table.lookup, table.enrich, budget=Budget(share=0.0, burst=0.08))

    async def run() -> list[Waited | None]:
        return [await wait.settle([proc(cid(n))], NOW) for n in range(1, 5)]

    outcomes = asyncio.run(run())
    labels = [w.outcome for w in outcomes if w is not None]
    assert labels == ["timeout", "timeout", "over_budget", "over_budget"]
    first, second = (w for w in outcomes[:2] if w is not None)
    assert first.seconds >= 0.05 and second.seconds < 0.05  # the second got what was left
    assert all(w is not None and w.seconds == 0.0 for w in outcomes[2:])


def test_the_budget_accrues_a_share_of_the_time_up_to_its_burst() -> None:
    budget = Budget(share=0.1, burst=6.0)
    assert budget.available(100.0) == 6.0  # full at first use
    budget.spend(6.0)
    assert budget.available(110.0) == 1.0  # 10 s at 10%
    assert budget.available(1000.0) == 6.0  # never more than the burst
