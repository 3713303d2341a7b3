"""The kernel drops what no loaded rule can match, and loses nothing a rule matches (issue #18 §2).

* Differential: two collectors capture the same workload at once, one applying the interest of
  Falco's three rules files and Peregrine's, one keeping every event of the types those rules
  name (`--no-interest`). The attack scenario's actions and a busy background (shells, a C
  compile, reading many files, sensitive files read) run in a container cgroup; the rules engine
  evaluates both captures' events of that cgroup, and the alerts must be exactly the same. The
  share of events the kernel dropped per event type is printed.
* Live switch: a marker process opens files under A/ and B/ and makes directories, numbered, while
  the collector applies rules A (opens under A/) and then, on SIGHUP, rules B (opens under B/ and
  pg-marker's mkdirat, a type not attached before). Every A open before the switch is there, with
  no gap; B's opens and mkdirats arrive from the switch on, with no gap. The marker renames its
  thread first (prctl PR_SET_NAME): proc.name stays the name at exec, and so does what the kernel
  tests, so the renamed marker's mkdirats are kept. Rules B also need a suffix and a substring:
  once B applies, a process opens 162 seeded random paths under P/, and the paths the kernel kept
  are exactly those the model of the probe (tests/interest_model.py) keeps with B's maps.
* Remembered names: the probe remembers a process's name mask per CPU (pg_comm_memos). A process
  pinned to one CPU opens files its name does not let through, then execs under a name that does
  (same tgid, same CPU): every open after the exec is kept. Another opens in a loop while a switch
  makes its name one a rule asks for: every open from the switch on is kept.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from collector_actions import (
    CGROUP2,
    Collector,
    capture_contents,
    container_cgroup,
    kubectl_binary,
    of_type,
    remove_cgroup_tree,
    run_under_pty,
    tempdir,
)
from interest_model import kernel_keeps, maps_of

import rules
from collectors.interest_plan import plan
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EV_TID,
    EVENT_TYPE_IDS,
    EVENT_TYPES,
    F_NAME,
    P_CONTAINER_ID,
    P_NAME,
    Event,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

REPO = Path(__file__).resolve().parents[2]
PEREGRINE_RULES = REPO / "rules" / "data" / "peregrine_rules.yaml"
FALCO_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")


def _final(collector: Collector) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    collector.stop()
    for line in reversed(collector.lines):
        if line.startswith('{"collector_final"'):
            summary = json.loads(line)
            return summary["collector_final"], summary["interest"]
    raise AssertionError("no final summary:\n" + collector.log()[-3000:])


def _lost(final: dict[str, int]) -> int:
    return final["ring_full"] + final["bug"] + final["userspace_queue_full"]


def _alert_keys(ruleset: rules.Ruleset, events: list[Event]) -> Counter[tuple[str, int, str]]:
    """Each alert as (rule, thread, output fields but the event's time): the two collectors time
    the same syscall apart by a few ns, each in its own program."""
    keys: Counter[tuple[str, int, str]] = Counter()
    for ev, rule in ruleset.evaluate(events):
        fields = dict(rules.build_alert(rule, ev)["output_fields"])  # type: ignore[call-overload]
        fields.pop("evt.time", None)
        keys[rule.name, ev[EV_TID], json.dumps(fields, sort_keys=True, default=str)] += 1
    return keys


def test_the_same_alerts_with_and_without_the_interest(tmp_path: Path, falco_rules_dir: Path) -> None:
    files = [*(falco_rules_dir / f for f in FALCO_FILES), PEREGRINE_RULES]
    rule_args = [arg for f in files for arg in ("--rules", str(f))]
    with_out, without_out = tmp_path / "with.cap", tmp_path / "without.cap"
    started = time.monotonic()
    filtering = Collector(["record", "--out", str(with_out), *rule_args])
    keeping = Collector(["record", "--out", str(without_out), "--no-interest", *rule_args])
    # both compile at once (the slow part), so both see the whole workload
    starters = [threading.Thread(target=c.start) for c in (filtering, keeping)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert filtering.alive() and keeping.alive(), filtering.log()[-2000:] + keeping.log()[-2000:]
    ready = time.monotonic()
    cid = secrets.token_hex(32)
    cgroup = container_cgroup(cid, str(uuid.uuid4()))
    work = tempdir()
    try:
        _workload(cgroup, work)
    finally:
        final_with, dropped = _final(filtering)
        final_without, _ = _final(keeping)
        remove_cgroup_tree(CGROUP2 / "kubepods.slice")
        shutil.rmtree(work, ignore_errors=True)
    assert _lost(final_with) == 0 and _lost(final_without) == 0, (final_with, final_without)
    ours = [[e for e in capture_contents(str(p))[0] if e[EV_PROC][P_CONTAINER_ID] == cid]
            for p in (with_out, without_out)]  # fmt: skip
    ruleset = rules.load(files, all_matches=True)
    with_alerts, without_alerts = (_alert_keys(ruleset, events) for events in ours)
    assert without_alerts, "the workload raises alerts"
    assert with_alerts == without_alerts
    per_type = Counter(EVENT_TYPES[e[0]] for e in ours[1])
    kept = Counter(EVENT_TYPES[e[0]] for e in ours[0])
    print(
        f"\ncollectors ready in {ready - started:.1f} s; workload events kept {len(ours[0])} of "
        f"{len(ours[1])}; "
        f"{sum(with_alerts.values())} alerts, {len(with_alerts)} distinct, the same with and without"
    )
    for name in sorted(per_type, key=lambda n: -per_type[n]):
        print(f"  {name:14} workload: {kept[name]:6} of {per_type[name]:6} kept")
    for name, reasons in sorted(dropped.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(reasons.values())
        share = 1 - reasons.get("kept", 0) / total
        print(f"  {name:14} node: {share:6.1%} of {total} dropped in the kernel {reasons}")
    # Falco's "Write below root" admits every path (fd.directory = /): only an alternative that also
    # carries its access mode (a write) lets the kernel drop the workload's reads (README: what it
    # narrows)
    if any(alt.accmodes for alt in ruleset.interest["openat"].alternatives):
        assert kept["openat"] < per_type["openat"] / 2, "the kernel drops most of the workload's opens"


def _workload(cgroup: Path, work: str) -> None:
    """The attack scenario's actions under a pty, then a busy background, in the container."""
    runc = os.path.join(work, "runc")
    shutil.copy("/bin/sh", runc)
    kubectl = kubectl_binary(work)
    Path(work, "x.c").write_text('#include <stdio.h>\nint main(void) { puts("x"); return 0; }\n')
    connect = os.path.join(work, "connect.py")
    Path(connect).write_text("import socket\ns = socket.socket()\ns.setblocking(False)\n"
                             "s.connect_ex(('10.96.0.1', 443))\n")  # fmt: skip
    attack = "; ".join(
        [
            f"{kubectl} get pods",
            f"/usr/bin/python3 -S {connect}",
            "unshare --uts true",
            "nsenter --uts=/proc/$$/ns/uts true",
            "apt-get --version > /dev/null",
            "cat /etc/shadow > /dev/null",
            "ls /root > /dev/null",
        ]
    )
    background = "; ".join(
        [
            f"cd {work}",
            "cc -c x.c -o x.o",
            "for i in 1 2 3; do sh -c 'ls /etc > /dev/null; id > /dev/null'; done",
            "find /usr/include -maxdepth 2 -name '*.h' | head -400 | xargs cat > /dev/null",
            "cat /etc/passwd /etc/hostname /proc/self/status > /dev/null",
            "touch y.txt",
            "rm y.txt",
        ]
    )
    run_under_pty([runc, "-c", f"echo $$ > {cgroup}/cgroup.procs; bash --norc -i -c '{attack}'; true"])
    subprocess.run(["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && {background}"], timeout=60, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


MARKER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char path[512];
    prctl(PR_SET_NAME, "renamed", 0, 0, 0); /* the task's comm; proc.name stays pg-marker */
    for (long i = 0; access(argv[2], F_OK) != 0; i++) {
        snprintf(path, sizeof path, "%s/A/%ld", argv[1], i);
        close(openat(AT_FDCWD, path, O_RDONLY));
        snprintf(path, sizeof path, "%s/B/%ld", argv[1], i);
        close(openat(AT_FDCWD, path, O_RDONLY));
        snprintf(path, sizeof path, "%s/M/%ld", argv[1], i);
        mkdirat(AT_FDCWD, path, 0700);
        printf("%ld\n", i);
        fflush(stdout);
        usleep(2000);
    }
    return 0;
}
"""
RULE = """
- rule: {name}
  desc: interest switch marker
  condition: {condition}
  output: marker %fd.name %evt.args
  priority: INFO
"""


def _indices(events: list[Event], type_name: str, under: str) -> list[int]:
    return sorted(int(e[EV_FD][F_NAME].rsplit("/", 1)[1]) for e in of_type(events, type_name)
                  if e[EV_FD] and str(e[EV_FD][F_NAME]).startswith(under))  # fmt: skip


def _mkdir_indices(events: list[Event], under: str) -> list[int]:
    ours = [e for e in of_type(events, "mkdirat") if str(e[EV_ARGS][2]).startswith(under)]
    assert {e[EV_PROC][P_NAME] for e in ours} <= {"pg-marker"}, "proc.name is the name at exec"
    return sorted(int(str(e[EV_ARGS][2]).rsplit("/", 1)[1]) for e in ours)  # res, dirfd, path, mode


OPENER = "import os, sys\nfor p in sys.argv[1:]:\n    try:\n        os.close(os.open(p, os.O_RDONLY))\n" \
         "    except OSError:\n        pass\n"
AFFIX_RULES = """
- rule: S
  desc: interest suffix marker
  condition: evt.type = openat and fd.name endswith _pgsuffix
  output: marker %fd.name
  priority: INFO
- rule: G
  desc: interest substring marker
  condition: evt.type = openat and fd.name contains /QZ9gram/
  output: marker %fd.name
  priority: INFO
"""


def _random_paths(base: Path) -> list[str]:
    """Paths under P/ that end with the suffix, hold the substring (also as the last gram), come
    close to either, are too long for a key or would be normalised."""
    rng = random.Random(18)
    pieces = ["x", "QZ9gram", "a_pgsuffix", "pgsuffix", "y" * 90, "ab/QZ9gr", "am", "QZ9", "Z9gram"]
    odd = [".", "..", ""]  # normalised by the collector: kept whole
    ends = ["", "/", "/_pgsuffix", "x_pgsuffix", "/QZ9gram/", "_pgsuffi", "/QZ9gram", "QZ9gram/"]
    out = []
    for _ in range(160):
        parts = rng.choices(pieces, k=rng.randint(1, 4))
        if rng.random() < 0.15:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(odd))
        out.append(f"{base}/P/" + "/".join(parts) + rng.choice(ends))
    return [*out, f"{base}/P/" + "y" * 250, f"{base}/P/" + "y" * 250 + "/QZ9gram/"]  # too long for a key


def _switch(collector: Collector, rules_file: Path, latest: list[int], text: str) -> tuple[int, int]:
    """Rewrite the rules, SIGHUP the collector, wait for its interest to apply: the marker's last
    index before the signal and once applied."""
    rules_file.write_text(text)
    before = latest[0]
    assert collector.proc is not None
    collector.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "interest applied" not in collector.log() and time.monotonic() < deadline:
        time.sleep(0.01)
    after = latest[0]
    assert "interest applied" in collector.log(), collector.log()[-2000:]
    return before, after


def test_a_live_switch_widens_before_it_narrows(tmp_path: Path) -> None:
    work = Path(tempdir())
    marker = work / "pg-marker"
    (work / "marker.c").write_text(MARKER_C)
    subprocess.run(["cc", "-O2", "-o", str(marker), str(work / "marker.c")], check=True)
    base, stop_file = work / "m", work / "stop"
    rules_file, out = tmp_path / "rules.yaml", tmp_path / "switch.cap"
    probe_paths = _random_paths(base)
    rules_file.write_text(
        RULE.format(name="A", condition=f"evt.type = openat and fd.name startswith {base}/A/")
    )
    collector = Collector(["record", "--out", str(out), "--rules", str(rules_file)]).start()
    latest = [-1]
    proc = subprocess.Popen([str(marker), str(base), str(stop_file)], stdout=subprocess.PIPE, text=True)

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            latest[0] = int(line)

    reading = threading.Thread(target=follow, daemon=True)
    reading.start()
    try:
        while latest[0] < 100:
            time.sleep(0.05)
        before, after = _switch(collector, rules_file, latest, (
            RULE.format(name="B", condition=f"evt.type = openat and fd.name startswith {base}/B/")
            + RULE.format(name="M", condition="evt.type = mkdirat and proc.name = pg-marker")
            + AFFIX_RULES
        ))
        while latest[0] < after + 100:
            time.sleep(0.05)
        subprocess.run([sys.executable, "-S", "-c", OPENER, *probe_paths], check=True, timeout=30)
    finally:
        stop_file.touch()
        proc.wait(10)
        reading.join(10)  # the marker's last line
        final, counts = _final(collector)
        last = latest[0]
        shutil.rmtree(work, ignore_errors=True)
    assert _lost(final) == 0, final
    events, _ = capture_contents(str(out))
    a, b = _indices(events, "openat", f"{base}/A/"), _indices(events, "openat", f"{base}/B/")
    m = _mkdir_indices(events, f"{base}/M/")
    print(
        f"\nswitch requested after {before}, applied by {after}, last {last}: A 0..{a[-1]}, "
        f"B {b[0]}..{b[-1]}, "
        f"mkdirat {m[0]}..{m[-1]}; kernel counts {counts}"
    )
    assert a == list(range(a[-1] + 1)) and a[-1] >= before, "every A open before the switch, no gap"
    assert a[-1] < last, "A's opens are dropped once B applies"
    assert b == list(range(b[0], last + 1)) and b[0] <= after + 1, "B's opens from the switch on, no gap"
    assert m == list(range(m[0], last + 1)) and m[0] <= after + 1, "mkdirat attached live, comm-checked"
    assert counts["openat"]["dropped-path"] > 0
    maps, openat = maps_of(plan(rules.load([rules_file]).interest)), EVENT_TYPE_IDS["openat"]
    modelled = {p for p in probe_paths if kernel_keeps(maps, openat, path=p.encode(), ret=-2)}
    kept = {str(e[EV_ARGS][2]) for e in of_type(events, "openat")} & set(probe_paths)
    assert 0 < len(modelled) < len(set(probe_paths)), "the paths try both ways"
    assert kept == modelled, (sorted(kept - modelled), sorted(modelled - kept))


NAMED_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
/* dir n [stop-file [exec-target exec-dir]]: opens dir/0.. (n of them, or until stop-file exists),
 * then execs exec-target, which opens exec-dir/0..49 */
int main(int argc, char **argv) {
    char path[512];
    long n = atol(argv[2]);
    for (long i = 0; n ? i < n : access(argv[3], F_OK) != 0; i++) {
        snprintf(path, sizeof path, "%s/%ld", argv[1], i);
        close(openat(AT_FDCWD, path, O_RDONLY));
        printf("%ld\n", i);
        fflush(stdout);
        if (!n)
            usleep(2000);
    }
    if (argc > 5) {
        execl(argv[4], argv[4], argv[5], "50", (char *)0);
        return 1;
    }
    return 0;
}
"""


def test_a_remembered_name_follows_exec_and_switches(tmp_path: Path) -> None:
    work = Path(tempdir())
    (work / "named.c").write_text(NAMED_C)
    subprocess.run(["cc", "-O2", "-o", str(work / "pg-other"), str(work / "named.c")], check=True)
    shutil.copy(work / "pg-other", work / "pg-named")
    base, stop_file = work / "N", work / "stop"
    rules_file, out = tmp_path / "rules.yaml", tmp_path / "names.cap"
    rules_file.write_text(RULE.format(
        name="named", condition=f"evt.type = openat and proc.name = pg-named and fd.name startswith {base}/"
    ))
    collector = Collector(["record", "--out", str(out), "--rules", str(rules_file)]).start()
    pinned = ["taskset", "-c", "0"]  # one CPU: the one whose memo the first opens fill
    latest = [-1]

    def follow(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            latest[0] = int(line)

    looping: list[tuple[subprocess.Popen[str], threading.Thread]] = []
    try:
        subprocess.run([*pinned, str(work / "pg-other"), f"{base}/o", "50", "-", str(work / "pg-named"),
                        f"{base}/n"], check=True, timeout=30, stdout=subprocess.DEVNULL)
        proc = subprocess.Popen([*pinned, str(work / "pg-other"), f"{base}/s", "0", str(stop_file)],
                                stdout=subprocess.PIPE, text=True)
        looping.append((proc, threading.Thread(target=follow, args=(proc,), daemon=True)))
        looping[0][1].start()
        while latest[0] < 50:
            time.sleep(0.05)
        other = f"evt.type = openat and proc.name = pg-other and fd.name startswith {base}/"
        before, after = _switch(collector, rules_file, latest, RULE.format(name="other", condition=other))
        while latest[0] < after + 50:
            time.sleep(0.05)
    finally:
        stop_file.touch()
        for proc, reading in looping:
            proc.wait(10)
            reading.join(10)
        final, counts = _final(collector)
        last = latest[0]
        shutil.rmtree(work, ignore_errors=True)
    assert _lost(final) == 0, final
    events, _ = capture_contents(str(out))
    assert _indices(events, "openat", f"{base}/o/") == [], "pg-other's opens are dropped by name"
    assert _indices(events, "openat", f"{base}/n/") == list(range(50)), "kept from the exec on"
    kept = _indices(events, "openat", f"{base}/s/")
    assert kept, "pg-other's opens are kept once the switch names it"
    print(f"\nswitch requested after {before}, applied by {after}, last {last}: kept {kept[0]}..{kept[-1]}; "
          f"kernel counts {counts}")
    assert kept == list(range(kept[0], last + 1)) and before < kept[0] <= after + 1, "from the switch on"
    assert counts["openat"]["dropped-comm"] >= 50 + before  # pg-other's, before the exec and the switch
