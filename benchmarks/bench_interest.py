"""Interest benchmark (root): the traced workload's cost against the tracepoint floor, and what
leaves the node with and without the kernel's interest filter (issue #18 §3).

* Floor: the tracepoints the collector attaches for Falco's three rules files and Peregrine's,
  each with an empty program, against the collector with its interest, against no tracing. The
  workload is bench_collector's loadgen (one openat of a path no rule needs, plus 4 untraced
  getppid, per op) paced at 50k ops/s: CPU per op, in rounds of off / floor / on measured back to
  back, each ratio the median of the rounds' ratios. The unpaced storm's ops/s is compared the same
  way.
* Inside the kernel: the openat exit program's own time per run (bpf_stats), the collector's
  against the empty program's, which the workload's CPU per op shows only through the noise; and
  the least any filter of the path must run (LEAST_OPENAT), which splits the collector's cost into
  what reading the open costs on this kernel and what the collector's tests add. A run of both
  (`--only floor --only program`, or all) also gives the floor ratio the programs' time implies
  at the floor's CPU per op.
* A type no rule names: detached (what the collector does) or attached with a mode that drops
  every event at once (the alternative), and what attaching and detaching a type live costs.
* Leaving the node: two collectors record a node-like workload at once (compiles, shells, reading
  many files), one with the interest and one with `--no-interest`, so both see the same
  background; events and bytes per second of their captures.

    sudo .venv/bin/python -m benchmarks.bench_interest [--runs 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_collector import loadgen
from benchmarks.results import record
from collectors import loader
from rules.interest import TypeInterest

REPO = Path(__file__).resolve().parents[1]
FALCO = Path(os.environ.get("PEREGRINE_FALCO_RULES", REPO.parent / "shared" / "falco-rules"))
RULE_FILES = [
    *(FALCO / f for f in ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")),
    REPO / "rules" / "data" / "peregrine_rules.yaml",
]
UNWATCHED = "/usr/lib/os-release"  # opened by the loadgen: no rule of these files needs it
RATE = 50_000


def _interest(files: list[Path]) -> dict[str, TypeInterest]:
    import rules

    return dict(rules.load(files).interest)


# What any filter that tests an open's path in the kernel must run before its first test: the
# task, its saved registers, the path (openat's second argument, in si) copied onto the stack, the
# way the probe reads them (probe.bpf.c pg_regs_args, pg_read_user_words). Nothing is tested.
LEAST_OPENAT = """#include <uapi/linux/ptrace.h>
TRACEPOINT_PROBE(syscalls, sys_exit_openat) {
    u64 w[16];
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    if (bpf_probe_read_user(w, sizeof(w), (const void *)regs->si) < 0)
        return 1;
    return 0;
}"""


def floor_source(interest: dict[str, TypeInterest], least: bool = False) -> str:
    """An empty program on every tracepoint the collector attaches for this interest; with `least`,
    openat's exit runs LEAST_OPENAT."""
    attached = (set(interest) | loader.ALWAYS_TRACED) & loader.available_types()
    tps = sorted(tp for name in attached - {"procexit"} for tp in loader.tracepoints(name))
    progs = [
        LEAST_OPENAT if least and tp == "syscalls:sys_exit_openat" else
        f"TRACEPOINT_PROBE({tp.split(':')[0]}, {tp.split(':')[1]}) {{ return 0; }}"
        for tp in tps
    ]  # fmt: skip
    progs += ["TRACEPOINT_PROBE(sched, sched_process_exec) { return 0; }",
              "TRACEPOINT_PROBE(sched, sched_process_exit) { return 0; }",
              "RAW_TRACEPOINT_PROBE(sched_process_fork) { return 0; }"]  # fmt: skip
    return "\n".join(progs) + "\n"


def _loadgen_fate(interest: dict[str, TypeInterest], exe: str) -> str:
    """What these rules make of the loadgen's opens (read-only, successful): untraced, dropped in
    the kernel, or needed."""
    from rules import record as R
    from rules.interest import admits

    if "openat" not in interest:
        return "untraced"
    ev: list[object] = [None] * R.EVENT_LEN
    ev[R.EV_TYPE], ev[R.EV_RES] = R.EVENT_TYPE_IDS["openat"], 3
    args: list[object] = [None] * len(R.EVENT_PARAM_INDEX[R.EVENT_TYPE_IDS["openat"]])
    args[R.EVENT_PARAM_INDEX[R.EVENT_TYPE_IDS["openat"]]["flags"]] = os.O_RDONLY
    proc: list[object] = [None] * R.PROCESS_LEN
    proc[R.P_NAME] = Path(exe).name[:15]
    fd: list[object] = [None] * R.FD_LEN
    fd[R.F_NAME] = UNWATCHED
    ev[R.EV_ARGS], ev[R.EV_PROC], ev[R.EV_FD] = args, proc, fd
    return "kept" if admits(interest, ev) else "dropped"


def _pinned(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that binds the child to `cpus` (None: leave it where the scheduler puts it)."""
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


def run_load(exe: str, rate: int, seconds: float, cpus: frozenset[int] | None = None) -> dict[str, float]:
    out = subprocess.run([exe, str(rate), str(seconds), UNWATCHED, "4"], check=True, capture_output=True,
                         text=True, preexec_fn=_pinned(cpus)).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


class Collector:
    """`peregrine record` with the rules files, started and stopped around a measurement."""

    def __init__(self, files: list[Path], out: str, *extra: str, cpus: frozenset[int] | None = None) -> None:
        args = [a for f in files for a in ("--rules", str(f))]
        argv = [sys.executable, "-m", "collectors.service", "record", "--out", out, *args, *extra]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            preexec_fn=_pinned(cpus),
        )  # fmt: skip
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "collector ready" in line:
                return
        raise RuntimeError("collector did not start")

    def stop(self) -> dict[str, object]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=180)
        for line in reversed(err.splitlines()):
            if line.startswith('{"collector_final"'):
                summary: dict[str, object] = json.loads(line)
                return summary
        raise RuntimeError("no final summary")


def per_op(r: dict[str, float]) -> float:
    return r["cpu"] / r["ops"]


def floor_vs_collector(files: list[Path], exe: str, runs: int, seconds: float, tmp: Path, pin: bool) -> float:
    """With `pin` (two CPUs or more), the workload runs on CPU 0 and the collector on the others, in
    every round alike: the probe runs in the workload's context either way, and the rounds no
    longer differ by where the scheduler put the two and what it migrated."""
    from bcc import BPF

    count = os.cpu_count() or 1
    load_cpus = frozenset({0}) if pin and count >= 2 else None
    other_cpus = frozenset(range(1, count)) if load_cpus is not None else None

    interest = _interest(files)
    fate = _loadgen_fate(interest, exe)
    off, floor, on = [], [], []
    off_free, floor_free, on_free = [], [], []
    t0 = time.monotonic()
    empty = BPF(text=floor_source(interest))
    compile_floor = time.monotonic() - t0
    empty.cleanup()
    starts = []
    for i in range(runs):
        off.append(run_load(exe, RATE, seconds, load_cpus))
        off_free.append(run_load(exe, 0, seconds, load_cpus))
        empty = BPF(text=floor_source(interest))
        floor.append(run_load(exe, RATE, seconds, load_cpus))
        floor_free.append(run_load(exe, 0, seconds, load_cpus))
        empty.cleanup()
        t0 = time.monotonic()
        c = Collector(files, str(tmp / f"on{i}.cap"), cpus=other_cpus)
        starts.append(time.monotonic() - t0)
        on.append(run_load(exe, RATE, seconds, load_cpus))
        on_free.append(run_load(exe, 0, seconds, load_cpus))
        counts = c.stop().get("interest", {})
        print(json.dumps({"round": i, "interest": counts.get("openat")}), file=sys.stderr)  # type: ignore[attr-defined]
    to_floor = [per_op(x) / per_op(f) for x, f in zip(on, floor, strict=True)]
    to_off = [per_op(x) / per_op(o) for x, o in zip(on, off, strict=True)]
    floor_to_off = [per_op(f) / per_op(o) for f, o in zip(floor, off, strict=True)]
    extra = {
        "on_to_floor": [round(r, 3) for r in to_floor],
        "on_to_off": [round(r, 3) for r in to_off],
        "floor_to_off": [round(r, 3) for r in floor_to_off],
        "loadavg": os.getloadavg()[0],
        "collector_start_s": [round(s, 1) for s in starts],
        "floor_compile_s": round(compile_floor, 1),
        "rules": [f.name for f in files],
        "loadgen_opens": fate,
        "workload_cpus": None if load_cpus is None else sorted(load_cpus),
    }
    record(
        f"interest: workload CPU per op at 50k ev/s, collector with interest vs the tracepoint floor "
        f"({', '.join(f.name for f in files)}: the loadgen's opens {fate})",
        f"{statistics.median(map(per_op, on)) * 1e9:.0f} ns/op on",
        f"floor {statistics.median(map(per_op, floor)) * 1e9:.0f} ns/op (goal ratio <= 1.05)",
        statistics.median(to_floor),
        runs,
        extra,
    )
    record(
        "interest: workload CPU per op at 50k ev/s, collector with interest vs no tracing",
        f"{statistics.median(map(per_op, on)) * 1e9:.0f} ns/op on",
        f"off {statistics.median(map(per_op, off)) * 1e9:.0f} ns/op",
        statistics.median(to_off),
        runs,
    )

    def rate(r: dict[str, float]) -> float:
        return r["ops"] / r["elapsed"]

    record(
        "interest: unpaced workload ops/s, collector with interest vs the tracepoint floor",
        f"{statistics.median(map(rate, on_free)):.0f} ops/s on",
        f"floor {statistics.median(map(rate, floor_free)):.0f} ops/s, off "
        f"{statistics.median(map(rate, off_free)):.0f} ops/s",
        statistics.median(rate(x) / rate(f) for x, f in zip(on_free, floor_free, strict=True)),
        runs,
    )
    return statistics.median(map(per_op, floor)) * 1e9


def _program_times(pid: int) -> dict[str, tuple[int, int]]:
    """prog id -> (run_time_ns, run_cnt) of the BPF programs process `pid` holds, from fdinfo."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            lines = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
        except OSError:
            continue
        info = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
        out[info["prog_id"].strip()] = (int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0)))
    return out


def _busiest_run_ns(pid: int, exe: str, seconds: float) -> float:
    """Kernel ns per run of the program of `pid` that the paced loadgen runs most (its openat's)."""
    before = _program_times(pid)
    run_load(exe, RATE, seconds)
    after = _program_times(pid)
    ns, n = max(((after[k][0] - t, after[k][1] - c) for k, (t, c) in before.items() if k in after),
                key=lambda d: d[1])
    return ns / max(n, 1)


def program_cost(
    files: list[Path], exe: str, runs: int, seconds: float, tmp: Path
) -> tuple[float, float, float]:
    """What a loadgen open costs inside the kernel, which the workload's CPU per op measures only
    through the noise of a shared machine (its rounds' floor/no-tracing ratios vary by 0.15): the
    kernel's own time per run of the openat exit program (kernel.bpf_stats_enabled, which adds
    its clock reads to both sides), the collector's with its interest against the empty one and
    the least a path filter runs. Returns the three medians (ns per run)."""
    from bcc import BPF

    interest = _interest(files)
    switch = Path("/proc/sys/kernel/bpf_stats_enabled")
    was = switch.read_text().strip()
    on, empty_ns, least_ns = [], [], []
    switch.write_text("1")
    try:
        for i in range(runs):
            empty = BPF(text=floor_source(interest))
            empty_ns.append(_busiest_run_ns(os.getpid(), exe, seconds))
            empty.cleanup()
            least = BPF(text=floor_source(interest, least=True))
            least_ns.append(_busiest_run_ns(os.getpid(), exe, seconds))
            least.cleanup()
            c = Collector(files, str(tmp / f"prog{i}.cap"))
            on.append(_busiest_run_ns(c.proc.pid, exe, seconds))
            c.stop()
    finally:
        switch.write_text(was)
    on_ns, floor_ns = statistics.median(on), statistics.median(empty_ns)
    record(
        f"interest: kernel ns per run of the openat exit program at 50k opens/s (bpf_stats), collector "
        f"with interest vs an empty program ({', '.join(f.name for f in files)}: the loadgen's opens "
        f"{_loadgen_fate(interest, exe)})",
        f"{on_ns:.0f} ns per run",
        f"empty program {floor_ns:.0f} ns per run",
        on_ns / floor_ns,
        runs,
        {"on_ns": [round(x) for x in on], "empty_ns": [round(x) for x in empty_ns],
         "extra_ns_per_open": round(on_ns - floor_ns), "loadavg": os.getloadavg()[0]},  # fmt: skip
    )
    least_med = statistics.median(least_ns)
    record(
        "interest: kernel ns per run of the openat exit program (bpf_stats), the least a path filter "
        "runs (the task, its registers, the path copied; no test) vs an empty program; the collector's "
        "tests are the rest",
        f"{least_med:.0f} ns per run",
        f"empty program {floor_ns:.0f} ns per run, collector {on_ns:.0f}",
        least_med / floor_ns,
        runs,
        {"least_ns": [round(x) for x in least_ns], "collector_over_least_ns": round(on_ns - least_med)},
    )
    return on_ns, floor_ns, least_med


def implied_floor_ratio(
    floor_op_ns: float, on_ns: float, empty_ns: float, least_ns: float, runs: int
) -> None:
    """The floor ratio the programs' own time implies (the loadgen runs the openat exit program once
    per op, in its own context): what the workload's CPU per op cannot resolve through its noise,
    for the collector and for the least a path filter runs."""
    record(
        "interest: floor ratio implied by the openat exit program's time (bpf_stats) at the floor's "
        "CPU per op, collector vs the least a path filter runs",
        f"{1 + (on_ns - empty_ns) / floor_op_ns:.3f} collector",
        f"least path filter {1 + (least_ns - empty_ns) / floor_op_ns:.3f} (goal <= 1.05), "
        f"floor {floor_op_ns:.0f} ns/op",
        (floor_op_ns + on_ns - empty_ns) / (floor_op_ns + least_ns - empty_ns),
        runs,
    )


def no_rule_cost(exe: str, runs: int, seconds: float) -> None:
    """A type no rule names: detached, or attached with a mode that drops every event at its
    program's first test (what keeping every program attached would cost). The probe is loaded in
    this process (which it never traces) and the loadgen's openats are the type in question."""
    from collectors.btf import Btf
    from collectors.interest_maps import apply_interest

    cflags, traced, missing = loader.build_cflags(Btf.load(), {"execve"}, os.getpid(), 1 << 20)
    t0 = time.monotonic()
    probe = loader.load_probe(cflags, traced, missing)
    compile_s = time.monotonic() - t0
    apply_interest(probe, {"execve": TypeInterest("execve", ())})
    t0 = time.monotonic()
    loader.attach(probe, "openat")
    attach_ms = (time.monotonic() - t0) * 1e3
    t0 = time.monotonic()
    loader.detach_type(probe, "openat")
    detach_ms = (time.monotonic() - t0) * 1e3
    detached, attached = [], []
    for _ in range(runs):
        detached.append(run_load(exe, RATE, seconds))
        loader.attach(probe, "openat")
        attached.append(run_load(exe, RATE, seconds))
        loader.detach_type(probe, "openat")
    probe.bpf.cleanup()
    ratios = [per_op(a) / per_op(d) for a, d in zip(attached, detached, strict=True)]
    record(
        "interest: workload CPU per op at 50k ev/s, a type no rule names attached (dropped at once) "
        "vs detached",
        f"{statistics.median(map(per_op, attached)) * 1e9:.0f} ns/op attached",
        f"detached {statistics.median(map(per_op, detached)) * 1e9:.0f} ns/op",
        statistics.median(ratios),
        runs,
        {
            "pair_ratios": [round(r, 3) for r in ratios],
            "attach_ms": round(attach_ms, 2),
            "detach_ms": round(detach_ms, 2),
            "probe_compile_s": round(compile_s, 2),
            "loadavg": os.getloadavg()[0],
        },
    )


NODE_WORKLOAD = """
cd {work}
printf '#include <stdio.h>\\nint main(void) {{ puts("x"); return 0; }}\\n' > x.c
end=$(( $(date +%s) + {seconds} ))
while [ $(date +%s) -lt $end ]; do
  cc -c x.c -o x.o
  find /usr/include -maxdepth 2 -name '*.h' | head -300 | xargs cat > /dev/null
  for i in 1 2 3 4 5; do sh -c 'ls /etc > /dev/null; id > /dev/null; cat /etc/hostname > /dev/null'; done
  ps aux > /dev/null
done
"""


def _window(cap: Path, start_ns: int, end_ns: int) -> tuple[int, int]:
    """Events and encoded bytes of the capture's batches that began inside the window: the two
    collectors start and stop apart, so only the window both saw whole compares."""
    from collectors.capture import read_capture
    from collectors.wire import decode_batch

    events = size = 0
    for frame in read_capture(str(cap)):
        if frame.kind == "events":
            batch = decode_batch(frame.value)
            if start_ns <= batch.t_first < end_ns:
                events += len(batch.events)
                size += len(frame.value)
    return events, size


def leaving_the_node(files: list[Path], seconds: float, tmp: Path) -> None:
    with_cap, without_cap = tmp / "with.cap", tmp / "without.cap"
    filtering = Collector(files, str(with_cap))
    keeping = Collector(files, str(without_cap), "--no-interest")
    t0 = time.time_ns()
    subprocess.run(["sh", "-c", NODE_WORKLOAD.format(work=tmp, seconds=int(seconds))], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    t1 = time.time_ns()
    with_final = filtering.stop()
    keeping.stop()
    elapsed = (t1 - t0) / 1e9
    (ev_with, b_with), (ev_without, b_without) = (_window(c, t0, t1) for c in (with_cap, without_cap))
    extra = {"interest": with_final["interest"], "seconds": round(elapsed, 1), "loadavg": os.getloadavg()[0]}
    record(
        "interest: events/s leaving the node, node-like workload (compiles, shells, file reads)",
        f"{ev_with / elapsed:,.0f} events/s with interest",
        f"{ev_without / elapsed:,.0f} events/s without",
        ev_with / ev_without,
        1,
        extra,
    )
    record(
        "interest: bytes/s leaving the node, same run",
        f"{b_with / elapsed / 1e3:,.1f} kB/s with interest",
        f"{b_without / elapsed / 1e3:,.1f} kB/s without",
        b_with / b_without,
        1,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--only", choices=("floor", "program", "no-rule", "node"), action="append",
                   help="run only these parts (repeatable; default: all)")  # fmt: skip
    p.add_argument("--no-pin", action="store_true", help="floor: leave the workload and the collector where "
                   "the scheduler puts them (default: the workload on CPU 0, the collector on the others)")
    p.add_argument(
        "--rules",
        action="append",
        type=Path,
        default=[],
        help="rules files (default: Falco's three and Peregrine's)",
    )
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_interest needs root (it loads eBPF programs)", file=sys.stderr)
        return 2
    exe = loadgen()
    files = args.rules or RULE_FILES
    parts = set(args.only or ("floor", "program", "no-rule", "node"))
    with tempfile.TemporaryDirectory(prefix="pg-bench-interest-") as d:
        floor_op_ns = None
        if "floor" in parts:
            floor_op_ns = floor_vs_collector(files, exe, args.runs, args.seconds, Path(d), not args.no_pin)
        if "program" in parts:
            programs = program_cost(files, exe, args.runs, min(args.seconds, 3.0), Path(d))
            if floor_op_ns is not None:
                implied_floor_ratio(floor_op_ns, *programs, args.runs)
        if "no-rule" in parts:
            no_rule_cost(exe, args.runs, args.seconds)
        if "node" in parts:
            leaving_the_node(files, args.seconds, Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
