"""`telemetry.health`: readiness from named conditions, liveness from beats, served as WSGI probes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.health import Health, with_probes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(app: Any, path: str) -> tuple[str, str]:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append(status)

    body: Iterable[bytes] = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response)
    return seen[0], b"".join(body).decode()


def test_ready_when_every_condition_holds_and_live_until_a_beat_is_late() -> None:
    clock = Clock()
    health = Health(clock)
    assert health.ready() == ["waiting: start (the role has not declared its conditions yet)"]
    assert health.live() == []
    health.waiting("consumer group", "no partitions assigned yet")
    health.waiting("probe", "not attached")
    assert len(health.ready()) == 3  # declared but not started: still waiting on the start
    health.started()
    assert health.ready() == [
        "waiting: consumer group (no partitions assigned yet)", "waiting: probe (not attached)"
    ]
    health.holds("probe")
    health.holds("probe")  # idempotent
    health.holds("consumer group")
    assert health.ready() == []
    health.beat("loop", 60)
    clock.now += 60
    assert health.live() == []
    clock.now += 1
    assert health.live() == ["late: loop silent 61s (allowed 60s)"]
    assert health.ready() == health.live()  # a wedged role is not ready either
    health.beat("loop", 60)
    assert health.live() == []


def test_probes_answer_200_or_503_and_the_rest_is_the_metrics_app() -> None:
    clock = Clock()
    health = Health(clock)

    def metrics(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"# metrics\n"]

    app = with_probes(health, metrics)
    assert call(app, "/readyz")[0].startswith("503")  # up before the role has declared anything
    health.started()
    assert call(app, "/readyz") == ("200 OK", "ok\n")
    health.waiting("topic", "not read back yet")
    status, body = call(app, "/readyz")
    assert status.startswith("503") and body == "waiting: topic (not read back yet)\n"
    assert call(app, "/livez") == ("200 OK", "ok\n")
    assert call(app, "/metrics") == ("200 OK", "# metrics\n")
    assert call(app, "/") == ("200 OK", "# metrics\n")
