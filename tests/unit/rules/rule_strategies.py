"""Hypothesis strategies for the differential test of the rule engine against rules.reference:
rules files (lists, macros, rules over the field catalog, every operator and transformer) and
event records built with rules.record's layout, both drawing from one pool of awkward literals so
that conditions and events meet often enough for rules to match."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml
from hypothesis import strategies as st

from rules import record as R
from rules import render_params as rp
from rules.ast import quote_string
from rules.fields import FIELDS, FieldFlag, FieldType
from rules.interest_classes import RESULT_IS_FD

# Literals a code generator can trip on: identifiers, Python keywords, the generated code's own
# local names, quotes, backslashes, %, parentheses, non-ASCII and invalid UTF-8 (surrogate escapes).
LITERALS: tuple[str, ...] = (
    "bash", "sh", "nginx", "runc", "root", "host", "ls", "x",
    "if", "None", "True", "lambda", "class", "def", "return", "import", "not", "and", "or", "in",
    "c", "p", "pp", "f", "a", "ev", "_EC", "_EP", "_EF", "_k0", "_ipn", "_rule0", "t", "r",
    '"', "'", 'a"b', "a'b", "\\", "a\\b", "\\n", "%", "%s", "%(x)s", "{}", "{0}", "(", ")", "a(b)", "a,b",
    "é", "ÉTÉ", "ß", "İ", "日本", "\u00a0",
    b"\xff".decode("utf-8", "surrogateescape"), b"ab\xc3".decode("utf-8", "surrogateescape"),
    "-c /dev/shm", "/dev/shm", "/dev/shm/x", "/etc/shadow", "/etc", "/tmp/a b", "-i", "",
)  # fmt: skip
_UNSIGNED_MAX = {FieldType.PORT: 2**16 - 1, FieldType.UINT32: 2**32 - 1}
INTS: tuple[int, ...] = (0, 1, 2, -1, -2, 3, 7, 100, 1000, 4242, 34816, 65535, 2**31, 2**32 - 1)
IPS: tuple[str, ...] = ("10.0.0.1", "10.96.0.1", "192.168.1.20", "127.0.0.1", "::1", "2001:db8::1")
NETS: tuple[str, ...] = (
    "10.0.0.0/8",
    "192.168.0.0/16",
    "127.0.0.1/32",
    "::1/128",
    "2001:db8::/32",
    "0.0.0.0/0",
)
IP_NAMES: dict[str, str] = {"10.96.0.1": "kubernetes.default.svc.cluster.local", "10.0.0.1": "bash"}
EVENT_TYPES: tuple[str, ...] = (
    "execve", "execveat", "open", "openat", "openat2", "creat", "connect", "accept", "socket", "ptrace",
    "setns", "symlink", "link", "dup2", "sendto", "chmod", "mkdir", "procexit",
    "personality", "syncfs",  # libs' generic event: two types that may share one bucket
)  # fmt: skip
_OPEN_FLAGS = (0, 1, 2, 3, 0o100, 0o101, 0o1000, 0o2000, 0o100 | 0o2, 0o100 | 0o3)  # 3: invalid, read by libs
_BARE = re.compile(r"[A-Za-z0-9_/.:*?\-]+")
_KEYWORDS = frozenset({"and", "or", "not"})


# Known divergences (pinned by a strict xfail in test_reference_differential.py, or named in
# rules/README.md); the random rules and events steer clear of them so the property keeps looking
# for new ones. Delete an entry once the engine agrees.
AVOID: frozenset[str] = frozenset({"pmatch_components"})  # glob components: see rules/README.md
AVOID_FIELDS: frozenset[str] = frozenset()
_ENDPOINTS = ("fd.ip", "fd.port", "fd.net")


def literal_text(value: str) -> str:
    """A right-hand string value as condition text: bare when it lexes as one bare word, else
    quoted (invalid UTF-8, which a YAML file cannot carry, as ``\\xHH``)."""
    if _BARE.fullmatch(value) and value not in _KEYWORDS:
        return value
    return quote_string(value)


# --- values events and conditions share ----------------------------------------------------------
def strings() -> st.SearchStrategy[str]:
    """Text for rule literals and event values alike: the literal pool, pairs of it, anything."""
    return st.one_of(
        st.sampled_from(LITERALS),
        st.tuples(
            st.sampled_from(LITERALS), st.sampled_from(("", " ", "/", "-", "=")), st.sampled_from(LITERALS)
        ).map("".join),
        st.text(st.characters(exclude_characters="\0"), max_size=4),
    )


def _event_safe(value: str) -> str:
    """Event text without characters the known divergences trip on (non-ASCII letters that Python
    case-maps but libs' byte-wise C functions do not)."""
    if "case_fold_non_ascii" not in AVOID:
        return value
    return "".join(c if c.isascii() or c.lower() == c.upper() == c else "日" for c in value)


def event_strings() -> st.SearchStrategy[str]:
    return strings().map(_event_safe)


def maybe(strategy: st.SearchStrategy[Any], none_ratio: int = 8) -> st.SearchStrategy[Any]:
    """Mostly a value, sometimes None (a missing value)."""
    return st.one_of(*([strategy] * none_ratio), st.none())


# --- events ----------------------------------------------------------------------------------------
@st.composite
def containers(draw: st.DrawFn) -> list[Any]:
    c: list[Any] = [None] * R.CONTAINER_LEN
    c[R.C_ID] = draw(st.sampled_from(("3ad7b26ded6d" + "0" * 52, "f" * 64)))
    for slot in (R.C_NAME, R.C_IMAGE, R.C_IMAGE_REPO, R.C_IMAGE_TAG, R.C_IMAGE_DIGEST, R.C_TYPE, R.K_NS,
                 R.K_POD_NAME, R.K_POD_UID):  # fmt: skip
        c[slot] = draw(maybe(event_strings()))
    c[R.C_PRIVILEGED] = draw(maybe(st.booleans()))
    c[R.C_START_TS] = draw(maybe(st.sampled_from((1_700_000_000 * 10**9, 0))))
    mount = st.tuples(
        event_strings(),
        event_strings(),
        st.sampled_from(("", "rw")),
        st.booleans(),
        st.sampled_from(("private",)),
    ).map(list)
    c[R.C_MOUNTS] = draw(maybe(st.lists(mount, max_size=2), 4))
    c[R.K_POD_LABELS] = draw(
        maybe(st.dictionaries(st.sampled_from(("app", "x")), event_strings(), max_size=2))
    )
    c[R.K_POD_IP] = draw(maybe(st.sampled_from(IPS)))
    return c


@st.composite
def processes(draw: st.DrawFn, depth: int = 3) -> list[Any]:
    p: list[Any] = [None] * R.PROCESS_LEN
    for slot in (
        R.P_NAME,
        R.P_EXE,
        R.P_EXEPATH,
        R.P_CWD,
        R.P_USER,
        R.P_GROUP,
        R.P_LOGINNAME,
        R.P_SNAME,
        R.P_NODE,
    ):
        p[slot] = draw(maybe(event_strings()))
    p[R.P_ARGS] = draw(maybe(st.lists(event_strings(), max_size=3)))
    for slot in (R.P_PID, R.P_PPID, R.P_TTY, R.P_UID, R.P_GID, R.P_LOGINUID, R.P_SID, R.P_VPID, R.P_VPGID):
        p[slot] = draw(maybe(st.sampled_from(INTS)))
    if p[R.P_UID] is not None:  # unsigned in the kernel: records never hold a negative uid or tty
        p[R.P_UID] %= 2**32
    if p[R.P_TTY] is not None:
        p[R.P_TTY] %= 2**32
    if p[R.P_GID] is not None:
        p[R.P_GID] %= 2**32
    p[R.P_START] = draw(maybe(st.sampled_from((1_700_000_000 * 10**9, 1_699_999_999 * 10**9, 0))))
    for slot in (R.P_CAP_EFF, R.P_CAP_PERM, R.P_CAP_INH):
        p[slot] = draw(maybe(st.sampled_from((0, 1 << 21, (1 << 21) | 2, 1 << 16))))
    p[R.P_EXE_FLAGS] = draw(maybe(st.integers(0, 15)))
    p[R.P_EXE_INO_CTIME] = draw(maybe(st.sampled_from((1_600_000_000 * 10**9, 0))))
    p[R.P_EXE_INO_MTIME] = draw(maybe(st.sampled_from((1_600_000_000 * 10**9, 0))))
    p[R.P_ENV] = draw(
        maybe(st.lists(st.one_of(event_strings(), event_strings().map(lambda v: "HOME=" + v)), max_size=3))
    )
    container = draw(st.one_of(st.none(), containers()))
    p[R.P_CONTAINER] = container
    p[R.P_CONTAINER_ID] = R.HOST_CONTAINER_ID if container is None else container[R.C_ID]
    p[R.P_PARENT] = draw(st.one_of(st.none(), processes(depth - 1))) if depth > 0 else None
    return p


@st.composite
def fds(draw: st.DrawFn) -> list[Any]:
    f: list[Any] = [None] * R.FD_LEN
    f[R.F_NUM] = draw(st.sampled_from((3, -1, 0, 7)))
    f[R.F_TYPECHAR] = draw(st.sampled_from(tuple("fd46upe")))
    f[R.F_NAME] = draw(maybe(st.one_of(event_strings(), event_strings().map(lambda v: "/etc/" + v))))
    f[R.F_NAMERAW] = draw(maybe(event_strings()))
    f[R.F_L4PROTO] = draw(maybe(st.sampled_from(("tcp", "udp"))))
    f[R.F_CIP], f[R.F_SIP] = draw(maybe(st.sampled_from(IPS))), draw(maybe(st.sampled_from(IPS)))
    f[R.F_CPORT], f[R.F_SPORT] = (
        draw(maybe(st.sampled_from((22, 443, 8080)))),
        draw(maybe(st.sampled_from((22, 80)))),
    )
    f[R.F_IS_SERVER], f[R.F_CONNECTED], f[R.F_NAME_CHANGED] = draw(st.tuples(st.booleans(), st.booleans(),
                                                                           st.booleans()))  # fmt: skip
    return f


def _param_value(type_id: int, index: int) -> st.SearchStrategy[Any]:
    """A raw parameter of the type its renderer takes: text, argv, or an integer."""
    name = R.EVENT_PARAMS[type_id][index]
    render = getattr(rp.SPECS[type_id][index].render, "__name__", "")
    if name == "args":
        return st.lists(event_strings(), max_size=3)
    if render in ("text", "bytebuf"):
        return event_strings()
    if name == "flags" and R.EVENT_TYPES[type_id] in ("open", "openat", "openat2"):
        return st.sampled_from(_OPEN_FLAGS)
    if name == "mode":
        return st.sampled_from((0, 0o644, 0o755))
    return st.sampled_from((0, 1, 2, 3, 16, -1, -2))


@st.composite
def events(draw: st.DrawFn) -> list[Any]:
    type_id = R.EVENT_TYPE_IDS[draw(st.sampled_from(EVENT_TYPES))]
    args = [draw(_param_value(type_id, i)) for i in range(len(R.EVENT_PARAMS[type_id]))]
    proc = draw(processes())
    ev: list[Any] = [None] * R.EVENT_LEN
    ev[R.EV_TYPE] = type_id
    ev[R.EV_TS] = 1_700_000_001 * 10**9
    ev[R.EV_TID] = draw(st.sampled_from(INTS))
    ev[R.EV_PROC] = proc
    ev[R.EV_RES] = draw(maybe(st.sampled_from((0, 3, -1, -2, -13))))
    ev[R.EV_ARGS] = args
    ev[R.EV_FD] = draw(st.one_of(st.none(), fds()))
    ev[R.EV_NUM] = draw(st.integers(1, 3))  # Falco's evt.num starts at 1
    ev[R.EV_FDTYPES] = draw(maybe(fd_tables(), none_ratio=4))
    if R.EVENT_TYPES[type_id] in RESULT_IS_FD and draw(st.booleans()):
        # as the collector writes an open: a result, and the fd's number is that result
        ev[R.EV_RES] = draw(st.sampled_from((0, 3, -1, -2, -13)))
        ev[R.EV_FD] = draw(fds())
        ev[R.EV_FD][R.F_NUM] = ev[R.EV_RES]
    if draw(st.integers(0, 9)) == 0:
        del ev[R.EV_FDTYPES:]  # an event written before EV_FDTYPES existed
    return ev


def collectable(ev: list[Any]) -> bool:
    """Whether a collector could write `ev`: an open's fd number is its result (`collectors.decode`),
    which the interest relies on; other records the strategies make are only the rules engine's
    business."""
    if R.EVENT_TYPES[ev[R.EV_TYPE]] not in RESULT_IS_FD:
        return True
    fd = ev[R.EV_FD]
    return ev[R.EV_RES] is not None and fd is not None and fd[R.F_NUM] == ev[R.EV_RES]


def fd_tables() -> st.SearchStrategy[bytes]:
    """An EV_FDTYPES value: a few fds, some closed (0), types repeating."""
    codes = st.integers(0, len(R.FDTYPE_NAMES))
    return st.lists(st.one_of(codes, st.sampled_from((1, 1, 3, 6))), max_size=8).map(bytes)


# --- conditions ------------------------------------------------------------------------------------
STRING, NUMERIC, BOOL, IP, NET, NAME, LIST = "string", "numeric", "bool", "ip", "net", "name", "list"
_STRING_OPS = ("=", "==", "!=", "contains", "icontains", "startswith", "endswith", "glob", "iglob", "regex",
               "in", "intersects", "pmatch", "exists", "<", ">=")  # fmt: skip
_MODIFIABLE = ("=", "!=", "contains", "icontains", "startswith", "endswith", "glob", "iglob")
_NUMERIC_OPS = ("=", "==", "!=", "<", "<=", ">", ">=", "in", "intersects", "exists")
_EQ_OPS = ("=", "==", "!=", "in", "intersects", "exists")


def _family(ftype: FieldType) -> str:
    if ftype in (FieldType.CHARBUF, FieldType.FSPATH):
        return STRING
    if ftype is FieldType.BOOL:
        return BOOL
    if ftype is FieldType.IPADDR:
        return IP
    if ftype is FieldType.IPNET:
        return NET
    return NUMERIC


def _catalog_fields() -> list[tuple[str, str, FieldType, bool]]:
    """(text, family, type, may take a transformer) for every field the test exercises."""
    out: list[tuple[str, str, FieldType, bool]] = []
    for name, spec in FIELDS.items():
        if (
            spec.flags & FieldFlag.ARG_REQUIRED
            or spec.type is FieldType.BYTEBUF
            or spec.flags & FieldFlag.DEPRECATED
        ):
            continue
        if spec.flags & FieldFlag.IS_LIST:
            out += [(f"{name}{index}", LIST, spec.type, True) for index in ("", "[0]", "[3]", "[-1]")]
            continue
        family = (
            NAME
            if spec.flags & FieldFlag.NO_RHS and not spec.flags & FieldFlag.ANCESTORS
            else _family(spec.type)
        )
        transformable = family == STRING and not spec.flags & FieldFlag.NO_TRANSFORMER
        out.append((name, family, spec.type, transformable))
        if spec.flags & FieldFlag.ANCESTORS:
            out += [(f"{name}[{n}]", family, spec.type, False) for n in (0, 1, 2)]
    out += [
        ("evt.arg.flags", STRING, FieldType.CHARBUF, True),
        ("evt.arg.name", STRING, FieldType.CHARBUF, True),
        ("evt.arg.request", STRING, FieldType.CHARBUF, True),
        ("evt.arg.exe", STRING, FieldType.CHARBUF, True),
        ("evt.arg[1]", STRING, FieldType.CHARBUF, True),
        ("evt.rawarg.res", NUMERIC, FieldType.INT64, False),
        ("evt.rawarg.fd", NUMERIC, FieldType.INT64, False),
        ("proc.env[HOME]", STRING, FieldType.CHARBUF, True),
        ("k8s.pod.label[app]", STRING, FieldType.CHARBUF, True),
        ("container.mount.dest[0]", STRING, FieldType.CHARBUF, True),
    ]  # fmt: skip
    return out


CATALOG = _catalog_fields()


@st.composite
def _left(draw: st.DrawFn) -> tuple[str, str, FieldType, bool]:
    """A left-hand side: a field, or a transformer chain over one."""
    text, family, ftype, transformable = draw(
        st.sampled_from([f for f in CATALOG if f[0] not in AVOID_FIELDS])
    )
    if not transformable or draw(st.integers(0, 3)):
        return text, family, ftype, False
    if family == LIST:  # one-value transformers map a list; len counts it
        name = draw(st.sampled_from(("tolower", "toupper", "basename", "len")))
        if name == "len":
            return f"len({text})", NUMERIC, FieldType.UINT64, True
        return f"{name}({text})", LIST, ftype, True
    for _ in range(draw(st.integers(1, 2))):
        names = ("tolower", "toupper", "basename", "concat", *(() if "b64_decoding" in AVOID else ("b64",)))
        name = draw(st.sampled_from(names if "len_counts_bytes" in AVOID else (*names, "len")))
        if name == "len":
            return f"len({text})", NUMERIC, FieldType.UINT64, True
        if name == "concat":
            text = f"concat({text}, {quote_string(draw(st.sampled_from(LITERALS)))})"
            ftype = FieldType.CHARBUF
        else:
            text = f"{name}({text})"
    return text, family, ftype, True


def _literal_for(family: str, draw: st.DrawFn, op: str, ftype: FieldType = FieldType.INT64) -> str:
    if family == NUMERIC:
        if ftype is FieldType.INT64 or "negative_unsigned" not in AVOID:
            return str(draw(st.sampled_from(INTS)))
        # libs parses an unsigned literal into the field's own width, so a negative or too wide one
        # wraps (the `negative_unsigned` divergences): stay inside the width while that is avoided
        top = _UNSIGNED_MAX.get(ftype, 2**64 - 1)
        return str(draw(st.sampled_from(tuple(i for i in INTS if 0 <= i <= top))))
    if family == BOOL:
        return draw(st.sampled_from(("true", "false")))
    if family == IP:
        return draw(st.sampled_from(IPS))
    if family == NET:
        return draw(st.sampled_from(NETS))
    if family == LIST:
        name = draw(st.sampled_from(R.FDTYPE_NAMES))
        return literal_text(draw(st.sampled_from((name, name.upper(), "x"))))
    if family == NAME:
        return literal_text(draw(st.sampled_from(("kubernetes.default.svc.cluster.local", "bash", "x"))))
    value = draw(strings())
    if op in ("glob", "iglob"):
        value = draw(st.sampled_from(("{}*", "*{}", "*{}*", "{}?", "{}", "[!a]{}", "[a-c]*"))).format(value)
        if "glob_fnmatch" in AVOID:
            value = value.replace("\\", "").replace("[^", "[!")
    if op == "regex":
        value = draw(st.sampled_from(("{}.*", ".*{}", "{}"))).format(re.escape(value))
    if op == "pmatch":
        value = draw(st.sampled_from(("/{}", "/etc/{}", "{}", "/*/{}"))).format(value)
    return literal_text(value)


@st.composite
def checks(draw: st.DrawFn, list_names: Sequence[str] = ()) -> str:
    left, family, ftype, transformed = draw(_left())
    ancestor = "[" not in left and left.split("(")[-1].split(")")[0] in (
        "proc.aname",
        "proc.aexe",
        "proc.aexepath",
        "proc.acmdline",
        "proc.apid",
    )
    ops = {
        STRING: _STRING_OPS, NUMERIC: _NUMERIC_OPS, NAME: ("=", "==", "!=", "in", "exists"),
        LIST: ("in", "intersects", "exists"),
    }.get(
        family, _EQ_OPS
    )
    if "pmatch_components" in AVOID:
        ops = tuple(o for o in ops if o != "pmatch")
    if left in _ENDPOINTS:  # libs throws on intersects; != and a list of networks are known divergences
        ops = ("=", "==", "exists") if "endpoint_semantics" in AVOID else ("=", "==", "!=", "in", "exists")
    op = draw(st.sampled_from(ops))
    if op == "exists":
        return f"{left} exists"
    if op in ("<", ">=") and family == STRING:  # the grammar takes a number after an ordering operator
        return f"{left} {op} {_literal_for(NUMERIC, draw, op, FieldType.UINT64)}"
    if op in ("in", "intersects", "pmatch"):
        items = [_literal_for(family, draw, op, ftype) for _ in range(draw(st.integers(0, 3)))]
        if list_names and family == STRING and op != "pmatch" and draw(st.booleans()):
            items.append(draw(st.sampled_from(list_names)))
        return f"{left} {op} ({', '.join(items)})"
    if family == STRING and op in _MODIFIABLE and not ancestor and draw(st.integers(0, 4)) == 0:
        modifier = draw(st.sampled_from(("oneof", "anyof", "allof")))
        items = [_literal_for(family, draw, op, ftype) for _ in range(draw(st.integers(1, 3)))]
        return f"{left} {op} {modifier} ({', '.join(items)})"
    if family in (STRING, NUMERIC) and not ancestor and op in ("=", "!=") and draw(st.integers(0, 5)) == 0:
        peers = [
            f
            for f in CATALOG
            if f[2] is ftype
            and f[1] == family
            and f[0] in FIELDS
            and f[0] not in AVOID_FIELDS
            and not FIELDS[f[0]].flags & (FieldFlag.NO_RHS | FieldFlag.ANY_OF)
        ]
        if peers and not transformed:
            return f"{left} {op} val({draw(st.sampled_from(peers))[0]})"
    return f"{left} {op} {_literal_for(family, draw, op, ftype)}"


@st.composite
def conditions(
    draw: st.DrawFn, macros: Sequence[str] = (), list_names: Sequence[str] = (), depth: int = 2
) -> str:
    choice = draw(st.integers(0, 9))
    if depth == 0 or choice < 4:
        if macros and choice == 0:
            return draw(st.sampled_from(macros))
        return draw(checks(list_names))
    if choice < 6:
        return f"not {draw(conditions(macros, list_names, depth - 1))}"
    parts = draw(st.lists(conditions(macros, list_names, depth - 1), min_size=2, max_size=3))
    joined = (" and " if choice < 8 else " or ").join(parts)
    return f"({joined})" if draw(st.booleans()) else joined


@st.composite
def rules_files(draw: st.DrawFn) -> str:
    """A rules file: lists, macros (which may use the lists and earlier macros), then rules."""
    items: list[dict[str, Any]] = []
    list_names = [f"list_{i}" for i in range(draw(st.integers(0, 2)))]
    safe_items = [v for v in LITERALS if _BARE.fullmatch(v) and v not in _KEYWORDS] + ["é", '"a b"']
    for name in list_names:
        items.append({"list": name, "items": draw(st.lists(st.sampled_from(safe_items), max_size=3))})
    macros: list[str] = []
    for i in range(draw(st.integers(0, 2))):
        items.append({"macro": f"macro_{i}", "condition": draw(conditions(macros, list_names, 1))})
        macros.append(f"macro_{i}")
    for i in range(draw(st.integers(1, 4))):
        condition = draw(conditions(macros, list_names))
        scope = draw(st.integers(0, 4))
        if scope < 3:
            types = draw(st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=3, unique=True))
            condition = f"evt.type in ({', '.join(types)}) and ({condition})"
        elif scope == 3:
            condition = f"not evt.type = {draw(st.sampled_from(EVENT_TYPES))} and {condition}"
        rule: dict[str, Any] = {"rule": f"rule_{i}", "desc": "d", "condition": condition, "output": "o",
                                "priority": "WARNING"}  # fmt: skip
        if draw(st.integers(0, 5)) == 0:
            rule["enabled"] = False
        items.append(rule)
    return yaml.safe_dump(items, sort_keys=False, allow_unicode=True, width=10**6)
