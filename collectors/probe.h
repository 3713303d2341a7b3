/* The record the probe writes into the ring buffer; collectors/decode.py reads the same layout
 * (tests/unit/collectors/test_decode.py checks the size and offsets against this header).
 *
 * One record per syscall at exit (or per sched event): a fixed header, then `len` bytes of
 * payload items, each `[u16 n][n bytes]` (strings keep their NUL; n == 0 means unreadable/NULL).
 * Little-endian, no implicit padding. */
#ifndef PEREGRINE_PROBE_H
#define PEREGRINE_PROBE_H

/* internal record types, above every rules/record.py event-type id */
#define PG_EVT_FORK 0xFF00 /* a new process (not a thread): a[0] child tgid, a[1] child start_boottime */

#define PG_FLAG_TRUNCATED 1 /* a string or argv did not fit and was cut */
#define PG_FLAG_FDTYPES 2   /* the last item is the task's fd table, one type byte per fd (fd.types) */
#define PG_FDTYPES_FDS 64   /* fds classified per record: the first ones, as every table has 64 slots */
#define PG_FLAG_UNWANTED 4  /* kept for the process table only: no loaded interest names its type */

/* successful exec records end with an item of PG_EXE_ITEM bytes about the new image's inode
 * (probe.bpf.c pg_put_exe); its byte 54 holds these bits */
#define PG_EXE_ITEM 64
#define PG_EXE_HAVE_TIMES 1 /* ctime and mtime are filled */
#define PG_EXE_HAVE_LAYER 2 /* an overlayfs inode whose layer is known */
#define PG_EXE_UPPER 4      /* ... with an upper-layer copy */

/* The working directory item (probe.bpf.c pg_put_cwd): its path components from the leaf up, each
 * NUL-terminated, then one empty component when the walk reached the root ("" + NUL for "/").
 * Without that final empty component the walk stopped early and the item is incomplete. */
#define PG_CWD_DEPTH 48    /* components walked; a deeper directory gives an incomplete item */
#define PG_NAME_MAX 256    /* one component with its NUL (NAME_MAX + 1) */

#define PG_MAX_STR 4096    /* one path, argv block or environment block (Falco's MAX_PROC_ARG_ENV) */
#define PG_HALF 8191       /* appends start at or below this offset */
#define PG_PAYLOAD 16384

/* drop and count categories, per CPU */
#define PG_CNT_EVTS 0          /* records the probe tried to emit (emitted + dropped) */
#define PG_CNT_RING_FULL 1
#define PG_CNT_BAD_REGS 2      /* saved registers did not hold the syscall (or the task was
                                  * unreadable): record dropped */
#define PG_CNT_PAGE_FAULT 3    /* a user-memory read failed (the field is empty) */
#define PG_CNT_N 4

/* Interest (collectors/interest_plan.py): per event type, interest_type's record (probe.bpf.c
 * struct pg_itype) holds a mode of these bits and the masks of the type's rule alternatives. Mode
 * 0, the state at load, keeps nothing but the records the process table needs (flagged
 * PG_FLAG_UNWANTED); PG_IM_KEEP keeps the type's events whose flags and result some alternative
 * allows, narrowed by the checks whose bits are set: PG_IM_PATH (the open family's absolute path,
 * looked up in interest_lpm; then the path reversed, for suffixes, and the path's 4-byte grams in
 * interest_grams' bitmap, for substrings, when the record's masks say an alternative needs them)
 * and PG_IM_COMM
 * (the process's name as the collector's process table holds it, pg_names, looked up in
 * interest_lpm). PG_IM_FDTABLE: a kept event of an fd type also carries the process's fd table
 * (fd.types, probe.bpf.c pg_put_fdtypes), for the types some rule reads fd.types on.
 * PG_IM_GRAM_PAIRS: interest_grams holds two consecutive grams of each substring, so the probe
 * tests the grams at even positions only. */
#define PG_IM_KEEP 1
#define PG_IM_PATH 2
#define PG_IM_COMM 4
#define PG_IM_FDTABLE 8
#define PG_IM_GRAM_PAIRS 16
/* interest_lpm keys: {u32 prefixlen; u8 data[PG_LPM_DATA]}, data = the event type (u16,
 * big-endian), one PG_FIELD_* byte, the generation byte, then the value's bytes (8-aligned, so the
 * probe copies words); an exact value ends with its NUL, a prefix does not. A PG_FIELD_RPATH value
 * is a suffix reversed, at most PG_SUFFIX_MAX bytes. Values: u64 masks of alternatives. */
#define PG_LPM_HEAD 4
#define PG_LPM_STR 248     /* value bytes a key holds: a longer path (its NUL counted) is kept unchecked */
#define PG_LPM_DATA 252
#define PG_SUFFIX_MAX 64
/* interest_grams: per generation and open-family type (PG_PATH_SLOTS of them), a bitmap of
 * PG_GRAM_BITS bits: bit (g * PG_GRAM_MUL) >> (32 - PG_GRAM_SHIFT) of each substring's chosen
 * 4-byte gram g (little-endian u32), or of its two chosen consecutive grams (PG_IM_GRAM_PAIRS) */
#define PG_PATH_SLOTS 4
#define PG_GRAM_SHIFT 16
#define PG_GRAM_BITS 65536
#define PG_GRAM_MUL 0x9E3779B1u
/* interest_screens: per generation and open-family type, what spares a dropped open the trie
 * lookups: u64 masks of the alternatives whose entries could match a path with a given first
 * (head) or last (tail) 4 bytes, at slot (g * PG_GRAM_MUL) >> (32 - PG_SCREEN_SHIFT) of the
 * gram g (little-endian u32), plus those of the entries shorter than 4 bytes, which any path may
 * match */
#define PG_SCREEN_SHIFT 10
#define PG_SCREEN_SLOTS 1024
#define PG_FIELD_PATH 1
#define PG_FIELD_COMM 2
#define PG_FIELD_RPATH 3
#define PG_COMM_LEN 16
/* interest_counts[type * PG_IR_N + reason], per CPU */
#define PG_IR_KEPT 0
#define PG_IR_NO_RULE 1
#define PG_IR_PATH 2
#define PG_IR_COMM 3
#define PG_IR_FLAGS 4      /* the open's access mode or the call's result */
#define PG_IR_N 5

struct pg_hdr {
    __u64 ts;          /* bpf_ktime_get_boot_ns */
    __u64 cgroup_id;   /* cgroup v2 id of the task */
    __s64 ret;         /* syscall return value */
    __u64 a[6];        /* raw syscall arguments, or per-record values (see probe.bpf.c) */
    __u64 pstart;      /* thread-group leader start_boottime; exec and fork records only, else 0 */
    __u32 tgid;
    __u32 tid;
    __u32 ppid;        /* real_parent->tgid */
    __u32 uid;         /* effective */
    __u32 gid;         /* effective */
    __u32 loginuid;    /* 0xffffffff when unset */
    __u32 tty;         /* tty_nr as in /proc/PID/stat, 0 when none */
    __u32 sid;         /* session id, host pid namespace: exec and fork records only, else 0 */
    __u32 vpid;        /* tgid in the task's own pid namespace: exec and fork records only */
    __u32 vpgid;       /* process group in the task's own pid namespace: exec and fork only */
    __u16 evt;         /* rules/record.py event-type id, or PG_EVT_* */
    __u16 len;         /* payload bytes after this header */
    __u16 flags;       /* PG_FLAG_* */
    __u16 pad;
    char comm[16];
};

#endif
