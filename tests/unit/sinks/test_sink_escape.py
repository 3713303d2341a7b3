"""Escaping per format: controls neutralised, delimiters escaped, truncation visible."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sinks import escape


def test_clean_makes_nul_ansi_and_bidi_visible_and_keeps_newlines_for_the_format_step() -> None:
    text = "a\x00b\x1b[31mred\x1b[0m\u202eevil\x7f\tline\nnext"
    assert escape.clean(text, 1000) == "a\\x00b\\x1b[31mred\\x1b[0m\\u202eevil\\x7f\tline\nnext"


def test_clean_replaces_lone_surrogates_so_the_text_encodes_as_utf8() -> None:
    cleaned = escape.clean("bad\ud800byte\udcff", 100)
    assert cleaned == "bad\ufffdbyte\ufffd"
    cleaned.encode("utf-8")


def test_truncation_respects_the_byte_limit_at_a_character_boundary_with_a_marker() -> None:
    text = "é" * 10_000  # 2 bytes each
    cut = escape.clean(text, 1000)
    assert len(cut.encode("utf-8")) <= 1000
    assert cut.endswith("bytes]") and "...[truncated " in cut
    assert cut.startswith("é" * 100)


def test_short_text_is_returned_unchanged() -> None:
    assert escape.clean("plain text", 100) == "plain text"


def test_slack_escape_disarms_mentions_and_links() -> None:
    hostile = "<!channel> <!here> <@U024BE7LH> <http://evil.example|click> & more"
    escaped = escape.slack(hostile)
    assert "<" not in escaped and ">" not in escaped
    assert escaped.startswith("&lt;!channel&gt;") and "&amp; more" in escaped


def test_fit_never_cuts_an_escape_sequence() -> None:
    out = escape.fit("<" * 5000, 3000, escape.slack)
    assert len(out) <= 3000
    body = out.split("...[truncated")[0]
    assert body == "&lt;" * (len(body) // 4)


def test_cef_header_and_extension_escapes() -> None:
    assert escape.cef_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert escape.cef_extension("k=v\\x|y\r\nz") == "k\\=v\\\\x|y\\r\\nz"


def test_leef_values_replace_the_delimiter_and_line_breaks() -> None:
    assert escape.leef_value("a^b\tc\nd=e", "^") == "a\\x5eb\\tc\\nd=e"
    assert escape.leef_value("\\x5e ends in \\", "^") == "\\\\x5e ends in \\\\"
    assert escape.leef_header("x|y") == "x\\|y"


def test_structured_data_value_escapes_quote_backslash_bracket_and_newlines() -> None:
    assert escape.sd_value('a"b\\c]d\ne') == 'a\\"b\\\\c\\]d\\ne'


def test_syslog_header_tokens_are_printable_ascii_without_spaces() -> None:
    assert escape.syslog_token("node 1\nx", 255) == "node_1_x"
    assert escape.syslog_token("", 48) == "-"
    assert escape.syslog_token("a" * 300, 255) == "a" * 255


def test_json_bytes_round_trips_cleaned_values() -> None:
    value = escape.clean_json({"k\ud800": ["\x1b", 1, None, True, "x" * 50]}, 20)
    assert json.loads(escape.json_bytes(value)) == value


def _leef_split(attributes: str, delimiter: str) -> list[tuple[str, str]]:
    """How a LEEF consumer reads attributes (IBM QRadar LEEF 2.0): split on the delimiter character,
    then each pair at its first `=`; LEEF itself defines no escape inside values."""
    return [tuple(pair.split("=", 1)) for pair in attributes.split(delimiter)]  # type: ignore[misc]


def _leef_unescape(value: str) -> str:
    """The inverse of `escape.leef_value`, written from its documented rule, not from its code."""
    out, i = [], 0
    named = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}
    while i < len(value):
        if value[i] != "\\":
            out.append(value[i])
            i += 1
        elif value[i + 1] == "x":
            out.append(chr(int(value[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(named[value[i + 1]])
            i += 2
    return "".join(out)


@given(st.lists(st.text(alphabet=st.sampled_from("a^\\x5e=|\n\r\t é"), max_size=12), min_size=1, max_size=5))
def test_leef_values_survive_a_delimiter_split_exactly(values: list[str]) -> None:
    attributes = "^".join(f"k{i}={escape.leef_value(v, '^')}" for i, v in enumerate(values))
    pairs = _leef_split(attributes, "^")
    assert [k for k, _ in pairs] == [f"k{i}" for i in range(len(values))]
    assert [_leef_unescape(v) for _, v in pairs] == values
