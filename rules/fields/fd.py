"""fd.*: the event's file descriptor (path, socket ends, names of peers) from the fd record.

``fd.*ip.name`` read the injected IP -> name mapping (``_ipn``), not DNS: the engine does no I/O.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from rules import record as R
from rules.affixes import Affixes
from rules.fields.spec import BOOL, CH, I64, IP, NET, PATH, PORT, F, FieldSpec, ip_names, local_remote
from rules.pyexpr import Code, code, fill

_NAME = f"f[{R.F_NAME}]"


def fdtypes_index(arg: str | None) -> int | None:
    """The fd number of ``fd.types[N]``, None for the whole list. libs reads N with
    ``sscanf("%" PRId64)`` (sinsp_numparser::parsed64) and keeps -1 as "no argument"; callers
    have checked that it is a number (`rules.operands`)."""
    if arg is None:
        return None
    fd = int(arg)
    return None if fd == -1 else fd


def _fdtypes(arg: str | None, event_type: int | None) -> Code:
    """fd.types (libs EPF_IS_LIST): the list of fd types the process has open, or with [N] the
    type of fd N; only on events that create, use or destroy an fd (`rules.record.FD_EVENT_TYPES`)."""
    if event_type is not None and R.EVENT_TYPES[event_type] not in R.FD_EVENT_TYPES:
        return code("None")
    return code("_fdtypes_of(ev, FD)", FD=fdtypes_index(arg))


def _directory_implies(values: tuple[object, ...]) -> tuple[Code, Callable[[ast.expr], ast.expr], Affixes]:
    """fd.directory = D needs fd.name to be D itself (a directory fd) or to start with D/."""
    prefixes = tuple(str(v).rstrip("/") + "/" for v in values)
    exact = tuple(str(v) for v in values)

    def test(value: ast.expr) -> ast.expr:
        return fill("(T.startswith(PREFIXES) or T in EXACT)", T=value, PREFIXES=prefixes, EXACT=exact)

    return code(_NAME), test, Affixes(exact=frozenset(exact), prefixes=frozenset(prefixes))


def _filename_implies(values: tuple[object, ...]) -> tuple[Code, Callable[[ast.expr], ast.expr], Affixes]:
    """fd.filename = N needs fd.name to end with /N."""
    suffixes = tuple("/" + str(v) for v in values)

    def test(value: ast.expr) -> ast.expr:
        return fill("T.endswith(SUFFIXES)", T=value, SUFFIXES=suffixes)

    return code(_NAME), test, Affixes(suffixes=frozenset(suffixes))


ROWS: tuple[FieldSpec, ...] = (
    FieldSpec("fd.num", I64, F.FEW_VALUES, "fd number, -1 on a failed open (f[F_NUM])", f"f[{R.F_NUM}]"),
    FieldSpec("fd.typechar", CH, F.FEW_VALUES, "one-letter fd type (f[F_TYPECHAR])", f"f[{R.F_TYPECHAR}]"),
    FieldSpec(
        "fd.type", CH, F.FEW_VALUES, "fd type name: file, ipv4... (f[F_TYPECHAR])",
        f"_FD_TYPES.get(f[{R.F_TYPECHAR}])",
    ),
    FieldSpec("fd.name", PATH, F.NONE, "path, or the connection tuple (f[F_NAME])", f"f[{R.F_NAME}]"),
    FieldSpec(
        "fd.nameraw", PATH, F.NONE, "path as the process passed it (f[F_NAMERAW])",
        f"f[{R.F_NAMERAW}]",
    ),
    FieldSpec(
        "fd.directory", PATH, F.NONE, "directory of a file fd (f[F_NAME])", "_directory(f)",
        implied=_directory_implies,
    ),
    FieldSpec(
        "fd.filename", CH, F.NONE, "file name of a file fd (f[F_NAME])", "_filename(f)",
        implied=_filename_implies,
    ),
    FieldSpec("fd.l4proto", CH, F.FEW_VALUES, "tcp, udp, icmp or raw (f[F_L4PROTO])", f"f[{R.F_L4PROTO}]"),
    FieldSpec(
        "fd.sockfamily", CH, F.FEW_VALUES, "ip or unix, from f[F_TYPECHAR]",
        f"_SOCKFAMILY.get(f[{R.F_TYPECHAR}])",
    ),
    FieldSpec("fd.cip", IP, F.NONE, "client IP (f[F_CIP])", f"f[{R.F_CIP}]"),
    FieldSpec("fd.sip", IP, F.NONE, "server IP (f[F_SIP])", f"f[{R.F_SIP}]"),
    FieldSpec("fd.lip", IP, F.NONE, "local IP", local_remote(True, R.F_CIP, R.F_SIP)),
    FieldSpec("fd.rip", IP, F.NONE, "remote IP", local_remote(False, R.F_CIP, R.F_SIP)),
    FieldSpec("fd.cport", PORT, F.NONE, "client port (f[F_CPORT])", f"f[{R.F_CPORT}]"),
    FieldSpec("fd.sport", PORT, F.NONE, "server port (f[F_SPORT])", f"f[{R.F_SPORT}]"),
    FieldSpec("fd.lport", PORT, F.NONE, "local port", local_remote(True, R.F_CPORT, R.F_SPORT)),
    FieldSpec("fd.rport", PORT, F.NONE, "remote port", local_remote(False, R.F_CPORT, R.F_SPORT)),
    FieldSpec(
        "fd.ip", IP, F.FILTER_ONLY | F.ANY_OF, "client or server IP", f"(f[{R.F_CIP}], f[{R.F_SIP}])"
    ),
    FieldSpec(
        "fd.port", PORT, F.FILTER_ONLY | F.ANY_OF, "client or server port",
        f"(f[{R.F_CPORT}], f[{R.F_SPORT}])"
    ),
    FieldSpec(
        "fd.net", NET, F.FILTER_ONLY | F.ANY_OF, "client or server IP, against a CIDR",
        f"(f[{R.F_CIP}], f[{R.F_SIP}])"
    ),
    FieldSpec("fd.cnet", NET, F.FILTER_ONLY, "client IP against a CIDR", f"f[{R.F_CIP}]"),
    FieldSpec("fd.snet", NET, F.FILTER_ONLY, "server IP against a CIDR", f"f[{R.F_SIP}]"),
    FieldSpec(
        "fd.lnet", NET, F.FILTER_ONLY, "local IP against a CIDR",
        local_remote(True, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.rnet", NET, F.FILTER_ONLY, "remote IP against a CIDR",
        local_remote(False, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.cip.name", CH, F.NO_RHS, "name of the client IP, from the injected mapping",
        ip_names(f"f[{R.F_CIP}]"), presence=f"f[{R.F_CIP}]",
    ),
    FieldSpec(
        "fd.sip.name", CH, F.NO_RHS, "name of the server IP, from the injected mapping",
        ip_names(f"f[{R.F_SIP}]"), presence=f"f[{R.F_SIP}]",
    ),
    FieldSpec(
        "fd.lip.name", CH, F.NO_RHS, "name of the local IP, from the injected mapping",
        ip_names(local_remote(True, R.F_CIP, R.F_SIP)), presence=local_remote(True, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.rip.name", CH, F.NO_RHS, "name of the remote IP, from the injected mapping",
        ip_names(local_remote(False, R.F_CIP, R.F_SIP)), presence=local_remote(False, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.types", CH, F.IS_LIST | F.ARG_ALLOWED | F.NO_RHS,
        "types of the fds the process has open; [N]: of fd N (ev[EV_FDTYPES])", _fdtypes,
    ),
    FieldSpec(
        "fd.connected", BOOL, F.FEW_VALUES, "socket is connected (f[F_CONNECTED])", f"f[{R.F_CONNECTED}]"
    ),
    FieldSpec(
        "fd.name_changed", BOOL, F.FEW_VALUES, "the event changed the fd's name (f[F_NAME_CHANGED])",
        f"f[{R.F_NAME_CHANGED}]"
    ),
)
