"""libsinsp's joining of a relative path onto a directory, for ``evt.arg.*`` path parameters.

libs prints a relative path parameter (``PT_FSPATH``, ``PT_FSRELPATH``) as
``sinsp_utils::concatenate_paths(base, path)`` (libs ``userspace/libsinsp/utils.cpp``, with
``copy_and_normalize_path`` and ``rewind_to_parent_path``): ``.`` and ``..`` components and
doubled slashes are folded as the kernel would, and a trailing slash is dropped. This is a
faithful port, quirks included (``..`` never climbs above the first character of the base).
"""

from __future__ import annotations

from typing import Final

# libs SCAP_MAX_PATH_SIZE; longer joins print this placeholder, as libs does
_MAX_PATH: Final = 1024
TOO_LONG: Final = "/DIR_TOO_LONG/FILENAME_TOO_LONG"


def _rewind(buf: list[str], tc: int) -> int:
    """Back to just after the previous separator (never before index 1)."""
    if tc <= 1:
        return tc
    tc -= 1
    while tc >= 1 and buf[tc - 1] != "/":
        tc -= 1
    return tc


def resolve_path(base: str, path: str) -> str:
    """``concatenate_paths(base, path)``: ``base`` (a directory ending with ``/``) joined with a
    relative ``path`` and normalised; an absolute ``path`` is only normalised."""
    if len(base) + len(path) + 1 > _MAX_PATH:
        return TOO_LONG
    buf = list(base) if path and path[0] != "/" else []
    empty_base = not buf
    tc = len(buf)
    n = len(path)
    pc = 0

    def at(i: int) -> str:
        return path[i] if i < n else ""

    def put(c: str) -> None:
        nonlocal tc
        del buf[tc:]
        buf.append(c)
        tc += 1

    while True:
        c = at(pc)
        if not c:
            del buf[tc:]
            if tc > 1 and buf[tc - 1] == "/":
                del buf[tc - 1]
            return "".join(buf)
        if c == "." and (tc == 0 or buf[tc - 1] == "/"):
            if at(pc + 1) == "." and at(pc + 2) == "/":
                tc = _rewind(buf, tc)
                pc += 3
            elif at(pc + 1) == "." and not at(pc + 2):
                tc = _rewind(buf, tc)
                pc += 2
            elif at(pc + 1) == "/":
                pc += 2
            elif not at(pc + 1):
                pc += 1
            else:
                put(c)
                pc += 1
        elif c == "/" and ((tc > 0 and buf[tc - 1] == "/") or (tc == 0 and not empty_base)):
            pc += 1
        else:
            put(c)
            pc += 1
