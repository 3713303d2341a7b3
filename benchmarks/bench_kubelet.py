"""The seed scenario on real pods, syscall -> receiver latency per rule: the kubelet node, Peregrine
installed by helm, `kubectl exec` in a pod (tests/cluster/test_kubelet_seed.py).

The measurement is the test's own (one place for how the scenario is set up and timed): this runs
those tests under pytest with ``--runs`` repetitions, each a fresh node and `helm install`, reads the
JSON lines they print (``{"kubelet_...": {rule: {"slack": ms, "syslog": ms}}}``: the alert's event
time to its first sight at the Slack stand-in and at rsyslogd, polled every 5 ms) and records the
median per rule and receiver. One alert per rule and run, so these are figures of a few samples
under whatever load the machine has.

Needs root, Kafka jars, helm and the image (./scripts/setup). Run: ``.venv/bin/python -m
benchmarks.bench_kubelet [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.results import record

REPO = Path(__file__).resolve().parents[1]
TESTS = "tests/cluster/test_kubelet_seed.py"


def one_run() -> dict[str, dict[str, float]]:
    """{rule: {receiver: ms}} from one pytest session of the seed scenario."""
    done = subprocess.run([sys.executable, "-m", "pytest", TESTS, "-s", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{TESTS} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    found: dict[str, dict[str, float]] = {}
    for line in done.stdout.splitlines():
        if not line.startswith('{"kubelet_'):
            continue
        (name, value), = json.loads(line).items()
        if name == "kubelet_shell_syscall_to_receiver_ms":
            found["Terminal shell in container"] = value
        elif name == "kubelet_sensitive_mount_syscall_to_receiver_ms":
            found["Launch Sensitive Mount Container"] = value
        else:
            found.update(value)
    return found


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench_kubelet needs root (a kubelet node, the collector's eBPF)")
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _ in range(args.runs):
        for rule, by_receiver in one_run().items():
            for receiver, ms in by_receiver.items():
                samples[(rule, receiver)].append(ms)
    for (rule, receiver), values in sorted(samples.items()):
        record(f"kubelet pod, helm-installed pipeline: syscall -> {receiver} latency, {rule}",
               f"{statistics.median(values):.0f} ms (median of {len(values)})", "goal p99 <= 1000 ms", None,
               len(values), {"load_avg_1m": round(os.getloadavg()[0], 1), "max_ms": round(max(values))})


if __name__ == "__main__":
    main()
