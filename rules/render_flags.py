"""Linux syscall constants and Falco's name tables for them: the facts `rules.render` prints from.

Collectors put raw Linux values on the wire; Falco's driver first converts them to its own "PPM"
encoding (falcosecurity/libs ``driver/ppm_flag_helpers.h``, ``*_to_scap``) and libsinsp then prints
the PPM value with a name table (``driver/flags_table.c``). Each `FlagTable` below pairs the two
steps, so the text comes out exactly as Falco's: the table entries are ``flags_table.c``'s names,
PPM values and order (order matters: Falco prints names in table order and strips the bits of a
matched multi-bit name, e.g. ``O_RDWR`` before ``O_WRONLY``), and ``to_ppm`` is the driver's
conversion, quirks included (``open_flags_to_scap`` tests ``flags & O_TMPFILE`` where
``O_TMPFILE = __O_TMPFILE | O_DIRECTORY``, so every ``O_DIRECTORY`` open also prints ``O_TMPFILE``).

Source: falcosecurity/libs @ 48dfd53cd23f95720521d41b89883bbc35c8567f (flags_table.c,
ppm_events_public.h, ppm_flag_helpers.h, modern_bpf/programs/.../syscall_dispatched_events/*.bpf.c
for which parameter goes through which converter).

Limits: Linux values are those of x86_64 (asm-generic); arm64 numbers ``O_DIRECTORY``,
``O_NOFOLLOW``, ``O_DIRECT`` and ``O_LARGEFILE`` differently and is not handled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# --- Linux open(2) flags (include/uapi/asm-generic/fcntl.h) --------------------------------
LINUX_O_RDONLY: Final = 0
LINUX_O_WRONLY: Final = 0o1
LINUX_O_RDWR: Final = 0o2
LINUX_O_ACCMODE: Final = 0o3
LINUX_O_CREAT: Final = 0o100
LINUX_O_EXCL: Final = 0o200
LINUX_O_NOCTTY: Final = 0o400
LINUX_O_TRUNC: Final = 0o1000
LINUX_O_APPEND: Final = 0o2000
LINUX_O_NONBLOCK: Final = 0o4000
LINUX_O_DSYNC: Final = 0o10000
LINUX_O_DIRECT: Final = 0o40000
LINUX_O_LARGEFILE: Final = 0o100000
LINUX_O_DIRECTORY: Final = 0o200000
LINUX_O_NOFOLLOW: Final = 0o400000
LINUX_O_NOATIME: Final = 0o1000000
LINUX_O_CLOEXEC: Final = 0o2000000
LINUX___O_SYNC: Final = 0o4000000
LINUX_O_SYNC: Final = LINUX___O_SYNC | LINUX_O_DSYNC
LINUX_O_PATH: Final = 0o10000000
LINUX___O_TMPFILE: Final = 0o20000000
LINUX_O_TMPFILE: Final = LINUX___O_TMPFILE | LINUX_O_DIRECTORY

# Peregrine wire extension: what Falco's driver learns inside the kernel after the open (the file
# was created, it lives in an overlayfs layer) travels in open flag bits Linux never uses. A
# collector that sets them must clear bits 23..31 of the flags the process passed.
PEREGRINE_O_F_CREATED: Final = 1 << 28
PEREGRINE_FD_UPPER_LAYER: Final = 1 << 29
PEREGRINE_FD_LOWER_LAYER: Final = 1 << 30

# --- mode bits (include/uapi/linux/stat.h) --------------------------------------------------
LINUX_S_IXOTH: Final = 0o1
LINUX_S_IWOTH: Final = 0o2
LINUX_S_IROTH: Final = 0o4
LINUX_S_IXGRP: Final = 0o10
LINUX_S_IWGRP: Final = 0o20
LINUX_S_IRGRP: Final = 0o40
LINUX_S_IXUSR: Final = 0o100
LINUX_S_IWUSR: Final = 0o200
LINUX_S_IRUSR: Final = 0o400
LINUX_S_ISVTX: Final = 0o1000
LINUX_S_ISGID: Final = 0o2000
LINUX_S_ISUID: Final = 0o4000
LINUX_MODE_PERMS: Final = 0o7777

# --- clone(2), unshare(2), setns(2) (include/uapi/linux/sched.h) ------------------------------
LINUX_CLONE_VM: Final = 0x00000100
LINUX_CLONE_FS: Final = 0x00000200
LINUX_CLONE_FILES: Final = 0x00000400
LINUX_CLONE_SIGHAND: Final = 0x00000800
LINUX_CLONE_PIDFD: Final = 0x00001000
LINUX_CLONE_PTRACE: Final = 0x00002000
LINUX_CLONE_VFORK: Final = 0x00004000
LINUX_CLONE_PARENT: Final = 0x00008000
LINUX_CLONE_THREAD: Final = 0x00010000
LINUX_CLONE_NEWNS: Final = 0x00020000
LINUX_CLONE_SYSVSEM: Final = 0x00040000
LINUX_CLONE_SETTLS: Final = 0x00080000
LINUX_CLONE_PARENT_SETTID: Final = 0x00100000
LINUX_CLONE_CHILD_CLEARTID: Final = 0x00200000
LINUX_CLONE_DETACHED: Final = 0x00400000
LINUX_CLONE_UNTRACED: Final = 0x00800000
LINUX_CLONE_CHILD_SETTID: Final = 0x01000000
LINUX_CLONE_NEWCGROUP: Final = 0x02000000
LINUX_CLONE_NEWUTS: Final = 0x04000000
LINUX_CLONE_NEWIPC: Final = 0x08000000
LINUX_CLONE_NEWUSER: Final = 0x10000000
LINUX_CLONE_NEWPID: Final = 0x20000000
LINUX_CLONE_NEWNET: Final = 0x40000000
LINUX_CLONE_IO: Final = 0x80000000

# --- socket(2) address families (include/linux/socket.h), the ones Falco names -----------------
LINUX_AF: Final[Mapping[str, int]] = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4, "AF_APPLETALK": 5,
    "AF_NETROM": 6, "AF_BRIDGE": 7, "AF_ATMPVC": 8, "AF_X25": 9, "AF_INET6": 10, "AF_ROSE": 11,
    "AF_DECnet": 12, "AF_NETBEUI": 13, "AF_SECURITY": 14, "AF_KEY": 15, "AF_NETLINK": 16,
    "AF_PACKET": 17, "AF_ASH": 18, "AF_ECONET": 19, "AF_ATMSVC": 20, "AF_RDS": 21, "AF_SNA": 22,
    "AF_IRDA": 23, "AF_PPPOX": 24, "AF_WANPIPE": 25, "AF_LLC": 26, "AF_CAN": 29, "AF_TIPC": 30,
    "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33, "AF_ISDN": 34, "AF_PHONET": 35,
    "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38, "AF_NFC": 39,
}  # fmt: skip
LINUX_AF_UNIX: Final = 1
LINUX_AF_INET: Final = 2
LINUX_AF_INET6: Final = 10
LINUX_AF_NETLINK: Final = 16
LINUX_AF_PACKET: Final = 17

# --- ptrace(2) requests, x86_64 (include/uapi/linux/ptrace.h, arch/x86/.../ptrace-abi.h) --------
LINUX_PTRACE: Final[Mapping[str, int]] = {
    "PTRACE_TRACEME": 0, "PTRACE_PEEKTEXT": 1, "PTRACE_PEEKDATA": 2, "PTRACE_PEEKUSR": 3,
    "PTRACE_POKETEXT": 4, "PTRACE_POKEDATA": 5, "PTRACE_POKEUSR": 6, "PTRACE_CONT": 7,
    "PTRACE_KILL": 8, "PTRACE_SINGLESTEP": 9, "PTRACE_GETREGS": 12, "PTRACE_SETREGS": 13,
    "PTRACE_GETFPREGS": 14, "PTRACE_SETFPREGS": 15, "PTRACE_ATTACH": 16, "PTRACE_DETACH": 17,
    "PTRACE_GETFPXREGS": 18, "PTRACE_SETFPXREGS": 19, "PTRACE_OLDSETOPTIONS": 21,
    "PTRACE_SYSCALL": 24, "PTRACE_GET_THREAD_AREA": 25, "PTRACE_SET_THREAD_AREA": 26,
    "PTRACE_ARCH_PRCTL": 30, "PTRACE_SYSEMU": 31, "PTRACE_SYSEMU_SINGLESTEP": 32,
    "PTRACE_SINGLEBLOCK": 33, "PTRACE_SETOPTIONS": 0x4200, "PTRACE_GETEVENTMSG": 0x4201,
    "PTRACE_GETSIGINFO": 0x4202, "PTRACE_SETSIGINFO": 0x4203, "PTRACE_GETREGSET": 0x4204,
    "PTRACE_SETREGSET": 0x4205, "PTRACE_SEIZE": 0x4206, "PTRACE_INTERRUPT": 0x4207,
    "PTRACE_LISTEN": 0x4208, "PTRACE_PEEKSIGINFO": 0x4209, "PTRACE_GETSIGMASK": 0x420A,
    "PTRACE_SETSIGMASK": 0x420B,
}  # fmt: skip

# --- mount(2), umount2(2) (include/uapi/linux/mount.h) -----------------------------------------
LINUX_MS_RDONLY: Final = 1
LINUX_MS_NOSUID: Final = 2
LINUX_MS_NODEV: Final = 4
LINUX_MS_NOEXEC: Final = 8
LINUX_MS_REMOUNT: Final = 32
LINUX_MS_BIND: Final = 4096
LINUX_MS_MOVE: Final = 8192
LINUX_MS_REC: Final = 16384
LINUX_MS_PRIVATE: Final = 1 << 18
LINUX_MS_SLAVE: Final = 1 << 19
LINUX_MS_SHARED: Final = 1 << 20
LINUX_MS_MGC_MSK: Final = 0xFFFF0000
LINUX_MS_MGC_VAL: Final = 0xC0ED0000
LINUX_MNT_FORCE: Final = 1
LINUX_MNT_DETACH: Final = 2
LINUX_MNT_EXPIRE: Final = 4
LINUX_UMOUNT_NOFOLLOW: Final = 8

# --- *at(2) flags (include/uapi/linux/fcntl.h) ------------------------------------------------
LINUX_AT_FDCWD: Final = -100
LINUX_AT_REMOVEDIR: Final = 0x200
LINUX_AT_SYMLINK_FOLLOW: Final = 0x400
LINUX_AT_EMPTY_PATH: Final = 0x1000

# --- openat2(2) resolve (include/uapi/linux/openat2.h) -------------------------------------------
LINUX_RESOLVE_NO_XDEV: Final = 0x01
LINUX_RESOLVE_NO_MAGICLINKS: Final = 0x02
LINUX_RESOLVE_NO_SYMLINKS: Final = 0x04
LINUX_RESOLVE_BENEATH: Final = 0x08
LINUX_RESOLVE_IN_ROOT: Final = 0x10
LINUX_RESOLVE_CACHED: Final = 0x20

# --- memfd_create(2), finit_module(2), renameat2(2) -------------------------------------------
LINUX_MFD_CLOEXEC: Final = 0x1
LINUX_MFD_ALLOW_SEALING: Final = 0x2
LINUX_MFD_HUGETLB: Final = 0x4
LINUX_MODULE_INIT_IGNORE_MODVERSIONS: Final = 1
LINUX_MODULE_INIT_IGNORE_VERMAGIC: Final = 2
LINUX_MODULE_INIT_COMPRESSED_FILE: Final = 4
LINUX_RENAME_NOREPLACE: Final = 1
LINUX_RENAME_EXCHANGE: Final = 2
LINUX_RENAME_WHITEOUT: Final = 4

# Falco's PPM encodings that `rules.render` tests against (ppm_events_public.h).
PPM_O_RDONLY: Final = 1 << 0
PPM_O_WRONLY: Final = 1 << 1
PPM_O_CREAT: Final = 1 << 2
PPM_O_TMPFILE: Final = 1 << 13
PPM_O_F_CREATED: Final = 1 << 14


@dataclass(frozen=True, slots=True)
class FlagTable:
    """One ``flags_table.c`` array and the driver conversion that feeds it."""

    name: str  # the libs array name, e.g. "file_flags"
    entries: tuple[tuple[str, int], ...]  # (Falco name, PPM value), in flags_table.c order
    to_ppm: Callable[[int], int]  # Linux value -> the PPM value the driver records


def _passthrough(value: int) -> int:
    return value


def _bits(pairs: tuple[tuple[int, int], ...]) -> Callable[[int], int]:
    """A converter in the driver's style: each PPM bit is set when ANY bit of its Linux mask is."""

    def convert(value: int) -> int:
        res = 0
        for linux_mask, ppm in pairs:
            if value & linux_mask:
                res |= ppm
        return res

    return convert


def _enum(mapping: Mapping[int, int], default: int, width_mask: int) -> Callable[[int], int]:
    def convert(value: int) -> int:
        return mapping.get(value & width_mask, default)

    return convert


def _open_to_ppm(value: int) -> int:
    """``open_flags_to_scap``, plus the Peregrine extension bits for what only the kernel knows."""
    accmode = value & LINUX_O_ACCMODE
    res = 2 if accmode == LINUX_O_WRONLY else 3 if accmode == LINUX_O_RDWR else 1
    return res | _open_other_bits(value)


_open_other_bits = _bits(
    (
        (LINUX_O_CREAT, 1 << 2),
        (LINUX_O_TMPFILE, 1 << 13),  # any bit of __O_TMPFILE|O_DIRECTORY, as the driver tests it
        (LINUX_O_APPEND, 1 << 3),
        (LINUX_O_DSYNC, 1 << 4),
        (LINUX_O_EXCL, 1 << 5),
        (LINUX_O_NONBLOCK, 1 << 6),
        (LINUX_O_SYNC, 1 << 7),  # any bit of __O_SYNC|O_DSYNC: O_DSYNC alone prints O_SYNC too
        (LINUX_O_TRUNC, 1 << 8),
        (LINUX_O_DIRECT, 1 << 9),
        (LINUX_O_DIRECTORY, 1 << 10),
        (LINUX_O_LARGEFILE, 1 << 11),
        (LINUX_O_CLOEXEC, 1 << 12),
        (PEREGRINE_O_F_CREATED, 1 << 14),
        (PEREGRINE_FD_UPPER_LAYER, 1 << 15),
        (PEREGRINE_FD_LOWER_LAYER, 1 << 16),
    )
)

# accept4 "flags" (printed as a hex number, no table): socket_flags_to_scap
socket_flags_to_ppm: Final = _bits(((LINUX_O_NONBLOCK, 1 << 6), (LINUX_O_CLOEXEC, 1 << 12)))

_FILE_FLAGS_ENTRIES: Final = (
    ("O_LARGEFILE", 1 << 11), ("O_DIRECTORY", 1 << 10), ("O_DIRECT", 1 << 9), ("O_TRUNC", 1 << 8),
    ("O_SYNC", 1 << 7), ("O_NONBLOCK", 1 << 6), ("O_EXCL", 1 << 5), ("O_DSYNC", 1 << 4),
    ("O_APPEND", 1 << 3), ("O_CREAT", 1 << 2), ("O_RDWR", 3), ("O_WRONLY", 1 << 1),
    ("O_RDONLY", 1 << 0), ("O_CLOEXEC", 1 << 12), ("O_NONE", 0), ("O_TMPFILE", 1 << 13),
    ("O_F_CREATED", 1 << 14), ("FD_UPPER_LAYER", 1 << 15), ("FD_LOWER_LAYER", 1 << 16),
)  # fmt: skip

# open/openat/openat2 "flags"
OPEN_FLAGS: Final = FlagTable("file_flags", _FILE_FLAGS_ENTRIES, _open_to_ppm)
# dup3 "flags": dup3_flags_to_scap keeps O_CLOEXEC only (so 0 prints O_NONE)
DUP3_FLAGS: Final = FlagTable("file_flags", _FILE_FLAGS_ENTRIES, _bits(((LINUX_O_CLOEXEC, 1 << 12),)))
# userfaultfd "flags": the driver stores the raw Linux value and libs prints it with file_flags
RAW_FILE_FLAGS: Final = FlagTable("file_flags", _FILE_FLAGS_ENTRIES, _passthrough)

# creat "creat_flags": no Linux equivalent, the value is the PPM bits (1 upper layer, 2 lower layer)
CREAT_FLAGS: Final = FlagTable(
    "creat_flags", (("FD_UPPER_LAYER_CREAT", 1 << 0), ("FD_LOWER_LAYER_CREAT", 1 << 1)), _passthrough
)

CLONE_FLAGS: Final = FlagTable(
    "clone_flags",
    (
        ("CLONE_FILES", 1 << 0), ("CLONE_FS", 1 << 1), ("CLONE_IO", 1 << 2), ("CLONE_NEWIPC", 1 << 3),
        ("CLONE_NEWNET", 1 << 4), ("CLONE_NEWNS", 1 << 5), ("CLONE_NEWPID", 1 << 6),
        ("CLONE_NEWUTS", 1 << 7), ("CLONE_PARENT", 1 << 8), ("CLONE_PARENT_SETTID", 1 << 9),
        ("CLONE_PTRACE", 1 << 10), ("CLONE_SIGHAND", 1 << 11), ("CLONE_SYSVSEM", 1 << 12),
        ("CLONE_THREAD", 1 << 13), ("CLONE_UNTRACED", 1 << 14), ("CLONE_VM", 1 << 15),
        ("CLONE_INVERTED", 1 << 16), ("NAME_CHANGED", 1 << 17), ("CLOSED", 1 << 18),
        ("CLONE_NEWUSER", 1 << 20), ("CLONE_CHILD_CLEARTID", 1 << 23),
        ("CLONE_CHILD_SETTID", 1 << 24), ("CLONE_SETTLS", 1 << 25), ("CLONE_STOPPED", 1 << 26),
        ("CLONE_VFORK", 1 << 27), ("CLONE_NEWCGROUP", 1 << 28), ("CLONE_CHILD_IN_PIDNS", 1 << 29),
    ),  # fmt: skip
    # clone_flags_to_scap; CLONE_STOPPED is gone from Linux (its bit is CLONE_NEWCGROUP now), and
    # INVERTED, NAME_CHANGED, CLOSED and CHILD_IN_PIDNS are set by libs itself, never from flags.
    _bits(
        (
            (LINUX_CLONE_FILES, 1 << 0), (LINUX_CLONE_FS, 1 << 1), (LINUX_CLONE_IO, 1 << 2),
            (LINUX_CLONE_NEWIPC, 1 << 3), (LINUX_CLONE_NEWNET, 1 << 4), (LINUX_CLONE_NEWNS, 1 << 5),
            (LINUX_CLONE_NEWPID, 1 << 6), (LINUX_CLONE_NEWUTS, 1 << 7),
            (LINUX_CLONE_PARENT_SETTID, 1 << 9), (LINUX_CLONE_PARENT, 1 << 8),
            (LINUX_CLONE_PTRACE, 1 << 10), (LINUX_CLONE_SIGHAND, 1 << 11),
            (LINUX_CLONE_SYSVSEM, 1 << 12), (LINUX_CLONE_THREAD, 1 << 13),
            (LINUX_CLONE_UNTRACED, 1 << 14), (LINUX_CLONE_VM, 1 << 15), (LINUX_CLONE_NEWUSER, 1 << 20),
            (LINUX_CLONE_CHILD_CLEARTID, 1 << 23), (LINUX_CLONE_CHILD_SETTID, 1 << 24),
            (LINUX_CLONE_SETTLS, 1 << 25), (LINUX_CLONE_VFORK, 1 << 27),
            (LINUX_CLONE_NEWCGROUP, 1 << 28),
        )  # fmt: skip
    ),
)

# socket "domain" (PT_ENUMFLAGS32: every name whose value equals the family is printed, so AF_UNIX
# prints "AF_LOCAL|AF_UNIX"); socket_family_to_scap truncates to 8 bits and maps unknown to AF_UNSPEC
_AF_ORDER: Final = (
    "AF_NFC", "AF_ALG", "AF_CAIF", "AF_IEEE802154", "AF_PHONET", "AF_ISDN", "AF_RXRPC", "AF_IUCV",
    "AF_BLUETOOTH", "AF_TIPC", "AF_CAN", "AF_LLC", "AF_WANPIPE", "AF_PPPOX", "AF_IRDA", "AF_SNA",
    "AF_RDS", "AF_ATMSVC", "AF_ECONET", "AF_ASH", "AF_PACKET", "AF_ROUTE", "AF_NETLINK", "AF_KEY",
    "AF_SECURITY", "AF_NETBEUI", "AF_DECnet", "AF_ROSE", "AF_INET6", "AF_X25", "AF_ATMPVC",
    "AF_BRIDGE", "AF_NETROM", "AF_APPLETALK", "AF_IPX", "AF_AX25", "AF_INET", "AF_LOCAL", "AF_UNIX",
    "AF_UNSPEC",
)  # fmt: skip
_AF_ALIASES: Final = {"AF_ROUTE": "AF_NETLINK", "AF_LOCAL": "AF_UNIX"}
SOCKET_FAMILIES: Final = FlagTable(
    "socket_families",
    tuple((n, LINUX_AF[_AF_ALIASES.get(n, n)]) for n in _AF_ORDER),  # PPM_AF_* equal Linux AF_*
    _enum({v: v for v in LINUX_AF.values()}, 0, 0xFF),
)

# ptrace "request" (PT_ENUMFLAGS16); ptrace_requests_to_scap maps unknown requests to 0
_PTRACE_ORDER: Final = (
    "PTRACE_SINGLEBLOCK", "PTRACE_SYSEMU_SINGLESTEP", "PTRACE_SYSEMU", "PTRACE_ARCH_PRCTL",
    "PTRACE_SET_THREAD_AREA", "PTRACE_GET_THREAD_AREA", "PTRACE_OLDSETOPTIONS", "PTRACE_SETFPXREGS",
    "PTRACE_GETFPXREGS", "PTRACE_SETFPREGS", "PTRACE_GETFPREGS", "PTRACE_SETREGS", "PTRACE_GETREGS",
    "PTRACE_SETSIGMASK", "PTRACE_GETSIGMASK", "PTRACE_PEEKSIGINFO", "PTRACE_LISTEN",
    "PTRACE_INTERRUPT", "PTRACE_SEIZE", "PTRACE_SETREGSET", "PTRACE_GETREGSET", "PTRACE_SETSIGINFO",
    "PTRACE_GETSIGINFO", "PTRACE_GETEVENTMSG", "PTRACE_SETOPTIONS", "PTRACE_SYSCALL",
    "PTRACE_DETACH", "PTRACE_ATTACH", "PTRACE_SINGLESTEP", "PTRACE_KILL", "PTRACE_CONT",
    "PTRACE_POKEUSR", "PTRACE_POKEDATA", "PTRACE_POKETEXT", "PTRACE_PEEKUSR", "PTRACE_PEEKDATA",
    "PTRACE_PEEKTEXT", "PTRACE_TRACEME", "PTRACE_UNKNOWN",
)  # fmt: skip
# PPM_PTRACE_* count down the table: PTRACE_SINGLEBLOCK is 38, ..., PTRACE_UNKNOWN is 0
_PTRACE_PPM: Final = {n: len(_PTRACE_ORDER) - 1 - i for i, n in enumerate(_PTRACE_ORDER)}
PTRACE_REQUESTS: Final = FlagTable(
    "ptrace_requests",
    tuple((n, _PTRACE_PPM[n]) for n in _PTRACE_ORDER),
    _enum({LINUX_PTRACE[n]: _PTRACE_PPM[n] for n in LINUX_PTRACE}, 0, (1 << 64) - 1),
)

# mount "flags": PPM_MS_* equal Linux MS_*; the driver only strips the old MS_MGC_VAL magic
MOUNT_FLAGS: Final = FlagTable(
    "mount_flags",
    (
        ("RDONLY", 1), ("NOSUID", 2), ("NODEV", 4), ("NOEXEC", 8), ("SYNCHRONOUS", 16),
        ("REMOUNT", 32), ("MANDLOCK", 64), ("DIRSYNC", 128), ("NOATIME", 1024), ("NODIRATIME", 2048),
        ("BIND", 4096), ("MOVE", 8192), ("REC", 16384), ("SILENT", 32768), ("POSIXACL", 1 << 16),
        ("UNBINDABLE", 1 << 17), ("PRIVATE", 1 << 18), ("SLAVE", 1 << 19), ("SHARED", 1 << 20),
        ("RELATIME", 1 << 21), ("KERNMOUNT", 1 << 22), ("I_VERSION", 1 << 23),
        ("STRICTATIME", 1 << 24), ("LAZYTIME", 1 << 25), ("NOSEC", 1 << 28), ("BORN", 1 << 29),
        ("ACTIVE", 1 << 30), ("NOUSER", 1 << 31),
    ),  # fmt: skip
    lambda v: v & ~LINUX_MS_MGC_MSK if v & LINUX_MS_MGC_MSK == LINUX_MS_MGC_VAL else v,
)

UMOUNT_FLAGS: Final = FlagTable(
    "umount_flags",
    (("FORCE", 1), ("DETACH", 2), ("EXPIRE", 4), ("NOFOLLOW", 8)),
    _bits(((LINUX_MNT_FORCE, 1), (LINUX_MNT_DETACH, 2), (LINUX_MNT_EXPIRE, 4), (LINUX_UMOUNT_NOFOLLOW, 8))),
)

UNLINKAT_FLAGS: Final = FlagTable(
    "unlinkat_flags", (("AT_REMOVEDIR", 0x200),), _bits(((LINUX_AT_REMOVEDIR, 0x200),))
)

LINKAT_FLAGS: Final = FlagTable(
    "linkat_flags",
    (("AT_SYMLINK_FOLLOW", 0x400), ("AT_EMPTY_PATH", 0x1000)),
    _bits(((LINUX_AT_SYMLINK_FOLLOW, 0x400), (LINUX_AT_EMPTY_PATH, 0x1000))),
)

# renameat2 "flags": the driver stores the raw value (PPM_RENAME_* equal Linux RENAME_*)
RENAMEAT2_FLAGS: Final = FlagTable(
    "renameat2_flags",
    (("RENAME_NOREPLACE", 1), ("RENAME_EXCHANGE", 2), ("RENAME_WHITEOUT", 4)),
    _passthrough,
)

OPENAT2_RESOLVE: Final = FlagTable(
    "openat2_flags",
    (
        ("RESOLVE_BENEATH", 1), ("RESOLVE_IN_ROOT", 2), ("RESOLVE_NO_MAGICLINKS", 4),
        ("RESOLVE_NO_SYMLINKS", 8), ("RESOLVE_NO_XDEV", 16), ("RESOLVE_CACHED", 32),
    ),  # fmt: skip
    _bits(
        (
            (LINUX_RESOLVE_BENEATH, 1), (LINUX_RESOLVE_IN_ROOT, 2), (LINUX_RESOLVE_NO_MAGICLINKS, 4),
            (LINUX_RESOLVE_NO_SYMLINKS, 8), (LINUX_RESOLVE_NO_XDEV, 16), (LINUX_RESOLVE_CACHED, 32),
        )  # fmt: skip
    ),
)

MEMFD_CREATE_FLAGS: Final = FlagTable(
    "memfd_create_flags",
    (("MFD_CLOEXEC", 1), ("MFD_ALLOW_SEALING", 2), ("MFD_HUGETLB", 4)),
    _bits(((LINUX_MFD_CLOEXEC, 1), (LINUX_MFD_ALLOW_SEALING, 2), (LINUX_MFD_HUGETLB, 4))),
)

FINIT_MODULE_FLAGS: Final = FlagTable(
    "finit_module_flags",
    (
        ("MODULE_INIT_IGNORE_MODVERSIONS", 1), ("MODULE_INIT_IGNORE_VERMAGIC", 2),
        ("MODULE_INIT_COMPRESSED_FILE", 4),
    ),  # fmt: skip
    _bits(
        (
            (LINUX_MODULE_INIT_IGNORE_MODVERSIONS, 1), (LINUX_MODULE_INIT_IGNORE_VERMAGIC, 2),
            (LINUX_MODULE_INIT_COMPRESSED_FILE, 4),
        )  # fmt: skip
    ),
)

# execve/execveat "flags": the collector sends rules.record EXE_* bits, which are the PPM_EXE_* bits
EXECVE_FLAGS: Final = FlagTable(
    "execve_flags",
    (("EXE_WRITABLE", 1), ("EXE_UPPER_LAYER", 2), ("EXE_FROM_MEMFD", 4), ("EXE_LOWER_LAYER", 8)),
    _passthrough,
)

# chmod/fchmod/fchmodat "mode" (PT_MODE); chmod_mode_to_scap keeps the permission bits
CHMOD_MODE: Final = FlagTable(
    "chmod_mode",
    (
        ("S_IXOTH", 0o1), ("S_IWOTH", 0o2), ("S_IROTH", 0o4), ("S_IXGRP", 0o10), ("S_IWGRP", 0o20),
        ("S_IRGRP", 0o40), ("S_IXUSR", 0o100), ("S_IWUSR", 0o200), ("S_IRUSR", 0o400),
        ("S_ISVTX", 0o1000), ("S_ISGID", 0o2000), ("S_ISUID", 0o4000),
    ),  # fmt: skip
    lambda v: v & LINUX_MODE_PERMS,
)

# prctl "option" and bpf "cmd" (PT_ENUMFLAGS32): the driver passes the Linux value through. The
# duplicate PR_MCE_KILL and the shared value 10 of BPF_PROG_TEST_RUN/BPF_PROG_RUN are in libs too.
PRCTL_OPTIONS: Final = FlagTable(
    "prctl_options",
    (
        ("PR_GET_DUMPABLE", 3), ("PR_SET_DUMPABLE", 4), ("PR_GET_KEEPCAPS", 7), ("PR_SET_KEEPCAPS", 8),
        ("PR_SET_NAME", 15), ("PR_GET_NAME", 16), ("PR_GET_SECCOMP", 21), ("PR_SET_SECCOMP", 22),
        ("PR_CAPBSET_READ", 23), ("PR_CAPBSET_DROP", 24), ("PR_GET_SECUREBITS", 27),
        ("PR_SET_SECUREBITS", 28), ("PR_MCE_KILL", 33), ("PR_MCE_KILL", 33), ("PR_SET_MM", 35),
        ("PR_SET_CHILD_SUBREAPER", 36), ("PR_GET_CHILD_SUBREAPER", 37), ("PR_SET_NO_NEW_PRIVS", 38),
        ("PR_GET_NO_NEW_PRIVS", 39), ("PR_GET_TID_ADDRESS", 40), ("PR_SET_THP_DISABLE", 41),
        ("PR_GET_THP_DISABLE", 42), ("PR_CAP_AMBIENT", 47),
    ),  # fmt: skip
    _passthrough,
)

BPF_COMMANDS: Final = FlagTable(
    "bpf_commands",
    (
        ("BPF_MAP_CREATE", 0), ("BPF_MAP_LOOKUP_ELEM", 1), ("BPF_MAP_UPDATE_ELEM", 2),
        ("BPF_MAP_DELETE_ELEM", 3), ("BPF_MAP_GET_NEXT_KEY", 4), ("BPF_PROG_LOAD", 5),
        ("BPF_OBJ_PIN", 6), ("BPF_OBJ_GET", 7), ("BPF_PROG_ATTACH", 8), ("BPF_PROG_DETACH", 9),
        ("BPF_PROG_TEST_RUN", 10), ("BPF_PROG_RUN", 10), ("BPF_PROG_GET_NEXT_ID", 11),
        ("BPF_MAP_GET_NEXT_ID", 12), ("BPF_PROG_GET_FD_BY_ID", 13), ("BPF_MAP_GET_FD_BY_ID", 14),
        ("BPF_OBJ_GET_INFO_BY_FD", 15), ("BPF_PROG_QUERY", 16), ("BPF_RAW_TRACEPOINT_OPEN", 17),
        ("BPF_BTF_LOAD", 18), ("BPF_BTF_GET_FD_BY_ID", 19), ("BPF_TASK_FD_QUERY", 20),
        ("BPF_MAP_LOOKUP_AND_DELETE_ELEM", 21), ("BPF_MAP_FREEZE", 22), ("BPF_BTF_GET_NEXT_ID", 23),
        ("BPF_MAP_LOOKUP_BATCH", 24), ("BPF_MAP_LOOKUP_AND_DELETE_BATCH", 25),
        ("BPF_MAP_UPDATE_BATCH", 26), ("BPF_MAP_DELETE_BATCH", 27), ("BPF_LINK_CREATE", 28),
        ("BPF_LINK_UPDATE", 29), ("BPF_LINK_GET_FD_BY_ID", 30), ("BPF_LINK_GET_NEXT_ID", 31),
        ("BPF_ENABLE_STATS", 32), ("BPF_ITER_CREATE", 33), ("BPF_LINK_DETACH", 34),
        ("BPF_PROG_BIND_MAP", 35),
    ),  # fmt: skip
    _passthrough,
)

# Tables whose PT type is PT_ENUMFLAGS*: exact match, all equal names printed
ENUM_TABLES: Final = frozenset({"socket_families", "ptrace_requests", "prctl_options", "bpf_commands"})

# thread.cap_* (libs userspace/libsinsp/utils.cpp `capabilities`, bit i = Linux capability i)
CAPABILITIES: Final = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

# evt.res / PT_ERRNO names (libs userspace/libsinsp/utils.cpp `errno_to_str`, values sinsp_errno.h)
ERRNO_NAMES: Final[Mapping[int, str]] = {
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG",
    8: "ENOEXEC", 9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES",
    14: "EFAULT", 15: "ENOTBLK", 16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV",
    20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 25: "ENOTTY",
    26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS", 31: "EMLINK",
    32: "EPIPE", 33: "EDOM", 34: "ERANGE", 35: "EDEADLK", 36: "ENAMETOOLONG", 37: "ENOLCK",
    38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 42: "ENOMSG", 43: "EIDRM", 44: "ECHRNG",
    45: "EL2NSYNC", 46: "EL3HLT", 47: "EL3RST", 48: "ELNRNG", 49: "EUNATCH", 50: "ENOCSI",
    51: "EL2HLT", 52: "EBADE", 53: "EBADR", 54: "EXFULL", 55: "ENOANO", 56: "EBADRQC",
    57: "EBADSLT", 59: "EBFONT", 60: "ENOSTR", 61: "ENODATA", 62: "ETIME", 63: "ENOSR",
    64: "ENONET", 65: "ENOPKG", 66: "EREMOTE", 67: "ENOLINK", 68: "EADV", 69: "ESRMNT",
    70: "ECOMM", 71: "EPROTO", 72: "EMULTIHOP", 73: "EDOTDOT", 74: "EBADMSG", 75: "EOVERFLOW",
    76: "ENOTUNIQ", 77: "EBADFD", 78: "EREMCHG", 79: "ELIBACC", 80: "ELIBBAD", 81: "ELIBSCN",
    82: "ELIBMAX", 83: "ELIBEXEC", 84: "EILSEQ", 85: "ERESTART", 86: "ESTRPIPE", 87: "EUSERS",
    88: "ENOTSOCK", 89: "EDESTADDRREQ", 90: "EMSGSIZE", 91: "EPROTOTYPE", 92: "ENOPROTOOPT",
    93: "EPROTONOSUPPORT", 94: "ESOCKTNOSUPPORT", 95: "EOPNOTSUPP", 96: "EPFNOSUPPORT",
    97: "EAFNOSUPPORT", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL", 100: "ENETDOWN",
    101: "ENETUNREACH", 102: "ENETRESET", 103: "ECONNABORTED", 104: "ECONNRESET", 105: "ENOBUFS",
    106: "EISCONN", 107: "ENOTCONN", 108: "ESHUTDOWN", 109: "ETOOMANYREFS", 110: "ETIMEDOUT",
    111: "ECONNREFUSED", 112: "EHOSTDOWN", 113: "EHOSTUNREACH", 114: "EALREADY",
    115: "EINPROGRESS", 116: "ESTALE", 117: "EUCLEAN", 118: "ENOTNAM", 119: "ENAVAIL",
    120: "EISNAM", 121: "EREMOTEIO", 122: "EDQUOT", 123: "ENOMEDIUM", 124: "EMEDIUMTYPE",
    125: "ECANCELED", 512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD", 516: "ERESTART_RESTARTBLOCK", 521: "EBADHANDLE", 522: "ENOTSYNC",
    523: "EBADCOOKIE", 524: "ENOTSUPP", 525: "ETOOSMALL", 526: "ESERVERFAULT", 527: "EBADTYPE",
    528: "EJUKEBOX", 529: "EIOCBQUEUED", 530: "EIOCBRETRY",
}  # fmt: skip

# PT_SIGTYPE names (libs utils.cpp `signal_to_str`), Linux signal numbers 1..31
SIGNAL_NAMES: Final[Mapping[int, str]] = {
    i + 1: n
    for i, n in enumerate(
        (
            "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
            "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
            "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU",
            "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR",
            "SIGSYS",
        )  # fmt: skip
    )
}

# fd.type by fd.typechar (libs userspace/libsinsp/fdinfo.h CHAR_FD_*, fdinfo.cpp get_typestring).
# 'u' is both unix socket and userfaultfd in libs; rules.record uses it for unix sockets.
FD_TYPE_NAMES: Final[Mapping[str, str]] = {
    "f": "file", "d": "directory", "4": "ipv4", "6": "ipv6", "u": "unix", "p": "pipe",
    "e": "event", "s": "signalfd", "l": "eventpoll", "i": "inotify", "t": "timerfd",
    "n": "netlink", "b": "bpf", "r": "io_uring", "m": "memfd", "P": "pidfd",
}  # fmt: skip
