"""A reference evaluator: Falco's semantics walked straight over the resolved condition tree.

This is the oracle the differential tests check the compiled rule engine against, so it shares
none of the code it checks: no code generation, no gate, no optimiser, none of the compiler's
operator, operand or transformer tables, none of the catalog's code templates. It reads events
through the record layout of `rules.record` and takes from `rules.fields` only what the catalog
*declares* (a field's type and flags, via `lookup`). Operators, transformers and field extraction
are written here from libs' definitions (falcosecurity/libs @ 48dfd53):

- ``filter_compare.cpp`` (``flt_compare_*``): strings compare as C strings, byte by byte
  (``strcmp``, ``strstr``, ``strcasestr`` folding ASCII only); ``glob``/``iglob`` are
  ``fnmatch(3)`` without ``FNM_PATHNAME`` (so ``*`` crosses ``/``, ``\\`` escapes, ``[!..]``
  and ``[^..]`` negate); numbers compare in the field's C type, so a negative literal wraps
  on an unsigned field.
- ``sinsp_filtercheck.cpp`` (``compare_nocache``, ``compare_rhs``, ``compare_rhs_with_mod``):
  a value that cannot be extracted makes every operator false, ``!=`` included; ``oneof`` /
  ``anyof`` / ``allof`` count the list elements the operator holds for.
- ``prefix_search.h`` (``pmatch``): paths split on ``/`` into non-empty components and matched
  against a trie of whole components, glob wildcards allowed per component.
- ``sinsp_filtercheck_thread.cpp``: ``proc.aname`` and the other ancestor fields without an
  index hold if any strict ancestor's value satisfies the check (``compare_full_aname``).
- list-valued fields (``EPF_IS_LIST``, ``fd.types``): ``sinsp_filtercheck_fd.cpp`` gathers each
  open fd's type once (``extract_nocache``) on events that create, use or destroy an fd
  (``extract_fd``), ``fd.types[N]`` is fd N's type alone; ``sinsp_filtercheck.cpp`` ``compare_rhs``
  (the list branch): ``in`` holds when every value is a right-hand value, ``intersects`` when
  one is, ``exists`` whenever extraction succeeds, an empty list included; a one-value transformer
  maps every value, ``len`` counts them (``sinsp_filter_transformer_len.cpp``).
- ``sinsp_filter_transformers/``: ``tolower``/``toupper`` map ASCII bytes, ``len`` counts
  bytes, ``b64`` decodes without padding and fails (no value) on bad input, ``basename`` keeps
  the text after the last ``/``.

Strings are handled as the bytes Falco sees: record text holds invalid UTF-8 as surrogate
escapes (``bytes.decode("utf-8", "surrogateescape")``), so each string is encoded back that way.

Shared on purpose, and why: the *text* of ``evt.arg.*``, ``evt.args``, ``evt.res``, ``fd.type``
and ``thread.cap_*`` comes from `rules.render` (the output renderer, which the code generator does
not own), because re-deriving libs' flag, errno and capability tables here would copy the same
tables. ``regex`` is RE2 itself (``google-re2``), set up here as libs sets it up, not borrowed.

Written for the reader, not for speed: every event walks the whole tree.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # the binding ships no type information

from rules import record as R
from rules import render
from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
    FieldExpr,
    FieldRefExpr,
    IdentifierExpr,
    ListExpr,
    NotExpr,
    OrExpr,
    TransformerExpr,
    UnaryCheckExpr,
    ValueExpr,
)
from rules.fields import FieldFlag, FieldType, lookup
from rules.loaded import LoadedRule

__all__ = ["UNSUPPORTED", "evaluate", "fnmatch_bytes", "match"]

# Fields and transformers of the catalog this evaluator does not implement independently, with the
# reason; the differential tests leave exactly these out.
UNSUPPORTED: Final[Mapping[str, str]] = {
    "getopt": "libs master's getopt() scans argv as a list with getopt(3)'s error results (':' and '?'); "
    "not re-derived here",
}

_UNSIGNED_BITS: Final[Mapping[FieldType, int]] = {
    FieldType.UINT64: 64,
    FieldType.UINT32: 32,
    FieldType.PORT: 16,
    FieldType.ABSTIME: 64,
    FieldType.RELTIME: 64,
}
_SIGNED: Final = frozenset({FieldType.INT64})
_STRINGS: Final = frozenset({FieldType.CHARBUF, FieldType.FSPATH})
_IPS: Final = frozenset({FieldType.IPADDR, FieldType.IPNET})

# Linux open(2) flag bits, as the records carry them (rules.record: raw kernel values)
_O_ACCMODE, _O_WRONLY, _O_RDWR = 0o3, 0o1, 0o2
_O_CREAT, _O_TMPFILE = 0o100, 0o20200000
_EXEC_BITS = 0o111
_OPEN_EVENTS: Final = frozenset({"open", "openat", "openat2"})


class _Missing:
    """The value of a field that cannot be extracted for this event (libs: extract fails)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# How a field with several candidate values is compared (`_Typed.several`)
ANCESTORS, ENDPOINTS, LIST = "ancestors", "endpoints", "list"


@dataclass(frozen=True, slots=True)
class _Typed:
    """A value with the libs type it is compared as. ``values`` holds one value, or the candidates
    of a field that has several: the index-less ancestor fields (``several=ANCESTORS``) and
    fd.ip/fd.port/fd.net, the client and the server end (``several=ENDPOINTS``); or every value of
    a list-valued field (``several=LIST``), possibly none."""

    type: FieldType
    values: tuple[Any, ...]
    several: str | None = None


# --- entry points ------------------------------------------------------------------------------
def evaluate(condition: Expr, event: R.Event, *, ip_names: Mapping[str, str] | None = None) -> bool:
    """Whether a macro-resolved condition holds for `event`, as Falco evaluates it.

    `ip_names` (IP text -> name) stands in for the DNS resolution of ``fd.*ip.name``."""
    return _Evaluator(event, ip_names or {}).truth(condition)


def match(
    rules: Iterable[LoadedRule],
    event: R.Event,
    *,
    all_matches: bool = False,
    ip_names: Mapping[str, str] | None = None,
) -> list[str]:
    """Names of the enabled syscall rules whose condition holds, in file (definition) order: the
    first only, or every one with `all_matches` (Falco's ``rule_matching: first | all``).

    Falco evaluates a rule only on the event codes its condition can match; that set is computed
    to contain every code the condition can be true on, so evaluating the condition on every event
    gives the same answer (given Falco's invariant that ``evt.num`` starts at 1), except where
    several types share one code: `_indexed_for_generic` says when."""
    names: list[str] = []
    generic = R.EVENT_TYPES[event[R.EV_TYPE]] in _GENERIC_NAMES
    for rule in rules:
        if not rule.enabled or rule.source != "syscall":
            continue
        if generic and not _indexed_for_generic(rule.condition, negated=False):
            continue
        if evaluate(rule.condition, event, ip_names=ip_names):
            names.append(rule.name)
            if not all_matches:
                break
    return names


_GENERIC_NAMES: Final = frozenset(R.EVENT_TYPES[i] for i in R.GENERIC_TYPE_IDS)
_TYPE_FIELDS: Final = frozenset({"evt.type", "syscall.type"})
_TYPE_OPS: Final = frozenset({"=", "==", "!=", "in"})


def _indexed_for_generic(e: Expr, *, negated: bool) -> bool:
    """Whether libs puts a rule with condition `e` in the index of its generic event code
    (PPME_GENERIC_E/X), which every syscall without an event of its own shares (ppm_codes.cpp):
    a negation is pushed down to the leaves; ``evt.type`` compared by ``=``, ``==``, ``in`` or
    ``!=`` with names, without a modifier, names codes, a generic name the generic code, so
    ``evt.type != syncfs`` leaves it out for personality too; and and or meet and join; any other
    check names every code, negated or not."""
    if isinstance(e, NotExpr):
        return _indexed_for_generic(e.child, negated=not negated)
    if isinstance(e, (AndExpr, OrExpr)):
        found = [_indexed_for_generic(c, negated=negated) for c in e.children]
        return all(found) if isinstance(e, AndExpr) != negated else any(found)
    if not (
        isinstance(e, BinaryCheckExpr) and isinstance(e.left, FieldExpr) and e.left.name in _TYPE_FIELDS
        and e.left.arg is None and e.op in _TYPE_OPS and e.modifier is None
    ):  # fmt: skip
        return True
    values = e.right.values if isinstance(e.right, ListExpr) else (e.right,)
    names_generic = any(isinstance(v, ValueExpr) and v.value in _GENERIC_NAMES for v in values)
    return names_generic != ((e.op == "!=") != negated)


# --- the tree walk -------------------------------------------------------------------------------
class _Evaluator:
    def __init__(self, event: R.Event, ip_names: Mapping[str, str]) -> None:
        self.ev = event
        self.ip_names = ip_names

    def truth(self, e: Expr) -> bool:
        if isinstance(e, AndExpr):
            return all(self.truth(c) for c in e.children)
        if isinstance(e, OrExpr):
            return any(self.truth(c) for c in e.children)
        if isinstance(e, NotExpr):
            return not self.truth(e.child)
        if isinstance(e, UnaryCheckExpr):
            left = self.operand(e.left)
            if isinstance(left, _Missing):
                return False
            return left.several == LIST or len(left.values) > 0
        if isinstance(e, BinaryCheckExpr):
            return self.check(e)
        if isinstance(e, IdentifierExpr):
            raise ValueError(f"unresolved macro {e.name!r}: evaluate resolved conditions only")
        raise TypeError(f"not a condition node: {e!r}")

    def check(self, e: BinaryCheckExpr) -> bool:
        left = self.operand(e.left)
        if isinstance(left, _Missing):
            return False
        if left.several == LIST:
            rhs_list = self.right_values(e, left.type) or []
            if e.op == "in":
                return all(_compare("in", None, left.type, v, rhs_list) for v in left.values)
            if e.op == "intersects":
                return any(_compare("in", None, left.type, v, rhs_list) for v in left.values)
            raise ValueError(f"libs refuses {e.op!r} on a list field; the loader lets no such rule through")
        if not left.values:
            return False
        rhs = self.right_values(e, left.type)
        if rhs is None:  # a right-hand field that cannot be extracted
            return False
        if left.several is None:
            return _compare(e.op, e.modifier, left.type, left.values[0], rhs)
        # Both kinds go through libs' single-value compare_rhs overload, which ignores a
        # modifier and compares with the first right-hand value only (a set for in/pmatch).
        op, modifier = e.op, e.modifier
        if modifier is not None or (left.several == ENDPOINTS and left.type is FieldType.IPNET):
            modifier, rhs = None, rhs[:1]  # compare_net reads filter_value_p() alone
        if left.several == ENDPOINTS and op == "!=":
            # compare_ip/compare_port/compare_net: "!=" holds when neither end is equal
            return all(_compare(op, None, left.type, v, rhs) for v in left.values)
        return any(_compare(op, modifier, left.type, v, rhs) for v in left.values)

    def right_values(self, e: BinaryCheckExpr, ltype: FieldType) -> list[Any] | None:
        right = e.right
        if isinstance(right, ListExpr):
            return [_literal(v.value, ltype, e.op) for v in right.values if isinstance(v, ValueExpr)]
        if isinstance(right, ValueExpr):
            return [_literal(right.value, ltype, e.op)]
        node: FieldExpr | TransformerExpr
        if isinstance(right, FieldRefExpr):
            node = right.field if right.arg is None else FieldExpr(right.field.name, right.arg)
        else:
            node = right
        value = self.operand(node)
        if isinstance(value, _Missing) or not value.values:
            return None
        return list(value.values)

    # --- operands: fields and transformers ------------------------------------------------------
    def operand(self, node: FieldExpr | TransformerExpr) -> _Typed | _Missing:
        if isinstance(node, FieldExpr):
            return self.field(node.name, node.arg)
        return self.transformer(node)

    def transformer(self, node: TransformerExpr) -> _Typed | _Missing:
        name = node.transformer
        if name in ("tolower", "toupper", "b64", "basename", "len"):
            (inner_node,) = node.values
            assert isinstance(inner_node, FieldExpr | TransformerExpr)
            inner = self.operand(inner_node)
            if isinstance(inner, _Missing):
                return MISSING
            if name == "len" and inner.several == LIST:  # a list's length is its number of values
                return _Typed(FieldType.UINT64, (len(inner.values),))
            out = [_transform(name, v) for v in inner.values]
            if any(v is MISSING for v in out):
                return MISSING
            out_type = FieldType.UINT64 if name == "len" else inner.type
            return _Typed(out_type, tuple(out), inner.several)
        if name == "concat":
            parts = [self.transformer_arg(v) for v in node.values]
            if any(p is None for p in parts):
                return MISSING
            return _Typed(FieldType.CHARBUF, (b"".join(p for p in parts if p is not None),))
        if name == "join":
            sep_node, list_node = node.values
            sep = self.transformer_arg(sep_node)
            assert sep is not None
            if isinstance(list_node, FieldExpr | TransformerExpr):  # a list-valued field
                listed = self.operand(list_node)
                if isinstance(listed, _Missing):
                    return MISSING
                return _Typed(FieldType.CHARBUF, (sep.join(_as_text(v) for v in listed.values),))
            assert isinstance(list_node, ListExpr)
            items = [self.transformer_arg(v) for v in list_node.values]
            if any(p is None for p in items):
                return MISSING
            return _Typed(FieldType.CHARBUF, (sep.join(p for p in items if p is not None),))
        raise NotImplementedError(f"{name}: {UNSUPPORTED.get(name, 'unknown transformer')}")

    def transformer_arg(self, node: object) -> bytes | None:
        """A concat/join argument as text: a literal, or a field's value as Falco prints it."""
        if isinstance(node, ValueExpr):
            return _bytes(node.value)
        assert isinstance(node, FieldExpr | TransformerExpr)
        value = self.operand(node)
        if isinstance(value, _Missing) or not value.values:
            return None
        return _as_text(value.values[0])

    def field(self, name: str, arg: str | None) -> _Typed | _Missing:
        found = lookup(name, arg)
        if found is None:
            raise KeyError(f"unknown field {name!r}")
        spec, effective_arg = found
        raw = _Extract(self.ev, self.ip_names).value(spec.name, effective_arg)
        if raw is None:
            return MISSING
        if spec.flags & FieldFlag.IS_LIST:
            return _Typed(spec.type, tuple(_typed_value(v, spec.type) for v in raw), LIST)
        several = ENDPOINTS if spec.flags & FieldFlag.ANY_OF else None
        if spec.flags & FieldFlag.ANCESTORS and effective_arg is None:
            several = ANCESTORS
        if several is not None:
            present = tuple(_typed_value(v, spec.type) for v in raw if v is not None)
            return _Typed(spec.type, present, several) if present else MISSING
        return _Typed(spec.type, (_typed_value(raw, spec.type),))


# --- field extraction from the positional records ------------------------------------------------
class _Extract:
    """Reads one field of one event from the records (rules.record's layout). Returns the raw
    value, MISSING or None for "no value", or a list for multi-candidate fields."""

    def __init__(self, ev: R.Event, ip_names: Mapping[str, str]) -> None:
        self.ev = ev
        self.ip_names = ip_names
        self.p: Sequence[Any] | None = ev[R.EV_PROC]
        self.f: Sequence[Any] | None = ev[R.EV_FD]

    def value(self, name: str, arg: str | None) -> Any:
        family = name.split(".", 1)[0]
        if family in ("evt", "syscall"):
            return self.event_field(name, arg)
        if family in ("proc", "thread", "user", "group"):
            return self.process_field(name, arg)
        if name == "fd.types":
            return self.fd_types(arg)
        if family == "fd":
            return self.fd_field(name)
        if family in ("container", "k8s"):
            return self.container_field(name, arg)
        raise KeyError(name)

    # evt.*
    def event_field(self, name: str, arg: str | None) -> Any:
        ev = self.ev
        type_id: int = ev[R.EV_TYPE]
        type_name = R.EVENT_TYPES[type_id]
        res = ev[R.EV_RES]
        simple: dict[str, Callable[[], Any]] = {
            "evt.type": lambda: type_name,
            "syscall.type": lambda: type_name,
            "evt.num": lambda: ev[R.EV_NUM],
            "evt.time": lambda: ev[R.EV_TS],
            "evt.rawtime": lambda: ev[R.EV_TS],
            "evt.rawres": lambda: res,
            "evt.res": lambda: None if res is None else render.evt_res(type_id, res),
            "evt.failed": lambda: None if res is None else res < 0,
            "evt.dir": lambda: "<",  # only exit events exist since Falco 0.42
            "evt.hostname": lambda: None if self.p is None else self.p[R.P_NODE],
            "evt.buffer": lambda: None,  # records carry no data buffers
            "evt.args": lambda: render.render_args(type_id, ev[R.EV_ARGS], event=ev),
            "evt.is_open_read": lambda: self.is_open("read"),
            "evt.is_open_write": lambda: self.is_open("write"),
            "evt.is_open_exec": lambda: self.is_open("exec"),
        }
        if name in simple:
            return simple[name]()
        assert arg is not None
        args = ev[R.EV_ARGS]
        if name == "evt.rawarg":
            index = R.EVENT_PARAM_INDEX[type_id].get(arg)
            return None if index is None else args[index]
        # evt.arg: .NAME by the event's parameter names, [N] by libs' parameter positions
        slot = (
            render.libs_arg_index(type_id, int(arg))
            if arg.isdigit()
            else R.EVENT_PARAM_INDEX[type_id].get(arg)
        )
        if slot is None or args[slot] is None:
            return None
        return render.render_arg(type_id, slot, args[slot], event=ev)

    def is_open(self, mode: str) -> bool:
        """libs TYPE_ISOPEN_*: false on every event that is not an open; never missing."""
        type_id: int = self.ev[R.EV_TYPE]
        name = R.EVENT_TYPES[type_id]
        params = R.EVENT_PARAM_INDEX[type_id]
        args = self.ev[R.EV_ARGS]
        if name == "creat":  # creat always creates: only its mode's exec bits matter
            return mode == "exec" and bool((args[params["mode"]] or 0) & _EXEC_BITS)
        if name not in _OPEN_EVENTS:
            return False
        flags = args[params["flags"]] or 0
        access = flags & _O_ACCMODE
        if mode == "read":  # libs' open_flags_to_scap reads any mode but O_WRONLY: 3, invalid, too
            return access != _O_WRONLY
        if mode == "write":
            return access in (_O_WRONLY, _O_RDWR)
        creates = bool(flags & _O_CREAT) or flags & _O_TMPFILE == _O_TMPFILE
        return creates and bool((args[params["mode"]] or 0) & _EXEC_BITS)

    # proc.*, thread.*, user.*, group.*
    def process_field(self, name: str, arg: str | None) -> Any:
        p = self.p
        if p is None:
            return None
        parent = p[R.P_PARENT]
        if name in _ANCESTOR_SLOTS:
            read = _ANCESTOR_SLOTS[name]
            if arg is None:  # every strict ancestor, parent first
                return [read(a) for a in _ancestors(p)]
            node: Sequence[Any] | None = p
            for _ in range(int(arg)):
                node = None if node is None else node[R.P_PARENT]
            return None if node is None else read(node)
        if name in _PARENT_SLOTS:
            return None if parent is None else _PARENT_SLOTS[name](parent)
        if name in _PROCESS_SLOTS:
            return p[_PROCESS_SLOTS[name]]
        ts = self.ev[R.EV_TS]
        if name == "proc.cmdline":
            return _cmdline(p)
        if name == "proc.args":
            if p[R.P_NAME] is None and p[R.P_ARGS] is None:  # process unknown
                return None
            return " ".join(p[R.P_ARGS] or ())
        if name == "proc.is_vpgid_leader":
            return None if p[R.P_VPID] is None else p[R.P_VPID] == p[R.P_VPGID]
        if name == "proc.duration":
            return _since(ts, p[R.P_START])
        if name == "proc.ppid.duration":
            return None if parent is None else _since(ts, parent[R.P_START])
        if name == "proc.exe_ino.ctime_duration_proc_start":
            return _since(p[R.P_START], p[R.P_EXE_INO_CTIME])
        if name in _EXE_FLAG_BITS:
            flags = p[R.P_EXE_FLAGS]
            return None if flags is None else bool(flags & _EXE_FLAG_BITS[name])
        if name in _CAP_SLOTS:
            mask = p[_CAP_SLOTS[name]]
            return None if mask is None else render.cap_names(mask)
        if name == "proc.env":
            return _env(p[R.P_ENV], arg)
        if name == "thread.tid":
            return self.ev[R.EV_TID]
        raise KeyError(name)

    # fd.*
    def fd_field(self, name: str) -> Any:
        f = self.f
        if f is None:
            return None
        typechar = f[R.F_TYPECHAR]
        path = f[R.F_NAME]
        server = f[R.F_IS_SERVER]
        local_ip, remote_ip = (f[R.F_SIP], f[R.F_CIP]) if server else (f[R.F_CIP], f[R.F_SIP])
        local_port, remote_port = (f[R.F_SPORT], f[R.F_CPORT]) if server else (f[R.F_CPORT], f[R.F_SPORT])
        values: dict[str, Callable[[], Any]] = {
            "fd.num": lambda: f[R.F_NUM],
            "fd.typechar": lambda: typechar,
            "fd.type": lambda: None if typechar is None else _FD_TYPE.get(typechar),
            "fd.name": lambda: path,
            "fd.nameraw": lambda: f[R.F_NAMERAW],
            "fd.directory": lambda: _directory(typechar, path),
            "fd.filename": lambda: (
                path[path.rfind("/") + 1 :] if typechar == "f" and path is not None else None
            ),
            "fd.l4proto": lambda: f[R.F_L4PROTO],
            "fd.sockfamily": lambda: {"4": "ip", "6": "ip", "u": "unix"}.get(typechar),
            "fd.cip": lambda: f[R.F_CIP],
            "fd.sip": lambda: f[R.F_SIP],
            "fd.lip": lambda: local_ip,
            "fd.rip": lambda: remote_ip,
            "fd.cport": lambda: f[R.F_CPORT],
            "fd.sport": lambda: f[R.F_SPORT],
            "fd.lport": lambda: local_port,
            "fd.rport": lambda: remote_port,
            "fd.ip": lambda: [f[R.F_CIP], f[R.F_SIP]],
            "fd.port": lambda: [f[R.F_CPORT], f[R.F_SPORT]],
            "fd.net": lambda: [f[R.F_CIP], f[R.F_SIP]],
            "fd.cnet": lambda: f[R.F_CIP],
            "fd.snet": lambda: f[R.F_SIP],
            "fd.lnet": lambda: local_ip,
            "fd.rnet": lambda: remote_ip,
            "fd.cip.name": lambda: self.ip_name(f[R.F_CIP]),
            "fd.sip.name": lambda: self.ip_name(f[R.F_SIP]),
            "fd.lip.name": lambda: self.ip_name(local_ip),
            "fd.rip.name": lambda: self.ip_name(remote_ip),
            "fd.connected": lambda: f[R.F_CONNECTED],
            "fd.name_changed": lambda: f[R.F_NAME_CHANGED],
        }
        return values[name]()

    def fd_types(self, arg: str | None) -> list[str] | None:
        """The process's fd table at the event, byte i the type of fd i (rules.record
        EV_FDTYPES); only on fd events, and only when the event carries the table."""
        ev = self.ev
        if R.EVENT_TYPES[ev[R.EV_TYPE]] not in R.FD_EVENT_TYPES or len(ev) <= R.EV_FDTYPES:
            return None
        table: bytes | None = ev[R.EV_FDTYPES]
        if table is None:
            return None
        names = [R.FDTYPE_NAMES[code - 1] if code else None for code in table]
        index = None if arg is None else int(arg.strip())
        if index is None or index == -1:  # libs keeps m_argid = -1 for "no argument"
            found: list[str] = []
            for type_name in names:
                if type_name is not None and type_name not in found:
                    found.append(type_name)
            return found
        if 0 <= index < len(names) and names[index] is not None:
            return [names[index]]  # type: ignore[list-item]
        return None

    def ip_name(self, ip: str | None) -> Any:
        """fd.*ip.name: present when the socket has that IP; its name from the injected mapping
        (Falco resolves the compared name through DNS; an unknown IP then has no name to equal)."""
        if ip is None:
            return None
        return _NameOf(self.ip_names.get(ip))

    # container.*, k8s.*
    def container_field(self, name: str, arg: str | None) -> Any:
        p = self.p
        if p is None:
            return None
        cid = p[R.P_CONTAINER_ID]
        if name == "container.id":
            return None if cid is None else cid[:12]
        if name == "container.full_id":
            return cid
        c = p[R.P_CONTAINER]
        if c is None:
            return None
        if name in _CONTAINER_SLOTS:
            return c[_CONTAINER_SLOTS[name]]
        if name == "container.mounts":
            mounts = c[R.C_MOUNTS]
            if mounts is None:
                return None
            return ",".join(
                f"{src}:{dest}:{mode}:{'true' if rw else 'false'}:{prop}"
                for src, dest, mode, rw, prop in mounts
            )
        if name == "container.mount.dest":
            return _mount_dest(c[R.C_MOUNTS], arg or "")
        if name == "k8s.pod.label":
            labels = c[R.K_POD_LABELS]
            return None if labels is None else labels.get(arg)
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class _NameOf:
    """The name an IP maps to, or None: the field is present either way (the socket has an IP)."""

    name: str | None


_PROCESS_SLOTS: Final[Mapping[str, int]] = {
    "proc.name": R.P_NAME, "proc.exe": R.P_EXE, "proc.exepath": R.P_EXEPATH, "proc.cwd": R.P_CWD,
    "proc.tty": R.P_TTY, "proc.pid": R.P_PID, "proc.ppid": R.P_PPID, "proc.vpid": R.P_VPID,
    "proc.vpgid": R.P_VPGID, "proc.sid": R.P_SID, "proc.sname": R.P_SNAME,
    "proc.exe_ino.ctime": R.P_EXE_INO_CTIME, "proc.exe_ino.mtime": R.P_EXE_INO_MTIME,
    "user.uid": R.P_UID, "user.name": R.P_USER, "user.loginuid": R.P_LOGINUID,
    "user.loginname": R.P_LOGINNAME, "group.gid": R.P_GID, "group.name": R.P_GROUP,
}  # fmt: skip
_PARENT_SLOTS: Final[Mapping[str, Callable[[Sequence[Any]], Any]]] = {
    "proc.pname": lambda pp: pp[R.P_NAME],
    "proc.pexe": lambda pp: pp[R.P_EXE],
    "proc.pexepath": lambda pp: pp[R.P_EXEPATH],
    "proc.pcmdline": lambda pp: _cmdline(pp),
}
_ANCESTOR_SLOTS: Final[Mapping[str, Callable[[Sequence[Any]], Any]]] = {
    "proc.aname": lambda a: a[R.P_NAME],
    "proc.aexe": lambda a: a[R.P_EXE],
    "proc.aexepath": lambda a: a[R.P_EXEPATH],
    "proc.acmdline": lambda a: _cmdline(a),
    "proc.apid": lambda a: a[R.P_PID],
}
_EXE_FLAG_BITS: Final[Mapping[str, int]] = {
    "proc.is_exe_writable": R.EXE_WRITABLE,
    "proc.is_exe_upper_layer": R.EXE_UPPER_LAYER,
    "proc.is_exe_lower_layer": R.EXE_LOWER_LAYER,
    "proc.is_exe_from_memfd": R.EXE_FROM_MEMFD,
}
_CAP_SLOTS: Final[Mapping[str, int]] = {
    "thread.cap_effective": R.P_CAP_EFF,
    "thread.cap_permitted": R.P_CAP_PERM,
    "thread.cap_inheritable": R.P_CAP_INH,
}
_CONTAINER_SLOTS: Final[Mapping[str, int]] = {
    "container.name": R.C_NAME, "container.image": R.C_IMAGE, "container.image.repository": R.C_IMAGE_REPO,
    "container.image.tag": R.C_IMAGE_TAG, "container.image.digest": R.C_IMAGE_DIGEST,
    "container.type": R.C_TYPE, "container.privileged": R.C_PRIVILEGED, "container.start_ts": R.C_START_TS,
    "k8s.ns.name": R.K_NS, "k8s.pod.name": R.K_POD_NAME, "k8s.pod.uid": R.K_POD_UID, "k8s.pod.ip": R.K_POD_IP,
}  # fmt: skip
# libs' fd.type names per fd.typechar (sinsp_filtercheck_fd.cpp TYPE_FDTYPE via fdinfo type names)
_FD_TYPE: Final[Mapping[str, str]] = {
    ch: render.fd_type_name(ch) for ch in "fd46upeslibmo" if render.fd_type_name(ch) != "<NA>"
}


def _ancestors(p: Sequence[Any]) -> list[Sequence[Any]]:
    """Strict ancestors, parent first (libs traverse_parent_state, which stops at a loop)."""
    out: list[Sequence[Any]] = []
    seen: set[int] = set()
    node = p[R.P_PARENT]
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        out.append(node)
        node = node[R.P_PARENT]
    return out


def _cmdline(p: Sequence[Any]) -> str | None:
    """libs populate_cmdline: the comm, then each argument after one space."""
    if p[R.P_NAME] is None:
        return None
    return "".join([p[R.P_NAME], *(" " + a for a in p[R.P_ARGS] or ())])


def _since(now: int | None, then: int | None) -> int | None:
    """A duration libs computes only when the start time is known (non-zero)."""
    if now is None or not then:
        return None
    return now - then


def _env(env: Sequence[str] | None, key: str | None) -> str | None:
    """libs TYPE_ENV: the variables joined by spaces, or with [NAME] the value of the first
    ``NAME=value`` with a non-empty value, spaces trimmed, and "" when there is none
    (sinsp_threadinfo::get_env). No value at all only when the environment was not captured."""
    if env is None:
        return None
    if key is None:
        return " ".join(env)
    for item in env:
        if len(item) > len(key) + 1 and item[len(key)] == "=" and item.startswith(key):
            return item[len(key) + 1 :].strip(" ")
    return ""


def _directory(typechar: str | None, path: str | None) -> str | None:
    """libs TYPE_DIRECTORY: a directory fd's own path, a file fd's parent directory."""
    if path is None:
        return None
    if typechar == "d":
        return path
    if typechar != "f":
        return None
    cut = path.rfind("/")
    return "/" if cut == 0 else path[:cut]


def _mount_dest(mounts: Sequence[Sequence[Any]] | None, selector: str) -> str | None:
    """container.mount.dest[N] by position, or [glob] by the mount source."""
    if mounts is None:
        return None
    if selector.isdigit():
        index = int(selector)
        return str(mounts[index][1]) if index < len(mounts) else None
    for mount in mounts:
        if fnmatch_bytes(_bytes(selector), _bytes(str(mount[0])), casefold=False):
            return str(mount[1])
    return None


# --- typed values and literals -------------------------------------------------------------------
def _bytes(text: str) -> bytes:
    """Text as the bytes Falco holds: invalid UTF-8 comes back from its surrogate escapes."""
    return text.encode("utf-8", "surrogateescape")


def _cstring(value: bytes) -> bytes:
    """libs compares strings as C strings: the value ends at its first NUL."""
    return value.split(b"\0", 1)[0]


def _as_text(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8", "surrogateescape")


def _typed_value(raw: Any, ftype: FieldType) -> Any:
    """A record value in the representation its libs type compares as."""
    if isinstance(raw, _NameOf):
        return raw
    if ftype in _STRINGS:
        return _cstring(_bytes(raw) if isinstance(raw, str) else bytes(raw))
    if ftype in _UNSIGNED_BITS:
        return int(raw) % (1 << _UNSIGNED_BITS[ftype])
    if ftype in _SIGNED:
        return int(raw)
    if ftype is FieldType.BOOL:
        return bool(raw)
    if ftype in _IPS:
        return ipaddress.ip_address(raw)
    return raw if isinstance(raw, bytes) else _bytes(str(raw))


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _literal(text: str, ftype: FieldType, op: str) -> Any:
    """A right-hand literal parsed as the left side's type (libs value_parser; the compiler has
    already refused what does not parse, so this raises only on a bug)."""
    if ftype in _UNSIGNED_BITS or ftype in _SIGNED:
        if not _INTEGER.fullmatch(text):
            raise ValueError(f"not a number: {text!r}")
        value = int(text)
        # sscanf("%llu") reads "-1" as 2**64-1; libs then stores it in the field's width
        return value % (1 << _UNSIGNED_BITS[ftype]) if ftype in _UNSIGNED_BITS else value
    if ftype is FieldType.BOOL:
        return {"true": True, "false": False}[text]
    if ftype is FieldType.IPADDR:
        return ipaddress.ip_address(text)
    if ftype is FieldType.IPNET:
        return ipaddress.ip_network(text, strict=False)
    if op in ("bcontains", "bstartswith"):
        return bytes.fromhex(text)
    return _bytes(text)


# --- transformers (libs sinsp_filter_transformers/) ----------------------------------------------
def _transform(name: str, value: Any) -> Any:
    if name == "len":
        return len(_cstring(value)) if isinstance(value, bytes) else len(value)
    assert isinstance(value, bytes)
    if name == "tolower":
        return value.lower()  # bytes.lower() folds ASCII only, as C's tolower in the C locale
    if name == "toupper":
        return value.upper()
    if name == "basename":
        return value[value.rfind(b"/") + 1 :]
    return _b64_decode(value)


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_decode(value: bytes) -> Any:
    """libs Base64::decodeWithoutPadding: up to two trailing '=' are dropped, every other byte
    must be in the alphabet, a length of 4n+1 cannot be decoded, and the bits the last character
    carries beyond the output must be zero (decodeLast); otherwise there is no value."""
    body = value[:-2] if value.endswith(b"==") else value[:-1] if value.endswith(b"=") else value
    if any(byte not in _B64_ALPHABET for byte in body) or len(body) % 4 == 1:
        return MISSING
    spare_bits = {2: 0b1111, 3: 0b11}.get(len(body) % 4, 0)
    if spare_bits and _B64_ALPHABET.index(body[-1]) & spare_bits:
        return MISSING
    try:
        return base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return MISSING


# --- operators (libs filter_compare.cpp, sinsp_filtercheck.cpp) ----------------------------------
def _compare(op: str, modifier: str | None, ftype: FieldType, left: Any, rhs: list[Any]) -> bool:
    if op == "exists":
        return True
    if isinstance(left, _NameOf):
        return _compare_name(op, left, rhs)
    if op in ("in", "intersects"):
        return any(_holds("=", ftype, left, r) for r in rhs)
    if op == "pmatch":
        return _pmatch(left, rhs)
    if modifier is not None:
        count = sum(1 for r in rhs if _holds(op, ftype, left, r))
        if not rhs:
            return False
        if modifier == "oneof":
            return count == 1
        if modifier == "anyof":
            return count >= 1
        return count == len(rhs)  # allof
    return _holds(op, ftype, left, rhs[0])


def _compare_name(op: str, left: _NameOf, rhs: list[Any]) -> bool:
    """fd.*ip.name against names: =, == and in hold when the IP's name is one of them."""
    names = {_cstring(r) for r in rhs if isinstance(r, bytes)}
    equal = left.name is not None and _bytes(left.name) in names
    return not equal if op == "!=" else equal


def _holds(op: str, ftype: FieldType, left: Any, right: Any) -> bool:
    """One comparison of a present left value with one right value of the same type."""
    if ftype is FieldType.IPNET and isinstance(right, ipaddress.IPv4Network | ipaddress.IPv6Network):
        inside = left.version == right.version and left in right
        return not inside if op == "!=" else inside
    if isinstance(left, bytes) and isinstance(right, bytes) and ftype is not FieldType.BYTEBUF:
        return _string_op(op, _cstring(left), _cstring(right))
    if isinstance(left, bytes) and isinstance(right, bytes):
        return _buffer_op(op, left, right)
    if op in ("=", "=="):
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _string_op(op: str, s: bytes, r: bytes) -> bool:
    """flt_compare_string over C strings."""
    if op in ("=", "=="):
        return s == r
    if op == "!=":
        return s != r
    if op == "contains":
        return r in s
    if op == "icontains":
        return r.lower() in s.lower()  # strcasestr: ASCII case folding
    if op == "startswith":
        return s.startswith(r)
    if op == "endswith":
        return s.endswith(r)
    if op == "glob":
        return fnmatch_bytes(r, s, casefold=False)
    if op == "iglob":
        return fnmatch_bytes(r, s, casefold=True)
    if op == "regex":
        # sinsp_filtercheck.cpp: the pattern compiles with RE2::POSIX; the value, its invalid
        # UTF-8 replaced by U+FFFD (maximal subparts, as Python's "replace"), must match whole
        text = s.decode("utf-8", "replace").encode()
        return _re2_posix(r).fullmatch(text) is not None
    return {"<": s < r, "<=": s <= r, ">": s > r, ">=": s >= r}[op]


def _re2_posix(pattern: bytes) -> Any:
    """libs' ``re2::RE2(pattern, re2::RE2::POSIX)``."""
    options = re2.Options()
    options.posix_syntax = True
    options.longest_match = True
    options.log_errors = False
    return re2.compile(pattern, options)


def _buffer_op(op: str, s: bytes, r: bytes) -> bool:
    """flt_compare_buffer: memcmp/memmem over the whole buffer."""
    if op in ("=", "=="):
        return s == r
    if op == "!=":
        return s != r
    if op in ("contains", "bcontains"):
        return r in s
    if op in ("startswith", "bstartswith"):
        return s.startswith(r)
    if op == "endswith":
        return s.endswith(r)
    raise ValueError(f"operator {op!r} on a buffer")


# --- fnmatch(3), as glibc does it in the C locale with flags 0 or FNM_CASEFOLD -------------------
_CLASSES: Final[Mapping[bytes, bytes]] = {
    b"alpha": b"A-Za-z", b"digit": b"0-9", b"alnum": b"A-Za-z0-9", b"upper": b"A-Z", b"lower": b"a-z",
    b"space": b" \\t\\n\\r\\f\\v", b"blank": b" \\t", b"xdigit": b"0-9A-Fa-f", b"punct": rb"!-/:-@\[-`{-~",
    b"cntrl": rb"\x00-\x1f\x7f", b"print": rb"\x20-\x7e", b"graph": rb"\x21-\x7e",
}  # fmt: skip


def fnmatch_bytes(pattern: bytes, text: bytes, *, casefold: bool) -> bool:
    """Whether `text` matches the glob `pattern`: ``*`` any run (``/`` included), ``?`` one byte,
    ``[...]`` a set (``!`` or ``^`` negates, ``]`` first is literal, ranges and ``[:class:]``),
    ``\\`` quotes the next byte; a ``[`` with no closing ``]`` is literal; a pattern ending in an
    unquoted ``\\`` matches nothing (glibc: "Trailing \\ loses")."""
    regex = _glob_regex(pattern)
    if regex is None:
        return False
    flags = re.DOTALL | (re.IGNORECASE if casefold else 0)  # IGNORECASE on bytes folds ASCII only
    return re.fullmatch(regex, text, flags) is not None


def _glob_regex(pattern: bytes) -> bytes | None:
    out: list[bytes] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i : i + 1]
        i += 1
        if ch == b"*":
            out.append(b".*")
        elif ch == b"?":
            out.append(b".")
        elif ch == b"\\":
            if i >= n:
                return None
            out.append(re.escape(pattern[i : i + 1]))
            i += 1
        elif ch == b"[":
            bracket = _bracket(pattern, i)
            if bracket is None:
                out.append(re.escape(ch))
            else:
                part, i = bracket
                out.append(part)
        else:
            out.append(re.escape(ch))
    return b"".join(out)


def _bracket(pattern: bytes, i: int) -> tuple[bytes, int] | None:
    """The regex class for a bracket expression starting after ``[`` at `i`, and the index after
    its ``]``; None when it never closes (the ``[`` is then a literal)."""
    n = len(pattern)
    negate = i < n and pattern[i : i + 1] in (b"!", b"^")
    if negate:
        i += 1
    items: list[bytes] = []
    first = True
    while i < n:
        ch = pattern[i : i + 1]
        if ch == b"]" and not first:
            body = b"".join(items)
            return (b"[^" + body + b"]" if negate else b"[" + body + b"]"), i + 1
        first = False
        if ch == b"[" and pattern[i + 1 : i + 2] == b":":
            end = pattern.find(b":]", i + 2)
            if end != -1 and pattern[i + 2 : end] in _CLASSES:
                items.append(_CLASSES[pattern[i + 2 : end]])
                i = end + 2
                continue
        if ch == b"\\" and i + 1 < n:
            i += 1
            ch = pattern[i : i + 1]
        i += 1
        if pattern[i : i + 1] == b"-" and i + 1 < n and pattern[i + 1 : i + 2] != b"]":
            high = pattern[i + 1 : i + 2]
            i += 2
            if high == b"\\" and i < n:
                high = pattern[i : i + 1]
                i += 1
            if high >= ch:
                items.append(_class_char(ch) + b"-" + _class_char(high))
            continue
        items.append(_class_char(ch))
    return None


def _class_char(ch: bytes) -> bytes:
    return b"\\x%02x" % ch[0]


# --- pmatch (libs prefix_search.h, path_prefix_map) ----------------------------------------------
def _components(path: bytes) -> list[bytes]:
    """libs split_path: the non-empty parts between slashes, under a dummy "root"."""
    return [b"root", *(part for part in path.split(b"/") if part)]


@dataclass
class _PrefixNode:
    """One level of the search-path trie: a component maps to (subtree or None, terminal)."""

    dirs: dict[bytes, tuple[_PrefixNode | None, bool]]
    glob_dirs: dict[bytes, tuple[_PrefixNode | None, bool]]

    def add(self, comps: list[bytes]) -> None:
        head, rest = comps[0], comps[1:]
        table = self.glob_dirs if any(c in head for c in b"?*[") else self.dirs
        if head not in table:
            subtree = None
            if rest:
                subtree = _PrefixNode({}, {})
                subtree.add(rest)
            table[head] = (subtree, not rest)
        elif not rest:
            table[head] = (None, True)  # a shorter search path replaces the longer ones below it
        elif table[head][0] is not None:
            table[head][0].add(rest)  # type: ignore[union-attr]

    def match(self, comps: list[bytes], at: int) -> bool:
        entry = self.dirs.get(comps[at])
        if entry is not None and _check(entry, comps, at + 1):
            return True
        # libs advances its component iterator on every glob that matches (the ++comp in
        # match_components_glob), so a later glob at this level sees the following component
        for pattern in sorted(self.glob_dirs):
            if at < len(comps) and fnmatch_bytes(pattern, comps[at], casefold=False):
                at += 1
                if _check(self.glob_dirs[pattern], comps, at):
                    return True
        return False


def _check(entry: tuple[_PrefixNode | None, bool], comps: list[bytes], at: int) -> bool:
    subtree, terminal = entry
    if at >= len(comps):
        return subtree is None and terminal
    if subtree is None:
        return terminal
    return subtree.match(comps, at)


def _pmatch(value: Any, paths: list[Any]) -> bool:
    root = _PrefixNode({}, {})
    for path in paths:
        root.add(_components(_cstring(path)))
    return root.match(_components(value), 0)
