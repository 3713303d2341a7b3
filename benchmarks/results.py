"""Recording benchmark figures: one JSON line on stdout and one row in benchmarks/RESULTS.md.

Every benchmark measures its figure as the median of several runs and a baseline in the same
process, so the ratio stays meaningful on a loaded or different machine even when the absolute
figure does not.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = """# Benchmark results

One row per run, appended by the benchmarks in this folder (`python -m benchmarks.<name>`).
`figure` is the median of the runs; `ratio` compares it with the baseline named in the row,
measured in the same process on the same machine.

| date (UTC) | commit | machine | command | benchmark | figure | baseline | ratio | runs |
|---|---|---|---|---|---|---|---|---|
"""


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{os.cpu_count()} cores {cpu}, kernel {platform.release()}, Python {platform.python_version()}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=RESULTS.parent, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=RESULTS.parent, check=False, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def median_rate(fn: Callable[[], int], runs: int = 5) -> tuple[float, list[float]]:
    """Run fn (which returns how many items it processed) `runs` times; items per second."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates), rates


def cpu_rate(fn: Callable[[], int]) -> float:
    """Items per second of this process's CPU time for one run of fn (which returns the items)."""
    start = time.process_time()
    n = fn()
    return n / (time.process_time() - start)


def record(benchmark: str, figure: str, baseline: str, ratio: float | None, runs: int,
           extra: dict[str, object] | None = None) -> None:
    """Print the JSON line and append the row."""
    row = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "machine": machine(),
        "command": " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "benchmark": benchmark,
        "figure": figure,
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 3),
        "runs": runs,
        **(extra or {}),
    }
    print(json.dumps(row))
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    ratio_text = "" if ratio is None else f"{ratio:.3f}"
    with RESULTS.open("a") as f:
        f.write(f"| {row['date']} | {row['commit']} | {row['machine']} | `{row['command']}` | {benchmark} "
                f"| {figure} | {baseline} | {ratio_text} | {runs} |\n")
