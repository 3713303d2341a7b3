/* rules/gate.c: the batch prefilter of the rule engine, one C loop over a batch of events.
 *
 * On a busy node almost every event matches no rule, and the generated Python still spends about
 * ten interpreted lines per event to find that out. `Gate.select(events)` runs first and keeps
 * only the events some rule could match; the generated code then runs on those alone. What
 * "could match" means is decided in Python (rules/gate.py builds the programs): per event type,
 * a few record reads (a slot, a name resolved live, every ancestor's field, several slots of one
 * record as a tuple), each paired with a dict (`rules.operators.Memo`) mapping the read's value
 * to a bit mask of the type's rules whose tests on that read pass. An event survives when the
 * AND of its masks is not zero. The values' masks are computed by Python on first sight and
 * remembered, so a value seen before costs one dict lookup here.
 *
 * Soundness over speed: a record not shaped as the paths expect (not a list or tuple, an index
 * out of range) or a type id that is not a plain int in range keeps the event, so the generated
 * code sees it and behaves exactly as it would without the gate (including raising). A value
 * that cannot be looked up (unhashable) or whose mask cannot be computed skips that one test,
 * which only lets more events through. Only an event whose type has no rule at all, or whose
 * masks AND to zero, is left out.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* memmem */
#include <Python.h>
#include <string.h>
#include <stdint.h>

#define MAX_TYPES 1024 /* a sanity bound: rules.record has 280 types, 219 of them libs' generic syscalls */
#define MAX_STEPS 6
/* Every ROUND events of a type its tests are reordered, most rules ruled out first; when more
 * than KEEP_SHARE of them survived, the next BYPASS events of that type skip the tests: on such
 * a type (connect, where most events pass some rule's tests) the tests cost more than the
 * generated code they would spare. */
#define ROUND 1024
#define KEEP_SHARE 0.75
#define BYPASS 16384
/* Rejected values remembered per test before starting over: paths that occur once would
 * otherwise grow it without bound. */
#define REJECTS_MAX 8192

enum { DROP = 0, KEEP = 1, TEST = 2 };

typedef struct {
    uint64_t cleared; /* rules this test ruled out lately: tests are reordered by it */
    uint64_t bit;     /* this test's bit in ProcSlot.done when it reads through the process only */
    int nsteps;
    Py_ssize_t index[MAX_STEPS];
    Py_ssize_t arg[MAX_STEPS]; /* a plain step: 1 when (x or EMPTY)[i], a falsy container reading as
                                  None; an ANCESTORS step: the parent slot */
    PyObject *memo;          /* dict (subclass): value -> int mask */
    /* Optional, for a string field: on a memo miss, a str value in none of these (exact set,
     * prefix, suffix and substring tuples) gets `rejected` without asking Python or being
     * remembered. */
    PyObject *exact, *prefixes, *suffixes, *contains;
    int ascii; /* every affix is ASCII: an ASCII value is compared byte by byte */
    uint64_t rejected;
    PyObject *rejects; /* values found to have none of the affixes, so the check runs once each */
} Test;

/* What a type's tests that read only through the process record found for one process: the
 * AND of their masks (`mask`) over the tests already run (`done`). Valid during one select()
 * call (`gen`), while the batch keeps the record alive: the events of a batch come from few
 * processes, so each process test runs about once per process and batch. */
typedef struct {
    PyObject *proc;
    uint64_t mask, done;
    unsigned long long gen;
} ProcSlot;
#define PROC_SLOTS 64

typedef struct {
    int state;
    int ntests;
    Test *tests;
    ProcSlot slots[PROC_SLOTS];
    /* Adaptation, which never changes a result (any order of the tests and keeping every event
     * are both sound): counts over the current round of ROUND events, and how many events of
     * this type still bypass the tests because they let most events through. */
    uint32_t seen, kept, bypass;
} Program;

typedef struct {
    PyObject_HEAD
    unsigned long long seen, kept, tested; /* events given, events kept, tests run: counts() */
    unsigned long long gen;                /* select() calls so far: ProcSlot validity */
    int busy;                              /* inside select(): see Gate_select */
    Py_ssize_t proc_index;                 /* EV_PROC: where an event holds its process record */
    uint64_t first_steps;                  /* event slots any test reads through: prefetched */
    int ntypes;
    PyObject *names; /* dict: IP text -> DNS name, read live by RESOLVE steps; or NULL */
    Program *programs; /* ntypes of them, by event type id */
} Gate;

#define RESOLVE (-1) /* a step that replaces the value read so far with names.get(value) */
/* (ANCESTORS, parent slot), then one last step (field, 0): the value read so far is a process
 * record, and the value becomes the tuple of that field of each strict ancestor, parent first,
 * at most MAX_ANCESTORS (rules.fields._ancestor_nodes: proc.aname without an index). */
#define ANCESTORS (-2)
#define MAX_ANCESTORS 64
/* (FIELDS, count + FIELDS_LENIENT * lenient), then `count` last steps (slot, 0): the value read
 * so far is a record, and the value becomes the tuple of those slots (a list slot as a tuple);
 * a missing record (None or empty, when lenient) gives a tuple of None. */
#define FIELDS (-3)
#define FIELDS_LENIENT 256

static void Gate_dealloc(Gate *self) {
    for (int t = 0; t < self->ntypes; t++) {
        Program *p = &self->programs[t];
        for (int i = 0; i < p->ntests; i++) {
            Test *test = &p->tests[i];
            Py_XDECREF(test->memo);
            Py_XDECREF(test->exact);
            Py_XDECREF(test->prefixes);
            Py_XDECREF(test->suffixes);
            Py_XDECREF(test->contains);
            Py_XDECREF(test->rejects);
        }
        PyMem_Free(p->tests);
    }
    PyMem_Free(self->programs);
    Py_XDECREF(self->names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One test: (((index, lenient), ...), memo) or (steps, memo, (exact, prefixes, suffixes,
 * contains), rejected mask) */
static int parse_test(PyObject *item, Test *test) {
    PyObject *path, *memo, *affixes = NULL;
    unsigned long long rejected = 0;
    if (!PyTuple_Check(item) ||
        !PyArg_ParseTuple(item, "O!O!|O!K", &PyTuple_Type, &path, &PyDict_Type, &memo, &PyTuple_Type, &affixes,
                          &rejected)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a test is (path tuple, dict[, affixes, mask])");
        return -1;
    }
    if (affixes != NULL) {
        PyObject *exact, *prefixes, *suffixes, *contains;
        if (!PyArg_ParseTuple(affixes, "O!O!O!O!", &PyFrozenSet_Type, &exact, &PyTuple_Type, &prefixes,
                              &PyTuple_Type, &suffixes, &PyTuple_Type, &contains))
            return -1;
        PyObject *parts[3] = {prefixes, suffixes, contains};
        test->ascii = 1;
        for (int k = 0; k < 3; k++)
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(parts[k]); j++) {
                PyObject *affix = PyTuple_GET_ITEM(parts[k], j);
                if (!PyUnicode_CheckExact(affix)) {
                    PyErr_SetString(PyExc_TypeError, "affixes are str");
                    return -1;
                }
                if (!PyUnicode_IS_ASCII(affix)) test->ascii = 0;
            }
        Py_INCREF(exact);
        Py_INCREF(prefixes);
        Py_INCREF(suffixes);
        Py_INCREF(contains);
        test->exact = exact;
        test->prefixes = prefixes;
        test->suffixes = suffixes;
        test->contains = contains;
        test->rejected = (uint64_t)rejected;
        test->rejects = PyDict_New();
        if (test->rejects == NULL) return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(path);
    if (n < 1 || n > MAX_STEPS) {
        PyErr_Format(PyExc_ValueError, "a path has 1 to %d steps, not %zd", MAX_STEPS, n);
        return -1;
    }
    for (Py_ssize_t s = 0; s < n; s++) {
        Py_ssize_t index, arg;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(path, s), "nn", &index, &arg)) return -1;
        int bad = index < FIELDS || (index < 0 && s == 0) || (index == ANCESTORS && (s != n - 2 || arg < 0)) ||
                  (index == FIELDS && (arg % FIELDS_LENIENT < 2 || s + 1 + arg % FIELDS_LENIENT != n));
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "a path index is not negative, RESOLVE, ANCESTORS and FIELDS come "
                                              "after a read, ANCESTORS before the last step, FIELDS before its slots");
            return -1;
        }
        test->index[s] = index;
        test->arg[s] = arg;
    }
    test->nsteps = (int)n;
    Py_INCREF(memo);
    test->memo = memo;
    return 0;
}

/* Gate(programs, names, proc_index): programs[t] is None (no rule for type t: drop), True
 * (keep every event of type t) or a tuple of tests; names is a dict or None (then no RESOLVE
 * step); proc_index is where an event record holds its process record. */
static int Gate_init(Gate *self, PyObject *args, PyObject *kwds) {
    PyObject *programs, *names;
    if (!PyArg_ParseTuple(args, "O!On", &PyTuple_Type, &programs, &names, &self->proc_index)) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(programs);
    if (n > MAX_TYPES || self->programs != NULL) {
        PyErr_Format(PyExc_ValueError, "at most %d event types, given once", MAX_TYPES);
        return -1;
    }
    self->programs = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(Program));
    if (self->programs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (names != Py_None) {
        if (!PyDict_CheckExact(names)) {
            PyErr_SetString(PyExc_TypeError, "names is a dict or None");
            return -1;
        }
        Py_INCREF(names);
        self->names = names;
    }
    for (Py_ssize_t t = 0; t < n; t++) {
        PyObject *entry = PyTuple_GET_ITEM(programs, t);
        Program *p = &self->programs[t];
        self->ntypes = (int)t + 1;
        if (entry == Py_None) {
            p->state = DROP;
        } else if (entry == Py_True) {
            p->state = KEEP;
        } else if (PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) > 0) {
            Py_ssize_t k = PyTuple_GET_SIZE(entry);
            p->tests = PyMem_Calloc((size_t)k, sizeof(Test));
            if (p->tests == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            for (Py_ssize_t i = 0; i < k; i++) {
                if (parse_test(PyTuple_GET_ITEM(entry, i), &p->tests[i]) < 0) return -1;
                p->ntests = (int)i + 1;
                for (int s = 0; s < p->tests[i].nsteps; s++)
                    if (p->tests[i].index[s] == RESOLVE && self->names == NULL) {
                        PyErr_SetString(PyExc_ValueError, "a RESOLVE step needs names");
                        return -1;
                    }
            }
            for (int i = 0; i < p->ntests && i < 64; i++) {
                Test *test = &p->tests[i];
                if (test->nsteps >= 2 && test->index[0] == self->proc_index) test->bit = (uint64_t)1 << i;
                if (test->nsteps >= 2 && test->index[0] < 64) self->first_steps |= (uint64_t)1 << test->index[0];
            }
            p->state = TEST;
        } else {
            PyErr_Format(PyExc_TypeError, "program of type %zd is None, True or a non-empty tuple", t);
            return -1;
        }
    }
    return 0;
}

/* Item i of a list or tuple, borrowed; NULL when `v` is neither or too short. */
static PyObject *item_of(PyObject *v, Py_ssize_t i) {
    if (PyList_CheckExact(v)) return i < PyList_GET_SIZE(v) ? PyList_GET_ITEM(v, i) : NULL;
    if (PyTuple_CheckExact(v)) return i < PyTuple_GET_SIZE(v) ? PyTuple_GET_ITEM(v, i) : NULL;
    return NULL;
}

/* proc.aname's value: field `field` of each strict ancestor of `proc`, a new tuple; NULL when a
 * record is not shaped as expected (the generated code would raise: keep the event). */
static PyObject *ancestors(PyObject *proc, Py_ssize_t parent_slot, Py_ssize_t field) {
    PyObject *found[MAX_ANCESTORS];
    int n = 0;
    PyObject *node = item_of(proc, parent_slot);
    if (node == NULL) return NULL;
    while (node != Py_None && n < MAX_ANCESTORS) {
        PyObject *value = item_of(node, field);
        PyObject *next = item_of(node, parent_slot);
        if (value == NULL || next == NULL) return NULL;
        found[n++] = value;
        node = next;
    }
    PyObject *out = PyTuple_New(n);
    if (out == NULL) {
        PyErr_Clear();
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        Py_INCREF(found[k]);
        PyTuple_SET_ITEM(out, k, found[k]);
    }
    return out;
}

/* The tuple of `count` slots (indexes at `slots`) of `record`, lists as tuples; a new reference,
 * NULL when the record is not shaped as expected. */
static PyObject *fields_of(PyObject *record, const Py_ssize_t *slots, Py_ssize_t count, int lenient) {
    int missing = record == Py_None || (PyList_CheckExact(record) && PyList_GET_SIZE(record) == 0) ||
                  (PyTuple_CheckExact(record) && PyTuple_GET_SIZE(record) == 0);
    if (missing && !lenient) return NULL;
    PyObject *out = PyTuple_New(count);
    if (out == NULL) {
        PyErr_Clear();
        return NULL;
    }
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *value = missing ? Py_None : item_of(record, slots[j]);
        if (value == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (PyList_CheckExact(value)) {
            value = PyList_AsTuple(value);
            if (value == NULL) {
                PyErr_Clear();
                Py_DECREF(out);
                return NULL;
            }
        } else {
            Py_INCREF(value);
        }
        PyTuple_SET_ITEM(out, j, value);
    }
    return out;
}

/* The value a test reads, borrowed, or a new reference left in *owned for the caller to
 * release; NULL when the record is not shaped as expected. */
static PyObject *read_path(const Gate *self, PyObject *ev, const Test *test, PyObject **owned) {
    PyObject *v = ev;
    *owned = NULL;
    for (int s = 0; s < test->nsteps; s++) {
        Py_ssize_t size;
        if (test->index[s] == RESOLVE) { /* names.get(v) if v is not None else None */
            if (v == Py_None) continue;
            PyObject *name = PyDict_GetItemWithError(self->names, v);
            if (name == NULL && PyErr_Occurred()) {
                PyErr_Clear();
                return NULL;
            }
            v = name == NULL ? Py_None : name;
            continue;
        }
        if (test->index[s] == ANCESTORS) {
            *owned = ancestors(v, test->arg[s], test->index[s + 1]);
            return *owned;
        }
        if (test->index[s] == FIELDS) {
            Py_ssize_t count = test->arg[s] % FIELDS_LENIENT;
            *owned = fields_of(v, &test->index[s + 1], count, test->arg[s] >= FIELDS_LENIENT);
            return *owned;
        }
        PyObject **items;
        if (PyList_CheckExact(v)) {
            size = PyList_GET_SIZE(v);
            items = ((PyListObject *)v)->ob_item;
        } else if (PyTuple_CheckExact(v)) {
            size = PyTuple_GET_SIZE(v);
            items = ((PyTupleObject *)v)->ob_item;
        } else if (v == Py_None && test->arg[s]) {
            continue; /* (None or EMPTY)[i] is None */
        } else {
            return NULL;
        }
        if (size == 0 && test->arg[s]) {
            v = Py_None;
            continue;
        }
        if (test->index[s] >= size) return NULL;
        v = items[test->index[s]];
    }
    return v;
}

/* 1 when the str `value` has one of the test's affixes (or the check failed: then assume so). */
static int has_affix(const Test *test, PyObject *value) {
    int found = PySet_Contains(test->exact, value);
    if (found != 0) return 1; /* an error counts as found */
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (test->ascii && PyUnicode_IS_ASCII(value)) { /* paths: bytes, without a call per affix */
        const char *text = (const char *)PyUnicode_1BYTE_DATA(value);
        for (int side = 0; side < 2; side++) {
            PyObject *affixes = side == 0 ? test->prefixes : test->suffixes;
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(affixes); j++) {
                PyObject *affix = PyTuple_GET_ITEM(affixes, j);
                Py_ssize_t k = PyUnicode_GET_LENGTH(affix);
                if (k <= n && memcmp(side == 0 ? text : text + n - k, PyUnicode_1BYTE_DATA(affix), (size_t)k) == 0)
                    return 1;
            }
        }
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(test->contains); j++) {
            PyObject *needle = PyTuple_GET_ITEM(test->contains, j);
            if (memmem(text, (size_t)n, PyUnicode_1BYTE_DATA(needle), (size_t)PyUnicode_GET_LENGTH(needle)) != NULL)
                return 1;
        }
        return 0;
    }
    for (int side = 0; side < 2; side++) {
        PyObject *affixes = side == 0 ? test->prefixes : test->suffixes;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(affixes); j++) {
            found = (int)PyUnicode_Tailmatch(value, PyTuple_GET_ITEM(affixes, j), 0, n, side == 0 ? -1 : 1);
            if (found != 0) return 1;
        }
    }
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(test->contains); j++) {
        if (PyUnicode_Find(value, PyTuple_GET_ITEM(test->contains, j), 0, n, 1) != -1) return 1;
    }
    return 0;
}

/* Bits set in x, without relying on a popcount instruction the build flags do not assume. */
static inline uint64_t bit_count(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (x * 0x0101010101010101ULL) >> 56;
}

/* The mask the test's memo gives `value` into *bits: 1, or 0 (error cleared) when the value
 * cannot be looked up (unhashable) or its mask not computed, so the caller skips the test. */
static int lookup(const Test *test, PyObject *value, uint64_t *bits) {
    PyObject *found = PyDict_GetItemWithError(test->memo, value);
    if (found != NULL) {
        *bits = PyLong_AsUnsignedLongLongMask(found);
    } else {
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (test->exact != NULL && PyUnicode_CheckExact(value)) {
            /* a str's hash is cached and lookups cannot fail */
            if (PyDict_GetItem(test->rejects, value) != NULL) {
                *bits = test->rejected;
                return 1;
            }
            if (!has_affix(test, value)) {
                PyErr_Clear();
                if (PyDict_GET_SIZE(test->rejects) >= REJECTS_MAX) PyDict_Clear(test->rejects);
                if (PyDict_SetItem(test->rejects, value, Py_None) < 0) PyErr_Clear();
                *bits = test->rejected;
                return 1;
            }
        }
        PyErr_Clear();
        /* first sight: the memo's __missing__ computes and remembers the mask */
        Py_INCREF(value);
        found = PyObject_GetItem(test->memo, value);
        Py_DECREF(value);
        if (found == NULL) {
            PyErr_Clear();
            return 0;
        }
        *bits = PyLong_AsUnsignedLongLongMask(found);
        Py_DECREF(found);
    }
    if (*bits == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* Once per round: tests that ruled out more rules go first (insertion sort: a dozen tests);
 * old counts fade. */
static void adapt(Program *p) {
    for (int i = 1; i < p->ntests; i++) {
        Test moving = p->tests[i];
        int j = i - 1;
        while (j >= 0 && p->tests[j].cleared < moving.cleared) {
            p->tests[j + 1] = p->tests[j];
            j--;
        }
        p->tests[j + 1] = moving;
    }
    for (int i = 0; i < p->ntests; i++) p->tests[i].cleared /= 2;
    if (p->kept > KEEP_SHARE * p->seen) p->bypass = BYPASS;
    p->seen = p->kept = 0;
}

/* The event's process record, borrowed, or NULL when the event has none where expected. */
static PyObject *process_of(const Gate *self, PyObject *ev) {
    if (PyList_CheckExact(ev)) {
        return self->proc_index < PyList_GET_SIZE(ev) ? PyList_GET_ITEM(ev, self->proc_index) : NULL;
    }
    return self->proc_index < PyTuple_GET_SIZE(ev) ? PyTuple_GET_ITEM(ev, self->proc_index) : NULL;
}

static int run_tests(Gate *self, Program *p, PyObject *ev) {
    PyObject *proc = process_of(self, ev);
    ProcSlot *slot = proc == NULL ? NULL : &p->slots[((uintptr_t)proc >> 4) % PROC_SLOTS];
    if (slot != NULL && (slot->gen != self->gen || slot->proc != proc)) {
        slot->proc = proc;
        slot->gen = self->gen;
        slot->mask = ~(uint64_t)0;
        slot->done = 0;
    }
    uint64_t mask = slot == NULL ? ~(uint64_t)0 : slot->mask;
    if (mask == 0) return 0;
    for (int i = 0; i < p->ntests; i++) {
        Test *test = &p->tests[i];
        if (slot != NULL && (slot->done & test->bit)) continue; /* already in the slot's mask */
        self->tested++;
        PyObject *owned;
        PyObject *value = read_path(self, ev, test, &owned);
        if (value == NULL) return 1;
        uint64_t bits;
        int ok;
        if (PyList_CheckExact(value)) { /* a list of strings (proc.env): keyed as a tuple */
            PyObject *key = PyList_AsTuple(value);
            ok = key != NULL && lookup(test, key, &bits);
            Py_XDECREF(key);
            PyErr_Clear();
        } else {
            ok = lookup(test, value, &bits);
        }
        Py_XDECREF(owned);
        if (!ok) continue;
        if (slot != NULL && test->bit) {
            slot->mask &= bits;
            slot->done |= test->bit;
        }
        test->cleared += bit_count(mask & ~bits);
        mask &= bits;
        if (mask == 0) return 0;
    }
    return 1;
}

/* 1 keep, 0 leave out. Never fails: trouble keeps the event. */
static int decide(Gate *self, PyObject *ev) {
    PyObject *t;
    if (PyList_CheckExact(ev) && PyList_GET_SIZE(ev) > 0) {
        t = PyList_GET_ITEM(ev, 0);
    } else if (PyTuple_CheckExact(ev) && PyTuple_GET_SIZE(ev) > 0) {
        t = PyTuple_GET_ITEM(ev, 0);
    } else {
        return 1;
    }
    if (!PyLong_CheckExact(t)) return 1;
    int overflow;
    long id = PyLong_AsLongAndOverflow(t, &overflow);
    if (overflow || id < 0 || id >= self->ntypes) return 1;
    Program *p = &self->programs[id];
    if (p->state != TEST) return p->state == KEEP;
    if (p->bypass > 0) {
        p->bypass--;
        return 1;
    }
    int keep = run_tests(self, p, ev);
    p->kept += (uint32_t)keep;
    if (++p->seen == ROUND) adapt(p);
    return keep;
}

/* The gate is bound by memory latency: each event's records sit in their own cache lines. So
 * while deciding event i, the records of later events are fetched ahead, level by level: the
 * event list 8 ahead, its item array 4 ahead, the records it points to (process, fd, args) 2
 * ahead, and their item arrays 1 ahead. Prefetching never faults; an object read here to find
 * the next address is only read after its own line was asked for. */
static inline void prefetch(const Gate *self, PyObject **items, Py_ssize_t i, Py_ssize_t n) {
    if (i + 8 < n) __builtin_prefetch(items[i + 8]);
    if (i + 4 < n && PyList_CheckExact(items[i + 4])) __builtin_prefetch(((PyListObject *)items[i + 4])->ob_item);
    for (int ahead = 2; ahead >= 1; ahead--) {
        if (i + ahead >= n || !PyList_CheckExact(items[i + ahead])) continue;
        PyObject *ev = items[i + ahead];
        Py_ssize_t size = PyList_GET_SIZE(ev);
        for (Py_ssize_t k = 0; k < size && k < 64; k++) {
            if (!(self->first_steps >> k & 1)) continue;
            PyObject *record = PyList_GET_ITEM(ev, k);
            if (ahead == 2)
                __builtin_prefetch(record);
            else if (PyList_CheckExact(record))
                __builtin_prefetch(((PyListObject *)record)->ob_item);
        }
    }
}

static PyObject *Gate_select(Gate *self, PyObject *events) {
    /* A mask's Python may let another thread run: one calling select() on this gate meanwhile
     * would share its process slots and counts, so it keeps every event instead (sound). */
    if (self->busy) return PySequence_List(events);
    PyObject *seq = PySequence_Fast(events, "events must be iterable");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    self->gen++; /* process slots of earlier calls no longer count: their records may be gone */
    self->busy = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = items[i];
        prefetch(self, items, i, n);
        if (decide(self, ev) && PyList_Append(out, ev) < 0) {
            self->busy = 0;
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
    }
    self->busy = 0;
    self->seen += (unsigned long long)n;
    self->kept += (unsigned long long)PyList_GET_SIZE(out);
    Py_DECREF(seq);
    return out;
}

static PyObject *Gate_counts(Gate *self, PyObject *unused) {
    return Py_BuildValue("KKK", self->seen, self->kept, self->tested);
}

static PyMethodDef Gate_methods[] = {
    {"select", (PyCFunction)Gate_select, METH_O,
     "select(events) -> list: the events, in order, that some rule could match"},
    {"counts", (PyCFunction)Gate_counts, METH_NOARGS,
     "counts() -> (events given, events kept, field tests run), since the gate was made"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gate.Gate",
    .tp_basicsize = sizeof(Gate),
    .tp_dealloc = (destructor)Gate_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Gate(programs, names): per event type, which events some rule could match",
    .tp_methods = Gate_methods,
    .tp_init = (initproc)Gate_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef gate_module = {PyModuleDef_HEAD_INIT, "gate", NULL, -1, NULL};

PyMODINIT_FUNC PyInit_gate(void) {
    if (PyType_Ready(&GateType) < 0) return NULL;
    PyObject *m = PyModule_Create(&gate_module);
    if (m == NULL) return NULL;
    Py_INCREF(&GateType);
    if (PyModule_AddObject(m, "Gate", (PyObject *)&GateType) < 0) {
        Py_DECREF(&GateType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
