"""`peregrine rules validate|list|test` through rules.cli.main, with real files and a real capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules import record as R
from rules.cli import main

FALCO_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
COUNT_LINES = {
    "falco_rules.yaml": "falco_rules.yaml: 25 rules, 87 macros, 49 lists",
    "falco-incubating_rules.yaml": "falco-incubating_rules.yaml: 31 rules, 82 macros, 54 lists",
    "falco-sandbox_rules.yaml": "falco-sandbox_rules.yaml: 37 rules, 183 macros, 60 lists",
}
GOOD_RULE = "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o %proc.name\n  priority: INFO\n"


def rule(condition: str) -> str:
    return f"- rule: r\n  desc: d\n  condition: {condition}\n  output: o\n  priority: INFO\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", FALCO_FILES)
def test_validate_each_falco_file(
    falco_rules_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(falco_rules_dir)
    code, out, err = run(capsys, "validate", name)
    assert code == 0, err
    assert out.splitlines()[0] == COUNT_LINES[name]
    assert out.splitlines()[-1].startswith("OK: ")
    assert "error" not in err


def test_validate_falco_files_together(
    falco_rules_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(falco_rules_dir)
    code, out, err = run(capsys, "validate", *FALCO_FILES)
    assert code == 0, err
    assert out.splitlines()[:3] == [COUNT_LINES[n] for n in FALCO_FILES]
    assert out.splitlines()[3].startswith("OK: 93 rules (81 enabled) from 3 file(s)")


def test_validate_peregrine_rules_after_falco(
    falco_rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = Path(__file__).resolve().parents[3] / "rules" / "data" / "peregrine_rules.yaml"
    code, out, err = run(capsys, "validate", *(str(falco_rules_dir / n) for n in FALCO_FILES), str(ours))
    assert code == 0, err
    assert out.splitlines()[3].endswith("peregrine_rules.yaml: 5 rules, 4 macros, 7 lists")
    assert "OK: 98 rules" in out


BAD_FILES = {
    "invalid_yaml": ("- rule: a\n  desc: d\n  condition: evt.type = open\n   output: x\n", ":4: ", None),
    "unknown_macro": (
        rule("evt.type = open and not my_missing_macro"),
        ":1: rule 'r': Undefined macro 'my_missing_macro' used in filter.",
        "my_missing_macro",
    ),
    "list_used_as_macro": (
        "- list: shells\n  items: [bash, sh]\n" + rule("evt.type = execve and shells"),
        ":3: rule 'r': ",
        "shells",
    ),
    "bad_operator": (
        rule("evt.type = open and proc.name equals bash"),
        ":1: rule 'r': ",
        "equals",
    ),
    "unclosed_parenthesis": (
        "- macro: m\n  condition: (evt.type = open and (proc.name = bash)\n",
        ":1: macro 'm': ",
        "",
    ),
    "priority_number": (
        "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: 5\n",
        ":5: rule 'r': Invalid priority '5'",
        None,
    ),
    "tags_not_a_list": (GOOD_RULE + "  tags: foo\n", ":6: rule 'r': Value for key 'tags' is not a", None),
    "append_to_missing_rule": (
        "- rule: ghost\n  condition: and proc.name = cat\n  override:\n    condition: append\n",
        ":1: rule 'ghost': Rule uses 'append' or 'override.<key>: append' but no rule by that name",
        None,
    ),
    "macro_loop": (
        "- macro: a\n  condition: evt.type = open\n- macro: b\n  condition: a and proc.name = x\n"
        "- macro: a\n  condition: b\n  override:\n    condition: replace\n",
        ":5: macro 'a': reference loop in macro 'b'",
        "b",
    ),
    "unknown_field": (
        rule("evt.type = open and proc.nmae = bash"),
        ":1: rule 'r': ",
        "proc.nmae",
    ),
    "unknown_field_after_a_list": (
        "- list: shells\n  items: [bash, sh, zsh]\n" + rule("proc.name in (shells) and proc.nmae = bash"),
        ":3: rule 'r': ",
        "proc.nmae",
    ),
    "unknown_field_inside_a_macro": (
        "- macro: opened\n  condition: evt.type = open and fd.nmae = 1\n" + rule("proc.name = a and opened"),
        ":3: rule 'r': ",
        "opened",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_validate_bad_file_gives_one_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, where, token = BAD_FILES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0].startswith(f"error: {path}{where}"), err
    assert sum(line.startswith("error:") for line in lines) == 1
    if token is not None:  # a condition error: the condition, then a caret under the token
        condition, caret = lines[1], lines[2]
        assert caret.strip() == "^"
        at = caret.index("^")
        assert condition[at:].startswith(token) or (token == "" and at == len(condition))


def test_validate_prints_warnings_with_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(GOOD_RULE + "  typo_key: 1\n- macro: unused\n  condition: evt.type = open\n")
    code, out, err = run(capsys, "validate", str(path))
    assert code == 0
    assert f"{path}:1: rule 'r': warning LOAD_UNKNOWN_KEY: Unknown key 'typo_key'" in err
    assert f"{path}:7: macro 'unused': warning LOAD_UNUSED_MACRO" in err
    assert "2 warning(s)" in out


def test_missing_file_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 1 and err.startswith(f"error: {tmp_path / 'nope.yaml'}: cannot read rules file")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["validate"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    capsys.readouterr()


def test_list_default_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "Notice        Peregrine: Terminal Shell in Container\n" in out
    assert "              event types: execve, execveat\n" in out
    assert "              event types: setns\n" in out
    assert "tags: T1059, container, mitre_execution, peregrine, shell" in out


def test_list_marks_disabled_rules_and_broad_ones(
    falco_rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "list", str(falco_rules_dir / "falco-sandbox_rules.yaml"))
    assert code == 0 and out.count("(disabled)") == 12
    path = tmp_path / "r.yaml"
    path.write_text(GOOD_RULE.replace("evt.type = open", "proc.name = cat") + "  warn_evttypes: false\n")
    code, out, _ = run(capsys, "list", str(path))
    assert "event types: all (no evt.type restriction)" in out
    # a generic syscall's name: that syscall, not the 219 types of libs' generic pair
    path.write_text(GOOD_RULE.replace("evt.type = open", "evt.type in (personality, openat)"))
    code, out, _ = run(capsys, "list", str(path))
    assert "event types: openat, personality\n" in out


# --- test --events ---------------------------------------------------------------------------------


def _process(name: str, tty: int, container: str, parent: int) -> list[object]:
    p: list[object] = [None] * R.PROCESS_LEN
    p[R.P_PID], p[R.P_PPID], p[R.P_NAME], p[R.P_EXE], p[R.P_EXEPATH] = 100, 1, name, name, f"/bin/{name}"
    p[R.P_ARGS], p[R.P_CWD], p[R.P_TTY], p[R.P_UID], p[R.P_GID] = ["-i"], "/", tty, 0, 0
    p[R.P_USER], p[R.P_GROUP], p[R.P_LOGINUID], p[R.P_CONTAINER_ID] = "root", "root", -1, container
    p[R.P_PARENT], p[R.P_NODE], p[R.P_START], p[R.P_EXE_FLAGS] = parent, "node-1", 1, 0
    p[R.P_CAP_EFF] = p[R.P_CAP_PERM] = p[R.P_CAP_INH] = 0
    return p


def _execve(proc: int, num: int) -> list[object]:
    execve = R.event_type_id("execve")
    ev: list[object] = [None] * R.EVENT_LEN
    ev[R.EV_TYPE], ev[R.EV_TS], ev[R.EV_TID], ev[R.EV_PROC] = execve, 1_700 * 10**15, 100, proc
    ev[R.EV_RES], ev[R.EV_NUM], ev[R.EV_ARGS] = 0, num, [None] * len(R.EVENT_PARAMS[execve])
    return ev


def _capture(path: Path, *, garbage: bool = False) -> None:
    from collectors.capture import CaptureWriter
    from collectors.wire import Batch, encode_batch

    container = "a" * 64
    procs = [
        _process("runc", 0, container, -1),
        _process("bash", 34816, container, 0),
        _process("ls", 0, "host", -1),
    ]
    first = Batch("node-1", "boot", 1, 1, 2, procs=procs, events=[_execve(1, 1), _execve(2, 2)])
    second = Batch("node-1", "boot", 2, 3, 3, procs=procs[:2], events=[_execve(1, 3)])
    writer = CaptureWriter(str(path))
    writer.send("events", b"node-1", encode_batch(first), 2)
    writer.send("stats", b"node-1", b"\x80", 0)  # frames other than events are skipped
    writer.send("events", b"node-1", b"\x01not a batch" if garbage else encode_batch(second), 1)
    writer.close(0)


def test_test_prints_one_falco_json_alert_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "capture.bin"
    _capture(capture)
    code, out, err = run(capsys, "test", "--events", str(capture))
    assert code == 0, err
    alerts = [json.loads(line) for line in out.splitlines()]
    assert [a["rule"] for a in alerts] == ["Peregrine: Terminal Shell in Container"] * 2
    assert alerts[0]["priority"] == "Notice" and alerts[0]["source"] == "syscall"
    assert alerts[0]["hostname"] == "node-1"
    assert alerts[0]["output_fields"]["proc.name"] == "bash"
    keys = {"time", "rule", "priority", "output", "output_fields", "hostname", "source", "tags"}
    assert keys <= set(alerts[0])
    assert err.strip() == "3 events, 2 alerts"


def test_test_min_priority_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "capture.bin"
    _capture(capture)
    code, out, _ = run(capsys, "test", "--events", str(capture), "--min-priority", "warning")
    assert code == 0 and out == ""


def test_test_bad_capture_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "capture.bin"
    _capture(capture, garbage=True)
    code, _, err = run(capsys, "test", "--events", str(capture))
    assert code == 1 and "bad capture" in err and "Traceback" not in err
    capture.write_bytes(b"not a capture")
    code, _, err = run(capsys, "test", "--events", str(capture))
    assert code == 1 and "not a Peregrine capture" in err
    code, _, err = run(capsys, "test", "--events", str(tmp_path / "missing.bin"))
    assert code == 1 and "cannot read capture" in err


SHIPPED_CAPTURE = Path(__file__).resolve().parents[3] / "devtools" / "data" / "attack_scenario.cap"


def test_default_rules_catch_the_recorded_attack_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    api_server = "10.96.0.1=kubernetes.default.svc.cluster.local"
    code, out, err = run(capsys, "test", "--events", str(SHIPPED_CAPTURE), "--ip-name", api_server)
    assert code == 0, err
    assert sorted(json.loads(line)["rule"] for line in out.splitlines()) == [
        "Peregrine: Kubernetes API Server Contacted from Container",
        "Peregrine: Kubernetes or Docker Client Run in Container",
        "Peregrine: Namespace Change by Unexpected Program",
        "Peregrine: Package Management in Container",
        "Peregrine: Terminal Shell in Container",
    ]


def test_ip_name_needs_ip_equals_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "test", "--events", "x.cap", "--ip-name", "10.96.0.1")
    assert code == 2 and "IP=NAME" in err


def test_rules_cli_does_not_import_msgpack_or_collectors_until_test() -> None:
    import subprocess
    import sys

    probe = "import sys, rules.cli; print('msgpack' in sys.modules, 'collectors' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_compile_warning_has_a_caret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(rule("evt.type = open and proc.name = proc.pname"))
    code, _, err = run(capsys, "validate", str(path))
    assert code == 0
    lines = err.splitlines()
    assert "warning LOAD_COMPILE_CONDITION: 'proc.pname' may be a valid field" in lines[0]
    assert lines[1].strip() == "evt.type = open and proc.name = proc.pname"
    assert lines[1][lines[2].index("^") :].startswith("proc.pname")


def test_strict_fails_on_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(GOOD_RULE + "  typo_key: 1\n")
    code, out, err = run(capsys, "validate", "--strict", str(path))
    assert code == 1 and "LOAD_UNKNOWN_KEY" in err and "--strict" in err.splitlines()[-1]
    assert run(capsys, "validate", str(path))[0] == 0  # without --strict, warnings only warn
    path.write_text(GOOD_RULE)
    assert run(capsys, "validate", "--strict", str(path))[0] == 0
