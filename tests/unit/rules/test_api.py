"""The public API of the rules package is exactly these names."""

import rules


def test_public_names_are_pinned() -> None:
    assert sorted(rules.__all__) == [
        "CompileError",
        "CompiledRule",
        "LoadError",
        "ParseError",
        "Priority",
        "RulesError",
        "Ruleset",
        "build_alert",
        "compile_rules",
        "load",
    ]
    assert all(hasattr(rules, name) for name in rules.__all__)
