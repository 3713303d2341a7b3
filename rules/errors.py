"""Errors of the rule engine, under one root.

    RulesError
     ├── LoadError      a rules file cannot be read or an item is malformed (YAML, schema, references)
     ├── ParseError     a condition does not parse (carries the position)
     ├── CompileError   a condition parses but cannot be compiled (unknown field, bad operator/type)
     ├── MacroError     internal to loading (`rules.resolve`): re-raised as a LoadError with its location
     ├── InterestRecordError  a `peregrine.control` interest record is malformed (`rules.interest_wire`)
     └── NativeError    a C extension (the batch gate, the wire decoder) cannot be built (`rules.native`)

Every error names where it happened: the file, the line of the item in it, the item's kind and
name, and for conditions the position inside the condition with a caret under it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where an error or warning points: a file and line, the item, and an offset in its condition."""

    file: str | None = None
    line: int | None = None
    item_kind: str | None = None  # "rule", "macro", "list", ...
    item_name: str | None = None
    condition: str | None = None  # the condition text the offset refers to
    offset: int | None = None  # 0-based offset in `condition`

    def describe(self) -> str:
        head = ""
        if self.file is not None:
            head = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.item_kind is not None:
            what = f"{self.item_kind} {self.item_name!r}" if self.item_name is not None else self.item_kind
            head = f"{head}: {what}" if head else what
        return head

    def caret(self) -> str:
        """The condition on one line with a caret under the offending character, or ''."""
        if self.condition is None or self.offset is None:
            return ""
        text = " ".join(self.condition.splitlines())
        return f"    {text}\n    {' ' * min(self.offset, len(text))}^"


class RulesError(Exception):
    """Root of every error the rule engine raises on purpose."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.message = message
        self.location = location or Location()
        super().__init__(self.render())

    def render(self) -> str:
        where = self.location.describe()
        text = f"{where}: {self.message}" if where else self.message
        caret = self.location.caret()
        return f"{text}\n{caret}" if caret else text


class LoadError(RulesError):
    """A rules file or one of its items cannot be loaded."""


class ParseError(RulesError):
    """A condition is not valid in the condition language."""


class CompileError(RulesError):
    """A condition is valid text but cannot be compiled (fields, operators, types, macros)."""


class InterestRecordError(RulesError):
    """A `peregrine.control` interest record is malformed; `field` is the path of what is wrong in
    it (``interest/openat/fd.name/prefixes/3``), the message says why."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"interest record: {field}: {problem}")
