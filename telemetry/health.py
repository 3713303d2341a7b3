"""Readiness and liveness for Kubernetes probes, served beside the metrics: ``/readyz`` and ``/livez``.

A role says what it is waiting for (`Health.waiting`: "joined the consumer group", "rules loaded",
"probe attached") and clears each condition when it holds (`Health.holds`); it is ready when none is
left. A new `Health` waits on `STARTING` until the role calls `Health.started`, once it has declared
the conditions it starts with: the probe server is up before the role has said what it waits for,
and a role that has declared nothing yet (or only some of its conditions) is not ready. It proves it
is alive by beating (`Health.beat`) from the loop that does its work, each beat naming the longest
silence that is still healthy; it is live while no beat is overdue. A beat that was never given does
not count against liveness, so a role that is still starting is not killed for it (the readiness
probe keeps it out of service meanwhile).

Both answers are ``200 ok`` or ``503`` with one line per unmet condition or late beat: names chosen
by our code, never a value from outside. `Health` is thread-safe: roles update it from their event
loop or worker threads, and the HTTP server reads it from its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

Clock = Callable[[], float]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

STARTING: Final = "start"


def _starting() -> dict[str, str]:
    return {STARTING: "the role has not declared its conditions yet"}


@dataclass(slots=True)
class Health:
    clock: Clock = time.monotonic
    _waiting: dict[str, str] = field(default_factory=_starting)  # condition -> what is not there yet
    _beats: dict[str, tuple[float, float]] = field(default_factory=dict)  # loop -> (last, max silence)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def waiting(self, condition: str, why: str) -> None:
        with self._lock:
            self._waiting[condition] = why

    def started(self) -> None:
        """Every condition the role starts with is declared: from now on, none left means ready."""
        self.holds(STARTING)

    def holds(self, condition: str) -> None:
        with self._lock:
            self._waiting.pop(condition, None)

    def beat(self, loop: str, max_silence_s: float) -> None:
        now = self.clock()
        with self._lock:
            self._beats[loop] = (now, max_silence_s)

    def ready(self) -> list[str]:
        """What keeps the role from being ready; empty when it is (and alive)."""
        with self._lock:
            waiting = [f"waiting: {name} ({why})" for name, why in sorted(self._waiting.items())]
        return waiting + self.live()

    def live(self) -> list[str]:
        """The loops whose last beat is older than they allow; empty when alive."""
        now = self.clock()
        with self._lock:
            beats = sorted(self._beats.items())
        return [f"late: {name} silent {now - last:.0f}s (allowed {limit:.0f}s)"
                for name, (last, limit) in beats if now - last > limit]  # fmt: skip


def with_probes(health: Health, metrics_app: WsgiApp) -> WsgiApp:
    """A WSGI app answering ``/readyz`` and ``/livez`` from `health`, and the rest with the metrics."""
    checks = {"/readyz": health.ready, "/livez": health.live}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics_app(environ, start_response)
        problems = check()
        body = ("\n".join(problems) if problems else "ok").encode() + b"\n"
        status = "503 Service Unavailable" if problems else "200 OK"
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    return app
