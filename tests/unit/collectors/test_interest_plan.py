"""The probe's interest maps from a ruleset's interest (`collectors.interest_plan`) and the order in
which `collectors.interest_maps.apply_interest` changes them.

Soundness is checked against a plain model of what probe.bpf.c does with the maps
(tests/interest_model.py, from the C, sharing no code with the plan): for random interests with
alternatives and random events, an event `rules.interest.admits` must be one the model keeps.
The record's values are computed by the decoder's own functions (`collectors.decode.abspath`,
the "replace" decoding)."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from interest_model import Maps, kernel_keeps, maps_of

from collectors import interest_maps, loader
from collectors.decode import abspath
from collectors.header import (
    PG_FIELD_COMM,
    PG_FIELD_PATH,
    PG_FIELD_RPATH,
    PG_GRAM_BITS,
    PG_IM_COMM,
    PG_IM_FDTABLE,
    PG_IM_GRAM_PAIRS,
    PG_IM_KEEP,
    PG_IM_PATH,
    PG_LPM_DATA,
    PG_LPM_STR,
    PG_MAX_STR,
    PG_SCREEN_SLOTS,
)
from collectors.interest_plan import MAX_KEYS, Entry, TypePlan, plan
from rules import interest as ri
from rules import record as R
from rules.interest import Alternative, FieldInterest, TypeInterest
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


def _record_name(raw: bytes, dirfd: int, cwd: str | None) -> str | None:
    proc: list[Any] = [None] * PROCESS_LEN
    proc[P_CWD] = cwd
    text = raw.split(b"\0", 1)[0][: PG_MAX_STR - 1].decode("utf-8", "replace")
    return abspath(proc, text, dirfd)


# --- the plan ------------------------------------------------------------------------------------
def test_exact_paths_end_with_their_nul_and_prefixes_do_not() -> None:
    planned = plan(_interest(("openat", (_field("fd.name", exact={"/etc/shadow"}, prefixes={"/etc/"}),))))
    assert planned.types["openat"].mode == PG_IM_KEEP | PG_IM_PATH
    assert planned.entries == {Entry(OPENAT, PG_FIELD_PATH, b"/etc/shadow", True): 1,
                               Entry(OPENAT, PG_FIELD_PATH, b"/etc/", False): 1}  # fmt: skip
    exact = Entry(OPENAT, PG_FIELD_PATH, b"/etc/shadow", True).key(1)
    assert exact[:4] == ((4 + 12) * 8).to_bytes(4, "little")
    assert exact[4:20] == bytes((0, OPENAT, PG_FIELD_PATH, 1)) + b"/etc/shadow\0"
    assert len(exact) == 4 + PG_LPM_DATA and exact[20:] == bytes(len(exact) - 20)
    maps = maps_of(planned)
    assert kernel_keeps(maps, OPENAT, path=b"/etc/shadow")
    assert kernel_keeps(maps, OPENAT, path=b"/etc/passwd")
    assert not kernel_keeps(maps, OPENAT, path=b"/etc")
    assert not kernel_keeps(maps, OPENAT, path=b"/usr/lib/libc.so.6")


def test_each_alternative_has_a_bit_and_an_entry_holds_those_of_its_prefixes() -> None:
    """openat: A (/etc/ by cat, opened for writing), B (/etc/shadow, failing), C (*.pem, any name)."""
    interest = {"openat": TypeInterest("openat", (), (
        Alternative((_field("fd.name", prefixes={"/etc/"}), _field("proc.name", exact={"cat"})),
                    frozenset({1, 2})),
        Alternative((_field("fd.name", exact={"/etc/shadow"}),), None, False),
        Alternative((_field("fd.name", suffixes={".pem"}),)),
    ))}  # fmt: skip
    planned = plan(interest)
    assert planned.types["openat"] == TypePlan(
        PG_IM_KEEP | PG_IM_PATH | PG_IM_COMM,
        0,
        0b110,
        0b100,
        0,
        (0b110, 0b111, 0b111, 0b110),
        (0b111, 0b101),
    )
    assert planned.entries == {Entry(OPENAT, PG_FIELD_PATH, b"/etc/", False): 0b001,
                               Entry(OPENAT, PG_FIELD_PATH, b"/etc/shadow", True): 0b011,
                               Entry(OPENAT, PG_FIELD_RPATH, b"mep.", False): 0b100,
                               Entry(OPENAT, PG_FIELD_COMM, b"cat", True): 0b001}  # fmt: skip
    maps = maps_of(planned)
    o_wronly, o_rdonly = 1, 0
    assert kernel_keeps(maps, OPENAT, path=b"/etc/passwd", comm=b"cat", flags=o_wronly)
    assert not kernel_keeps(maps, OPENAT, path=b"/etc/passwd", comm=b"cat", flags=o_rdonly)
    assert not kernel_keeps(maps, OPENAT, path=b"/etc/passwd", comm=b"vi", flags=o_wronly)
    assert kernel_keeps(maps, OPENAT, path=b"/etc/shadow", comm=b"vi", ret=-13)
    assert not kernel_keeps(maps, OPENAT, path=b"/etc/shadow", comm=b"vi", ret=3)
    assert kernel_keeps(maps, OPENAT, path=b"/home/a/key.pem", comm=b"vi", ret=3)
    assert kernel_keeps(maps, OPENAT, path=b"/etc/key.pem", comm=b"vi", ret=3, flags=o_rdonly)
    assert not kernel_keeps(maps, OPENAT, path=b"/home/a/key.pe", comm=b"vi")
    assert kernel_keeps(maps, OPENAT, path=b"/home/a/../key.pe", comm=b"vi")  # the collector normalises it


def test_substrings_are_screened_by_one_gram_each() -> None:
    interest = {"openat": TypeInterest("openat", (), (
        Alternative((_field("fd.name", prefixes={"/etc/"}, contains={"/.ssh/", "id_rsa"}),)),
        Alternative((_field("fd.name", contains={"liblzma.so.5.6.0"}),), frozenset({0})),
        Alternative((_field("fd.name", contains={".pub"}),)),
    ))}  # fmt: skip
    planned = plan(interest)
    # ".pub" has one gram: every position is tested
    assert planned.types["openat"].mode == PG_IM_KEEP | PG_IM_PATH and not planned.types["openat"].suffixed
    assert planned.types["openat"].grams == 0b111 and len(planned.grams["openat"]) == 4
    maps = maps_of(planned)
    assert kernel_keeps(maps, OPENAT, path=b"/home/a/.ssh/known_hosts")
    assert kernel_keeps(maps, OPENAT, path=b"/tmp/id_rsa")
    assert kernel_keeps(maps, OPENAT, path=b"/tmp/k.pub")  # the last gram
    assert kernel_keeps(maps, OPENAT, path=b"/usr/lib/liblzma.so.5.6.0", flags=0)
    # a hit passes every alternative needing a substring: the screen does not tell which one
    assert kernel_keeps(maps, OPENAT, path=b"/usr/lib/liblzma.so.5.6.0", flags=1)
    assert not kernel_keeps(maps, OPENAT, path=b"/usr/lib/libc.so.6")
    assert not kernel_keeps(maps, OPENAT, path=b"/home/a/ssh/x")


def test_substrings_of_five_bytes_or_more_are_screened_by_two_grams_at_even_positions() -> None:
    """Each substring sets the bits of two consecutive grams, one of which starts at an even
    position wherever the substring sits: the probe tests those positions only."""
    interest = {"openat": TypeInterest("openat", (), (
        Alternative((_field("fd.name", contains={"/.ssh/", "id_rsa"}),)),
        Alternative((_field("proc.name", exact={"sshd"}),)),
    ))}  # fmt: skip
    planned = plan(interest)
    assert planned.types["openat"].mode == PG_IM_KEEP | PG_IM_PATH | PG_IM_COMM | PG_IM_GRAM_PAIRS
    assert len(planned.grams["openat"]) == 4
    maps = maps_of(planned)
    for pad in range(9):
        assert kernel_keeps(maps, OPENAT, path=b"/" + b"x" * pad + b"/.ssh/k", comm=b"cat")
        assert kernel_keeps(maps, OPENAT, path=b"/" + b"y" * pad + b"id_rsa", comm=b"cat")
    assert not kernel_keeps(maps, OPENAT, path=b"/home/a/ssh/x", comm=b"cat")
    # id_rsa's pair (its grams' non-letters tie: the first pair): a path holding the second gram
    # alone, at an odd position, is not tested there
    assert {_gram_bit(b"id_r"), _gram_bit(b"d_rs")} <= planned.grams["openat"]
    assert not kernel_keeps(maps, OPENAT, path=b"/d_rszz", comm=b"cat")
    assert kernel_keeps(maps, OPENAT, path=b"/d_rszz", comm=b"sshd")
    assert kernel_keeps(maps, OPENAT, path=b"/xd_rszz", comm=b"cat")  # at an even position it hits


def _gram_bit(gram: bytes) -> int:
    """pg_grams_hit's bit for a gram, written again"""
    return (int.from_bytes(gram, "little") * 0x9E3779B1 % 2**32) >> (32 - 16)


def test_the_screen_holds_per_first_and_last_four_bytes_the_alternatives_an_entry_could_pass() -> None:
    """A read of /usr/lib/x with Falco-like rules (reads below /etc, writes below /usr/bin, reads
    ending in /environ) looks nothing up: the write's entry shares its first 4 bytes but not its
    alternative. Entries shorter than 4 bytes go to the short masks, which every path looks up."""
    reads, writes = frozenset({0}), frozenset({1, 2})
    interest = {"openat": TypeInterest("openat", (), (
        Alternative((_field("fd.name", prefixes={"/etc/"}),), reads),
        Alternative((_field("fd.name", prefixes={"/usr/bin/"}),), writes),
        Alternative((_field("fd.name", suffixes={"/environ"}),), reads),
        Alternative((_field("fd.name", exact={"/a"}, suffixes={".7z"}),), writes),
    ))}  # fmt: skip
    raw = plan(interest).screen("openat")
    words = struct.unpack(f"<{2 + 2 * PG_SCREEN_SLOTS}Q", raw)
    head, tail = words[2 : 2 + PG_SCREEN_SLOTS], words[2 + PG_SCREEN_SLOTS :]

    def slot(gram: bytes) -> int:  # probe.bpf.c pg_screen_slot, written again
        return (int.from_bytes(gram, "little") * 0x9E3779B1 % 2**32) >> 22

    assert words[0] == 0b1000 and words[1] == 0b1000  # "/a\0" and ".7z"
    assert head[slot(b"/etc")] & 0b111 == 0b001 and head[slot(b"/usr")] & 0b111 == 0b010
    assert tail[slot(b"iron")] & 0b111 == 0b100
    assert sum(map(bool, head)) <= 2 and sum(map(bool, tail)) == 1
    assert not any(plan(interest).screen("open"))  # no entry of its type


def test_an_alternative_gets_the_common_fields_it_does_not_constrain() -> None:
    common = _field("proc.name", exact={"cat", "vi"})
    interest = {"openat": TypeInterest("openat", (common,), (
        Alternative((_field("fd.name", prefixes={"/etc/"}),)),
        Alternative((_field("proc.name", exact={"vi"}),)),
    ))}  # fmt: skip
    maps = maps_of(plan(interest))
    assert kernel_keeps(maps, OPENAT, path=b"/etc/x", comm=b"cat")
    assert not kernel_keeps(maps, OPENAT, path=b"/etc/x", comm=b"sh")
    assert kernel_keeps(maps, OPENAT, path=b"/usr/x", comm=b"vi")
    assert not kernel_keeps(maps, OPENAT, path=b"/usr/x", comm=b"cat")


def test_what_the_kernel_cannot_test_is_left_unconstrained() -> None:
    path = _field("fd.name", prefixes={"/etc/"})
    planned = plan(_interest(
        ("openat", (_field("fd.name", prefixes={"/etc/"}, suffixes={"x" * 65}),)),  # longer than a key
        ("open", (_field("fd.name", contains={"ssh"}),)),  # shorter than a gram
        ("creat", (_field("fd.name", prefixes={""}),)),  # admits every path
        ("openat2", (_field("fd.name", exact={"/etc/\ufffd"}),)),  # the kernel compares bytes
        ("connect", (path,)),  # fd.name is a tuple there
        ("mkdirat", (path,)),  # no fd.name from the path
        ("execve", (_field("proc.name", exact={"bash"}),)),  # the process table needs every exec
        ("chdir", (path,)),
        ("accept", (_field("proc.name", suffixes={"sh"}),)),
    ))  # fmt: skip
    assert {t.mode for t in planned.types.values()} == {PG_IM_KEEP} and len(planned.types) == 9
    assert planned.entries == {}


def test_process_names_are_checked_on_any_type_with_comm_semantics() -> None:
    planned = plan(_interest(("connect", (_field("proc.name", exact={"nc", "a-very-long-process-name"},
                                                 prefixes={"kube"}),))))  # fmt: skip
    connect = EVENT_TYPE_IDS["connect"]
    assert planned.types["connect"].mode == PG_IM_KEEP | PG_IM_COMM
    # a comm holds 15 bytes: a longer name is kept whenever the comm is its first 15
    assert set(planned.entries) == {Entry(connect, PG_FIELD_COMM, b"nc", True),
                                    Entry(connect, PG_FIELD_COMM, b"a-very-long-pro", True),
                                    Entry(connect, PG_FIELD_COMM, b"kube", False)}  # fmt: skip
    maps = maps_of(planned)
    assert kernel_keeps(maps, connect, comm=b"nc")
    assert kernel_keeps(maps, connect, comm=b"kube-proxy")
    assert kernel_keeps(maps, connect, comm=None)
    assert not kernel_keeps(maps, connect, comm=b"ncat")
    assert not kernel_keeps(maps, OPENAT, comm=b"nc")  # a type with no record keeps nothing


def test_no_interest_keeps_the_types_whole_and_too_many_keys_drop_the_largest_check() -> None:
    whole = plan(None, {"openat", "connect"})
    assert set(whole.types) == {"openat", "connect"} and not whole.entries
    assert all(t.mode == PG_IM_KEEP for t in whole.types.values())
    with_tables = plan(None, {"openat"}, fd_tables=True)
    assert all(t.mode == PG_IM_KEEP | PG_IM_FDTABLE for t in with_tables.types.values())
    big = _field("fd.name", exact={f"/x/{i}" for i in range(MAX_KEYS)})
    small = _field("fd.name", prefixes={"/etc/"})
    planned = plan(_interest(("openat", (big,)), ("open", (small,))))
    assert (
        planned.types["openat"].mode == PG_IM_KEEP and planned.types["open"].mode == PG_IM_KEEP | PG_IM_PATH
    )
    assert len(planned.entries) == 1
    assert kernel_keeps(maps_of(planned), OPENAT, path=b"/y")


def test_a_type_whose_rules_read_fd_types_carries_the_fd_table_whatever_its_checks() -> None:
    fd = _field("fd.name", prefixes={"/etc/"})
    planned = plan({"openat": TypeInterest("openat", (fd,), fd_table=True),
                    "connect": TypeInterest("connect", ()),
                    "execve": TypeInterest("execve", (), fd_table=True)})  # fmt: skip
    assert planned.types["openat"].mode == PG_IM_KEEP | PG_IM_PATH | PG_IM_FDTABLE
    assert planned.types["connect"].mode == PG_IM_KEEP
    assert planned.types["execve"].mode == PG_IM_KEEP | PG_IM_FDTABLE  # never filtered, still asked


def test_paths_longer_than_a_key_are_left_to_the_probe() -> None:
    long_dir = "/" + "d" * (PG_LPM_STR - 2)
    planned = plan(_interest(("openat", (_field("fd.name", exact={long_dir, "/" + "e" * 300},
                                                prefixes={long_dir + "/"}),))))  # fmt: skip
    assert planned.types["openat"].mode & PG_IM_PATH and set(planned.entries) == {
        Entry(OPENAT, PG_FIELD_PATH, long_dir.encode(), True)
    }
    maps = maps_of(planned)
    assert kernel_keeps(maps, OPENAT, path=long_dir.encode())
    assert kernel_keeps(maps, OPENAT, path=long_dir.encode() + b"/x")  # too long
    assert not kernel_keeps(maps, OPENAT, path=long_dir.encode()[:-1])


# --- soundness: admits -> the kernel keeps --------------------------------------------------------
_NAMES = ("etc", "shadow", "..", ".", "", "x", "\u00e9", "\ufffd", "ssh", "a" * 120, ".pem")
_RAW_NAMES = (b"etc", b"shadow", b"..", b".", b"", b"x", b"\xc3\xa9", b"\xff", b"\xc3", b"a" * 120, b"x\0y",
              b".pem", b"key.pem")  # fmt: skip
_TYPES = ("open", "openat", "openat2", "creat", "connect")
# a comm is a C string: the kernel pads it with NULs, so none is inside a name
_COMM_PARTS = tuple(n for n in _RAW_NAMES[:-1] if b"\0" not in n)


@st.composite
def _values(draw: st.DrawFn) -> str:
    """Mostly absolute paths made of names the raw paths use too, sometimes with a slash at the end."""
    value = "/".join(draw(st.lists(st.sampled_from(_NAMES), max_size=4)))
    return draw(st.sampled_from(("/", "/", "/", ""))) + value + draw(st.sampled_from(("", "", "/")))


@st.composite
def _raw_paths(draw: st.DrawFn) -> bytes:
    """Half of them absolute and without "/." or "//", the paths the probe looks up."""
    if draw(st.booleans()):
        clean = [n for n in _RAW_NAMES if n and not n.startswith(b".")]
        return b"/" + b"/".join(draw(st.lists(st.sampled_from(clean), min_size=1, max_size=4)))
    path = b"/".join(draw(st.lists(st.sampled_from(_RAW_NAMES), max_size=5)))
    start = draw(st.sampled_from((b"/", b"/", b"/", b"", b"//")))
    return start + path + draw(st.sampled_from((b"", b"", b"/")))


@st.composite
def _fields(draw: st.DrawFn, name: str, seen: str | None = None) -> FieldInterest:
    """Exact values, prefixes, suffixes and substrings, often cut from the event's own value
    (`seen`); a quarter of them only substrings, a quarter only suffixes."""
    seen = seen or ""
    heads = [seen[:i] for i in range(1, len(seen) + 1)] or ["/"]
    tails = [seen[i:] for i in range(len(seen))] or ["/"]
    middles = [seen[i : i + n] for i in range(len(seen)) for n in (4, 6)] or ["/"]
    values = _values() | st.sampled_from(heads)
    suffixes = st.sampled_from(("shadow", ".pem", "/x", "a" * 70, "\u00e9", "h")) | st.sampled_from(tails)
    inside = st.sampled_from(("shadow", "/.ssh/", "hadow/", "ssh", "\u00e9\u00e9")) | st.sampled_from(middles)
    kind = draw(st.integers(0, 3))
    contains = draw(st.frozensets(inside, max_size=2)) if kind != 1 else frozenset()
    ends = draw(st.frozensets(suffixes, max_size=2)) if kind != 0 else frozenset()
    if kind < 2:
        return _field(name, suffixes=ends, contains=contains)
    exact, prefixes = draw(st.frozensets(values, max_size=3)), draw(st.frozensets(values, max_size=3))
    return _field(name, exact, prefixes, ends, contains)


@st.composite
def _alternatives(draw: st.DrawFn, seen: dict[str, str | None]) -> Alternative:
    fields = [draw(_fields(n, seen[n])) for n in ("fd.name", "proc.name") if draw(st.booleans())]
    accmodes = draw(st.none() | st.frozensets(st.integers(0, 3), min_size=1))
    return Alternative(tuple(fields), accmodes, draw(st.none() | st.booleans()))


@st.composite
def _type_interests(draw: st.DrawFn, name: str, seen: dict[str, str | None]) -> TypeInterest:
    fields = tuple(draw(_fields(n, seen[n])) for n in ("fd.name", "proc.name") if draw(st.booleans()))
    return TypeInterest(name, fields, tuple(draw(st.lists(_alternatives(seen), max_size=5))))


def _event(type_name: str, name: str | None, comm: str, flags: int, ret: int) -> R.Event:
    ev: list[Any] = [None] * R.EVENT_LEN
    ev[R.EV_TYPE], ev[R.EV_RES] = EVENT_TYPE_IDS[type_name], ret
    proc: list[Any] = [None] * PROCESS_LEN
    proc[R.P_NAME] = comm
    ev[R.EV_PROC] = proc
    args: list[Any] = [None] * len(R.EVENT_PARAM_INDEX[ev[R.EV_TYPE]])
    if "flags" in R.EVENT_PARAM_INDEX[ev[R.EV_TYPE]]:
        args[R.EVENT_PARAM_INDEX[ev[R.EV_TYPE]]["flags"]] = flags
    ev[R.EV_ARGS] = args
    if name is not None:
        fd: list[Any] = [None] * R.FD_LEN
        fd[R.F_NAME] = name
        ev[R.EV_FD] = fd
    return ev


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data(), type_name=st.sampled_from(_TYPES), raw=_raw_paths(),
       dirfd=st.sampled_from((AT_FDCWD, 3)),
       cwd=st.sampled_from(("/etc", "/", None)), comm=st.lists(st.sampled_from(_COMM_PARTS), max_size=3),
       flags=st.integers(0, 7), ret=st.sampled_from((-2, 0, 3)))  # fmt: skip
def test_every_event_the_interest_admits_is_kept(
    data: st.DataObject, type_name: str, raw: bytes, dirfd: int, cwd: str | None, comm: list[bytes],
    flags: int,
    ret: int,
) -> None:  # fmt: skip
    raw_comm = b"/".join(comm)[:15]  # what pg_names holds: the process table's name, a comm
    name = _record_name(raw, dirfd, cwd) if type_name != "connect" else "10.0.0.1:1->10.0.0.2:2"
    proc_name = raw_comm.decode("utf-8", "replace")
    wanted = data.draw(_type_interests(type_name, {"fd.name": name, "proc.name": proc_name}))
    ev = _event(type_name, name, proc_name, flags, ret)
    if ri.admits({type_name: wanted}, ev):
        maps = maps_of(plan({type_name: wanted}))
        type_id = EVENT_TYPE_IDS[type_name]
        assert kernel_keeps(maps, type_id, path=raw, comm=raw_comm, flags=flags, ret=ret), (
            raw,
            name,
            raw_comm,
        )


# --- apply_interest switches generations ---------------------------------------------------------
@dataclass
class _Table:
    """A bcc table stand-in (the trie keyed by bytes, the arrays by int): every change calls
    `after`, which checks the probe's state at that moment."""

    after: Callable[[], None]
    items: dict[Any, Any] = field(default_factory=dict)

    def Key(self) -> Any:  # noqa: N802 - bcc's name
        return (ctypes.c_ubyte * (4 + PG_LPM_DATA))()

    def Leaf(self) -> Any:  # noqa: N802 - bcc's name: the largest value, a screen
        return (ctypes.c_ubyte * max(PG_GRAM_BITS // 8, 8 * (2 + 2 * PG_SCREEN_SLOTS)))()

    def __setitem__(self, key: Any, value: Any) -> None:
        stored = value.value if hasattr(value, "value") else bytes(value)
        self.items[key.value if isinstance(key, ctypes.c_int) else bytes(key)] = stored
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
    """After every map write and attach of switches A -> B -> A: the old interest's events are all
    kept up to some step, the new one's all kept from the step after on, and what the probe keeps
    is at every step what the probe kept before or what it keeps after (bits of two plans never
    mix)."""
    a = _interest(("openat", (_field("fd.name", prefixes={"/etc/"}),)), ("mkdir", ()),
                  ("connect", (_field("proc.name", exact={"nc"}),)))  # fmt: skip
    b = {"openat": TypeInterest("openat", (), (Alternative((_field("fd.name", exact={"/root/.ssh/id_rsa"}),)),
                                                Alternative((_field("fd.name", suffixes={".log"}),)))),
         "rmdir": TypeInterest("rmdir", ()), "connect": TypeInterest("connect", ())}  # fmt: skip
    values = (b"/etc/passwd", b"/root/.ssh/id_rsa", b"/var/log/x.log", b"/usr/lib/x", b"nc", b"bash")
    cases = [(name, v) for name in ("openat", "mkdir", "rmdir", "connect") for v in values]
    steps: list[tuple[bool, ...]] = []  # per case, whether the probe keeps it now

    def kept(name: str, value: bytes) -> bool:
        """What the probe keeps now, by the model: attached, and its live generation keeps it."""
        items = bpf["interest_type"].items
        maps = Maps(bpf["interest_gen"].items.get(0, 0), items, bpf["interest_lpm"].items,
                    bpf["interest_grams"].items, bpf["interest_screens"].items)  # fmt: skip
        return name in probe.live.attached and kernel_keeps(
            maps, EVENT_TYPE_IDS[name], path=value, comm=value
        )

    def admitted(interest: dict[str, TypeInterest]) -> tuple[bool, ...]:
        return tuple(name in interest and all(f.admits(v.decode()) for f in interest[name].fields)
                     and (not interest[name].alternatives
                          or any(all(f.admits(v.decode()) for f in alt.fields)
                                 for alt in interest[name].alternatives))
                     for name, v in cases)  # fmt: skip

    bpf = _Bpf(lambda: steps.append(tuple(kept(n, v) for n, v in cases)))
    compiled = frozenset({"openat", "mkdir", "rmdir", "connect"} | loader.ALWAYS_TRACED)
    probe = loader.Probe(
        bpf, frozenset(), frozenset(), compiled, loader.Live(attached=set(compiled) - {"procexit"})
    )
    interest_maps.apply_interest(probe, a)
    for old, new in ((a, b), (b, a)):
        steps.clear()
        interest_maps.apply_interest(probe, new)
        assert len(steps) > 5, steps  # map writes, the flip
        before, after = admitted(old), admitted(new)
        flip = next(i for i, s in enumerate(steps) if s != steps[0])
        assert all(s == steps[0] for s in steps[:flip]) and all(s == steps[-1] for s in steps[flip:]), steps
        assert all(k for k, want in zip(steps[0], before, strict=True) if want), (
            "the old interest until the flip"
        )
        assert all(k for k, want in zip(steps[-1], after, strict=True) if want), (
            "the new one from the flip on"
        )
        narrowed = cases.index(("openat", b"/etc/passwd" if new is b else b"/var/log/x.log"))
        assert steps[0][narrowed] and not steps[-1][narrowed], "the old interest's own opens go at the flip"
    assert probe.live.attached == set(compiled) - {"procexit"}  # nothing is detached live
    assert len(bpf["interest_lpm"].items) == 2 + 2  # A's keys, and B's until the next switch
