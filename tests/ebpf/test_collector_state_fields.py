"""Fields the collector keeps as process or fd state, proven on the real kernel with the Falco rule
that depends on each firing end to end (issue #14 §2).

* proc.env: read at exec from the new image's mm (cut at 4096 bytes, as Falco cuts it) and from
  /proc/PID/environ for processes seeded at start. Falco's incubating rules on GLIBC_TUNABLES and
  HTTP_PROXY must fire, and `proc.env[NAME]` must give a seeded process's value.
* proc.cwd: chdir and fchdir are traced whatever the rules select, and exec carries the real
  working directory, so a relative open names the file where it is. "Read sensitive file
  untrusted" must fire for `shadow` opened after chdir("/etc"), for a file of /etc/pam.d opened
  after fchdir, and for a process exec'd in /etc, with the collector capturing for
  falco_rules.yaml only (which selects neither chdir nor fchdir).
* listen: the event carries the listening socket, named as Falco names a server socket, so
  Falco's `inbound` macro ("Interpreted procs inbound network activity") fires for a socket
  listening on the node's address and, as in Falco, not for one on 0.0.0.0.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from collector_actions import Collector, capture_contents, of_type

import rules
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EVENT_TYPES,
    F_CIP,
    F_IS_SERVER,
    F_NAME,
    F_SIP,
    F_SPORT,
    F_TYPECHAR,
    P_ARGS,
    P_CWD,
    P_ENV,
    P_NAME,
    Event,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PYTHON = "/usr/bin/python3"
ENV_RULE = "Potential Local Privilege Escalation via Environment Variables Misuse"
PROXY_RULE = "Program run with disallowed http proxy env"
SEEDED_RULE = "Peregrine test - proc.env of a seeded process"
SENSITIVE_RULE = "Read sensitive file untrusted"
INBOUND_RULE = "Interpreted procs inbound network activity"
ENABLE = "- rule: {}\n  enabled: true\n"  # rules Falco ships disabled
SEEDED = f"""
- rule: {SEEDED_RULE}
  desc: proc.env[NAME] of a process seeded from /proc
  condition: evt.type = openat and proc.env[PEREGRINE_SEEDED] = here-before-the-collector
  output: seeded %proc.env[PEREGRINE_SEEDED]
  priority: NOTICE
"""


def _alerts(paths: list[Path], events: list[Event]) -> list[dict[str, object]]:
    ruleset = rules.load(paths, all_matches=True)
    return [rules.build_alert(rule, ev) for ev, rule in ruleset.evaluate(events)]


def _fired(alerts: list[dict[str, object]], rule: str, marker: str) -> list[dict[str, object]]:
    """Alerts of `rule` whose output holds `marker` (this test's processes, not the machine's)."""
    return [a for a in alerts if a["rule"] == rule and marker in str(a["output"])]


def _collect(out: Path, rule_files: list[Path]) -> Collector:
    args = ["record", "--out", str(out)]
    for f in rule_files:
        args += ["--rules", str(f)]
    return Collector(args).start()


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", **extra}


def test_proc_env_at_exec_and_from_proc_makes_the_env_rules_fire(
    tmp_path: Path, falco_rules_dir: Path
) -> None:
    enable, seeded_rule = tmp_path / "enable.yaml", tmp_path / "seeded.yaml"
    enable.write_text(ENABLE.format(PROXY_RULE))
    seeded_rule.write_text(SEEDED)
    files = [falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-incubating_rules.yaml",
             enable, seeded_rule]
    marker = f"pgenv{os.getpid()}"
    # started before the collector: its environment can only come from /proc at seeding
    seeded = subprocess.Popen(
        [PYTHON, "-c", f"import sys; sys.stdin.readline(); open('/etc/hostname').close()  # {marker}"],
        stdin=subprocess.PIPE, env=_env(PEREGRINE_SEEDED="here-before-the-collector"),
    )
    out = tmp_path / "env.cap"
    collector = _collect(out, files)
    try:
        assert seeded.stdin is not None
        seeded.stdin.write(b"go\n")
        seeded.stdin.flush()
        assert seeded.wait(30) == 0
        subprocess.run(["/bin/sh", "-c", f"exit 0  # {marker}"], check=True,
                       env=_env(GLIBC_TUNABLES="glibc.malloc.mxfast=0"))
        subprocess.run(["curl", "--version", marker], check=False, stdout=subprocess.DEVNULL,
                       env=_env(HTTP_PROXY="http://203.0.113.9:3128"))
        subprocess.run(["/bin/sh", "-c", f"exit 0  # {marker} big"], check=True,
                       env=_env(BIG="x" * 20_000, AFTER="cut"))
    finally:
        collector.stop()
        seeded.kill()
    events, _ = capture_contents(str(out))
    execs = {" ".join(e[EV_PROC][P_ARGS]): e for e in of_type(events, "execve")
             if marker in str(e[EV_PROC][P_ARGS])}
    tunables = execs[f"-c exit 0  # {marker}"][EV_PROC][P_ENV]
    assert "GLIBC_TUNABLES=glibc.malloc.mxfast=0" in tunables and "PATH=/usr/bin:/bin" in tunables
    big = execs[f"-c exit 0  # {marker} big"][EV_PROC][P_ENV]
    assert len("\0".join(big)) <= 4096 and big[0] == "PATH=/usr/bin:/bin", "cut at 4096 bytes"
    assert not any(v.startswith("AFTER=") for v in big)

    alerts = _alerts(files, events)
    tunables_alerts = _fired(alerts, ENV_RULE, marker)
    assert len(tunables_alerts) == 1, [a["rule"] for a in alerts]
    assert "env=PATH=/usr/bin:/bin GLIBC_TUNABLES=glibc.malloc.mxfast=0" in str(tunables_alerts[0]["output"])
    assert len(_fired(alerts, PROXY_RULE, marker)) == 1
    assert [a["output"] for a in alerts if a["rule"] == SEEDED_RULE and "here-before" in str(a["output"])]


def test_cwd_follows_chdir_fchdir_and_exec_so_relative_opens_fire_the_sensitive_file_rule(
    tmp_path: Path, falco_rules_dir: Path
) -> None:
    stable = falco_rules_dir / "falco_rules.yaml"
    selected = {EVENT_TYPES[i] for i in rules.load(stable).event_type_ids}
    assert not selected & {"chdir", "fchdir"}, "the rules alone would not trace chdir/fchdir"
    marker = f"pgcwd{os.getpid()}"
    script = (
        "import os\n"
        "os.chdir('/etc'); open('shadow').close()\n"
        "fd = os.open('/etc/pam.d', os.O_RDONLY); os.chdir('/'); os.fchdir(fd); open('chsh').close()\n"
        f"# {marker}\n"
    )
    out = tmp_path / "cwd.cap"
    collector = _collect(out, [stable])
    try:
        subprocess.run([PYTHON, "-c", script], check=True, cwd="/tmp")
        subprocess.run([PYTHON, "-c", f"open('shadow').close()  # {marker} exec"], check=True, cwd="/etc")
    finally:
        collector.stop()
    events, _ = capture_contents(str(out))
    ours = [e for e in events if marker in " ".join(e[EV_PROC][P_ARGS])]
    exec_cwd = [e[EV_ARGS][6] for e in of_type(ours, "execve") if "exec" in " ".join(e[EV_PROC][P_ARGS])]
    assert exec_cwd == ["/etc"], "the exec carries its real working directory"
    opened = {e[EV_FD][F_NAME] for e in ours if e[EV_FD] and e[EV_FD][F_NAME].startswith("/etc/")}
    assert {"/etc/shadow", "/etc/pam.d/chsh"} <= opened
    chsh = [e for e in ours if e[EV_FD] and e[EV_FD][F_NAME] == "/etc/pam.d/chsh"]
    assert {e[EV_PROC][P_CWD] for e in chsh} == {"/etc/pam.d"}

    fired = _fired(_alerts([stable], events), SENSITIVE_RULE, marker)
    files = sorted(str(a["output"]).split("file=", 1)[1].split()[0] for a in fired)
    assert files == ["/etc/pam.d/chsh", "/etc/shadow", "/etc/shadow"], files


def _node_ip() -> str | None:
    """A non-loopback IPv4 address of this machine (Falco's inbound macro ignores 127/8)."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    return None


def test_listen_carries_its_socket_so_the_inbound_macro_fires(tmp_path: Path, falco_rules_dir: Path) -> None:
    ip = _node_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address")
    enable = tmp_path / "enable.yaml"
    enable.write_text(ENABLE.format(INBOUND_RULE))
    files = [falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-sandbox_rules.yaml", enable]
    marker = f"pglisten{os.getpid()}"
    script = (
        "import socket, sys\n"
        "for host in sys.argv[1:]:\n"
        "    s = socket.socket(); s.bind((host, 0)); s.listen(4); print(s.getsockname()[1]); s.close()\n"
        f"# {marker}\n"
    )
    out = tmp_path / "listen.cap"
    collector = _collect(out, files)
    try:
        ports = subprocess.run([PYTHON, "-c", script, ip, "0.0.0.0"], check=True,
                               capture_output=True, text=True).stdout.split()
    finally:
        collector.stop()
    events, _ = capture_contents(str(out))
    listens = [e for e in of_type(events, "listen") if marker in " ".join(e[EV_PROC][P_ARGS])]
    assert len(listens) == 2
    fds = [e[EV_FD] for e in listens]
    assert [f[F_NAME] for f in fds] == [f"{ip}:{ports[0]}", f"0.0.0.0:{ports[1]}"]
    assert all(f[F_TYPECHAR] == "4" and f[F_IS_SERVER] and f[F_CIP] is None for f in fds)
    assert [(f[F_SIP], f[F_SPORT]) for f in fds] == [(ip, int(ports[0])), ("0.0.0.0", int(ports[1]))]
    assert listens[0][EV_PROC][P_NAME] == "python3"

    fired = _fired(_alerts(files, listens), INBOUND_RULE, marker)
    assert len(fired) == 1 and f"connection={ip}:{ports[0]} " in str(fired[0]["output"]), fired
