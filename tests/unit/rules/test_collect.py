"""rules.collect: loading rules files in order into self-contained rule conditions.

Falco-semantics cases live in tests/conformance/data/loader_cases.yaml; these tests cover the
three Falco files themselves, Peregrine's own file, locations of errors and the API's edges.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.ast import AndExpr, IdentifierExpr
from rules.collect import ENGINE_VERSION, load_files, load_sources
from rules.errors import LoadError, ParseError, RulesError
from rules.loaded import LoadResult
from rules.priority import Priority

FALCO_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
COUNTS = {"falco_rules.yaml": (25, 87, 49), "falco-incubating_rules.yaml": (31, 82, 54),
          "falco-sandbox_rules.yaml": (37, 183, 60)}  # fmt: skip
PEREGRINE_RULES = Path(__file__).resolve().parents[3] / "rules" / "data" / "peregrine_rules.yaml"

RULE = "- rule: {name}\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n"


def rule(name: str, cond: str) -> str:
    return RULE.format(name=name, cond=cond)


def has_identifier(node: object) -> bool:
    if isinstance(node, IdentifierExpr):
        return True
    children = getattr(node, "children", None) or ([node.child] if hasattr(node, "child") else [])
    return any(has_identifier(c) for c in children)


@pytest.mark.parametrize("name", FALCO_FILES)
def test_each_falco_file_loads_alone(falco_rules_dir: Path, name: str) -> None:
    result = load_files([falco_rules_dir / name])
    (counts,) = result.files
    assert (counts.rules, counts.macros, counts.lists) == COUNTS[name]
    assert len(result.rules) == COUNTS[name][0]
    assert not any(has_identifier(r.condition) for r in result.rules), "macros left unresolved"


def test_falco_files_load_together_in_order(falco_rules_dir: Path) -> None:
    result = load_files([falco_rules_dir / name for name in FALCO_FILES])
    assert [(c.rules, c.macros, c.lists) for c in result.files] == [COUNTS[n] for n in FALCO_FILES]
    assert len(result.rules) == 93
    assert sum(not r.enabled for r in result.rules) == 12  # sandbox's disabled rules are kept
    assert not any(w.code in ("LOAD_UNUSED_MACRO", "LOAD_UNUSED_LIST") for w in result.warnings)
    shell = next(r for r in result.rules if r.name == "Terminal shell in container")
    assert shell.priority is Priority.NOTICE
    assert shell.tags == ("T1059", "container", "maturity_stable", "mitre_execution", "shell")
    assert shell.condition.to_source().startswith(
        "(evt.type in (execve, execveat) and container.id != host and proc.name in (ash, bash, csh, ksh, sh, "
    )


def test_later_file_redefines_lists_the_earlier_rules_use(falco_rules_dir: Path) -> None:
    # stable's python_package_managers has uv; incubating redefines it without uv, and since all
    # files share one collector, stable's rules lose uv too (reference doc, section 7)
    stable = falco_rules_dir / "falco_rules.yaml"

    def sensitive(paths: list[Path]) -> str:
        rules = load_files(paths).rules
        return next(r for r in rules if r.name == "Read sensitive file untrusted").condition.to_source()

    assert "conda, uv, " in sensitive([stable])
    assert "conda, uv, " not in sensitive([stable, falco_rules_dir / "falco-incubating_rules.yaml"])


def test_peregrine_rules_load_alone_and_after_falco_unchanged(falco_rules_dir: Path) -> None:
    alone = load_files([PEREGRINE_RULES])
    assert len(alone.rules) == 5 and not alone.warnings
    assert all(r.name.startswith("Peregrine: ") and "peregrine" in r.tags for r in alone.rules)
    together = load_files([*(falco_rules_dir / n for n in FALCO_FILES), PEREGRINE_RULES])
    assert len(together.rules) == 98
    after = {r.name: r.condition for r in together.rules}
    assert all(after[r.name] == r.condition for r in alone.rules), "a Falco list or macro leaked in"


def test_rules_keep_definition_order_across_files() -> None:
    first = rule("one", "evt.type = open") + rule("two", "evt.type = close")
    second = rule("three", "evt.type = read") + rule("one", "evt.type = write")
    result = load_sources([("a.yaml", first), ("b.yaml", second)])
    assert [r.name for r in result.rules] == ["one", "two", "three"]
    assert result.rules[0].location.file == "b.yaml"  # the definition in force


def test_parse_error_points_into_the_condition_as_written() -> None:
    written = "proc.name in (shells) and proc.name == (x"
    text = "- list: shells\n  items: [bash, sh]\n" + rule("r", written)
    with pytest.raises(ParseError) as info:
        load_sources([("f.yaml", text)])
    loc = info.value.location
    assert (loc.file, loc.line, loc.item_kind, loc.item_name) == ("f.yaml", 3, "rule", "r")
    assert loc.condition == written
    # the parser saw "proc.name in ( bash, sh ) and ...": the offset is mapped back past "(shells)"
    assert loc.offset is not None and loc.offset > written.index("==")
    lines = info.value.render().splitlines()
    assert lines[1].strip() == written and lines[2].endswith("^")


def test_parse_error_in_a_macro_names_the_macro() -> None:
    with pytest.raises(ParseError) as info:
        load_sources([("f.yaml", "- macro: m\n  condition: (evt.type = open\n")])
    assert info.value.location.item_kind == "macro" and info.value.location.item_name == "m"
    assert info.value.location.offset is not None


def test_list_used_like_a_macro_says_so() -> None:
    text = "- list: shells\n  items: [bash, sh]\n" + rule("r", "evt.type = execve and shells")
    with pytest.raises(ParseError) as info:
        load_sources([("f.yaml", text)])
    assert "list 'shells'" in info.value.message
    assert info.value.location.offset == len("evt.type = execve and ")


def test_unknown_macro_error_location() -> None:
    with pytest.raises(LoadError) as info:
        load_sources([("f.yaml", rule("r", "evt.type = open and not my_macro"))])
    assert info.value.message == "Undefined macro 'my_macro' used in filter."
    assert info.value.location.offset == len("evt.type = open and not ")
    assert info.value.render().startswith("f.yaml:1: rule 'r': Undefined macro")


def test_engine_version_is_0_57_0() -> None:
    assert ENGINE_VERSION == (0, 57, 0)
    load_sources([("f.yaml", "- required_engine_version: 0.57.0\n")])
    with pytest.raises(LoadError, match="Rules require engine version 1.0.0"):
        load_sources([("f.yaml", "- required_engine_version: 1.0.0\n")])


def test_other_plugin_error_names_it_and_its_line() -> None:
    text = (
        "- required_plugin_versions:\n"
        "    - name: container\n      version: 0.4.0\n"
        "    - name: json\n      version: 0.7.0\n"
    )
    with pytest.raises(LoadError) as info:
        load_sources([("f.yaml", text)])
    assert "'json'" in info.value.message and info.value.location.line == 4


def test_evttype_warning_names_the_rule() -> None:
    result = load_sources([("f.yaml", rule("broad", "proc.name = cat"))])
    (warning,) = [w for w in result.warnings if w.code == "LOAD_NO_EVTTYPE"]
    assert warning.location.item_name == "broad"


def test_warn_evttypes_false_reaches_the_loaded_rule() -> None:
    result = load_sources([("f.yaml", rule("r", "evt.type = open") + "  warn_evttypes: false\n")])
    assert result.rules[0].warn_evttypes is False


def test_skip_if_unknown_filter_reaches_the_loaded_rule() -> None:
    result = load_sources([("f.yaml", rule("r", "evt.type = open") + "  skip-if-unknown-filter: true\n")])
    assert result.rules[0].skip_if_unknown_filter is True


def test_missing_file_is_a_load_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        load_files([tmp_path / "nope.yaml"])
    assert info.value.location.file == str(tmp_path / "nope.yaml")
    assert "cannot read rules file" in info.value.message


def test_files_are_read_in_turn_so_an_error_in_the_first_wins(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: r\n  enabled: maybe\n")
    with pytest.raises(RulesError) as info:
        load_files([bad, tmp_path / "missing.yaml"])
    assert info.value.location.file == str(bad)


def test_empty_sources() -> None:
    assert load_sources([]) == LoadResult((), (), ())


def test_positions_point_into_the_condition_as_written() -> None:
    written = "proc.name in (shells) and proc.pname = x and spawned"
    text = "- list: shells\n  items: [bash, sh, zsh]\n- macro: spawned\n  condition: evt.type = execve\n"
    (loaded,) = load_sources([("f.yaml", text + rule("r", written))]).rules
    assert loaded.condition_text == written
    assert isinstance(loaded.condition, AndExpr)
    in_list, pname, macro = loaded.condition.children
    assert in_list.pos.idx == 0
    assert pname.pos.idx == written.index("proc.pname") and pname.pos.col == pname.pos.idx + 1
    assert macro.pos.idx == written.index("spawned")  # the macro's check sits at the macro's name


def test_rule_with_exceptions_carries_the_built_condition_text() -> None:
    exceptions = "  exceptions:\n    - name: e\n      fields: [proc.name]\n      values: [[cat]]\n"
    text = rule("r", "evt.type = open") + exceptions
    (loaded,) = load_sources([("f.yaml", text)]).rules
    assert loaded.condition_text == "(evt.type = open) and not (( proc.name = cat))"
    assert isinstance(loaded.condition, AndExpr)
    assert loaded.condition.children[1].pos.idx == loaded.condition_text.index("not")


def test_exception_fields_are_handed_to_the_compiler() -> None:
    exceptions = (
        "  exceptions:\n"
        "    - {name: a, fields: [proc.name, fd.name]}\n"
        "    - {name: b, fields: proc.pname, values: [x]}\n"
        "    - {name: c, fields: [not.exist, proc.name]}\n"
    )
    (loaded,) = load_sources([("f.yaml", rule("r", "evt.type = open") + exceptions)]).rules
    assert loaded.exception_fields == ("proc.name", "fd.name", "proc.pname", "not.exist")


def test_absurdly_deep_macro_chains_are_a_clear_error() -> None:
    chain = "".join(f"- macro: m{i}\n  condition: m{i - 1} and proc.name = x{i}\n" for i in range(1, 1000))
    text = "- macro: m0\n  condition: evt.type = open\n" + chain + rule("r", "m999")
    with pytest.raises(LoadError, match="nest too deeply"):
        load_sources([("f.yaml", text)])
