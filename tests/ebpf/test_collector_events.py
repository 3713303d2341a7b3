"""The collector on the real kernel: real actions in, the events published to Kafka checked out.

One collector (one probe compile) serves the module: the fixture starts `peregrine collect` on a
unique topic, performs every action, stops the collector, reads the topic back and decodes it
with `collectors.wire`. Each test then checks the events of one action.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from collector_actions import (
    CGROUP2,
    Collector,
    aname,
    container_cgroup,
    of_type,
    remove_cgroup_tree,
    run_in_cgroup,
    run_under_pty,
    tcp_connect_local,
    tempdir,
)
from confluent_kafka import Consumer

from collectors.wire import decode_batch
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_NUM,
    EV_PROC,
    EV_RES,
    EV_TS,
    F_CIP,
    F_CPORT,
    F_IS_SERVER,
    F_L4PROTO,
    F_NAME,
    F_NUM,
    F_SIP,
    F_SPORT,
    F_TYPECHAR,
    HOST_CONTAINER_ID,
    P_ARGS,
    P_CONTAINER_ID,
    P_LOGINUID,
    P_NAME,
    P_NODE,
    P_PID,
    P_TTY,
    P_VPID,
    Event,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.kafka,
    pytest.mark.skipif(os.geteuid() != 0, reason="loading eBPF programs needs root"),
]

O_WRONLY, O_CREAT, O_TRUNC = 0o1, 0o100, 0o1000
CLONE_NEWUTS, CLONE_NEWPID = 0x04000000, 0x20000000
NODE = "ebpf-test-node"


@dataclass
class Scenario:
    events: list[Event]
    final: dict[str, int]
    facts: dict[str, Any]


def consume_all(bootstrap: str, topic: str, expected_events: int, timeout_s: float = 90.0) -> list[Event]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(events) < expected_events and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            events.extend(decode_batch(msg.value()).events)
    finally:
        consumer.close()
    return events


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap: str) -> Any:
    topic = f"pg-events-{uuid.uuid4().hex[:8]}"
    stats_topic = f"pg-stats-{uuid.uuid4().hex[:8]}"
    facts: dict[str, Any] = {"pid": os.getpid()}
    with open("/proc/self/comm") as f:
        facts["comm"] = f.read().strip()
    with open("/proc/self/loginuid") as f:
        loginuid = int(f.read())
        facts["loginuid"] = -1 if loginuid == 0xFFFFFFFF else loginuid
    work = tempdir()
    container_id = secrets.token_hex(32)
    pod_uid = str(uuid.uuid4())
    cgroup = container_cgroup(container_id, pod_uid)
    collector = Collector(
        ["collect", "--bootstrap", kafka_bootstrap, "--events-topic", topic, "--stats-topic", stats_topic,
         "--node", NODE]
    ).start()
    try:
        facts["tty"] = run_under_pty(["sh", "-c", "bash --norc -c 'true pg-shell-marker' ; true"])
        facts["written"] = os.path.join(work, "written.txt")
        with open(facts["written"], "w") as f:
            f.write("x")
        facts["port"], facts["cport"] = tcp_connect_local()
        subprocess.run(
            ["unshare", "--uts", "sh", "-c", f"nsenter --uts=/proc/{os.getpid()}/ns/uts true"], check=True
        )
        run_in_cgroup(cgroup, "exec cat /etc/hostname")
        subprocess.run(["unshare", "--pid", "--fork", "true", "pg-vpid-marker"], check=True)
        facts["container_id"] = container_id
        time.sleep(0.5)
    finally:
        final = collector.stop()
        remove_cgroup_tree(CGROUP2 / "kubepods.slice")
    events = consume_all(kafka_bootstrap, topic, final["events_published"])
    return Scenario(events, final, facts)


def test_every_published_event_reached_kafka(scenario: Scenario) -> None:
    assert len(scenario.events) == scenario.final["events_published"]
    nums = [e[EV_NUM] for e in scenario.events]
    assert nums == list(range(1, len(nums) + 1))
    assert all(e[EV_TS] > 1_600_000_000 * 10**9 for e in scenario.events)
    assert {e[EV_PROC][P_NODE] for e in scenario.events} == {NODE}


def test_shell_under_a_pty_has_cmdline_parents_and_tty(scenario: Scenario) -> None:
    execs = [
        e for e in of_type(scenario.events, "execve")
        if e[EV_PROC][P_NAME] == "bash" and "true pg-shell-marker" in e[EV_PROC][P_ARGS]
    ]
    assert len(execs) == 1, "the shell's execve was published once"
    ev = execs[0]
    p = ev[EV_PROC]
    cmdline = " ".join([p[P_NAME], *p[P_ARGS]])
    assert cmdline == "bash --norc -c true pg-shell-marker"
    assert aname(p, 1) == "sh"  # proc.pname
    assert aname(p, 2) == scenario.facts["comm"]  # proc.aname[2]: the test process
    assert p[P_TTY] == scenario.facts["tty"] != 0
    assert p[P_LOGINUID] == scenario.facts["loginuid"]
    assert ev[EV_RES] == 0
    assert ev[EV_ARGS][1] == "bash" and ev[EV_ARGS][2] == ["--norc", "-c", "true pg-shell-marker"]


def test_write_open_below_a_temp_dir_has_flags_and_fd(scenario: Scenario) -> None:
    opens = [
        e for e in of_type(scenario.events, "openat")
        if e[EV_FD]
        and e[EV_FD][F_NAME] == scenario.facts["written"]
        and e[EV_PROC][P_PID] == scenario.facts["pid"]
    ]
    assert len(opens) == 1
    ev = opens[0]
    fd, dirfd, name, flags, mode = ev[EV_ARGS][:5]
    assert fd == ev[EV_RES] >= 0 and ev[EV_FD][F_NUM] == fd
    assert dirfd == -100 and name == scenario.facts["written"]
    assert flags & (O_WRONLY | O_CREAT | O_TRUNC) == O_WRONLY | O_CREAT | O_TRUNC
    assert mode == 0o666
    assert ev[EV_FD][F_TYPECHAR] == "f"


def test_tcp_connect_and_accept_carry_addresses_and_ports(scenario: Scenario) -> None:
    port, cport = scenario.facts["port"], scenario.facts["cport"]
    tuple_text = f"127.0.0.1:{cport}->127.0.0.1:{port}"
    mine = [e for e in scenario.events if e[EV_PROC][P_PID] == scenario.facts["pid"]]
    connects = [e for e in of_type(mine, "connect") if e[EV_FD] and e[EV_FD][F_NAME] == tuple_text]
    assert len(connects) == 1
    fd = connects[0][EV_FD]
    assert connects[0][EV_RES] == 0 and connects[0][EV_ARGS][1] == tuple_text
    assert (fd[F_TYPECHAR], fd[F_L4PROTO], fd[F_IS_SERVER]) == ("4", "tcp", False)
    assert (fd[F_CIP], fd[F_CPORT], fd[F_SIP], fd[F_SPORT]) == ("127.0.0.1", cport, "127.0.0.1", port)
    accepts = [e for e in of_type(mine, "accept4") + of_type(mine, "accept") if e[EV_ARGS][1] == tuple_text]
    assert len(accepts) == 1 and accepts[0][EV_FD][F_IS_SERVER] is True


def test_unshare_and_setns_carry_the_namespace_type(scenario: Scenario) -> None:
    unshares = [e for e in of_type(scenario.events, "unshare") if e[EV_PROC][P_NAME] == "unshare"]
    # `unshare --uts` here, and `unshare --pid` for the vpid test
    assert sorted((e[EV_RES], e[EV_ARGS][1]) for e in unshares) == [(0, CLONE_NEWUTS), (0, CLONE_NEWPID)]
    setns = [e for e in of_type(scenario.events, "setns") if e[EV_PROC][P_NAME] == "nsenter"]
    assert len(setns) == 1
    res, fd, nstype = setns[0][EV_ARGS]
    assert res == 0 and fd >= 0 and nstype == CLONE_NEWUTS


def test_container_id_from_a_kubepods_cgroup_and_host_for_the_rest(scenario: Scenario) -> None:
    cid = scenario.facts["container_id"]
    in_container = [e for e in scenario.events if e[EV_PROC][P_CONTAINER_ID] == cid]
    names = {e[EV_PROC][P_NAME] for e in in_container}
    assert "cat" in names
    cat_exec = [e for e in of_type(in_container, "execve") if e[EV_PROC][P_NAME] == "cat"]
    assert cat_exec and cat_exec[0][EV_PROC][P_ARGS] == ["/etc/hostname"]
    mine = [e for e in scenario.events if e[EV_PROC][P_PID] == scenario.facts["pid"]]
    assert mine and {e[EV_PROC][P_CONTAINER_ID] for e in mine} == {HOST_CONTAINER_ID}


def test_a_process_in_a_new_pid_namespace_has_vpid_1(scenario: Scenario) -> None:
    execs = [e for e in of_type(scenario.events, "execve") if e[EV_PROC][P_ARGS] == ["pg-vpid-marker"]]
    assert len(execs) == 1
    p = execs[0][EV_PROC]
    assert p[P_VPID] == 1 and p[P_PID] != 1
