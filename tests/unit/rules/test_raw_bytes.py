"""Conditions compare raw bytes (Falco 0.45): ``\\xHH`` in a quoted string is one raw byte (libs
master escaping.cpp), which matches a record holding that byte (invalid UTF-8 as its surrogate
escape, valid sequences decoded), and strings order as strcmp orders their bytes; in the engine,
the gate and the reference alike."""

from __future__ import annotations

import pytest
import yaml

from benchmarks.workload import build_event
from rules import reference
from rules.collect import load_sources
from rules.ruleset import compile_rules


@pytest.mark.parametrize(
    ("condition", "raw", "expected"),
    [
        ('proc.name = "ba\\xffsh"', b"ba\xffsh", True),
        ('proc.name = "ba\\xffsh"', "baÿsh".encode(), False),  # \xff is not U+00FF
        ('proc.name = "caf\\xc3\\xa9"', "café".encode(), True),  # two bytes of one character
        ('proc.name contains "\\xfe"', b"a\xfe\xffb", True),
        ('proc.name startswith "\\x41"', b"AB", True),
    ],
)
def test_hex_escape_matches_the_byte(condition: str, raw: bytes, expected: bool) -> None:
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o", "priority": "WARNING"}
    sources = load_sources([("r.yaml", yaml.safe_dump([rule], sort_keys=False))])
    ev = build_event("execve", proc={"name": raw.decode("utf-8", "surrogateescape")})
    ruleset = compile_rules(sources)
    assert (ruleset.match(ev) is not None) is expected
    assert len(ruleset.evaluate([ev])) == int(expected)
    assert reference.evaluate(sources.rules[0].condition, ev) is expected



@pytest.mark.parametrize(
    ("condition", "name", "exe", "expected"),
    [  # strcmp orders bytes: ff is above ee 80 80 (U+E000), though U+DCFF is below it
        ("proc.name > val(proc.exe)", b"\xff", "\ue000".encode(), True),  # formerly a pinned divergence
        ("proc.name < val(proc.exe)", b"\xff", "\ue000".encode(), False),
        ("proc.name <= val(proc.exe)", b"\x80", "é".encode(), True),  # 80 is below c3 a9
        ("proc.name >= val(proc.exe)", b"b", b"a\xff", True),
    ],
)
def test_two_fields_order_by_their_bytes(condition: str, name: bytes, exe: bytes, expected: bool) -> None:
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o", "priority": "WARNING"}
    sources = load_sources([("r.yaml", yaml.safe_dump([rule], sort_keys=False))])
    held = {"name": name.decode("utf-8", "surrogateescape"), "exe": exe.decode("utf-8", "surrogateescape")}
    ev = build_event("execve", proc=held)
    ruleset = compile_rules(sources)
    assert (ruleset.match(ev) is not None) is expected
    assert len(ruleset.evaluate([ev])) == int(expected)
    assert reference.evaluate(sources.rules[0].condition, ev) is expected
