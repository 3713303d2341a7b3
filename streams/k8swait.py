"""A bounded wait for the Kubernetes metadata of a container that has just started.

k8s-meta keys a container by the id the kubelet reports in the pod's status, which it does only
once the container runs: its record reaches `peregrine.k8s` one to two seconds after the container's
first exec reached `peregrine.events`. Evaluated at once, that exec's alerts say
``k8s_pod_name=<NA>``. Falco has no such gap: it asks the node's CRI synchronously.

So when a batch holds processes of a container the table does not know, and the container is *new*
(a process of it started within `NEW_CONTAINER_S` of the worker's clock, so node and worker clocks
must agree within seconds), the agent waits for the table to learn it, at most ``max_wait_s``
(``--k8s-wait-new``; 0 turns it off), then enriches the batch again. Each container id is waited for
once (the ids are remembered, at most `MAX_REMEMBERED_IDS`), so containers that never appear (not
Kubernetes', short-lived ones already gone) cost one wait each, not one per batch. A pod's sandbox
never appears either (the pod status names only its containers) and starts with every pod, so
the sandbox's process and runc's init, which runs in every container's cgroup before its first
exec (`RUNTIME_NAMES`), decide no wait: the container's own first process does. A container that
names its process so only loses the pod of its first alerts, as without the wait.

The wait is an ``await`` on the event loop that also runs the table's feed (`streams.worker.follow_k8s`
calls `K8sWait.applied` after each fetch), and the agent waits *before* taking the commit gate
(`streams.detect.handle_message`): commits of the batches before it go on, and its own offset, not
acked until its alerts are sent, is never committed without them.

Limits: while one batch waits, the worker's agent evaluates nothing else (one agent per worker,
batches in order), so a node starting containers Kubernetes never reports stalls its worker up to
``max_wait_s`` per such container. Container ids and start times are the node's to say, so a
hostile node could announce a new container in every batch: the waiting is therefore budgeted
(`Budget`): at most `WAIT_SHARE` of the worker's time over the long run, with `max_wait_s` * 2
banked for a burst of pod starts. Past the budget a batch is evaluated at once, as with the wait off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from rules.record import HOST_CONTAINER_ID, P_CONTAINER, P_CONTAINER_ID, P_NAME, P_START, Process
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.k8swait")

# A container is new while its processes started at most this long ago (or ahead: clock skew).
NEW_CONTAINER_S: Final = 10.0
# Container ids already waited for; the oldest are forgotten first (one wait again at worst).
MAX_REMEMBERED_IDS: Final = 10_000
DEFAULT_MAX_WAIT_S: Final = 3.0
# The sandbox process of every pod (registry.k8s.io/pause, and k8s/node/pause.c on the test node), and
# runc's init in every container's cgroup before the container's own process: "runc", or "exe" when
# started through /proc/self/exe, until it names itself runc:[2:INIT] (both seen first in a new
# container's batch on the kubelet node; sandboxes waited the whole bound for "runc").
RUNTIME_NAMES: Final = frozenset({"pause", "runc", "exe"})
RUNC_INIT_PREFIX: Final = "runc:["
WAIT_SHARE: Final = 0.1  # of the worker's time that waiting may take, in the long run


@dataclass(slots=True)
class Budget:
    """Seconds of waiting allowed: `share` of the time that passes accrues, at most `burst` banked."""

    share: float
    burst: float
    _banked: float | None = None  # full at first use
    _at: float = 0.0

    def available(self, now: float) -> float:
        banked = self.burst if self._banked is None else self._banked + (now - self._at) * self.share
        self._banked, self._at = min(self.burst, banked), now
        return self._banked

    def spend(self, seconds: float) -> None:
        self._banked = (self._banked if self._banked is not None else self.burst) - seconds


@dataclass(slots=True)
class NewContainers:
    """Which unknown containers of a batch to wait for: new ones, each once."""

    new_s: float = NEW_CONTAINER_S
    max_ids: int = MAX_REMEMBERED_IDS
    _waited: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._waited)

    def to_wait_for(self, procs: Iterable[Process], now_ns: int) -> dict[str, object]:
        """The ids of new containers whose processes are not enriched, not waited for before, each
        with the name of its first such process (for the log); remembered as waited for from now on."""
        new_ns = self.new_s * 1e9
        waited = self._waited
        out: dict[str, object] = {}
        for p in procs:
            if p[P_CONTAINER] is not None:
                continue
            cid = p[P_CONTAINER_ID]
            if not isinstance(cid, str) or cid == HOST_CONTAINER_ID or cid in waited:
                continue
            name = p[P_NAME]
            if name in RUNTIME_NAMES or str(name).startswith(RUNC_INIT_PREFIX):
                continue
            start = p[P_START]
            if isinstance(start, int) and abs(now_ns - start) <= new_ns:
                waited[cid] = None
                out[cid] = name
        while len(waited) > self.max_ids:
            waited.popitem(last=False)
        return out


@dataclass(frozen=True, slots=True)
class Waited:
    containers: int  # new containers the batch waited for
    found: bool  # the table knew all of them in time
    seconds: float
    over_budget: bool = False  # not waited for: the budget was spent (`Budget`)

    @property
    def outcome(self) -> str:
        """The metric label: found, timeout or over_budget."""
        return "over_budget" if self.over_budget else "found" if self.found else "timeout"


class K8sWait:
    """The agent's side (`settle`) and the table feed's side (`applied`) of the wait."""

    def __init__(
        self,
        max_wait_s: float,
        known: Callable[[str], object],
        enrich: Callable[[Iterable[Process]], object],
        new: NewContainers | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.budget = Budget(WAIT_SHARE, 2 * max_wait_s) if budget is None else budget
        self.known = known  # the table's lookup: None while the container is unknown
        self.enrich = enrich
        self.new = NewContainers() if new is None else new
        self._applied = asyncio.Event()

    def applied(self) -> None:
        """The table feed folded in new records: wake a waiting batch to look again."""
        self._applied.set()

    async def settle(self, procs: list[Process], now_ns: int) -> Waited | None:
        """Wait, bounded, for the new unknown containers of a batch, then enrich it again; None when
        it had none to wait for (the common case: one pass over the batch's processes)."""
        if self.max_wait_s <= 0:
            return None
        ids = self.new.to_wait_for(procs, now_ns)
        if not ids:
            return None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        allowed = min(self.max_wait_s, self.budget.available(t0))
        if allowed <= 0:
            return Waited(len(ids), all(self.known(cid) is not None for cid in ids), 0.0, over_budget=True)
        deadline = t0 + allowed
        known = self.known
        found = False
        while True:
            if all(known(cid) is not None for cid in ids):
                found = True
                break
            left = deadline - loop.time()
            if left <= 0:
                break
            # Cleared only now, with no await since the check: a record applied in between sets it again.
            self._applied.clear()
            try:
                await asyncio.wait_for(self._applied.wait(), left)
            except TimeoutError:
                pass
        self.enrich(procs)
        seconds = loop.time() - t0
        self.budget.spend(seconds)
        # one line per wait, however many containers a (possibly hostile) batch names
        missing = [(cid, name) for cid, name in ids.items() if known(cid) is None]
        if missing:
            cid, name = missing[0]
            log.info("no Kubernetes record for %d new container(s), e.g. %s (process %s), after %.1f s; "
                     "evaluated without it", len(missing), cid[:12], shown(name), seconds)
        return Waited(len(ids), found, seconds)
