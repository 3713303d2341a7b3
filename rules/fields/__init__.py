"""The field catalog: every field a condition or an output may name, one row each, split by
family as libs splits its filter checks (`evt`, `proc`, `user`, `fd`, `container`).

Each row says the field's type, its flags (libs' ``EPF_*``), where the value comes from in the
positional records of `rules.record`, and how to read it (`rules.fields.spec`). The catalog sits
below the compiler: it imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from rules import record as R
from rules.fields import container, evt, fd, proc, user
from rules.fields.runtime import EMPTY_CONTAINER, EMPTY_FD, EMPTY_PROCESS, HELPERS
from rules.fields.spec import (
    BASE_DEPS,
    BASES,
    NUMERIC_TYPES,
    STRING_TYPES,
    Extractor,
    FieldFlag,
    FieldSpec,
    FieldType,
    bases_of,
)

__all__ = [
    "BASES", "BASE_DEPS", "EMPTY_CONTAINER", "EMPTY_FD", "EMPTY_PROCESS", "FIELDS", "HELPERS",
    "NUMERIC_TYPES", "STRING_TYPES", "Extractor", "FieldFlag", "FieldSpec", "FieldType", "bases_of",
    "lookup",
]  # fmt: skip

FIELDS: Mapping[str, FieldSpec] = {
    row.name: row for family in (evt, proc, user, fd, container) for row in family.ROWS
}
# Families whose parameter name follows a dot (evt.arg.flags): the dotted tail is the argument.
_DOTTED_ARG_FAMILIES = ("evt.arg", "evt.rawarg")
_ALL_PARAMS = frozenset(p for params in R.EVENT_PARAMS for p in params)


def lookup(name: str, arg: str | None) -> tuple[FieldSpec, str | None] | None:
    """The row for a field as written, with its effective argument; None if there is none.

    ``evt.arg.flags`` resolves to the ``evt.arg`` row with argument ``flags``, if some event type
    has a parameter of that name (libs' "unknown event argument" otherwise)."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec, arg
    for family in _DOTTED_ARG_FAMILIES:
        if name.startswith(family + ".") and arg is None:
            param = name[len(family) + 1 :]
            if param in _ALL_PARAMS:
                return FIELDS[family], param
    return None
