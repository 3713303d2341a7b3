"""What a catalog row is: field types, flags, the row itself, and the record locals its code reads.

A row's code is an *extractor*: fixed catalog text (``"f[3]"``, parsed once) or a function
``(arg, event_type_id) -> Code`` for fields that take an argument (``proc.aname[2]``) or whose
place depends on the event type (``evt.arg.flags``). A function puts the user's argument into
the code as a constant node (`rules.pyexpr.fill`), never into text. Given ``event_type_id=None``
it must return code that works for any event (outputs use that form), and it may return the
constant ``None`` for "never present on this event type", which the compiler folds away.

Code is written over these locals, which the generated function binds once per event (`BASES`):

    ev  the event              a   ev[EV_ARGS]
    p   the process            pp  the parent process, or an all-None record
    f   the fd, or an all-None record
    c   the container record, or an all-None record

so a missing parent, fd or container reads as ``None`` without a branch, and ``None`` is the one
"missing value" every comparison treats as false.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag, StrEnum

from rules import record as R
from rules.affixes import Affixes
from rules.pyexpr import Code, code, names_in

Extractor = str | Callable[[str | None, int | None], Code]
# (the read a cheap necessary condition tests, that test over a present value, the affixes it
# requires of the read)
Implied = Callable[[tuple[object, ...]], tuple[Code, Callable[[ast.expr], ast.expr], Affixes]]


class FieldType(StrEnum):
    """libs' parameter types, reduced to those the catalog uses."""

    CHARBUF = "CHARBUF"
    FSPATH = "FSPATH"
    INT64 = "INT64"
    UINT64 = "UINT64"
    UINT32 = "UINT32"
    PORT = "PORT"
    BOOL = "BOOL"
    IPADDR = "IPADDR"
    IPNET = "IPNET"
    ABSTIME = "ABSTIME"
    RELTIME = "RELTIME"
    BYTEBUF = "BYTEBUF"


STRING_TYPES = frozenset({FieldType.CHARBUF, FieldType.FSPATH})
NUMERIC_TYPES = frozenset(
    {
        FieldType.INT64, FieldType.UINT64, FieldType.UINT32, FieldType.PORT,
        FieldType.ABSTIME, FieldType.RELTIME,
    }
)


class FieldFlag(IntFlag):
    NONE = 0
    ARG_REQUIRED = 1  # the field needs [arg] (or, for evt.arg/evt.rawarg, .NAME)
    ARG_ALLOWED = 2  # the field takes an optional [arg]
    NO_RHS = 4  # cannot be used as a right-hand field (val(), transformers)
    FILTER_ONLY = 8  # not usable in outputs
    IS_LIST = 16  # the value is a list
    NO_TRANSFORMER = 32  # transformers may not wrap it
    ANY_OF = 64  # the extractor yields a tuple of candidates; a check is true if any candidate passes
    DEPRECATED = 128
    ANCESTORS = 256  # without [N] the value is every strict ancestor's; a check is true if any passes
    FEW_VALUES = 512  # few distinct values (fd.typechar, evt.is_open_read): equality often holds
    NEVER_MISSING = 1024  # the extractor always yields a value (a computed bool), never None


F = FieldFlag
CH, PATH, I64 = FieldType.CHARBUF, FieldType.FSPATH, FieldType.INT64
U64, U32 = FieldType.UINT64, FieldType.UINT32
PORT, BOOL, IP, NET, ABS, REL, BUF = (
    FieldType.PORT,
    FieldType.BOOL,
    FieldType.IPADDR,
    FieldType.IPNET,
    FieldType.ABSTIME,
    FieldType.RELTIME,
    FieldType.BYTEBUF,
)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    flags: FieldFlag
    desc: str
    extract: Extractor
    # For fields whose value may be unknown while the field is present (fd.sip.name with an IP
    # the mapping does not know): code whose None-ness decides presence, so "!=" stays Falco's.
    presence: str | None = None
    # A cheap necessary condition of "field in values", tested first.
    implied: Implied | None = None

    def code(self, arg: str | None, event_type: int | None) -> Code:
        """The extractor's expression for this argument and event type."""
        if callable(self.extract):
            return self.extract(arg, event_type)
        return code(self.extract)

    def presence_code(self) -> Code | None:
        return None if self.presence is None else code(self.presence)


# --- the locals generated code binds per event, in dependency order --------------------------
BASES: dict[str, Code] = {
    "p": code(f"ev[{R.EV_PROC}]"),
    "pp": code(f"(p[{R.P_PARENT}] or _EP)"),
    "c": code(f"(p[{R.P_CONTAINER}] or _EC)"),
    "f": code(f"(ev[{R.EV_FD}] or _EF)"),
    "a": code(f"ev[{R.EV_ARGS}]"),
}
BASE_DEPS: dict[str, tuple[str, ...]] = {"p": (), "pp": ("p",), "c": ("p",), "f": (), "a": ()}


def bases_of(read: Code | ast.AST) -> set[str]:
    """Which `BASES` locals a piece of generated code reads."""
    tree = read.tree if isinstance(read, Code) else read
    found = {node.id for node in names_in(tree) if node.id in BASES}
    for base in list(found):
        found.update(BASE_DEPS[base])
    return found


# --- catalog text shared by the families (no user data: fixed slots and helper names) ---------
def proc(slot: int) -> str:
    return f"p[{slot}]"


def opt(fn: str, value: str) -> str:
    """Call `fn` only on a present value."""
    return f"(None if {value} is None else {fn}({value}))"


def local_remote(local: bool, client_slot: int, server_slot: int) -> str:
    """Local end is the server end when this process accepted the connection."""
    first, second = (server_slot, client_slot) if local else (client_slot, server_slot)
    return f"(f[{first}] if f[{R.F_IS_SERVER}] else f[{second}])"


def ip_names(slot_code: str) -> str:
    return f"(_ipn.get({slot_code}) if {slot_code} is not None else None)"
