"""Peregrine's default rules (rules/data/peregrine_rules.yaml): a trigger and a near miss per rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import record as R
from rules.collect import load_files
from rules.ruleset import Ruleset, compile_rules

RULES = Path(__file__).resolve().parents[3] / "rules" / "data" / "peregrine_rules.yaml"
CONTAINER = "c" * 64
API_SERVER_IP = "10.96.0.1"


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    names = {API_SERVER_IP: "kubernetes.default.svc.cluster.local"}
    return compile_rules(load_files([RULES]), ip_names=names)


def process(name: str, *, parent: list[object] | None = None, container: str = CONTAINER, tty: int = 0,
            namespace: str | None = "shop") -> list[object]:  # fmt: skip
    p: list[object] = [None] * R.PROCESS_LEN
    p[R.P_PID], p[R.P_PPID], p[R.P_NAME], p[R.P_EXE], p[R.P_EXEPATH] = 42, 1, name, name, f"/usr/bin/{name}"
    p[R.P_ARGS], p[R.P_CWD], p[R.P_TTY], p[R.P_UID], p[R.P_GID] = [], "/", tty, 0, 0
    p[R.P_USER], p[R.P_LOGINUID], p[R.P_CONTAINER_ID], p[R.P_PARENT] = "root", -1, container, parent
    p[R.P_NODE], p[R.P_START], p[R.P_EXE_FLAGS] = "node-1", 1, 0
    if container != R.HOST_CONTAINER_ID:
        c: list[object] = [None] * R.CONTAINER_LEN
        c[R.C_ID], c[R.C_IMAGE_REPO], c[R.K_NS], c[R.K_POD_NAME] = container, "shop/web", namespace, "web-1"
        p[R.P_CONTAINER] = c
    return p


def event(kind: str, proc: list[object], fd: list[object] | None = None) -> list[object]:
    type_id = R.event_type_id(kind)
    ev: list[object] = [None] * R.EVENT_LEN
    ev[R.EV_TYPE], ev[R.EV_TS], ev[R.EV_TID], ev[R.EV_PROC], ev[R.EV_RES] = type_id, 10**18, 42, proc, 0
    ev[R.EV_ARGS], ev[R.EV_FD], ev[R.EV_NUM] = [None] * len(R.EVENT_PARAMS[type_id]), fd, 7
    return ev


def connection(server_ip: str) -> list[object]:
    fd: list[object] = [None] * R.FD_LEN
    fd[R.F_NUM], fd[R.F_TYPECHAR], fd[R.F_L4PROTO] = 3, "4", "tcp"
    fd[R.F_NAME] = f"10.0.0.5:40000->{server_ip}:443"
    fd[R.F_CIP], fd[R.F_CPORT], fd[R.F_SIP], fd[R.F_SPORT] = "10.0.0.5", 40000, server_ip, 443
    fd[R.F_IS_SERVER], fd[R.F_CONNECTED], fd[R.F_NAME_CHANGED] = False, True, False
    return fd


RUNC = process("runc")
CASES = {
    "Peregrine: Terminal Shell in Container": (
        event("execve", process("bash", parent=RUNC, tty=34816)),
        event("execve", process("bash", parent=RUNC, tty=0)),  # no terminal: a script, not a person
    ),
    "Peregrine: Kubernetes API Server Contacted from Container": (
        event("connect", process("curl"), connection(API_SERVER_IP)),
        event("connect", process("curl"), connection("10.0.0.9")),
    ),
    "Peregrine: Namespace Change by Unexpected Program": (
        event("setns", process("evil", container=R.HOST_CONTAINER_ID)),
        event("setns", process("runc", container=R.HOST_CONTAINER_ID)),
    ),
    "Peregrine: Kubernetes or Docker Client Run in Container": (
        event("execve", process("kubectl", parent=process("sh"))),
        event("execve", process("kubectl", container=R.HOST_CONTAINER_ID)),  # on the host: expected
    ),
    "Peregrine: Package Management in Container": (
        event("execve", process("apt-get", parent=process("sh"))),
        event("execve", process("dpkg", parent=process("apt-get"))),  # a child of the one that alerted
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_rule_triggers_and_near_miss_does_not(ruleset: Ruleset, name: str) -> None:
    trigger, near_miss = CASES[name]
    matched = ruleset.match(trigger)
    assert matched is not None and matched.name == name
    assert ruleset.match(near_miss) is None


def test_every_rule_has_a_case(ruleset: Ruleset) -> None:
    assert {rule.name for rule in ruleset.rules} == set(CASES)


def test_nsenter_is_expected_on_the_host_only(ruleset: Ruleset) -> None:
    in_container = ruleset.match(event("setns", process("nsenter", parent=process("bash"))))
    assert in_container is not None and in_container.name.endswith("Namespace Change by Unexpected Program")
    assert ruleset.match(event("setns", process("nsenter", container=R.HOST_CONTAINER_ID))) is None
    assert ruleset.match(event("setns", process("runc:[2:INIT]"))) is None  # the runtime, in the container


def test_api_server_rule_ignores_kube_system(ruleset: Ruleset) -> None:
    ev = event("connect", process("coredns", namespace="kube-system"), connection(API_SERVER_IP))
    assert ruleset.match(ev) is None
