/* Peregrine's syscall probe: syscall and sched tracepoints only (no kprobes/fentry/LSM here).
 *
 * Compiled by collectors/loader.py with -D macros: OFF_* and SIZE_* (struct offsets and sizes
 * from BTF; never dereference a kernel struct through a header type, the headers do not match the
 * kernel), PG_THREAD_SIZE, SELF_TGID (the collector's own process is never traced), RING_PAGES,
 * EV_<type> (rules/record.py event-type ids), and HAVE_<type> per selected syscall present here
 * (PG_GENERIC instead for libs' generic syscalls: one program, attached by the loader).
 *
 * Only sys_exit_X is attached: the arguments are still in the task's saved user registers
 * (pt_regs, x86_64), whose orig_ax must equal the tracepoint's syscall number (a mismatch is
 * counted as PG_CNT_BAD_REGS and the record dropped). No enter program and no enter/exit map,
 * which halves the programs run per syscall; the one exception is close, whose file is gone at
 * exit (sys_enter_close, below). sys_exit_X emits one record: the header of probe.h
 * (process context read through OFF_*), the arguments and return value, then payload items (user
 * strings, sockaddrs, socket addresses read from the fd table). Successful execs come from
 * sched_process_exec (argv and the environment read from the new mm, the working directory, then
 * the new image's inode from mm->exe_file), failed ones from sys_exit_execve[at].
 * Records go to a ring buffer without wakeups; user space consumes it on a timer. Every record the
 * probe tries to emit and every record or field it loses is counted per CPU (PG_CNT_*).
 *
 * Interest (probe.h PG_IM_*): every type's program is compiled in; user space attaches those the
 * loaded rules name and fills interest_gen, interest_type, interest_lpm and pg_names, live
 * (collectors/interest_maps.py). A sys_exit record no loaded rule can match is dropped before it
 * is emitted, and counted per type and reason (interest_counts).
 *
 * Limits: user strings are read at exit, after the kernel used them, so another thread of the
 * process could change them in between (TOCTOU); paths relative to a dirfd stay relative (no
 * bpf_d_path in tracepoints); a failed exec carries at most 16 argv strings; one record holds at
 * most ~12 KiB of strings (later ones are cut and the record flagged PG_FLAG_TRUNCATED).
 */
#include <uapi/linux/ptrace.h>
#include <linux/capability.h> /* types of the capset tracepoint arguments */
#include "probe.h"

#define BARRIER_VAR(x) asm volatile("" : "+r"(x))
#define RD(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), (void *)(src))

/* payload kinds beyond plain strings */
#define K_NONE 0
#define K_ARGV1 1    /* execve failure: argv pointer array in a[1] */
#define K_ARGV2 2    /* execveat failure: argv pointer array in a[2] */
#define K_OPENHOW 3  /* openat2: struct open_how at a[2] -> item of 24 bytes */
#define K_CONNECT 4  /* sockaddr a[1] (len a[2]) item, then the socket of fd a[0] */
#define K_ACCEPT 5   /* the socket of the returned fd */
#define K_SENDTO 6   /* sockaddr a[4] (len a[5]) item */
#define K_CLONE3 7   /* struct clone_args at a[0] -> flags item of 8 bytes */
#define K_PRCTL 8    /* PR_SET_NAME: string at a[1] */
#define K_CAPSET 9   /* struct __user_cap_data_struct[2] at a[1] -> item of 24 bytes */
#define K_CWD 10     /* chdir, fchdir: on success, the new working directory (pg_put_path) */
#define K_SOCK0 11   /* the socket of fd a[0] (listen) */
#define K_FDPATH 12  /* open_by_handle_at: on success, the path of the returned fd (pg_put_path) */
#define K_CLOSE 13   /* close: what sys_enter_close found behind fd a[0] (pg_put_close) */

#define PG_NR_EXECVEAT 322 /* x86_64 */
#define PG_SOCK_ITEM 44 /* u16 family, proto, type, sport, dport, pad; u8 saddr[16], daddr[16] */
#define EINPROGRESS_ 115

/* The per-event task fields (pid, tgid, real_parent, cred, comm, signal, loginuid) sit close
 * together in task_struct: one copy of that span replaces seven helper calls. Every helper call
 * is expensive (about 80 ns measured here: kernels mitigating return-stack attacks send each
 * `ret` through a thunk), and the context is read for every event. Bytes after comm's NUL are
 * copied as they are (user space cuts at the NUL). */
#define PG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PG_TASK_LO PG_MIN(PG_MIN(PG_MIN(OFF_TASK_REAL_PARENT, OFF_TASK_CRED), PG_MIN(OFF_TASK_SIGNAL, \
    OFF_TASK_LOGINUID)), PG_MIN(OFF_TASK_COMM, PG_MIN(OFF_TASK_PID, OFF_TASK_TGID)))
#define PG_TASK_HI PG_MAX(PG_MAX(PG_MAX(OFF_TASK_REAL_PARENT + 8, OFF_TASK_CRED + 8), \
    PG_MAX(OFF_TASK_SIGNAL + 8, OFF_TASK_LOGINUID + 4)), \
    PG_MAX(OFF_TASK_COMM + 16, PG_MAX(OFF_TASK_PID + 4, OFF_TASK_TGID + 4)))
#define PG_TASK_SPAN 2048
#if PG_TASK_HI - PG_TASK_LO > PG_TASK_SPAN
#error "task_struct context fields span more than PG_TASK_SPAN bytes on this kernel"
#endif
#define PG_T(type, off) (*(type *)&t[(off) - PG_TASK_LO])

struct pg_buf {
    struct pg_hdr h;
    u8 d[PG_PAYLOAD];
    u8 task[PG_TASK_SPAN]; /* a copy of task_struct fields (pg_context); never submitted */
};

struct pg_sys_exit {
    u64 common;
    s32 nr;
    u32 pad;
    s64 ret;
};

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_PERCPU_ARRAY(scratch, struct pg_buf, 1);
BPF_PERCPU_ARRAY(counters, u64, PG_CNT_N);

static __always_inline void pg_count(int idx) {
    u64 *c = counters.lookup(&idx);
    if (c)
        (*c)++;
}

/* --- interest ----------------------------------------------------------------------------- */
#ifndef PG_LPM_ENTRIES
#define PG_LPM_ENTRIES 65536
#endif
#ifndef PG_NAMES_ENTRIES
#define PG_NAMES_ENTRIES 65536
#endif
struct pg_lpm_key {
    u32 prefixlen;
    u8 data[PG_LPM_DATA];
};
struct pg_comm {
    char c[PG_COMM_LEN];
};
/* Per event type and generation, what its checks need (collectors/interest_plan.py TypePlan): each
 * of the type's rule alternatives (at most 64) has a bit; a check yields the bits of the
 * alternatives it lets through, and the event is kept while their AND is non-zero. interest_gen
 * says which generation is live; each record carries its own generation, so one program run reads
 * one generation's record and trie keys (interest_maps.py: how a switch stays sound). */
struct pg_itype {
    u32 mode;      /* PG_IM_* */
    u32 gen;       /* the generation byte of this record's trie keys */
    u64 path_free; /* alternatives the path does not constrain (or not in a way the probe tests) */
    u64 comm_free;
    u64 suffixed;  /* alternatives the reversed path's lookup can let through (suffixes) */
    u64 grams;     /* alternatives a hit in the path's gram screen lets through (substrings) */
    u64 acc[4];    /* by the open's flags & O_ACCMODE (the same four for a type without flags) */
    u64 res[2];    /* [0] the call failed (ret < 0), [1] it succeeded */
};
struct pg_grams {
    u64 w[PG_GRAM_BITS / 64];
};
BPF_ARRAY(interest_gen, u32, 1);
/* collectors/interest_plan.py KernelInterest.screen */
struct pg_screen {
    u64 head_short; /* alternatives of the path entries shorter than 4 bytes */
    u64 tail_short; /* of the suffixes shorter than 4 bytes */
    u64 head[PG_SCREEN_SLOTS];
    u64 tail[PG_SCREEN_SLOTS];
};
BPF_ARRAY(interest_grams, struct pg_grams, 2 * PG_PATH_SLOTS);
BPF_ARRAY(interest_screens, struct pg_screen, 2 * PG_PATH_SLOTS);
BPF_ARRAY(interest_type, struct pg_itype, 2 * PG_NTYPES);
BPF_LPM_TRIE(interest_lpm, struct pg_lpm_key, u64, PG_LPM_ENTRIES);
BPF_PERCPU_ARRAY(interest_counts, u64, PG_NTYPES * PG_IR_N);
/* tgid -> the process's name as the collector's process table holds it: the comm at its last exec,
 * or its parent's name at fork. Not the task's comm, which prctl(PR_SET_NAME) and /proc/PID/comm
 * change and which differs per thread. Set only once the record that makes the table change it is
 * in the ring, so the two agree; a process without an entry (started before the probe, or evicted)
 * is not comm-checked. */
BPF_TABLE("lru_hash", u32, struct pg_comm, pg_names, PG_NAMES_ENTRIES);
/* A name's lookup (a cache miss in pg_names, then the trie) was the largest cost of an open the
 * interest drops (~90 ns of 235, bpf_stats). A CPU mostly runs one process for many opens, so
 * each CPU remembers, per event type, the last process's name mask. It is valid while nothing it
 * was computed from changed: pg_names_epoch counts every change a program makes to pg_names
 * (exec, fork, exit; atomic adds), interest_gen every switch of the interest (user space seeds
 * pg_names before its first switch). The epoch is read before pg_names, and a change is made to
 * pg_names before the epoch moves, so a result computed from an old name is stored under an old
 * epoch. Two runs never interleave on a CPU (the kernel runs one BPF program per CPU at a time,
 * bpf_prog_active), so an entry is never torn. */
BPF_ARRAY(pg_names_epoch, u32, 1);
struct pg_comm_memo {
    u32 tgid;
    u32 switches;
    u32 epoch;
    u32 valid;
    u64 mask;
};
BPF_PERCPU_ARRAY(pg_comm_memos, struct pg_comm_memo, PG_NTYPES);

static __always_inline void pg_names_changed(void) {
    u32 zero = 0;
    u32 *epoch = pg_names_epoch.lookup(&zero);
    if (epoch)
        __sync_fetch_and_add(epoch, 1);
}

/* `switches`: interest_gen as user space wrote it, a count of switches whose parity is the live
 * generation (a switch rewrites the other generation's maps: the count, never reused, is what a
 * result computed from them may be remembered under) */
static __always_inline struct pg_itype *pg_itype(u32 evt, u32 *switches) {
    u32 zero = 0;
    u32 *gen = interest_gen.lookup(&zero);
    *switches = gen ? *gen : 0;
    u32 i = (*switches & 1) * PG_NTYPES + evt;
    return interest_type.lookup(&i);
}

static __always_inline u32 pg_mode(const struct pg_itype *it) {
    return it ? it->mode : 0;
}

static __always_inline void pg_icount(u32 evt, u32 reason) {
    u32 k = evt * PG_IR_N + reason;
    u64 *c = interest_counts.lookup(&k);
    if (c)
        (*c)++;
}

static __always_inline void pg_lpm_head(struct pg_lpm_key *k, u32 evt, u8 field, u32 gen) {
    k->prefixlen = PG_LPM_DATA * 8;
    k->data[0] = (evt >> 8) & 0xff;
    k->data[1] = evt & 0xff;
    k->data[2] = field;
    k->data[3] = gen;
}

/* the mask of the trie entry `k` matches longest: the plan gives each entry the bits of every
 * entry that is a prefix of it, so the longest match stands for all that match */
static __always_inline u64 pg_lpm_mask(struct pg_lpm_key *k) {
    u64 *m = interest_lpm.lookup(k);
    return m ? *m : 0;
}

/* the alternatives the process's name (pg_names) lets through, all of them when it has none; the
 * key is built in `room`, PG_LPM_DATA + 4 free bytes, 8-aligned */
static __always_inline u64 pg_comm_lookup(u8 *room, u32 evt, u32 gen, u32 tgid) {
    struct pg_comm *name = pg_names.lookup(&tgid);
    if (!name)
        return ~0ull;
    struct pg_lpm_key *k = (struct pg_lpm_key *)room;
    pg_lpm_head(k, evt, PG_FIELD_COMM, gen);
    *(u64 *)&k->data[PG_LPM_HEAD] = *(u64 *)&name->c[0];
    *(u64 *)&k->data[PG_LPM_HEAD + 8] = *(u64 *)&name->c[8];
    return pg_lpm_mask(k);
}

/* pg_comm_lookup, remembered per CPU and type (pg_comm_memos) */
static __always_inline u64 pg_comm_mask(u8 *room, u32 evt, u32 gen, u32 switches, u32 tgid) {
    u32 zero = 0;
    u32 *live = pg_names_epoch.lookup(&zero);
    struct pg_comm_memo *memo = pg_comm_memos.lookup(&evt);
    if (!live || !memo)
        return pg_comm_lookup(room, evt, gen, tgid);
    u32 epoch = *(volatile u32 *)live;
    if (memo->valid && memo->tgid == tgid && memo->switches == switches && memo->epoch == epoch)
        return memo->mask;
    u64 mask = pg_comm_lookup(room, evt, gen, tgid);
    memo->tgid = tgid;
    memo->switches = switches;
    memo->epoch = epoch;
    memo->mask = mask;
    memo->valid = 1;
    return mask;
}

#if PG_HALF + 2 + PG_MAX_STR > PG_PAYLOAD - 256
#error "pg_exit builds the path key past the strings: it needs the payload's last 256 bytes"
#endif
_Static_assert(PG_SUFFIX_MAX <= 2 + sizeof(struct pg_hdr),
               "the reversed path key reads up to PG_SUFFIX_MAX - 2 bytes before the path, in the header");
/* the types whose record's fd.name is their first item, the path (collectors/interest_plan.py) */
#define PG_PATH_TYPE(evt) ((evt) == EV_open || (evt) == EV_openat || (evt) == EV_openat2 || (evt) == EV_creat)
/* the type's interest_grams slot in a generation (interest_plan.PATH_SLOTS) */
#define PG_PATH_SLOT(evt) ((evt) == EV_open ? 0 : (evt) == EV_openat ? 1 : (evt) == EV_openat2 ? 2 : 3)
/* the open's flags & O_ACCMODE where the registers hold them (interest_plan.ACCMODE_TYPES); 0 for
 * every other type, whose four acc masks are the same */
#define PG_ACCMODE(evt, a) ((evt) == EV_openat ? (a)[2] : (evt) == EV_open ? (a)[1] : 0)
#define PG_ONES 0x0101010101010101ull
#define PG_HIGHS 0x8080808080808080ull
#define PG_SLASHES 0x2f2f2f2f2f2f2f2full
#define PG_DOTS 0x2e2e2e2e2e2e2e2eull
/* the high bit of every zero byte of v (and maybe of bytes above one: a false positive only keeps) */
static __always_inline u64 pg_zero_bytes(u64 v) {
    return (v - PG_ONES) & ~v & PG_HIGHS;
}

static __always_inline u32 pg_screen_slot(u32 gram) {
    return ((gram * PG_GRAM_MUL) >> (32 - PG_SCREEN_SHIFT)) & (PG_SCREEN_SLOTS - 1);
}

/* the alternatives some entry could let through for a path beginning (an entry of 4 bytes or more
 * matches only a path of as many, its NUL counted, that begins with its first 4) or ending (a
 * suffix of 4 bytes or more, a path that ends with its last 4, NUL not counted) like this one */
static __always_inline u64 pg_screen_head(const struct pg_screen *sc, const u8 *s, u32 n) {
    return sc ? sc->head_short | (n >= 4 ? sc->head[pg_screen_slot(*(const u32 *)s)] : 0) : ~0ull;
}

static __always_inline u64 pg_screen_tail(const struct pg_screen *sc, const u8 *s, u32 n) {
    return sc ? sc->tail_short | (n >= 5 ? sc->tail[pg_screen_slot(*(const u32 *)&s[(n - 5) & 0xff])] : 0) : ~0ull;
}

/* Whether one of the path's 4-byte grams (s: n bytes, its NUL included) has its bit in the slot's
 * bitmap: every substring some alternative needs has one gram there, so a path holding it hits
 * (a hash collision only keeps more). With PG_IM_GRAM_PAIRS (`pairs`), every substring has two
 * consecutive grams there, one of which starts at an even position wherever the substring sits,
 * so the odd positions are skipped. One map lookup, then one load per position. */
static __always_inline int pg_grams_hit(const u8 *s, u32 n, u32 slot, u32 pairs) {
    struct pg_grams *g = interest_grams.lookup(&slot);
    if (!g)
        return 1;
    u32 step = pairs ? 2 : 1;
#pragma clang loop unroll(disable)
    for (u32 p = 0; p < PG_LPM_STR - 4; p += step) {
        if (p + 5 > n)
            break;
        u32 h = (*(const u32 *)&s[p] * PG_GRAM_MUL) >> (32 - PG_GRAM_SHIFT);
        if ((g->w[(h >> 6) & (PG_GRAM_BITS / 64 - 1)] >> (h & 63)) & 1)
            return 1;
    }
    return 0;
}

/* The alternatives the path at s (n bytes read, its NUL included) lets through, the record's
 * path_free among them; `m` is what the other checks left. fd.name is the path made absolute and normalised
 * by the collector (decode.abspath, openevent.c), so only an absolute path that fits a key is
 * looked up (every alternative passes otherwise), and one whose lookups leave `m` empty still
 * passes whole when it holds "/." or "//", which the collector would normalise. The path is looked
 * up only when an alternative in `m` has an entry the path's first 4 bytes allow (interest_screens),
 * the reversed path (suffixes) only when one in `m` has a suffix its last 4 bytes allow and the
 * forward lookup left `m` empty, the gram screen (substrings) only when one in `m` has substrings
 * and the lookups left it empty: a dropped open of a path no entry begins or ends like pays no trie
 * lookup (each cost ~80 ns with Falco's rules). Keys are built in `room`, word by word. */
static __always_inline u64 pg_path_mask(u8 *room, const u8 *s, u32 n, u32 evt, const struct pg_itype *it, u64 m) {
    if (n == 0 || n > PG_LPM_STR || s[0] != '/')
        return ~0ull;
    struct pg_lpm_key *k = (struct pg_lpm_key *)room;
    u32 slot = it->gen * PG_PATH_SLOTS + PG_PATH_SLOT(evt);
    struct pg_screen *sc = interest_screens.lookup(&slot);
    u64 pass = it->path_free;
    if (!(m & pass) && (m & pg_screen_head(sc, s, n))) {
        pg_lpm_head(k, evt, PG_FIELD_PATH, it->gen);
#pragma unroll
        for (int i = 0; i < PG_LPM_STR / 8; i++)
            *(u64 *)&k->data[PG_LPM_HEAD + i * 8] = *(const u64 *)&s[i * 8];
        pass |= pg_lpm_mask(k);
    }
    u64 suffixed = m & it->suffixed;
    if (suffixed && !(m & pass) && (suffixed & pg_screen_tail(sc, s, n))) {
        /* the key's byte i is the path's byte L - 1 - i: words read backwards, byte-swapped; a path
         * shorter than the key brings bytes from before it, which can only add matches */
        const u8 *end = s - PG_SUFFIX_MAX + ((n - 1) & 0xff);
        pg_lpm_head(k, evt, PG_FIELD_RPATH, it->gen);
#pragma unroll
        for (int i = 0; i < PG_SUFFIX_MAX / 8; i++)
            *(u64 *)&k->data[PG_LPM_HEAD + i * 8] = __builtin_bswap64(*(const u64 *)&end[PG_SUFFIX_MAX - 8 - i * 8]);
        pass |= pg_lpm_mask(k);
    }
    if ((m & it->grams) && !(m & pass) && pg_grams_hit(s, n, slot, it->mode & PG_IM_GRAM_PAIRS))
        pass |= it->grams;
    if (m & pass)
        return pass;
    for (int i = 0; i < PG_LPM_STR / 8; i++) {
        if (i * 8 >= n)
            break;
        u64 w = *(const u64 *)&s[i * 8], next = *(const u64 *)&s[i * 8 + 1];
        if (pg_zero_bytes(w ^ PG_SLASHES) & (pg_zero_bytes(next ^ PG_DOTS) | pg_zero_bytes(next ^ PG_SLASHES)))
            return ~0ull;
    }
    return pass;
}

static __always_inline u32 pg_pid_nr(char *pid, int ns_level) {
    u32 nr = 0;
    if (!pid)
        return 0;
    u32 level = 0;
    if (ns_level) {
        RD(level, pid + OFF_PID_LEVEL);
        if (level > 32)
            return 0;
    }
    RD(nr, pid + OFF_PID_NUMBERS + (u64)level * SIZE_UPID + OFF_UPID_NR);
    return nr;
}

/* copy the span of the current task's fields into b->task; its pid and tgid, 0 when unreadable */
static __always_inline u64 pg_copy_task(struct pg_buf *b, char *task) {
    u8 *t = b->task;
    if (bpf_probe_read_kernel(t, PG_TASK_HI - PG_TASK_LO, task + PG_TASK_LO) < 0)
        return 0;
    return ((u64)PG_T(u32, OFF_TASK_TGID) << 32) | PG_T(u32, OFF_TASK_PID);
}

/* an empty record: payload items are appended from here on */
static __always_inline void pg_start(struct pg_buf *b) {
    b->h.len = 0;
    b->h.flags = 0;
}

/* process context of the current task, from the pg_copy_task copy and reads through BTF offsets;
 * the payload and flags (pg_start) are left as they are */
static __always_inline void pg_context(struct pg_buf *b, u64 pt, u16 evt) {
    struct pg_hdr *h = &b->h;
    u8 *t = b->task;
    char *p = 0;
    h->ts = bpf_ktime_get_boot_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->tgid = pt >> 32;
    h->tid = (u32)pt;
    h->evt = evt;
    h->pad = 0;
    h->ret = 0;
    h->pstart = 0; /* filled by the exec and fork records only: the start time never changes */
    h->tty = 0;
    h->sid = 0;
    h->vpid = 0;
    h->vpgid = 0;
    h->ppid = 0;
    h->uid = 0;
    h->gid = 0;
    __builtin_memcpy(h->comm, &t[OFF_TASK_COMM - PG_TASK_LO], sizeof(h->comm));
    h->loginuid = PG_T(u32, OFF_TASK_LOGINUID);

    p = PG_T(char *, OFF_TASK_REAL_PARENT);
    if (p)
        RD(h->ppid, p + OFF_TASK_TGID);

    p = PG_T(char *, OFF_TASK_CRED);
    if (p) {
        u32 ids[2] = {};
        bpf_probe_read_kernel(ids, sizeof(ids), p + OFF_CRED_EUID);
        h->uid = ids[0];
        h->gid = OFF_CRED_EGID == OFF_CRED_EUID + 4 ? ids[1] : 0;
    }

    char *sig = PG_T(char *, OFF_TASK_SIGNAL);
    if (!sig)
        return;
    char *tty = 0;
    RD(tty, sig + OFF_SIGNAL_TTY);
    if (tty) {
        int index = 0, major = 0, minor_start = 0;
        char *drv = 0;
#if OFF_TTY_INDEX < OFF_TTY_DRIVER && OFF_TTY_DRIVER - OFF_TTY_INDEX <= 24
        u8 ti[OFF_TTY_DRIVER - OFF_TTY_INDEX + 8] = {}; /* both fields in one read */
        bpf_probe_read_kernel(ti, sizeof(ti), tty + OFF_TTY_INDEX);
        index = *(int *)&ti[0];
        drv = *(char **)&ti[OFF_TTY_DRIVER - OFF_TTY_INDEX];
#else
        RD(index, tty + OFF_TTY_INDEX);
        RD(drv, tty + OFF_TTY_DRIVER);
#endif
        if (drv) {
#if OFF_TTY_DRIVER_MINOR_START == OFF_TTY_DRIVER_MAJOR + 4
            int mm[2] = {};
            bpf_probe_read_kernel(mm, sizeof(mm), drv + OFF_TTY_DRIVER_MAJOR);
            major = mm[0];
            minor_start = mm[1];
#else
            RD(major, drv + OFF_TTY_DRIVER_MAJOR);
            RD(minor_start, drv + OFF_TTY_DRIVER_MINOR_START);
#endif
        }
        u32 minor = minor_start + index;
        /* new_encode_dev, as /proc/PID/stat prints tty_nr */
        h->tty = (minor & 0xff) | ((u32)major << 8) | ((minor & ~0xffu) << 12);
    }
}

/* session and namespaced ids: exec and fork records only (they change with setsid/setpgid, which
 * processes call between fork and exec; the process table keeps them between those records) */
static __always_inline void pg_session(struct pg_hdr *h) {
    char *task = (char *)bpf_get_current_task(), *sig = 0;
    RD(sig, task + OFF_TASK_SIGNAL);
    if (!sig)
        return;
    char *pids[4] = {}; /* PIDTYPE_PID, TGID, PGID, SID */
    bpf_probe_read_kernel(pids, sizeof(pids), sig + OFF_SIGNAL_PIDS);
    u32 level = 0;
    if (pids[1])
        RD(level, pids[1] + OFF_PID_LEVEL);
    h->sid = pg_pid_nr(pids[3], 0);
    if (level == 0) { /* the host pid namespace: the namespaced ids are the host ones */
        h->vpid = h->tgid;
        h->vpgid = pg_pid_nr(pids[2], 0);
        return;
    }
    h->vpid = pg_pid_nr(pids[1], 1);
    h->vpgid = pg_pid_nr(pids[2], 1);
}

static __always_inline u64 pg_leader_start(void) {
    char *task = (char *)bpf_get_current_task(), *leader = 0;
    u64 start = 0;
    RD(leader, task + OFF_TASK_GROUP_LEADER);
    if (leader)
        RD(start, leader + OFF_TASK_START_BOOTTIME);
    return start;
}

static __always_inline struct pg_buf *pg_buffer(void) {
    int zero = 0;
    return scratch.lookup(&zero);
}

static __always_inline void pg_put_len(struct pg_buf *b, u32 off, u32 n) {
    b->d[off] = n & 0xff;
    b->d[off + 1] = (n >> 8) & 0xff;
}

/* The length of a user string, its NUL counted, when one fixed-size copy of its first
 * PG_SHORT_STR bytes holds it, else 0 (longer, or the copy crossed into an unmapped page). A fixed
 * copy of 128 bytes costs ~42 ns less than bpf_probe_read_user_str of the same short path
 * (bpf_stats, AMD EPYC: 73 against 115 ns over the registers' read), and most strings a rule tests
 * are shorter. Bytes past the NUL are user memory the record never carries (its length stops at
 * the NUL). */
#define PG_SHORT_STR 128
/* the length, its NUL counted, of the string in the PG_SHORT_STR bytes at p (8-aligned), else 0 */
static __always_inline u32 pg_short_len(const u8 *p) {
#pragma unroll
    for (int i = 0; i < PG_SHORT_STR / 8; i++) {
        u64 z = pg_zero_bytes(*(const u64 *)&p[i * 8]); /* its lowest bit marks the first NUL */
        if (z) {
            u32 k = i * 8 + 1;
            if (!(z & 0xffffffffull)) {
                k += 4;
                z >>= 32;
            }
            if (!(z & 0xffff)) {
                k += 2;
                z >>= 16;
            }
            if (!(z & 0xff))
                k += 1;
            return k;
        }
    }
    return 0;
}

static __always_inline u32 pg_read_user_short(u8 *dst, const void *src) {
    if (bpf_probe_read_user(dst, PG_SHORT_STR, src) < 0)
        return 0;
    return pg_short_len(dst);
}

/* pg_read_user_short into w on the BPF stack, for the open family's path (pg_exit): there
 * bpf_probe_read_user costs ~45 ns less than into a map value (bpf_stats on this 6.18 AMD EPYC VM,
 * in an otherwise empty program: 200 against 244 ns per run, 52 empty), whatever the size (16
 * bytes cost as much as 128) or the alignment: hardened usercopy (__check_object_size) returns at
 * once for a stack object but runs its heap tests (is_vmalloc_addr, __virt_addr_valid, each
 * returning through the SRSO thunk) on a map value, and the helper writes the map's lines. Not
 * for every string: with three of them (mount), the stack copies took the verifier past its
 * limit. */
static __always_inline u32 pg_read_user_words(u64 *w, const void *src) {
    if (bpf_probe_read_user(w, PG_SHORT_STR, src) < 0)
        return 0;
    return pg_short_len((const u8 *)w);
}

static __always_inline void pg_copy_words(u8 *dst, const u64 *w) {
#pragma unroll
    for (int i = 0; i < PG_SHORT_STR / 8; i++)
        *(u64 *)&dst[i * 8] = w[i];
}

/* The path's 4 bytes from byte k on, from its copy in aligned words (the verifier refuses a
 * misaligned load from the stack); k < PG_FAST_PATH - 4 */
static __always_inline u32 pg_word32(const u64 *w, u32 k) {
    u32 i = (k >> 3) & (PG_SHORT_STR / 8 - 1), sh = (k & 7) * 8;
    u64 lo = w[i], hi = w[(i + 1) & (PG_SHORT_STR / 8 - 1)];
    return (u32)(sh ? (lo >> sh) | (hi << (64 - sh)) : lo);
}

/* the longest path (its NUL counted) pg_path_drops_fast takes from its copy on the stack */
#define PG_FAST_PATH (PG_SHORT_STR - 8)

/* pg_grams_hit on the path's copy in words (n <= PG_FAST_PATH), eight positions a word, or the
 * even four of them (`step` 2, PG_IM_GRAM_PAIRS); `step` is a constant at each call, so each is
 * its own unrolled loop with constant shifts */
static __always_inline int pg_grams_hit_words(const u64 *w, u32 n, const struct pg_grams *g, const u32 step) {
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < PG_FAST_PATH / 8; i++) {
        if (i * 8 + 5 > n)
            break;
        u64 lo = w[i], hi = w[i + 1];
#pragma unroll
        for (u32 j = 0; j < 8; j += step) {
            if (i * 8 + j + 5 > n)
                break;
            u32 gram = (u32)(j ? (lo >> (8 * j)) | (hi << (64 - 8 * j)) : lo);
            u32 h = (gram * PG_GRAM_MUL) >> (32 - PG_GRAM_SHIFT);
            if ((g->w[(h >> 6) & (PG_GRAM_BITS / 64 - 1)] >> (h & 63)) & 1)
                return 1;
        }
    }
    return 0;
}

/* Whether pg_path_mask would drop the open for this path (its first PG_SHORT_STR bytes in w on the
 * stack, n bytes with its NUL, n <= PG_FAST_PATH) with nothing but the screens, the gram bitmap
 * and the "/." scan, the tests it runs on a path no trie entry can match: then the path never
 * enters the record. Each test reads the same bytes pg_path_mask reads (a path of at most
 * PG_FAST_PATH bytes keeps its "/." scan within the copy), so it drops exactly those opens; any
 * other (a lookup due, a gram hit, a "/.") is left to pg_path_mask on the record. The scratch
 * buffer's lines are mostly out of cache by the next open: in an otherwise empty program, 16 stores
 * of a path into it (3 lines) cost ~25 ns more than one store (bpf_stats, AMD EPYC VM). */
static __always_inline int pg_path_drops_fast(const u64 *w, u32 n, u32 evt, const struct pg_itype *it, u64 m) {
    if (n > PG_FAST_PATH || (w[0] & 0xff) != '/' || (m & it->path_free))
        return 0;
    u32 slot = it->gen * PG_PATH_SLOTS + PG_PATH_SLOT(evt);
    struct pg_screen *sc = interest_screens.lookup(&slot);
    if (!sc)
        return 0;
    if (m & (sc->head_short | (n >= 4 ? sc->head[pg_screen_slot((u32)w[0])] : 0)))
        return 0;
    u64 suffixed = m & it->suffixed;
    if (suffixed & (sc->tail_short | (n >= 5 ? sc->tail[pg_screen_slot(pg_word32(w, n - 5))] : 0)))
        return 0;
    if (m & it->grams) {
        struct pg_grams *g = interest_grams.lookup(&slot);
        if (!g || (it->mode & PG_IM_GRAM_PAIRS ? pg_grams_hit_words(w, n, g, 2) : pg_grams_hit_words(w, n, g, 1)))
            return 0;
    }
    for (int i = 0; i < PG_FAST_PATH / 8; i++) {
        if (i * 8 >= n)
            break;
        u64 v = w[i], next = (v >> 8) | (w[i + 1] << 56);
        if (pg_zero_bytes(v ^ PG_SLASHES) & (pg_zero_bytes(next ^ PG_DOTS) | pg_zero_bytes(next ^ PG_SLASHES)))
            return 0;
    }
    return 1;
}

#define PG_STR_USER 0
#define PG_STR_KERNEL 1
#define PG_STR_USER_LONG 2 /* user memory the caller's pg_read_user_words could not take */
/* append a NUL-terminated string of the PG_STR_* kind */
static __always_inline void pg_put_str(struct pg_buf *b, const void *src, int kind) {
    u32 off = b->h.len;
    if (off > PG_HALF) {
        b->h.flags |= PG_FLAG_TRUNCATED;
        return;
    }
    BARRIER_VAR(off);
    off &= PG_HALF;
    int n = 0;
    if (src) {
        if (kind == PG_STR_KERNEL)
            n = bpf_probe_read_kernel_str(&b->d[off + 2], PG_MAX_STR, src);
        else if (kind == PG_STR_USER_LONG || !(n = pg_read_user_short(&b->d[off + 2], src)))
            n = bpf_probe_read_user_str(&b->d[off + 2], PG_MAX_STR, src);
        if (n < 0) {
            n = 0;
            pg_count(PG_CNT_PAGE_FAULT);
        }
    }
    n &= (PG_MAX_STR * 2 - 1);
    pg_put_len(b, off, n);
    b->h.len = off + 2 + n;
}

/* an empty item where one did not fit, so that the items after it keep their position */
static __always_inline void pg_put_empty(struct pg_buf *b, u32 off) {
    b->h.flags |= PG_FLAG_TRUNCATED;
    BARRIER_VAR(off);
    off &= PG_PAYLOAD - 1;
    if (off > PG_PAYLOAD - 2)
        return;
    pg_put_len(b, off, 0);
    b->h.len = off + 2;
}

/* append n bytes of user memory (n <= PG_MAX_STR); an empty item when the read fails */
static __always_inline void pg_put_user(struct pg_buf *b, const void *src, u64 n) {
    u32 off = b->h.len;
    if (off > PG_HALF) {
        pg_put_empty(b, off);
        return;
    }
    BARRIER_VAR(off);
    off &= PG_HALF;
    if (n > PG_MAX_STR) {
        n = PG_MAX_STR;
        b->h.flags |= PG_FLAG_TRUNCATED;
    }
    BARRIER_VAR(n);
    n &= (PG_MAX_STR * 2 - 1);
    if (!src || n == 0 || bpf_probe_read_user(&b->d[off + 2], n, src) < 0) {
        if (src && n)
            pg_count(PG_CNT_PAGE_FAULT);
        n = 0;
    }
    pg_put_len(b, off, n);
    b->h.len = off + 2 + n;
}

/* the local and remote addresses of socket `fd` of the current task */
/* the struct file of the current task's fd, or 0 */
static __always_inline char *pg_fd_file(char *task, u64 fd) {
    char *files = 0, *fdt = 0, *fdarr = 0, *file = 0;
    u32 max_fds = 0;
    RD(files, task + OFF_TASK_FILES);
    if (files)
        RD(fdt, files + OFF_FILES_FDT);
    if (fdt) {
        RD(max_fds, fdt + OFF_FDT_MAX_FDS);
        RD(fdarr, fdt + OFF_FDT_FD);
    }
    if (fdarr && fd < max_fds)
        RD(file, fdarr + fd * sizeof(void *));
    return file;
}

static __always_inline void pg_put_sock(struct pg_buf *b, u64 fd) {
    u32 off = b->h.len;
    if (off > PG_HALF) {
        b->h.flags |= PG_FLAG_TRUNCATED;
        return;
    }
    BARRIER_VAR(off);
    off &= PG_HALF;
    char *file = pg_fd_file((char *)bpf_get_current_task(), fd), *sock = 0, *sk = 0;
    u32 n = 0;
    if (file)
        RD(sock, file + OFF_FILE_PRIVATE_DATA);
    if (sock)
        RD(sk, sock + OFF_SOCKET_SK);
    if (sk) {
        u8 *o = &b->d[off + 2];
        u16 family = 0, proto = 0, type = 0, sport = 0, dport = 0;
        RD(family, sk + OFF_SK_FAMILY);
        RD(proto, sk + OFF_SK_PROTOCOL);
        RD(type, sk + OFF_SK_TYPE);
        RD(sport, sk + OFF_SK_NUM);
        RD(dport, sk + OFF_SK_DPORT);
        dport = (dport >> 8) | (dport << 8);
        __builtin_memset(o, 0, PG_SOCK_ITEM);
        *(u16 *)&o[0] = family;
        *(u16 *)&o[2] = proto;
        *(u16 *)&o[4] = type;
        *(u16 *)&o[6] = sport;
        *(u16 *)&o[8] = dport;
        if (family == 2) { /* AF_INET */
            bpf_probe_read_kernel(&o[12], 4, sk + OFF_SK_RCV_SADDR);
            bpf_probe_read_kernel(&o[28], 4, sk + OFF_SK_DADDR);
        } else if (family == 10) { /* AF_INET6 */
            bpf_probe_read_kernel(&o[12], 16, sk + OFF_SK_V6_RCV_SADDR);
            bpf_probe_read_kernel(&o[28], 16, sk + OFF_SK_V6_DADDR);
        }
        n = PG_SOCK_ITEM;
    }
    pg_put_len(b, off, n);
    b->h.len = off + 2 + n;
}

/* 1 when the record is in the ring */
static __always_inline int pg_emit(struct pg_buf *b) {
    u64 sz = sizeof(struct pg_hdr) + (u64)b->h.len;
    if (sz > sizeof(struct pg_hdr) + PG_PAYLOAD)
        sz = sizeof(struct pg_hdr) + PG_PAYLOAD;
    BARRIER_VAR(sz);
    pg_count(PG_CNT_EVTS);
    if (events.ringbuf_output(b, sz, BPF_RB_NO_WAKEUP) < 0) {
        pg_count(PG_CNT_RING_FULL);
        return 0;
    }
    return 1;
}

static __always_inline int pg_submit(struct pg_buf *b) {
    pg_emit(b);
    return 0;
}

/* a record the process table needs whatever the interest: flagged when no rule wants its type */
static __always_inline void pg_mark_wanted(struct pg_buf *b, u32 evt) {
    u32 switches;
    if (!(pg_mode(pg_itype(evt, &switches)) & PG_IM_KEEP))
        b->h.flags |= PG_FLAG_UNWANTED;
    pg_icount(evt, PG_IR_KEPT);
}

#ifdef PG_EXE
#if PG_INODE_LEN > PG_TASK_SPAN
#error "the inode fields span more than PG_TASK_SPAN bytes on this kernel"
#endif
#define PG_OVL_MAGIC 0x794c7630
#define PG_CRED_LO (PG_MIN(PG_MIN(OFF_CRED_FSUID, OFF_CRED_FSGID), PG_MIN(OFF_CRED_CAP_INHERITABLE, \
    PG_MIN(OFF_CRED_CAP_PERMITTED, OFF_CRED_CAP_EFFECTIVE))) & ~7)
#define PG_CRED_HI PG_MAX(PG_MAX(OFF_CRED_FSUID + 4, OFF_CRED_FSGID + 4), PG_MAX(OFF_CRED_CAP_INHERITABLE + 8, \
    PG_MAX(OFF_CRED_CAP_PERMITTED + 8, OFF_CRED_CAP_EFFECTIVE + 8)))
#define PG_I(type, off) (*(type *)&t[(off) - PG_INODE_LO])
/* the new image's inode, one item of PG_EXE_ITEM bytes (collectors/decode.py exe_info reads it):
 * u64 ino, s64 ctime_sec, s64 mtime_sec, u32 ctime_nsec, mtime_nsec, i_uid, i_gid, fsuid, fsgid,
 * s_magic (low half), u16 i_mode, u8 PG_EXE_*, u8 pad, u32 i_flags, s_flags (low half).
 * An empty item when mm->exe_file or its inode is unreadable. The inode is copied in one read
 * into b->task (free once pg_context is done); fsids is fsuid | fsgid << 32, read by the caller with
 * the capabilities. Four helper calls per exec (five on overlayfs), about 0.4 us. */
static __always_inline void pg_put_exe(struct pg_buf *b, char *mm, u64 fsids) {
    u32 off = b->h.len;
    BARRIER_VAR(off);
    off &= PG_PAYLOAD - 1;
    if (off > PG_PAYLOAD - 2 - PG_EXE_ITEM) {
        b->h.flags |= PG_FLAG_TRUNCATED;
        return;
    }
    u8 *o = &b->d[off + 2], *t = b->task;
    char *file = 0, *inode = 0, *sb = 0;
    u32 n = 0;
    if (mm)
        RD(file, mm + OFF_MM_EXE_FILE);
    if (file)
        RD(inode, file + OFF_FILE_F_INODE);
    if (inode && bpf_probe_read_kernel(t, PG_INODE_LEN, inode + PG_INODE_LO) == 0) {
        __builtin_memset(o, 0, PG_EXE_ITEM);
        *(u64 *)&o[0] = PG_I(u64, OFF_INODE_I_INO);
#ifdef PG_EXE_TIMES
        *(s64 *)&o[8] = PG_I(s64, OFF_INODE_CTIME_SEC);
        *(s64 *)&o[16] = PG_I(s64, OFF_INODE_MTIME_SEC);
        *(u32 *)&o[24] = PG_I(u32, OFF_INODE_CTIME_NSEC);
        *(u32 *)&o[28] = PG_I(u32, OFF_INODE_MTIME_NSEC);
        o[54] |= PG_EXE_HAVE_TIMES;
#endif
        *(u32 *)&o[32] = PG_I(u32, OFF_INODE_I_UID);
        *(u32 *)&o[36] = PG_I(u32, OFF_INODE_I_GID);
        *(u16 *)&o[52] = PG_I(u16, OFF_INODE_I_MODE);
        *(u32 *)&o[56] = PG_I(u32, OFF_INODE_I_FLAGS);
        sb = PG_I(char *, OFF_INODE_I_SB);
        *(u64 *)&o[40] = fsids;
        u32 magic = 0;
        if (sb) {
#if OFF_SB_S_MAGIC > OFF_SB_S_FLAGS && OFF_SB_S_MAGIC - OFF_SB_S_FLAGS <= 24
            u8 sf[OFF_SB_S_MAGIC - OFF_SB_S_FLAGS + 4] = {}; /* both fields in one read */
            bpf_probe_read_kernel(sf, sizeof(sf), sb + OFF_SB_S_FLAGS);
            *(u32 *)&o[60] = *(u32 *)&sf[0];
            magic = *(u32 *)&sf[OFF_SB_S_MAGIC - OFF_SB_S_FLAGS];
#else
            bpf_probe_read_kernel(&o[60], 4, sb + OFF_SB_S_FLAGS);
            RD(magic, sb + OFF_SB_S_MAGIC);
#endif
        }
        *(u32 *)&o[48] = magic;
#ifdef PG_EXE_OVL
        if (magic == PG_OVL_MAGIC) {
            char *upper = 0;
            RD(upper, inode - OFF_OVL_VFS_INODE + OFF_OVL_UPPERDENTRY);
            o[54] |= PG_EXE_HAVE_LAYER | (upper ? PG_EXE_UPPER : 0);
        }
#endif
        n = PG_EXE_ITEM;
    }
    pg_put_len(b, off, n);
    b->h.len = off + 2 + n;
}
#endif

/* The current task's working directory (file 0) or the path of an open file as a probe.h
 * PG_CWD_DEPTH item: from fs->pwd (or file->f_path) up through
 * d_parent, crossing mounts through mnt_mountpoint, to the task's root (chroot) or the root mount
 * of its namespace. bpf_d_path is not allowed in tracepoints, so this is Falco's walk
 * (auxmap__store_d_path_approx); unlocked, so a concurrent rename can give a path that never
 * existed. Components go out leaf first (no reversal here, user space reverses): chdir, fchdir,
 * exec, open_by_handle_at and close only, about 2 reads per component. */
#define PG_DENTRY_SPAN (OFF_DENTRY_D_NAME_NAME - OFF_DENTRY_D_PARENT + 8)
static __always_inline void pg_put_path(struct pg_buf *b, char *task, char *file) {
    u32 off = b->h.len;
    if (off > PG_HALF) {
        pg_put_empty(b, off);
        return;
    }
    BARRIER_VAR(off);
    off &= PG_HALF;
    char *fs = 0, *dentry = 0, *vfsmnt = 0, *root_d = 0, *root_m = 0, *mnt = 0, *up = 0, *mnt_root = 0;
    u32 pos = 0;
    int done = 0;
    RD(fs, task + OFF_TASK_FS);
    if (fs) {
        RD(root_m, fs + OFF_FS_ROOT + OFF_PATH_MNT);
        RD(root_d, fs + OFF_FS_ROOT + OFF_PATH_DENTRY);
        if (!file) {
            RD(vfsmnt, fs + OFF_FS_PWD + OFF_PATH_MNT);
            RD(dentry, fs + OFF_FS_PWD + OFF_PATH_DENTRY);
        }
    }
    if (file) {
        RD(vfsmnt, file + OFF_FILE_F_PATH + OFF_PATH_MNT);
        RD(dentry, file + OFF_FILE_F_PATH + OFF_PATH_DENTRY);
    }
    if (vfsmnt) {
        mnt = vfsmnt - OFF_MOUNT_MNT;
        RD(up, mnt + OFF_MOUNT_MNT_PARENT);
        RD(mnt_root, vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
    }
#pragma unroll
    for (int i = 0; i < PG_CWD_DEPTH; i++) {
        if (!dentry || (dentry == root_d && vfsmnt == root_m)) {
            done = dentry != 0;
            break;
        }
        char *parent = 0, *name = 0;
#if OFF_DENTRY_D_NAME_NAME > OFF_DENTRY_D_PARENT && PG_DENTRY_SPAN <= 32
        u8 dn[PG_DENTRY_SPAN]; /* d_parent and d_name.name in one read: a helper call less */
        if (bpf_probe_read_kernel(dn, sizeof(dn), dentry + OFF_DENTRY_D_PARENT) == 0) {
            parent = *(char **)&dn[0];
            name = *(char **)&dn[PG_DENTRY_SPAN - 8];
        }
#else
        RD(parent, dentry + OFF_DENTRY_D_PARENT);
        RD(name, dentry + OFF_DENTRY_D_NAME_NAME);
#endif
        if (dentry == mnt_root || dentry == parent) {
            if (dentry != mnt_root)
                break; /* a root that is no mount's root: unlinked or detached, stop */
            if (mnt == up) {
                done = 1; /* the namespace's root mount */
                break;
            }
            RD(dentry, mnt + OFF_MOUNT_MNT_MOUNTPOINT);
            mnt = up;
            vfsmnt = mnt + OFF_MOUNT_MNT;
            RD(up, mnt + OFF_MOUNT_MNT_PARENT);
            RD(mnt_root, vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
            continue;
        }
        if (pos > PG_MAX_STR - PG_NAME_MAX - 1)
            break;
        BARRIER_VAR(pos);
        pos &= PG_MAX_STR - 1;
        int n = bpf_probe_read_kernel_str(&b->d[off + 2 + pos], PG_NAME_MAX, name);
        if (n <= 1)
            break;
        pos += n;
        dentry = parent;
    }
    BARRIER_VAR(pos);
    pos &= PG_MAX_STR - 1;
    if (done)
        b->d[off + 2 + pos++] = 0; /* the root's empty component: the walk is complete */
    else
        b->h.flags |= PG_FLAG_TRUNCATED;
    pg_put_len(b, off, pos);
    b->h.len = off + 2 + pos;
}

#ifdef PG_FDTYPES
/* fd.types: libs keeps a per-thread fd table and gives the types of its open fds. Here the table
 * is read at the event instead: the first PG_FDTYPES_FDS slots of current->files->fdt, each open
 * file classified as libs classifies /proc/PID/fd (scap_fds.c handle_file, classify_anon_inode_file):
 * by the inode's type bits; a socket by its family; a regular file named memfd:* as memfd; an anon
 * inode (no type bits) by its name. Codes are 1 + the index in rules/record.py FDTYPE_NAMES, passed
 * by the loader as PG_FDT_<name>. Compiled into the programs of the events libs gives fd fields
 * (FDTYPES_<type>), and run there only when the type's interest record says some rule reads
 * fd.types (PG_IM_FDTABLE): a rules change that starts or stops reading it needs no reload. */
#define PG_S_IFMT 0170000
#define PG_STR8(a, b, c, d, e, f, g, h) ((u64)(a) | (u64)(b) << 8 | (u64)(c) << 16 | (u64)(d) << 24 | \
    (u64)(e) << 32 | (u64)(f) << 40 | (u64)(g) << 48 | (u64)(h) << 56)

/* the first 8 bytes of the file's dentry name (zero-padded) */
static __always_inline u64 pg_file_name8(char *file) {
    char *dentry = 0, *name = 0;
    u64 s[2] = {}; /* a _str read keeps room for the NUL: 8 characters need 9 bytes */
    RD(dentry, file + OFF_FILE_F_PATH + OFF_PATH_DENTRY);
    if (dentry)
        RD(name, dentry + OFF_DENTRY_D_NAME_NAME);
    if (name)
        bpf_probe_read_kernel_str(s, sizeof(s), name);
    return s[0];
}

/* the anon inode names of scap_fds.c classify_anon_inode_file, by their first 8 bytes */
static __always_inline u8 pg_anon_type(u64 s) {
    switch (s) {
    case PG_STR8('[', 'e', 'v', 'e', 'n', 't', 'f', 'd'): return PG_FDT_event;
    case PG_STR8('[', 'e', 'v', 'e', 'n', 't', 'p', 'o'): return PG_FDT_eventpoll;
    case PG_STR8('i', 'n', 'o', 't', 'i', 'f', 'y', 0): return PG_FDT_inotify;
    case PG_STR8('[', 's', 'i', 'g', 'n', 'a', 'l', 'f'): return PG_FDT_signalfd;
    case PG_STR8('[', 't', 'i', 'm', 'e', 'r', 'f', 'd'): return PG_FDT_timerfd;
    case PG_STR8('[', 'i', 'o', '_', 'u', 'r', 'i', 'n'): return PG_FDT_io_uring;
    case PG_STR8('[', 'u', 's', 'e', 'r', 'f', 'a', 'u'): return PG_FDT_userfaultfd;
    case PG_STR8('[', 'p', 'i', 'd', 'f', 'd', ']', 0): return PG_FDT_pidfd;
    }
    switch (s & 0xffffffffffffull) { /* bpf-map, bpf-prog, bpf-link, bpf-iter */
    case PG_STR8('b', 'p', 'f', '-', 'm', 'a', 0, 0):
    case PG_STR8('b', 'p', 'f', '-', 'p', 'r', 0, 0):
    case PG_STR8('b', 'p', 'f', '-', 'l', 'i', 0, 0):
    case PG_STR8('b', 'p', 'f', '-', 'i', 't', 0, 0): return PG_FDT_bpf;
    }
    return PG_FDT_NA; /* perf_event and the rest: libs' SCAP_FD_UNSUPPORTED */
}

static __always_inline u8 pg_fd_type(char *file) {
    char *inode = 0, *sock = 0, *sk = 0;
    u16 mode = 0, family = 0;
    RD(inode, file + OFF_FILE_F_INODE);
    if (inode)
        RD(mode, inode + OFF_INODE_I_MODE);
    switch (mode & PG_S_IFMT) {
    case 0040000:
        return PG_FDT_directory;
    case 0010000:
        return PG_FDT_pipe;
    case 0140000:
        RD(sock, file + OFF_FILE_PRIVATE_DATA);
        if (sock)
            RD(sk, sock + OFF_SOCKET_SK);
        if (sk)
            RD(family, sk + OFF_SK_FAMILY);
        return family == 2 ? PG_FDT_ipv4 : family == 10 ? PG_FDT_ipv6 : family == 1 ? PG_FDT_unix
             : family == 16 ? PG_FDT_netlink : PG_FDT_NA;
    case 0100000:
        if ((pg_file_name8(file) & 0xffffffffffffull) == PG_STR8('m', 'e', 'm', 'f', 'd', ':', 0, 0))
            return PG_FDT_memfd;
        return PG_FDT_file;
    case 0020000: /* character and block devices, symlinks: files, as libs' FILE_V2 */
    case 0060000:
    case 0120000:
        return PG_FDT_file;
    case 0:
        return inode ? pg_anon_type(pg_file_name8(file)) : PG_FDT_NA;
    default:
        return PG_FDT_NA;
    }
}

/* the item: byte i the type of fd i (0: not open), up to the last open fd of the first
 * PG_FDTYPES_FDS; flagged PG_FLAG_FDTYPES. No item (not captured) when the table is unreadable or
 * the record is full. b->task is free here (pg_context is done): the fd pointers land there. */
static __always_inline void pg_put_fdtypes(struct pg_buf *b, char *task) {
    u32 off = b->h.len;
    if (off > PG_HALF)
        return;
    BARRIER_VAR(off);
    off &= PG_HALF;
    char *files = 0, *fdt = 0, *fdarr = 0;
    RD(files, task + OFF_TASK_FILES);
    if (files)
        RD(fdt, files + OFF_FILES_FDT);
    if (fdt)
        RD(fdarr, fdt + OFF_FDT_FD);
    if (!fdarr || bpf_probe_read_kernel(b->task, PG_FDTYPES_FDS * sizeof(void *), fdarr) < 0)
        return;
    u8 *o = &b->d[off + 2];
    u32 used = 0;
    for (u32 i = 0; i < PG_FDTYPES_FDS; i++) {
        char *file = ((char **)b->task)[i];
        u8 code = file ? pg_fd_type(file) : 0;
        o[i] = code;
        if (code)
            used = i + 1;
    }
    BARRIER_VAR(used);
    used &= PG_FDTYPES_FDS * 2 - 1;
    pg_put_len(b, off, used);
    b->h.len = off + 2 + used;
    b->h.flags |= PG_FLAG_FDTYPES;
}
#endif

#ifdef HAVE_close
/* close, as libs fills it: fd.* describe what the fd referred to. Since Linux 6.15 close(2) drops
 * the last reference itself (fput_close_sync), so at sys_exit the file may be freed: its path is
 * walked at sys_enter_close and carried per thread to the exit record, which holds it as its
 * first item and the inode's type in a[1]. A thread has one close in flight, so the map holds
 * the threads inside close at once; an entry is deleted by its exit (one whose exit was missed
 * is overwritten by the thread's next close, and the fd must match). When the map is full the
 * record goes out without the path, counted as PG_CNT_PAGE_FAULT (a field is missing). */
#define PG_CLOSE_INFLIGHT 1024
struct pg_close_file {
    u64 fd;
    u64 mode;                /* 1 << 32 | the inode's i_mode (its low half 0 when unread) */
    u8 item[2 + PG_MAX_STR]; /* the file's path, a pg_put_path item */
};
BPF_HASH(close_files, u32, struct pg_close_file, PG_CLOSE_INFLIGHT);

TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    u64 pt = bpf_get_current_pid_tgid();
    if ((pt >> 32) == SELF_TGID)
        return 0;
    char *task = (char *)bpf_get_current_task();
    char *file = pg_fd_file(task, args->fd);
    struct pg_buf *b = pg_buffer();
    if (!file || !b)
        return 0; /* no file behind the fd: the exit record carries fd.num alone */
    /* staged in the scratch buffer, free until an exit record uses it */
    struct pg_close_file *v = (struct pg_close_file *)b->d;
    v->fd = args->fd;
    v->mode = 1ull << 32;
#ifdef PG_EXE
    char *inode = 0;
    u16 mode = 0;
    RD(inode, file + OFF_FILE_F_INODE);
    if (inode)
        RD(mode, inode + OFF_INODE_I_MODE);
    v->mode |= mode;
#endif
    b->h.len = __builtin_offsetof(struct pg_close_file, item);
    pg_put_path(b, task, file);
    u32 tid = (u32)pt;
    if (close_files.update(&tid, v) < 0)
        pg_count(PG_CNT_PAGE_FAULT);
    return 0;
}

/* the exit record's path item and a[1] from what sys_enter_close stored for this thread */
static __always_inline void pg_put_close(struct pg_buf *b) {
    u32 tid = b->h.tid;
    struct pg_close_file *v = close_files.lookup(&tid);
    b->h.a[1] = 0;
    if (!v)
        return;
    u32 off = b->h.len;
    if (v->fd == b->h.a[0] && off <= PG_HALF) {
        BARRIER_VAR(off);
        off &= PG_HALF;
        u32 n = v->item[0] | (u32)v->item[1] << 8;
        if (n > PG_MAX_STR)
            n = PG_MAX_STR;
        BARRIER_VAR(n);
        n &= (PG_MAX_STR * 2 - 1);
        if (n && bpf_probe_read_kernel(&b->d[off + 2], n, &v->item[2]) < 0)
            n = 0;
        pg_put_len(b, off, n);
        b->h.len = off + 2 + n;
        b->h.a[1] = v->mode;
    }
    close_files.delete(&tid);
}
#endif

/* The current task's BTF pointer (PG_BTF_REGS), which pg_current_ids and pg_regs_args share:
 * fetched once per run, as each helper call costs (the second bpf_get_current_task_btf of a run
 * ~8 ns, bpf_stats; the kernel does not inline it). 0 without PG_BTF_REGS. */
#ifdef PG_BTF_REGS
#define PG_TASK_BTF() bpf_get_current_task_btf()
#else
#define PG_TASK_BTF() 0
#endif

/* tgid << 32 | pid of the current task, as bpf_get_current_pid_tgid returns them; with
 * PG_BTF_REGS two loads through the task's BTF pointer (tb, PG_TASK_BTF), one helper call (~14 ns)
 * less */
static __always_inline u64 pg_current_ids(struct task_struct *tb) {
#ifdef PG_BTF_REGS
    /* volatile: else clang merges these loads with pg_copy_task's from the map copy into one
     * instruction, which the verifier refuses (one insn, two pointer types) */
    const char *t = (const char *)tb;
    return (u64) * (const volatile u32 *)(t + OFF_TASK_TGID) << 32 | *(const volatile u32 *)(t + OFF_TASK_PID);
#else
    return bpf_get_current_pid_tgid();
#endif
}

/* the syscall's arguments from the saved user registers; returns orig_ax (the syscall number).
 * x86_64 pt_regs from r10 on: r10 r9 r8 ax cx dx si di orig_ax (the loader checks this layout).
 * PG_BTF_REGS (kernels with bpf_task_pt_regs, 5.15): the registers through the task's BTF pointer
 * are plain loads, about 45 ns less per run than the two copies below (bpf_stats, the same
 * values on every event of a 2,287-event comparison) */
static __always_inline s64 pg_regs_args(char *task, struct task_struct *tb, u64 *a) {
#ifdef PG_BTF_REGS
    const u64 *r = (const u64 *)bpf_task_pt_regs(tb) + OFF_PT_REGS_R10 / 8;
#else
    char *stack = 0;
    u64 r[9] = {};
    RD(stack, task + OFF_TASK_STACK);
    if (!stack)
        return -1;
    bpf_probe_read_kernel(r, sizeof(r), stack + PG_THREAD_SIZE - SIZE_PT_REGS + OFF_PT_REGS_R10);
#endif
    a[0] = r[7];
    a[1] = r[6];
    a[2] = r[5];
    a[3] = r[0];
    a[4] = r[2];
    a[5] = r[1];
    return (s64)r[8];
}

/* The interest is tested as early as each check allows: the type's record and the call's result
 * first (array lookups, no helper), then the open's flags (in the registers), the process's name
 * before anything is read, the path once it is. The working directory calls (K_CWD) feed the process table, so they
 * are never dropped (flagged when unwanted). */
static __always_inline int pg_exit(const struct pg_sys_exit *ctx, u16 evt, int strmask, int kind, int fdtypes) {
    s64 ret = ctx->ret;
    if ((kind == K_ARGV1 || kind == K_ARGV2) && ret == 0)
        return 0; /* sched_process_exec emitted it */
    u32 switches;
    struct pg_itype *it = pg_itype(evt, &switches);
    u32 mode = pg_mode(it);
    if (kind == K_CWD) /* a constant: the checks are compiled out of these two programs */
        mode &= PG_IM_KEEP | PG_IM_FDTABLE;
    else if (!(mode & PG_IM_KEEP)) {
        pg_icount(evt, PG_IR_NO_RULE);
        return 0;
    }
    u64 m = ~0ull; /* the alternatives still possible: first those the result allows */
    if (kind != K_CWD && it && (mode & PG_IM_KEEP)) {
        m = it->res[ret >= 0];
        if (!m) {
            pg_icount(evt, PG_IR_FLAGS);
            return 0;
        }
    }
    struct pg_buf *b = pg_buffer();
    if (!b)
        return 0;
    /* the task is copied (pg_context reads the copy) once the event is kept when the type has
     * checks that may drop it, at once otherwise, where the copy also gives the ids (one helper
     * call less than bpf_get_current_pid_tgid) */
    int checked = mode & (PG_IM_PATH | PG_IM_COMM);
#ifdef PG_BTF_REGS
    char *task = checked ? 0 : (char *)bpf_get_current_task(); /* else fetched once kept */
#else
    char *task = (char *)bpf_get_current_task();
#endif
    struct task_struct *tb = PG_TASK_BTF();
    u64 pt = checked ? pg_current_ids(tb) : pg_copy_task(b, task);
    if ((pt >> 32) == SELF_TGID)
        return 0;
    if (!pt || pg_regs_args(task, tb, b->h.a) != ctx->nr) {
        pg_count(PG_CNT_BAD_REGS);
        return 0;
    }
    if (kind != K_CWD && it && (mode & PG_IM_KEEP)) {
        m &= it->acc[PG_ACCMODE(evt, b->h.a) & 3];
        if (!m) {
            pg_icount(evt, PG_IR_FLAGS);
            return 0;
        }
    }
    if (it && (mode & PG_IM_COMM) && (m & ~it->comm_free)) { /* else the name cannot narrow m */
        m &= it->comm_free | pg_comm_mask(b->d, evt, it->gen, switches, pt >> 32); /* d is free until strings */
        if (!m) {
            pg_icount(evt, PG_IR_COMM);
            return 0;
        }
    }
    pg_start(b);
    if (!(mode & PG_IM_KEEP))
        b->h.flags |= PG_FLAG_UNWANTED;
    /* the open family's path is its first item and only string (strmask: a[0] or a[1]; constant
     * tests: the check is compiled into those four programs only), checked before the context is
     * read, so a dropped open costs the registers, the path and its lookups: first from the copy
     * on the stack (pg_path_drops_fast), then in the record. The keys go past where strings reach. */
    if (strmask && PG_PATH_TYPE(evt) && it && (mode & PG_IM_PATH)) {
        const void *src = (const void *)b->h.a[(strmask & 1) ? 0 : 1];
        u64 w[PG_SHORT_STR / 8];
        u32 n = src ? pg_read_user_words(w, src) : 0;
        /* n through the record's memory (tgid, written later): pg_short_len leaves n a constant on
         * each of its ~120 paths, and the verifier would check what follows once per length
         * (764k instructions processed of its 1M limit; 119k this way, the gram pairs' loop in) */
        *(volatile u32 *)&b->h.tgid = n;
        n = *(volatile u32 *)&b->h.tgid;
        if (n && pg_path_drops_fast(w, n, evt, it, m)) {
            pg_icount(evt, PG_IR_PATH);
            return 0;
        }
        if (n) {
            pg_copy_words(&b->d[2], w);
            pg_put_len(b, 0, n);
            b->h.len = 2 + n;
        } else {
            pg_put_str(b, src, PG_STR_USER_LONG);
        }
        if (!(m & pg_path_mask(&b->d[PG_PAYLOAD - 256], &b->d[2], b->d[0] | (u32)b->d[1] << 8, evt, it, m))) {
            pg_icount(evt, PG_IR_PATH);
            return 0;
        }
    } else {
#pragma unroll
        for (int i = 0; i < 6; i++)
            if (strmask & (1 << i))
                pg_put_str(b, (const void *)b->h.a[i], PG_STR_USER);
    }
    if (!task)
        task = (char *)bpf_get_current_task();
    if (checked && !pg_copy_task(b, task)) {
        pg_count(PG_CNT_BAD_REGS);
        return 0;
    }
    pg_context(b, pt, evt);
    b->h.ret = ret;

    if (kind == K_ARGV1 || kind == K_ARGV2) {
        const char *const *argv = (const char *const *)b->h.a[kind == K_ARGV1 ? 1 : 2];
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const char *arg = 0;
            if (!argv || bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) < 0 || !arg)
                break;
            pg_put_str(b, arg, PG_STR_USER);
        }
    } else if (kind == K_OPENHOW) {
        pg_put_user(b, (const void *)b->h.a[2], 24);
    } else if (kind == K_CONNECT) {
        pg_put_user(b, (const void *)b->h.a[1], b->h.a[2] > 128 ? 128 : b->h.a[2]);
        if (ret == 0 || ret == -EINPROGRESS_)
            pg_put_sock(b, b->h.a[0]);
    } else if (kind == K_ACCEPT) {
        if (ret >= 0)
            pg_put_sock(b, (u64)ret);
    } else if (kind == K_SENDTO) {
        pg_put_user(b, (const void *)b->h.a[4], b->h.a[5] > 128 ? 128 : b->h.a[5]);
    } else if (kind == K_CLONE3) {
        pg_put_user(b, (const void *)b->h.a[0], 8);
    } else if (kind == K_PRCTL) {
        if (b->h.a[0] == 15) /* PR_SET_NAME */
            pg_put_str(b, (const void *)b->h.a[1], PG_STR_USER);
    } else if (kind == K_CAPSET) {
        pg_put_user(b, (const void *)b->h.a[1], 24);
    } else if (kind == K_CWD) {
        if (ret == 0)
            pg_put_path(b, task, 0);
    } else if (kind == K_FDPATH) {
        char *file = ret >= 0 ? pg_fd_file(task, (u64)ret) : 0;
        if (file)
            pg_put_path(b, task, file);
    } else if (kind == K_SOCK0) {
        pg_put_sock(b, b->h.a[0]);
#ifdef HAVE_close
    } else if (kind == K_CLOSE) {
        pg_put_close(b);
#endif
    }
#ifdef PG_FDTYPES
    if (fdtypes && (mode & PG_IM_FDTABLE))
        pg_put_fdtypes(b, task);
#endif
    pg_icount(evt, PG_IR_KEPT);
    return pg_submit(b);
}

/* FDTYPES_<type> is 1 for the events libs gives fd fields, 0 otherwise: a constant, so the walk is
 * compiled only into those programs, and run there only while the interest asks for it */
#define PG_SYSCALL(tp, evt, strmask, kind)                                                       \
    TRACEPOINT_PROBE(syscalls, sys_exit_##tp) {                                                  \
        return pg_exit((const struct pg_sys_exit *)args, evt, strmask, kind, FDTYPES_##tp);      \
    }

/* ---- libs' generic syscalls (PPME_GENERIC_X): one program for all of them ----------------
 * Every sys_exit_* tracepoint has the same format (nr, ret), so this one program serves every
 * syscall libs sends as its generic event: the loader (collectors/loader.py attach_generic)
 * fills generic_types, syscall number -> record type id, then attaches the program to the
 * sys_exit tracepoint of each one the rules ask for. 0 means not asked (id 0 is execve, never
 * generic). The record's header is all the decoder needs. */
#ifdef PG_GENERIC
BPF_ARRAY(generic_types, u16, PG_GENERIC_NRS);

int pg_generic_exit(struct pg_sys_exit *args) {
    int nr = args->nr;
    u16 *evt = generic_types.lookup(&nr);
    if (!evt || !*evt)
        return 0;
    return pg_exit(args, *evt, 0, K_NONE, 0);
}
#endif
/* ---- end of the generic syscalls ---------------------------------------------------------- */

/* successful exec: the new image's filename, argv and environment (from mm, one read each, each
 * cut at PG_MAX_STR as Falco cuts both at MAX_PROC_ARG_ENV), the working directory and the
 * image's inode */
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u64 pt = bpf_get_current_pid_tgid();
    if ((pt >> 32) == SELF_TGID)
        return 0;
    u32 old_tid = args->old_pid;
    struct pg_buf *b = pg_buffer();
    if (!b)
        return 0;
    char *task = (char *)bpf_get_current_task();
    u16 evt = pg_regs_args(task, PG_TASK_BTF(), b->h.a) == PG_NR_EXECVEAT ? EV_execveat : EV_execve;
    u64 copied = pg_copy_task(b, task);
    pg_start(b);
    pg_context(b, pt, evt);
    u8 *t = b->task;
    char *cred = copied ? PG_T(char *, OFF_TASK_CRED) : 0, *mm = 0;
    u64 fsids = 0;
    b->h.a[0] = b->h.a[1] = b->h.a[2] = 0;
    if (cred) {
#if defined(PG_EXE) && PG_CRED_HI - PG_CRED_LO <= 64
        u8 c[PG_CRED_HI - PG_CRED_LO] = {}; /* the capabilities and fsuid/fsgid in one read */
        bpf_probe_read_kernel(c, sizeof(c), cred + PG_CRED_LO);
        __builtin_memcpy(&b->h.a[0], &c[OFF_CRED_CAP_INHERITABLE - PG_CRED_LO], 8);
        __builtin_memcpy(&b->h.a[1], &c[OFF_CRED_CAP_PERMITTED - PG_CRED_LO], 8);
        __builtin_memcpy(&b->h.a[2], &c[OFF_CRED_CAP_EFFECTIVE - PG_CRED_LO], 8);
        __builtin_memcpy(&fsids, &c[OFF_CRED_FSUID - PG_CRED_LO], 4);
        __builtin_memcpy((u8 *)&fsids + 4, &c[OFF_CRED_FSGID - PG_CRED_LO], 4);
#else
        RD(b->h.a[0], cred + OFF_CRED_CAP_INHERITABLE);
        RD(b->h.a[1], cred + OFF_CRED_CAP_PERMITTED);
        RD(b->h.a[2], cred + OFF_CRED_CAP_EFFECTIVE);
#ifdef PG_EXE
        u32 fs[2] = {};
        RD(fs[0], cred + OFF_CRED_FSUID);
        RD(fs[1], cred + OFF_CRED_FSGID);
        fsids = fs[0] | (u64)fs[1] << 32;
#endif
#endif
    }
    u64 start = 0, end = 0, env = 0, env_end = 0;
    RD(mm, task + OFF_TASK_MM);
    if (mm) {
        RD(start, mm + OFF_MM_ARG_START);
        RD(end, mm + OFF_MM_ARG_END);
        RD(env, mm + OFF_MM_ENV_START);
        RD(env_end, mm + OFF_MM_ENV_END);
    }
    b->h.a[3] = end > start ? end - start : 0;
    b->h.a[4] = old_tid;
    b->h.a[5] = 0;
    b->h.pstart = pg_leader_start();
    pg_session(&b->h);
    pg_put_str(b, (char *)args + (args->data_loc_filename & 0xffff), PG_STR_KERNEL);
    pg_put_user(b, (const void *)start, b->h.a[3]);
    pg_put_path(b, task, 0);
    pg_put_user(b, (const void *)env, env_end > env ? env_end - env : 0);
#ifdef PG_EXE
    pg_put_exe(b, mm, fsids);
#endif
    pg_mark_wanted(b, evt);
    if (pg_emit(b)) { /* the process table takes the new comm from this record: so does pg_names */
        u32 tgid = pt >> 32;
        pg_names.update(&tgid, (struct pg_comm *)b->h.comm);
        pg_names_changed();
    }
    return 0;
}

/* a new process (threads are not processes): the process table forks its parent's record */
RAW_TRACEPOINT_PROBE(sched_process_fork) {
    u64 pt = bpf_get_current_pid_tgid();
    if ((pt >> 32) == SELF_TGID)
        return 0;
    char *child = (char *)ctx->args[1];
    u32 ctgid = 0, cpid = 0;
    RD(ctgid, child + OFF_TASK_TGID);
    RD(cpid, child + OFF_TASK_PID);
    if (ctgid != cpid)
        return 0;
    struct pg_buf *b = pg_buffer();
    if (!b)
        return 0;
    pg_copy_task(b, (char *)bpf_get_current_task());
    pg_start(b);
    pg_context(b, pt, PG_EVT_FORK);
    b->h.pstart = pg_leader_start();
    pg_session(&b->h);
    b->h.a[0] = ctgid;
    b->h.a[1] = 0;
    RD(b->h.a[1], child + OFF_TASK_START_BOOTTIME);
    b->h.a[2] = b->h.a[3] = b->h.a[4] = b->h.a[5] = 0;
    /* the process table copies the parent's record when it reads this record, else builds the
     * child's from /proc or its first event: pg_names follows, or forgets the tgid */
    int emitted = pg_emit(b);
    u32 tgid = pt >> 32;
    struct pg_comm *name = emitted ? pg_names.lookup(&tgid) : 0;
    if (name) {
        struct pg_comm copy = *name;
        pg_names.update(&ctgid, &copy);
    } else {
        pg_names.delete(&ctgid);
    }
    pg_names_changed(); /* a reused tgid's memo must not outlive its entry */
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pt = bpf_get_current_pid_tgid();
    if ((pt >> 32) == SELF_TGID || !args->group_dead)
        return 0;
    struct pg_buf *b = pg_buffer();
    if (!b)
        return 0;
    char *task = (char *)bpf_get_current_task();
    pg_copy_task(b, task);
    pg_start(b);
    pg_context(b, pt, EV_procexit);
    u32 code = 0;
    RD(code, task + OFF_TASK_EXIT_CODE);
    b->h.a[0] = code;
    b->h.a[1] = b->h.a[2] = b->h.a[3] = b->h.a[4] = b->h.a[5] = 0;
    u32 tgid = pt >> 32;
    pg_names.delete(&tgid);
    pg_names_changed();
    pg_mark_wanted(b, EV_procexit);
    return pg_submit(b);
}

/* tracepoint name, event id, string-argument mask, payload kind */
#ifdef HAVE_execve
PG_SYSCALL(execve, EV_execve, 0x1, K_ARGV1)
#endif
#ifdef HAVE_execveat
PG_SYSCALL(execveat, EV_execveat, 0x2, K_ARGV2)
#endif
#ifdef HAVE_open
PG_SYSCALL(open, EV_open, 0x1, K_NONE)
#endif
#ifdef HAVE_openat
PG_SYSCALL(openat, EV_openat, 0x2, K_NONE)
#endif
#ifdef HAVE_openat2
PG_SYSCALL(openat2, EV_openat2, 0x2, K_OPENHOW)
#endif
#ifdef HAVE_creat
PG_SYSCALL(creat, EV_creat, 0x1, K_NONE)
#endif
#ifdef HAVE_connect
PG_SYSCALL(connect, EV_connect, 0, K_CONNECT)
#endif
#ifdef HAVE_accept
PG_SYSCALL(accept, EV_accept, 0, K_ACCEPT)
#endif
#ifdef HAVE_accept4
PG_SYSCALL(accept4, EV_accept4, 0, K_ACCEPT)
#endif
#ifdef HAVE_listen
PG_SYSCALL(listen, EV_listen, 0, K_SOCK0)
#endif
#ifdef HAVE_socket
PG_SYSCALL(socket, EV_socket, 0, K_NONE)
#endif
#ifdef HAVE_setns
PG_SYSCALL(setns, EV_setns, 0, K_NONE)
#endif
#ifdef HAVE_unshare
PG_SYSCALL(unshare, EV_unshare, 0, K_NONE)
#endif
#ifdef HAVE_clone
PG_SYSCALL(clone, EV_clone, 0, K_NONE)
#endif
#ifdef HAVE_clone3
PG_SYSCALL(clone3, EV_clone3, 0, K_CLONE3)
#endif
#ifdef HAVE_fork
PG_SYSCALL(fork, EV_fork, 0, K_NONE)
#endif
#ifdef HAVE_vfork
PG_SYSCALL(vfork, EV_vfork, 0, K_NONE)
#endif
#ifdef HAVE_ptrace
PG_SYSCALL(ptrace, EV_ptrace, 0, K_NONE)
#endif
#ifdef HAVE_mount
PG_SYSCALL(mount, EV_mount, 0x7, K_NONE)
#endif
#ifdef HAVE_umount2
PG_SYSCALL(umount, EV_umount2, 0x1, K_NONE)
#endif
#ifdef HAVE_chmod
PG_SYSCALL(chmod, EV_chmod, 0x1, K_NONE)
#endif
#ifdef HAVE_fchmod
PG_SYSCALL(fchmod, EV_fchmod, 0, K_NONE)
#endif
#ifdef HAVE_fchmodat
PG_SYSCALL(fchmodat, EV_fchmodat, 0x2, K_NONE)
#endif
#ifdef HAVE_unlink
PG_SYSCALL(unlink, EV_unlink, 0x1, K_NONE)
#endif
#ifdef HAVE_unlinkat
PG_SYSCALL(unlinkat, EV_unlinkat, 0x2, K_NONE)
#endif
#ifdef HAVE_rmdir
PG_SYSCALL(rmdir, EV_rmdir, 0x1, K_NONE)
#endif
#ifdef HAVE_rename
PG_SYSCALL(rename, EV_rename, 0x3, K_NONE)
#endif
#ifdef HAVE_renameat
PG_SYSCALL(renameat, EV_renameat, 0xA, K_NONE)
#endif
#ifdef HAVE_renameat2
PG_SYSCALL(renameat2, EV_renameat2, 0xA, K_NONE)
#endif
#ifdef HAVE_symlink
PG_SYSCALL(symlink, EV_symlink, 0x3, K_NONE)
#endif
#ifdef HAVE_symlinkat
PG_SYSCALL(symlinkat, EV_symlinkat, 0x5, K_NONE)
#endif
#ifdef HAVE_link
PG_SYSCALL(link, EV_link, 0x3, K_NONE)
#endif
#ifdef HAVE_linkat
PG_SYSCALL(linkat, EV_linkat, 0xA, K_NONE)
#endif
#ifdef HAVE_mkdir
PG_SYSCALL(mkdir, EV_mkdir, 0x1, K_NONE)
#endif
#ifdef HAVE_mkdirat
PG_SYSCALL(mkdirat, EV_mkdirat, 0x2, K_NONE)
#endif
#ifdef HAVE_setuid
PG_SYSCALL(setuid, EV_setuid, 0, K_NONE)
#endif
#ifdef HAVE_setgid
PG_SYSCALL(setgid, EV_setgid, 0, K_NONE)
#endif
#ifdef HAVE_setresuid
PG_SYSCALL(setresuid, EV_setresuid, 0, K_NONE)
#endif
#ifdef HAVE_setresgid
PG_SYSCALL(setresgid, EV_setresgid, 0, K_NONE)
#endif
#ifdef HAVE_setreuid
PG_SYSCALL(setreuid, EV_setreuid, 0, K_NONE)
#endif
#ifdef HAVE_setregid
PG_SYSCALL(setregid, EV_setregid, 0, K_NONE)
#endif
#ifdef HAVE_bpf
PG_SYSCALL(bpf, EV_bpf, 0, K_NONE)
#endif
#ifdef HAVE_memfd_create
PG_SYSCALL(memfd_create, EV_memfd_create, 0x1, K_NONE)
#endif
#ifdef HAVE_dup
PG_SYSCALL(dup, EV_dup, 0, K_NONE)
#endif
#ifdef HAVE_dup2
PG_SYSCALL(dup2, EV_dup2, 0, K_NONE)
#endif
#ifdef HAVE_dup3
PG_SYSCALL(dup3, EV_dup3, 0, K_NONE)
#endif
#ifdef HAVE_init_module
PG_SYSCALL(init_module, EV_init_module, 0x4, K_NONE)
#endif
#ifdef HAVE_finit_module
PG_SYSCALL(finit_module, EV_finit_module, 0x2, K_NONE)
#endif
#ifdef HAVE_userfaultfd
PG_SYSCALL(userfaultfd, EV_userfaultfd, 0, K_NONE)
#endif
#ifdef HAVE_sendto
PG_SYSCALL(sendto, EV_sendto, 0, K_SENDTO)
#endif
#ifdef HAVE_sendmsg
PG_SYSCALL(sendmsg, EV_sendmsg, 0, K_NONE)
#endif
#ifdef HAVE_recvfrom
PG_SYSCALL(recvfrom, EV_recvfrom, 0, K_NONE)
#endif
#ifdef HAVE_recvmsg
PG_SYSCALL(recvmsg, EV_recvmsg, 0, K_NONE)
#endif
#ifdef HAVE_chdir
PG_SYSCALL(chdir, EV_chdir, 0x1, K_CWD)
#endif
#ifdef HAVE_fchdir
PG_SYSCALL(fchdir, EV_fchdir, 0, K_CWD)
#endif
#ifdef HAVE_open_by_handle_at
PG_SYSCALL(open_by_handle_at, EV_open_by_handle_at, 0, K_FDPATH)
#endif
#ifdef HAVE_kill
PG_SYSCALL(kill, EV_kill, 0, K_NONE)
#endif
#ifdef HAVE_close
PG_SYSCALL(close, EV_close, 0, K_CLOSE)
#endif
#ifdef HAVE_prctl
PG_SYSCALL(prctl, EV_prctl, 0, K_PRCTL)
#endif
#ifdef HAVE_capset
PG_SYSCALL(capset, EV_capset, 0, K_CAPSET)
#endif
