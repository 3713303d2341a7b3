"""The probe's interest maps from a ruleset's interest (`collectors.interest_plan`) and the order in
which `collectors.interest_maps.apply_interest` changes them.

Soundness is checked against a plain model of what probe.bpf.c does with the maps (written here
from the C, sharing no code with the plan): for random paths and names, an event whose record
value `FieldInterest.admits` must be one the model keeps. The record's value is computed by the
decoder's own functions (`collectors.decode.abspath`, the "replace" decoding)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import interest_maps, loader
from collectors.decode import abspath
from collectors.header import (
    PG_FIELD_COMM,
    PG_FIELD_PATH,
    PG_IM_COMM,
    PG_IM_KEEP,
    PG_IM_PATH,
    PG_LPM_DATA,
    PG_LPM_STR,
    PG_MAX_STR,
)
from collectors.interest_plan import MAX_KEYS, Entry, KernelInterest, plan
from rules.interest import FieldInterest, TypeInterest
from rules.record import EVENT_TYPE_IDS, P_CWD, PROCESS_LEN

OPENAT = EVENT_TYPE_IDS["openat"]
AT_FDCWD = -100


def _field(name: str, exact: Iterable[str] = (), prefixes: Iterable[str] = (), suffixes: Iterable[str] = (),
           contains: Iterable[str] = ()) -> FieldInterest:  # fmt: skip
    return FieldInterest(
        name, frozenset(exact), frozenset(prefixes), frozenset(suffixes), frozenset(contains)
    )


def _interest(*types: tuple[str, tuple[FieldInterest, ...]]) -> dict[str, TypeInterest]:
    return {name: TypeInterest(name, fields) for name, fields in types}


# --- a model of probe.bpf.c's tests, from the C --------------------------------------------------
def _lpm_hit(keys: Iterable[bytes], data: bytes) -> bool:
    """Whether some trie key's first prefixlen bits equal the looked-up data's (whole bytes here)."""
    for key in keys:
        bits = int.from_bytes(key[:4], "little")
        assert bits % 8 == 0 and len(key) == 4 + PG_LPM_DATA
        if data[: bits // 8] == key[4 : 4 + bits // 8]:
            return True
    return False


def _head(type_id: int, field_id: int) -> bytes:
    return bytes((type_id >> 8, type_id & 0xFF, field_id, 0))


def kernel_keeps_path(mode: int, keys: Iterable[bytes], type_id: int, raw: bytes) -> bool:
    """pg_path_admitted on the string the probe read (bpf_probe_read_user_str: cut, NUL-ended)."""
    item = raw.split(b"\0", 1)[0][: PG_MAX_STR - 1] + b"\0"
    n = len(item)
    if not mode & PG_IM_PATH or n > PG_LPM_STR or item[:1] != b"/":
        return True
    if _lpm_hit(keys, (_head(type_id, PG_FIELD_PATH) + item).ljust(PG_LPM_DATA, b"\xaa")):
        return True
    return b"/." in item or b"//" in item


def kernel_keeps_comm(mode: int, keys: Iterable[bytes], type_id: int, name: bytes | None) -> bool:
    """pg_comm_admitted: `name` is pg_names' entry (None: the process has none)."""
    if not mode & PG_IM_COMM or name is None:
        return True
    return _lpm_hit(keys, (_head(type_id, PG_FIELD_COMM) + name[:15] + b"\0").ljust(PG_LPM_DATA, b"\xaa"))


def _record_name(raw: bytes, dirfd: int, cwd: str | None) -> str | None:
    proc: list[Any] = [None] * PROCESS_LEN
    proc[P_CWD] = cwd
    text = raw.split(b"\0", 1)[0][: PG_MAX_STR - 1].decode("utf-8", "replace")
    return abspath(proc, text, dirfd)


# --- the plan ------------------------------------------------------------------------------------
def test_exact_paths_end_with_their_nul_and_prefixes_do_not() -> None:
    planned = plan(_interest(("openat", (_field("fd.name", exact={"/etc/shadow"}, prefixes={"/etc/"}),))))
    assert planned.modes == {"openat": PG_IM_KEEP | PG_IM_PATH}
    assert planned.entries == {Entry(OPENAT, PG_FIELD_PATH, b"/etc/shadow", True),
                               Entry(OPENAT, PG_FIELD_PATH, b"/etc/", False)}  # fmt: skip
    exact = Entry(OPENAT, PG_FIELD_PATH, b"/etc/shadow", True).key()
    assert exact[:4] == ((4 + 12) * 8).to_bytes(4, "little")
    assert exact[4:20] == bytes((0, OPENAT, PG_FIELD_PATH, 0)) + b"/etc/shadow\0"
    assert len(exact) == 4 + PG_LPM_DATA and exact[20:] == bytes(len(exact) - 20)
    keys = {e.key() for e in planned.entries}
    assert kernel_keeps_path(planned.modes["openat"], keys, OPENAT, b"/etc/shadow")
    assert kernel_keeps_path(planned.modes["openat"], keys, OPENAT, b"/etc/passwd")
    assert not kernel_keeps_path(planned.modes["openat"], keys, OPENAT, b"/etc")
    assert not kernel_keeps_path(planned.modes["openat"], keys, OPENAT, b"/usr/lib/libc.so.6")


def test_what_the_kernel_cannot_test_is_left_unconstrained() -> None:
    path = _field("fd.name", prefixes={"/etc/"})
    planned = plan(_interest(
        ("openat", (_field("fd.name", prefixes={"/etc/"}, suffixes={".pem"}),)),  # a suffix: no trie
        ("open", (_field("fd.name", contains={"/.ssh/"}),)),
        ("creat", (_field("fd.name", prefixes={""}),)),  # admits every path
        ("openat2", (_field("fd.name", exact={"/etc/\ufffd"}),)),  # the kernel compares bytes
        ("connect", (path,)),  # fd.name is a tuple there
        ("mkdirat", (path,)),  # no fd.name from the path
        ("execve", (_field("proc.name", exact={"bash"}),)),  # the process table needs every exec
        ("chdir", (path,)),
    ))  # fmt: skip
    assert planned.modes == {name: PG_IM_KEEP for name in planned.modes} and len(planned.modes) == 8
    assert planned.entries == frozenset()


def test_process_names_are_checked_on_any_type_with_comm_semantics() -> None:
    planned = plan(_interest(("connect", (_field("proc.name", exact={"nc", "a-very-long-process-name"},
                                                 prefixes={"kube"}),))))  # fmt: skip
    connect = EVENT_TYPE_IDS["connect"]
    assert planned.modes == {"connect": PG_IM_KEEP | PG_IM_COMM}
    # a comm holds 15 bytes: a longer name is kept whenever the comm is its first 15
    assert planned.entries == {Entry(connect, PG_FIELD_COMM, b"nc", True),
                               Entry(connect, PG_FIELD_COMM, b"a-very-long-pro", True),
                               Entry(connect, PG_FIELD_COMM, b"kube", False)}  # fmt: skip
    keys = {e.key() for e in planned.entries}
    mode = planned.modes["connect"]
    assert kernel_keeps_comm(mode, keys, connect, b"nc")
    assert kernel_keeps_comm(mode, keys, connect, b"kube-proxy")
    assert kernel_keeps_comm(mode, keys, connect, None)
    assert not kernel_keeps_comm(mode, keys, connect, b"ncat")
    assert not kernel_keeps_comm(mode, keys, OPENAT, b"nc")  # another type's entries do not count


def test_no_interest_keeps_the_types_whole_and_too_many_keys_drop_the_largest_check() -> None:
    assert plan(None, {"openat", "connect"}) == KernelInterest(
        {"openat": PG_IM_KEEP, "connect": PG_IM_KEEP}, frozenset()
    )
    big = _field("fd.name", exact={f"/x/{i}" for i in range(MAX_KEYS)})
    small = _field("fd.name", prefixes={"/etc/"})
    planned = plan(_interest(("openat", (big,)), ("open", (small,))))
    assert planned.modes == {"openat": PG_IM_KEEP, "open": PG_IM_KEEP | PG_IM_PATH}
    assert len(planned.entries) == 1


def test_paths_longer_than_a_key_are_left_to_the_probe() -> None:
    long_dir = "/" + "d" * (PG_LPM_STR - 2)
    planned = plan(_interest(("openat", (_field("fd.name", exact={long_dir, "/" + "e" * 300},
                                                prefixes={long_dir + "/"}),))))  # fmt: skip
    assert planned.modes["openat"] & PG_IM_PATH and planned.entries == {
        Entry(OPENAT, PG_FIELD_PATH, long_dir.encode(), True)
    }
    keys = {e.key() for e in planned.entries}
    assert kernel_keeps_path(planned.modes["openat"], keys, OPENAT, long_dir.encode())
    assert kernel_keeps_path(planned.modes["openat"], keys, OPENAT, long_dir.encode() + b"/x")  # too long
    assert not kernel_keeps_path(planned.modes["openat"], keys, OPENAT, long_dir.encode()[:-1])


# --- soundness: admits -> the kernel keeps --------------------------------------------------------
_NAMES = ("etc", "shadow", "..", ".", "", "x", "\u00e9", "\ufffd", "ssh", "a" * 120)
_RAW_NAMES = (b"etc", b"shadow", b"..", b".", b"", b"x", b"\xc3\xa9", b"\xff", b"\xc3", b"a" * 120, b"x\0y")


@st.composite
def _values(draw: st.DrawFn) -> str:
    """Mostly absolute paths made of names the raw paths use too, sometimes with a slash at the end."""
    value = "/".join(draw(st.lists(st.sampled_from(_NAMES), max_size=4)))
    return draw(st.sampled_from(("/", "/", "/", ""))) + value + draw(st.sampled_from(("", "", "/")))


@st.composite
def _raw_paths(draw: st.DrawFn) -> bytes:
    path = b"/".join(draw(st.lists(st.sampled_from(_RAW_NAMES), max_size=5)))
    start = draw(st.sampled_from((b"/", b"/", b"/", b"", b"//")))
    return start + path + draw(st.sampled_from((b"", b"", b"/")))


@st.composite
def _fields(draw: st.DrawFn, name: str) -> FieldInterest:
    """Exact values and prefixes; a suffix or a substring now and then (the kernel leaves those)."""
    rarely = st.sampled_from((frozenset(), frozenset(), frozenset(), frozenset(), frozenset({"shadow"})))
    exact, prefixes = draw(st.frozensets(_values(), max_size=4)), draw(st.frozensets(_values(), max_size=3))
    return _field(name, exact, prefixes, draw(rarely), draw(rarely))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(field=_fields("fd.name"), type_name=st.sampled_from(("open", "openat", "openat2", "creat")),
       raw=_raw_paths(), dirfd=st.sampled_from((AT_FDCWD, 3)),
       cwd=st.sampled_from(("/etc", "/", None)))  # fmt: skip
def test_every_path_the_interest_admits_is_kept(
    field: FieldInterest, type_name: str, raw: bytes, dirfd: int, cwd: str | None
) -> None:
    planned = plan(_interest((type_name, (field,))))
    name = _record_name(raw, dirfd, cwd)
    if name is not None and field.admits(name):
        keys = {e.key() for e in planned.entries}
        assert kernel_keeps_path(planned.modes[type_name], keys, EVENT_TYPE_IDS[type_name], raw), (raw, name)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(field=_fields("proc.name"), comm=st.lists(st.sampled_from(_RAW_NAMES[:-1]), max_size=3))
def test_every_process_name_the_interest_admits_is_kept(field: FieldInterest, comm: list[bytes]) -> None:
    raw = b"/".join(comm)[:15]  # what pg_names holds: the process table's name, a comm
    planned = plan(_interest(("connect", (field,))))
    if field.admits(raw.decode("utf-8", "replace")):
        keys = {e.key() for e in planned.entries}
        assert kernel_keeps_comm(planned.modes["connect"], keys, EVENT_TYPE_IDS["connect"], raw), raw


# --- apply_interest widens before it narrows -----------------------------------------------------
@dataclass
class _Table:
    """A bcc table stand-in (the trie keyed by bytes, the mode array by int): every change calls
    `after`, which checks the probe's state at that moment."""

    after: Callable[[], None]
    items: dict[Any, int] = field(default_factory=dict)

    def Key(self) -> Any:  # noqa: N802 - bcc's name
        return (ctypes.c_ubyte * (4 + PG_LPM_DATA))()

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key.value if isinstance(key, ctypes.c_int) else bytes(key)] = value.value
        self.after()

    def __delitem__(self, key: Any) -> None:
        del self.items[bytes(key)]
        self.after()


@dataclass
class _Bpf:
    after: Callable[[], None]
    tables: dict[str, _Table] = field(default_factory=dict)

    def __getitem__(self, name: str) -> _Table:
        return self.tables.setdefault(name, _Table(self.after))

    def attach_tracepoint(self, tp: bytes, fn_name: bytes) -> None:
        self.after()

    def detach_tracepoint(self, tp: bytes) -> None:
        self.after()


def test_a_switch_keeps_the_old_interest_until_the_new_one_is_kept_whole() -> None:
    """After every map write, attach and detach of a switch from A to B: A's events are all kept
    up to some step, B's all kept from some step on, and the second step comes first, so an
    event either keeps is kept all along."""
    a = _interest(("openat", (_field("fd.name", prefixes={"/etc/"}),)), ("mkdir", ()),
                  ("connect", (_field("proc.name", exact={"nc"}),)))  # fmt: skip
    b = _interest(("openat", (_field("fd.name", exact={"/root/.ssh/id_rsa"}, prefixes={"/var/"}),)),
                  ("rmdir", ()), ("connect", ()))  # fmt: skip
    values = (b"/etc/passwd", b"/root/.ssh/id_rsa", b"/var/log/x", b"/usr/lib/x", b"nc", b"bash")
    steps: list[tuple[bool, bool]] = []  # (every event A admits kept, every event B admits kept)

    def kept(name: str, value: bytes) -> bool:
        """What the probe keeps now, by the model: attached, wanted, and its checks pass."""
        type_id = EVENT_TYPE_IDS[name]
        mode = bpf["interest_mode"].items.get(type_id, 0)
        keys = set(bpf["interest_lpm"].items)
        if name not in probe.live.attached or not mode & PG_IM_KEEP:
            return False
        return kernel_keeps_path(mode, keys, type_id, value) and kernel_keeps_comm(mode, keys, type_id, value)

    def keeps_all(interest: dict[str, TypeInterest]) -> bool:
        return all(kept(name, value) for name, wanted in interest.items() for value in values
                   if all(f.admits(value.decode()) for f in wanted.fields))  # fmt: skip

    bpf = _Bpf(lambda: steps.append((keeps_all(a), keeps_all(b))))
    compiled = frozenset({"openat", "mkdir", "rmdir", "connect"} | loader.ALWAYS_TRACED)
    probe = loader.Probe(
        bpf, frozenset(), frozenset(), compiled, loader.Live(attached=set(compiled) - {"procexit"})
    )
    interest_maps.apply_interest(probe, a)
    always = loader.ALWAYS_TRACED - {"procexit"}
    assert probe.live.attached == {"openat", "mkdir", "connect"} | always and keeps_all(a)
    steps.clear()
    interest_maps.apply_interest(probe, b)
    assert len(steps) > 5, steps  # map writes, an attach, a detach
    a_ok, b_ok = [s[0] for s in steps], [s[1] for s in steps]
    last_a = a_ok.index(False) - 1 if False in a_ok else len(steps) - 1
    first_b = len(steps) - b_ok[::-1].index(False) if False in b_ok else 0
    assert all(a_ok[: last_a + 1]) and not any(a_ok[last_a + 1 :]), steps
    assert all(b_ok[first_b:]) and first_b <= last_a, steps
    assert probe.live.attached == {"openat", "rmdir", "connect"} | always
    assert not kept("openat", b"/etc/passwd") and not kept("mkdir", b"/x") and kept("connect", b"bash")
