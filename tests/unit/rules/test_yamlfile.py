"""rules.yamlfile: YAML text -> typed items with lines, decoded the way Falco's reader decodes them."""

from __future__ import annotations

import pytest

from rules.errors import LoadError
from rules.loaded import LoadWarning
from rules.priority import Priority
from rules.yamlfile import read_items
from rules.yamlitems import (
    EngineVersionItem,
    Item,
    ListItem,
    MacroItem,
    PluginVersionsItem,
    RuleEnable,
    RuleItem,
    RuleUpdate,
)

RULE = "- rule: r\n  desc: d\n  condition: c\n  output: o\n"


def read(text: str) -> tuple[list[Item], list[LoadWarning]]:
    warnings: list[LoadWarning] = []
    return list(read_items(text, "f.yaml", warnings)), warnings


def error(text: str) -> LoadError:
    with pytest.raises(LoadError) as info:
        read(text)
    return info.value


def test_items_carry_file_and_line_of_their_start() -> None:
    items, _ = read(
        "# comment\n"
        "- list: a\n"
        "  items: [x]\n"
        "\n"
        "- macro: m\n"
        "  condition: evt.type = open\n"
        "- rule: r\n"
        "  desc: d\n"
        "  condition: m\n"
        "  output: o\n"
        "  priority: INFO\n"
    )
    assert [(type(i).__name__, i.location.line) for i in items] == [
        ("ListItem", 2),
        ("MacroItem", 5),
        ("RuleItem", 7),
    ]
    assert items[2].location.file == "f.yaml"
    assert items[2].location.item_kind == "rule" and items[2].location.item_name == "r"


def test_scalars_stay_text_like_yaml_cpp() -> None:
    items, _ = read("- list: ports\n  items: [80, 0x10, 1.0, true, ~foo]\n")
    assert isinstance(items[0], ListItem)
    assert items[0].items == ("80", "0x10", "1.0", "true", "~foo")


def test_full_rule_defaults() -> None:
    items, _ = read(
        "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: '  o  '\n  priority: info\n"
    )
    rule = items[0]
    assert isinstance(rule, RuleItem)
    assert rule.output == "o"  # trimmed, as Falco trims outputs
    assert rule.priority is Priority.INFORMATIONAL
    assert (rule.source, rule.enabled, rule.tags, rule.exceptions) == ("syscall", True, frozenset(), ())
    assert (rule.warn_evttypes, rule.skip_if_unknown_filter, rule.capture, rule.capture_duration) == (
        True,
        False,
        False,
        0,
    )


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("On", True), ("TRUE", True), ("n", False)])
def test_booleans_use_yaml_cpp_spellings(text: str, value: bool) -> None:
    items, _ = read(f"{RULE}  priority: INFO\n  enabled: {text}\n")
    assert isinstance(items[0], RuleItem) and items[0].enabled is value


def test_bad_boolean_names_key_and_line() -> None:
    err = error(RULE + "  priority: INFO\n  enabled: maybe\n")
    assert "'enabled'" in err.message and err.location.line == 6


def test_override_items_split_into_append_then_replace() -> None:
    items, _ = read(
        "- rule: r\n"
        "  condition: and proc.name = x\n"
        "  priority: ERROR\n"
        "  override: {condition: append, priority: replace}\n"
    )
    assert [type(i) for i in items] == [RuleUpdate, RuleUpdate]
    first, second = items
    assert isinstance(first, RuleUpdate) and isinstance(second, RuleUpdate)
    assert (first.mode, first.condition, first.priority) == ("append", "and proc.name = x", None)
    assert (second.mode, second.condition, second.priority) == ("replace", None, Priority.ERROR)


def test_standalone_enabled_is_deprecated() -> None:
    items, warnings = read("- rule: r\n  enabled: false\n")
    assert items == [RuleEnable("r", False, items[0].location)]
    assert [w.code for w in warnings] == ["LOAD_DEPRECATED_ITEM"]


def test_list_and_macro_append_forms() -> None:
    items, warnings = read(
        "- list: l\n  items: [a]\n  override: {items: append}\n"
        "- macro: m\n  condition: or x\n  append: true\n"
        "- macro: m\n  condition: y\n  override: {condition: replace}\n"
    )
    assert isinstance(items[0], ListItem) and items[0].append
    assert isinstance(items[1], MacroItem) and items[1].append
    assert isinstance(items[2], MacroItem) and not items[2].append
    assert [w.code for w in warnings] == ["LOAD_DEPRECATED_ITEM"]


def test_engine_and_plugin_requirements() -> None:
    items, _ = read(
        "- required_engine_version: 0.57.0\n"
        "- required_engine_version: 26\n"
        "- required_plugin_versions:\n"
        "    - name: container\n"
        "      version: 0.4.0\n"
        "      alternatives: [{name: k8smeta, version: 0.1.0}]\n"
    )
    assert isinstance(items[0], EngineVersionItem) and items[0].version == (0, 57, 0)
    assert isinstance(items[1], EngineVersionItem) and items[1].version == (0, 26, 0)
    plugins = items[2]
    assert isinstance(plugins, PluginVersionsItem)
    versions = [(p.name, p.version) for p in plugins.alternatives]
    assert versions == [("container", "0.4.0"), ("k8smeta", "0.1.0")]


def test_exceptions_entries() -> None:
    items, _ = read(
        "- rule: r\n  desc: d\n  condition: c\n  output: o\n  priority: INFO\n"
        "  exceptions:\n"
        "    - name: e\n"
        "      fields: [proc.name, fd.name]\n"
        "      comps: [=, startswith]\n"
        "      values:\n"
        "        - [bash, [/etc, /var]]\n"
    )
    rule = items[0]
    assert isinstance(rule, RuleItem)
    (ex,) = rule.exceptions
    assert [f.item for f in ex.fields.items] == ["proc.name", "fd.name"]
    assert ex.values[0].items[0].item == "bash"
    assert [v.item for v in ex.values[0].items[1].items] == ["/etc", "/var"]
    assert ex.location.line == 7 and ex.location.item_kind == "exception"


def test_warnings_for_unknown_things_and_names() -> None:
    _, warnings = read(
        "- foo: bar\n"
        "- list: bad name\n  items: []\n  extra: 1\n"
        "- macro: bad-name\n  condition: c\n"
    )
    assert [w.code for w in warnings] == [
        "LOAD_UNKNOWN_ITEM",
        "LOAD_INVALID_LIST_NAME",
        "LOAD_UNKNOWN_KEY",
        "LOAD_INVALID_MACRO_NAME",
    ]
    assert warnings[2].location.item_name == "bad name"


def test_null_documents_and_items_are_skipped() -> None:
    assert read("")[0] == []
    assert read("---\n...\n")[0] == []
    assert read("- \n- list: a\n  items: []\n")[0][0].location.line == 2


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("- rule: a\n  desc: [\n", "invalid YAML", 3),
        ("rule: a\n", "Rules content is not yaml array of objects", 1),
        ("just text\n", "Rules content is not yaml", 1),
        ("- [a, b]\n", "Each element should be a yaml associative array", 1),
        ("- rule: r\n  desc: d\n  output: o\n  priority: INFO\n", "no mapping for key 'condition'", 1),
        ("- rule: r\n  desc: d\n  condition:\n  output: o\n  priority: INFO\n", "is empty", 3),
        ("- rule: r\n  desc: d\n  condition: ''\n  output: o\n  priority: INFO\n", "must be non-empty", 3),
        ("- rule: r\n  desc: d\n  condition: [a]\n  output: o\n  priority: INFO\n", "not a scalar", 3),
        (RULE + "  priority: 5\n", "Invalid priority '5'", 5),
        (RULE + "  priority: ' info'\n", "Invalid priority", 5),
        (RULE + "  priority: INFO\n  tags: foo\n", "not a sequence", 6),
        ("- list: l\n  items: [a, [b]]\n", "not a scalar", 2),
        ("- list: l\n  items: a\n", "not a sequence", 2),
        ("- list: l\n  items: [a]\n  override: {items: merge}\n", "Invalid override operation", 3),
        ("- list: l\n  items: [a]\n  append: true\n  override: {items: append}\n", "used together", 1),
        ("- rule: r\n  priority: INFO\n  override: {priority: append}\n", "cannot be appended to", 3),
        ("- rule: r\n  enabled: true\n  override: {enabled: bogus}\n", "Invalid override operation", 3),
        ("- required_engine_version: seven\n", "Unable to parse engine version", 1),
        ("- required_plugin_versions: container\n", "must be a sequence", 1),
        ("- list: l\n  items: [a]\n  items: [b]\n", "duplicate key 'items'", 3),
        (RULE + "  priority: INFO\n  exceptions: {}\n", "sequence", 6),
    ],
)
def test_errors_name_line_and_reason(text: str, message: str, line: int) -> None:
    err = error(text)
    assert message in err.message
    assert err.location.file == "f.yaml" and err.location.line == line


def test_error_names_the_item() -> None:
    err = error("- rule: my rule\n  desc: d\n  condition: c\n  output: o\n  priority: urgent\n")
    assert err.render().startswith("f.yaml:5: rule 'my rule': Invalid priority 'urgent'")


def test_items_are_read_lazily_so_the_first_problem_in_file_order_wins() -> None:
    warnings: list[LoadWarning] = []
    items = read_items("- list: a\n  items: [x]\n- list: b\n  items: oops\n", "f.yaml", warnings)
    first = next(items)
    assert isinstance(first, ListItem) and first.name == "a"
    with pytest.raises(LoadError):
        next(items)
