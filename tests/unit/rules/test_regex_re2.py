"""``regex`` is RE2 in libs' POSIX mode, in the engine and in the reference alike: values holding
invalid UTF-8 are matched as libs matches them, after U+FFFD replaces each maximal bad subpart
(sinsp_filtercheck.cpp craft_filter_value, utf8::sanitize_with_lazy_storage); the batch path
through the C gate (`rules.gate`) decides the same."""

from __future__ import annotations

import pytest
import yaml

from benchmarks.workload import build_event
from rules import reference
from rules.collect import load_sources
from rules.ruleset import compile_rules


def _rules(condition: str) -> str:
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o", "priority": "WARNING"}
    return yaml.safe_dump([rule], sort_keys=False)


@pytest.mark.parametrize(
    ("raw", "pattern", "expected"),
    [
        (b"ba\xffsh", "ba.sh", True),  # one bad byte, one U+FFFD, one character for `.`
        (b"ba\xe2\x82sh", "ba.sh", True),  # a truncated 3-byte sequence is one maximal subpart
        (b"ba\xff\xfesh", "ba.sh", False),  # two bad bytes are two replacement characters
        (b"ba\xff\xfesh", "ba..sh", True),
        (b"ba\xffsh", "ba\ufffdsh", True),  # the replacement character itself matches
        (b"bash", "ba.sh", False),
    ],
)
def test_invalid_utf8_is_replaced_before_matching(raw: bytes, pattern: str, expected: bool) -> None:
    name = raw.decode("utf-8", "surrogateescape")  # how records hold such bytes
    ev = build_event("execve", proc={"name": name})
    sources = load_sources([("r.yaml", _rules(f"proc.name regex '{pattern}'"))])
    ruleset = compile_rules(sources)
    assert ruleset.gated  # the C gate's memo runs the same RE2 program
    assert (ruleset.match(ev) is not None) is expected
    assert len(ruleset.evaluate([ev])) == int(expected)
    assert reference.evaluate(sources.rules[0].condition, ev) is expected
