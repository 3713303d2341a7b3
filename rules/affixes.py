"""What a string test requires of its value: the necessary conditions prefilters key on.

It sits below the field catalog and the compiler, so both can describe a test's requirement
without importing each other (`rules.fields` declares what a field's tests imply; `rules.gate` and
`rules.optimize` use it to rule events out early).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Affixes:
    """A necessary condition on one string read, for prefilters (`rules.codegen`): when the
    check holds, the value equals one of `exact`, starts with one of `prefixes`, ends with one of
    `suffixes` or contains one of `contains`."""

    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    contains: frozenset[str] = frozenset()

    def __or__(self, other: Affixes) -> Affixes:
        return Affixes(
            self.exact | other.exact, self.prefixes | other.prefixes, self.suffixes | other.suffixes,
            self.contains | other.contains,
        )

    @staticmethod
    def union(many: Iterable[Affixes]) -> Affixes:
        """What any one of several requirements lets through."""
        out = Affixes()
        for affixes in many:
            out = out | affixes
        return out

    def size(self) -> int:
        return len(self.exact) + len(self.prefixes) + len(self.suffixes) + len(self.contains)

    @staticmethod
    def of_test(op: str, values: tuple[object, ...]) -> Affixes | None:
        """The affixes a mergeable string test (`Test`) requires; None for any other test."""
        if not values or not all(isinstance(v, str) for v in values):
            return None
        texts = frozenset(str(v) for v in values)
        if op == "in":
            return Affixes(exact=texts)
        if op == "startswith":
            return Affixes(prefixes=texts)
        if op == "endswith":
            return Affixes(suffixes=texts)
        if op == "contains":
            return Affixes(contains=texts)
        return None
