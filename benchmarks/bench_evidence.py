"""What evidence (`streams.evidence`, `rules.evidence`) costs the worker's detection step.

The worker's own `Detector` decodes and evaluates realistic wire batches (the `bench_worker`
workload: 500 events per batch, 16 nodes in turn, Falco's stable + incubating rules, about one alert
per 850 events, far more than a quiet cluster raises), with evidence off, at the default (16 events
per alert from the alert's own batch), and with 2 and 8 earlier batches kept per node, alternating
run by run in one process with the worker's garbage-collector settings. Reports events/s of CPU time with
evidence and the ratio to evidence off (1.0 = free; the issue's goal is at least 0.9). A second row
repeats it with every batch alerting (a storm: `--storm`), where each alert reads the history.

    python -m benchmarks.bench_evidence [--batches 400] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.bench_worker import BATCH, NODES, RULES, node_order, wire_batch
from benchmarks.results import cpu_rate, record
from benchmarks.workload import make_events
from rules.record import EV_PROC, P_NAME, P_TTY, event_type_id
from streams.detect import Detector
from streams.evidence import History
from streams.metrics import worker_metrics
from streams.reload import LiveRules, falco_engine
from streams.worker import tune_gc


def _batches(n: int) -> list[bytes]:
    events = node_order(make_events(n * BATCH, seed=1))
    return [wire_batch(events[i : i + BATCH], NODES[k % len(NODES)], k // len(NODES))
            for k, i in enumerate(range(0, len(events), BATCH))]


def _storm(n: int) -> list[bytes]:
    """Every batch has a shell in a container with a terminal: "Terminal shell in container" fires."""
    events = node_order(make_events(n * BATCH, seed=2))
    execve = event_type_id("execve")
    shell = next((e for e in events if e[0] == execve and e[EV_PROC][P_NAME] == "bash"), None)
    if shell is not None:
        shell[EV_PROC][P_TTY] = 34816
    for i in range(0, len(events), BATCH):
        if shell is not None:
            events[i + BATCH // 2] = shell
    return [wire_batch(events[i : i + BATCH], NODES[k % len(NODES)], k // len(NODES))
            for k, i in enumerate(range(0, len(events), BATCH))]


def _measure(name: str, data: list[bytes], runs: int) -> None:
    live = LiveRules(falco_engine(), list(RULES), worker_metrics())
    detectors = {
        "off": Detector(live),
        "default (16 events, the alert's own batch)": Detector(live, history=History()),
        "depth 2 (and 2 earlier batches per node)": Detector(live, history=History(depth=2)),
        "depth 8": Detector(live, history=History(depth=8)),
    }
    plain = detectors["off"]
    alerts = sum(len(plain.evaluate(*plain.decode(d)).alerts) for d in data)
    shown = sum(len(e) for d in data for _, e in _evidence(detectors["depth 8"], d))
    tune_gc()  # the worker's collector settings: they decide what keeping batches costs

    def run(detector: Detector[object]) -> int:
        decode, evaluate = detector.decode, detector.evaluate
        for d in data:
            evaluate(*decode(d))
        return len(data) * BATCH

    rates: dict[str, list[float]] = {k: [] for k in detectors}
    for _ in range(runs):
        for key, detector in detectors.items():
            rates[key].append(cpu_rate(lambda: run(detector)))  # noqa: B023 - called at once
    off = statistics.median(rates["off"])
    for key in list(detectors)[1:]:
        on = statistics.median(rates[key])
        record(f"worker evidence cost, detection step, {name}, {key}",
               f"{on:,.0f} events/s (CPU time) with evidence", f"evidence off {off:,.0f} events/s", on / off,
               runs, {"batches": len(data), "alerts": alerts, "evidence_events": shown,
                      "on": [round(x) for x in rates[key]], "off": [round(x) for x in rates["off"]]})


def _evidence(detector: Detector[object], data: bytes) -> list[tuple[bytes, list[object]]]:
    import json

    found = detector.evaluate(*detector.decode(data))
    return [(k, json.loads(v).get("evidence", [])) for k, v in found.alerts]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    _measure("realistic mix", _batches(args.batches), args.runs)
    _measure("a shell alert in every batch", _storm(args.batches), args.runs)


if __name__ == "__main__":
    main()
