"""What loading produces and compiling consumes: rules with fully resolved conditions.

`rules.collect` (files -> items -> lists substituted, macros inlined, exceptions appended) returns a
`LoadResult`; `rules.compiler` turns each `LoadedRule` into generated code. Nothing here evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.ast import Expr
from rules.errors import Location
from rules.priority import Priority


@dataclass(frozen=True, slots=True)
class LoadWarning:
    """A non-fatal finding, e.g. an unused macro; `code` is Falco's name (LOAD_UNUSED_MACRO...)."""

    code: str
    message: str
    location: Location = field(default_factory=Location)

    def render(self) -> str:
        where = self.location.describe()
        text = f"warning {self.code}: {self.message}"
        return f"{where}: {text}" if where else text


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """One rule after loading all files in order: its condition AST is self-contained (no macro
    identifiers, lists already substituted, exceptions already appended)."""

    name: str
    condition: Expr
    # the condition as written (after append/override; with exceptions, the text Falco builds from
    # them): every node position in `condition` is an offset in this text (an inlined macro's nodes
    # carry the position of the macro's name), so errors can put a caret under it
    condition_text: str
    output: str
    priority: Priority
    tags: tuple[str, ...]
    desc: str
    enabled: bool
    source: str  # "syscall" for every rule Peregrine evaluates
    location: Location
    warn_evttypes: bool = True  # False: no LOAD_NO_EVTTYPE warning for this rule
    skip_if_unknown_filter: bool = False  # True: an unknown field skips the rule with a warning
    # every field (or transformer expression) named by the rule's exceptions, values or not: Falco
    # refuses the rule when one is not a valid left-hand side ("'x' is not a supported filter field")
    exception_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileCounts:
    """How many items of each kind one file defined (redefinitions included)."""

    path: str
    rules: int
    macros: int
    lists: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    rules: tuple[LoadedRule, ...]  # definition order, disabled ones included
    warnings: tuple[LoadWarning, ...]
    files: tuple[FileCounts, ...]
