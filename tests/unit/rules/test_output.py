"""Output templates: tokens, widths, <NA>, the suggested-field tail and Falco's value printing."""

from __future__ import annotations

import pytest

from benchmarks.workload import build_event
from rules import CompileError
from rules.output import SUGGESTED_TAIL, clock_time, compile_output, iso_time

EV = build_event("execve", proc={"name": "bash", "tty": 34816, "args": ["-il"], "parent": {"name": "runc"}})


def render(template: str, ev: list[object] = EV) -> tuple[str, dict[str, object]]:
    return compile_output(template, suggested=False).render(ev)


def test_tokens_render_their_values() -> None:
    text, fields = render("shell=%proc.name parent=%proc.pname cmdline=%proc.cmdline terminal=%proc.tty")
    assert text == "shell=bash parent=runc cmdline=bash -il terminal=34816"
    expected = {"proc.name": "bash", "proc.pname": "runc", "proc.cmdline": "bash -il", "proc.tty": 34816}
    assert fields == expected


def test_missing_values_print_na_and_are_null_in_json() -> None:
    text, fields = render("image=%container.image.repository fd=%fd.name")
    assert text == "image=<NA> fd=<NA>"
    assert fields == {"container.image.repository": None, "fd.name": None}


def test_token_is_the_longest_field_that_parses() -> None:
    text, fields = render("(parent=%proc.pname)")
    assert text == "(parent=runc)" and list(fields) == ["proc.pname"]


def test_width_pads_and_truncates() -> None:
    assert render("[%6proc.name]")[0] == "[bash  ]"
    assert render("[%2proc.name]")[0] == "[ba]"


def test_booleans_and_arguments_print_as_falco_does() -> None:
    ev = build_event("openat", args={"flags": 65}, fd={"name": "/etc/x"})
    text, fields = render("%evt.is_open_write %evt.arg.flags %fd.name", ev)
    assert text == "true O_CREAT|O_WRONLY /etc/x"
    assert fields["evt.is_open_write"] is True


def test_ancestors_transformers_and_evt_fields() -> None:
    text, _ = render("%proc.aname[1] %toupper(proc.name) %evt.type %user.loginuid", EV)
    assert text == "runc BASH execve -1"


def test_evt_time_prints_clock_time() -> None:
    assert clock_time(1_718_000_000_123_456_789) == "06:13:20.123456789"
    assert iso_time(1_718_000_000_123_456_789) == "2024-06-10T06:13:20.123456789Z"
    assert render("%evt.time")[0] == "06:13:20.123456789"


def test_suggested_container_fields_are_appended() -> None:
    template = compile_output("A shell | user=%user.name")
    assert template.text == f"A shell | user=%user.name {SUGGESTED_TAIL}"
    text, fields = template.render(EV)
    assert text.endswith("container_id=host container_name=<NA> container_image_repository=<NA> "
                         "container_image_tag=<NA> k8s_pod_name=<NA> k8s_ns_name=<NA>")
    assert fields["k8s.ns.name"] is None and fields["container.id"] == "host"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x %proc.nme", "nonexistent field"),
        ("x %", "ends with '%'"),
        ("x %fd.net", "only be used in filters"),
    ],
)
def test_bad_templates_are_compile_errors(template: str, message: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_output(template, suggested=False)
    assert message in info.value.message


@pytest.mark.parametrize("key", ["HOME", "A)B", "x\\n", "a)+__import__(os"])
def test_a_proc_env_key_reaches_the_reader_as_a_constant_never_as_text(key: str) -> None:
    """The reader is built as a syntax tree: a key is one `ast.Constant`, whatever it holds."""
    ev = build_event("execve", proc={"name": "bash", "env": [f"{key}=v", "OTHER=w"]})
    template = compile_output(f"env=%proc.env[{key}]", suggested=False)
    assert template.render(ev)[0] == "env=v"
    assert repr(key) in template.source


def test_a_list_field_prints_as_libs_tostring() -> None:
    """sinsp_filtercheck.cpp tostring (@48dfd53 lines 484-496): "(" values joined by "," ")";
    an empty list is "()", a list that cannot be extracted <NA>, fd.types[N] a one-value list."""
    template = "t=%fd.types one=%fd.types[3] closed=%fd.types[4] n=%len(fd.types)"
    table = build_event("connect", fdtypes=["file", "file", "file", "ipv4", None, "pipe", "file"])
    text, fields = render(template, table)
    assert text == "t=(file,ipv4,pipe) one=(ipv4) closed=<NA> n=3"
    assert fields["fd.types"] == "(file,ipv4,pipe)" and fields["fd.types[4]"] is None
    assert render(template, build_event("connect", fdtypes=[]))[0] == "t=() one=<NA> closed=<NA> n=0"
    assert render(template, build_event("connect"))[0] == "t=<NA> one=<NA> closed=<NA> n=<NA>"
    assert render("t=%fd.types", build_event("execve", fdtypes=["file"]))[0] == "t=<NA>"  # no fd event
