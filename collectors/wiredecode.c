/* collectors/wiredecode.c: the fast path of `collectors.wire.Decoder`, one C pass per batch.
 *
 * A worker spends more time decoding batches than evaluating rules: msgpack makes some 25 objects
 * per event, Python then walks every record to check it and resolve its references, and the
 * previous batch's objects are freed. This decoder unpacks the msgpack envelope, checks the
 * records exactly as `wire._validate` does and resolves the references, in C. Strings are shared
 * through a cache kept across batches: an open event carries its path three times (argument,
 * fd.name, fd.nameraw), and most paths, names and command lines recur from batch to batch, so
 * most strings cost a hash and a compare instead of an allocation and a free.
 *
 * It decodes only what it is sure of: anything else (a map or extension type inside a record,
 * a value of an unexpected type, a record that `_validate` would refuse, trailing bytes, an
 * invalid UTF-8 string) returns None, and the caller decodes the batch with the Python
 * reference path, which then gives the same result or the precise WireError. So every accepted
 * batch equals what `wire.decode_batch` returns (tested differentially on fuzzed batches), and
 * no error message lives here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A direct-mapped cache of ASCII strings up to CACHE_MAX_LEN bytes: a colliding string replaces
 * the slot's, so memory stays bounded (at most CACHE_SLOTS strings) whatever the traffic. */
#define CACHE_BITS 15
#define CACHE_SLOTS (1u << CACHE_BITS)
#define CACHE_MAX_LEN 256
/* Records nest five deep (envelope, events, event, args, an argv list); deeper input is not ours. */
#define MAX_DEPTH 16
/* The eight required keys, then the optional "drops" (wire.py: what the node lost around the batch). */
#define N_REQUIRED 8
#define N_KEYS 9

static const char *const KEYS[N_KEYS] = {"v", "node", "boot_id", "seq", "t_first", "t_last", "procs", "events",
                                         "drops"};
enum { K_V, K_NODE, K_BOOT_ID, K_SEQ, K_T_FIRST, K_T_LAST, K_PROCS, K_EVENTS, K_DROPS };

typedef struct {
    uint64_t hash;
    PyObject *str;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *cache;
    long version;
    Py_ssize_t drops_len;
    long long max_drop_count;
    Py_ssize_t event_len, process_len, ev_type, ev_proc, ev_args, p_parent, p_container;
    /* EV_FDTYPES, the last event slot (absent in legacy events): null, or a bin of at most
     * fdtypes_max_len bytes each at most fdtypes_max_code (wire.fdtypes_ok) */
    Py_ssize_t ev_fdtypes, fdtypes_max_len, fdtypes_max_code;
    Py_ssize_t n_types;
    Py_ssize_t *n_params; /* per event type id */
    unsigned long long hits, misses;
} Decoder;

typedef struct {
    const uint8_t *p, *end;
} Reader;

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

/* Reads a length of `width` bytes after the type byte; -1 when the input ends first. */
static inline Py_ssize_t length(Reader *r, int width) {
    if (r->end - r->p < width)
        return -1;
    Py_ssize_t n = width == 1 ? r->p[0] : width == 2 ? be16(r->p) : (Py_ssize_t)be32(r->p);
    r->p += width;
    return n;
}

/* 64-bit multiplicative hash over 8-byte words; sets *ascii to whether every byte is < 0x80. */
static inline uint64_t hash_bytes(const uint8_t *s, Py_ssize_t n, int *ascii) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n, high = 0, w;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        high |= w;
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    if (i < n) {
        w = 0;
        memcpy(&w, s + i, (size_t)(n - i));
        high |= w;
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 32;
    }
    *ascii = (high & 0x8080808080808080ull) == 0;
    return h;
}

static PyObject *string(Decoder *d, Reader *r, Py_ssize_t n) {
    if (n < 0 || r->end - r->p < n)
        return NULL;
    const uint8_t *s = r->p;
    r->p += n;
    if (n == 0 || n > CACHE_MAX_LEN)
        return PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    int ascii;
    uint64_t h = hash_bytes(s, n, &ascii);
    if (!ascii)
        return PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    Slot *slot = &d->cache[h & (CACHE_SLOTS - 1)];
    if (slot->str != NULL && slot->hash == h && PyUnicode_GET_LENGTH(slot->str) == n &&
        memcmp(PyUnicode_1BYTE_DATA(slot->str), s, (size_t)n) == 0) {
        d->hits++;
        Py_INCREF(slot->str);
        return slot->str;
    }
    d->misses++;
    PyObject *made = PyUnicode_New(n, 127);
    if (made == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(made), s, (size_t)n);
    Py_XSETREF(slot->str, Py_NewRef(made));
    slot->hash = h;
    return made;
}

static PyObject *value(Decoder *d, Reader *r, int depth);

static PyObject *array(Decoder *d, Reader *r, Py_ssize_t n, int depth) {
    /* every element takes at least one byte: a longer count is a lie, refused before allocating */
    if (n < 0 || n > r->end - r->p || depth >= MAX_DEPTH)
        return NULL;
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = value(d, r, depth + 1);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *value(Decoder *d, Reader *r, int depth) {
    if (r->p >= r->end)
        return NULL;
    uint8_t b = *r->p++;
    if (b <= 0x7f)
        return PyLong_FromLong(b);
    if (b >= 0xe0)
        return PyLong_FromLong((int8_t)b);
    if ((b & 0xe0) == 0xa0)
        return string(d, r, b & 0x1f);
    if ((b & 0xf0) == 0x90)
        return array(d, r, b & 0x0f, depth);
    const uint8_t *p = r->p;
    Py_ssize_t left = r->end - p, n;
    switch (b) {
    case 0xc0:
        Py_RETURN_NONE;
    case 0xc2:
        Py_RETURN_FALSE;
    case 0xc3:
        Py_RETURN_TRUE;
    case 0xc4: case 0xc5: case 0xc6: /* bin 8/16/32 */
        n = length(r, b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4);
        if (n < 0 || r->end - r->p < n)
            return NULL;
        r->p += n;
        return PyBytes_FromStringAndSize((const char *)r->p - n, n);
    case 0xca: { /* float 32 */
        if (left < 4)
            return NULL;
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, 4);
        r->p += 4;
        return PyFloat_FromDouble(f);
    }
    case 0xcb: { /* float 64 */
        if (left < 8)
            return NULL;
        uint64_t u = be64(p);
        double f;
        memcpy(&f, &u, 8);
        r->p += 8;
        return PyFloat_FromDouble(f);
    }
    case 0xcc:
        if (left < 1) return NULL;
        r->p += 1;
        return PyLong_FromLong(p[0]);
    case 0xcd:
        if (left < 2) return NULL;
        r->p += 2;
        return PyLong_FromLong(be16(p));
    case 0xce:
        if (left < 4) return NULL;
        r->p += 4;
        return PyLong_FromUnsignedLong(be32(p));
    case 0xcf:
        if (left < 8) return NULL;
        r->p += 8;
        return PyLong_FromUnsignedLongLong(be64(p));
    case 0xd0:
        if (left < 1) return NULL;
        r->p += 1;
        return PyLong_FromLong((int8_t)p[0]);
    case 0xd1:
        if (left < 2) return NULL;
        r->p += 2;
        return PyLong_FromLong((int16_t)be16(p));
    case 0xd2:
        if (left < 4) return NULL;
        r->p += 4;
        return PyLong_FromLong((int32_t)be32(p));
    case 0xd3:
        if (left < 8) return NULL;
        r->p += 8;
        return PyLong_FromLongLong((int64_t)be64(p));
    case 0xd9: case 0xda: case 0xdb: /* str 8/16/32 */
        return string(d, r, length(r, b == 0xd9 ? 1 : b == 0xda ? 2 : 4));
    case 0xdc: case 0xdd: /* array 16/32 */
        n = length(r, b == 0xdc ? 2 : 4);
        return array(d, r, n, depth);
    default: /* maps, extension types and 0xc1: the Python path decides */
        return NULL;
    }
}

/* An exact int in [lo, hi); -2 (never a valid index) otherwise. */
static inline Py_ssize_t index_in(PyObject *x, Py_ssize_t lo, Py_ssize_t hi) {
    if (!PyLong_CheckExact(x))
        return -2;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow || v < lo || v >= hi)
        return -2;
    return (Py_ssize_t)v;
}

/* `_validate`'s process checks, its parent-cycle check, then the parent references resolved. */
static int resolve_procs(Decoder *d, PyObject *procs) {
    Py_ssize_t n = PyList_GET_SIZE(procs);
    Py_ssize_t *parent = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    char *state = PyMem_Calloc((size_t)(n ? n : 1), 1);
    Py_ssize_t *path = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    int ok = parent != NULL && state != NULL && path != NULL;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *p = PyList_GET_ITEM(procs, i);
        if (!PyList_CheckExact(p) || PyList_GET_SIZE(p) != d->process_len ||
            PyList_GET_ITEM(p, d->p_container) != Py_None) {
            ok = 0;
            break;
        }
        parent[i] = index_in(PyList_GET_ITEM(p, d->p_parent), -1, n);
        if (parent[i] == -2 || parent[i] == i)
            ok = 0;
    }
    /* parents must form a forest (0 unseen, 1 on the current path, 2 reaches a root) */
    for (Py_ssize_t start = 0; ok && start < n; start++) {
        Py_ssize_t len = 0, cur = start;
        while (cur != -1 && state[cur] == 0) {
            state[cur] = 1;
            path[len++] = cur;
            cur = parent[cur];
        }
        if (cur != -1 && state[cur] == 1)
            ok = 0;
        for (Py_ssize_t k = 0; k < len; k++)
            state[path[k]] = 2;
    }
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *p = PyList_GET_ITEM(procs, i);
        PyObject *ref = parent[i] == -1 ? Py_None : PyList_GET_ITEM(procs, parent[i]);
        PyObject *old = PyList_GET_ITEM(p, d->p_parent);
        PyList_SET_ITEM(p, d->p_parent, Py_NewRef(ref));
        Py_DECREF(old);
    }
    PyMem_Free(parent);
    PyMem_Free(state);
    PyMem_Free(path);
    return ok;
}

/* `wire.fdtypes_ok` on a present EV_FDTYPES value. */
static int fdtypes_ok(Decoder *d, PyObject *table) {
    if (table == Py_None)
        return 1;
    if (!PyBytes_CheckExact(table) || PyBytes_GET_SIZE(table) > d->fdtypes_max_len)
        return 0;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(table);
    for (Py_ssize_t i = 0, n = PyBytes_GET_SIZE(table); i < n; i++)
        if (b[i] > d->fdtypes_max_code)
            return 0;
    return 1;
}

/* `_resolve_events`: every event's shape (full or legacy length), type, process, argument count
 * and fd types; EV_PROC resolved. */
static int resolve_events(Decoder *d, PyObject *events, PyObject *procs) {
    Py_ssize_t n_procs = PyList_GET_SIZE(procs);
    for (Py_ssize_t i = 0, n = PyList_GET_SIZE(events); i < n; i++) {
        PyObject *ev = PyList_GET_ITEM(events, i);
        if (!PyList_CheckExact(ev))
            return 0;
        Py_ssize_t len = PyList_GET_SIZE(ev);
        if (len != d->event_len && len != d->ev_fdtypes)
            return 0;
        if (len == d->event_len && !fdtypes_ok(d, PyList_GET_ITEM(ev, d->ev_fdtypes)))
            return 0;
        Py_ssize_t type = index_in(PyList_GET_ITEM(ev, d->ev_type), 0, d->n_types);
        Py_ssize_t proc = index_in(PyList_GET_ITEM(ev, d->ev_proc), 0, n_procs);
        PyObject *args = PyList_GET_ITEM(ev, d->ev_args);
        if (type < 0 || proc < 0 || !PyList_CheckExact(args) || PyList_GET_SIZE(args) != d->n_params[type])
            return 0;
        PyObject *old = PyList_GET_ITEM(ev, d->ev_proc);
        PyList_SET_ITEM(ev, d->ev_proc, Py_NewRef(PyList_GET_ITEM(procs, proc)));
        Py_DECREF(old);
    }
    return 1;
}

static int key_of(Reader *r) {
    if (r->p >= r->end || (*r->p & 0xe0) != 0xa0)
        return -1;
    Py_ssize_t n = *r->p & 0x1f;
    if (r->end - r->p - 1 < n)
        return -1;
    for (int k = 0; k < N_KEYS; k++) {
        if ((size_t)n == strlen(KEYS[k]) && memcmp(r->p + 1, KEYS[k], (size_t)n) == 0) {
            r->p += 1 + n;
            return k;
        }
    }
    return -1;
}

/* `wire._check_drops`: drops_len exact ints, 0 <= first <= last (any int64 >= 0), counts in
 * [0, max_drop_count]. A value the node chose: anything else is left to the Python path's error. */
static int drops_ok(Decoder *d, PyObject *drops) {
    if (!PyList_CheckExact(drops) || PyList_GET_SIZE(drops) != d->drops_len)
        return 0;
    long long v[64];
    for (Py_ssize_t i = 0; i < d->drops_len; i++) {
        PyObject *x = PyList_GET_ITEM(drops, i);
        int overflow;
        if (!PyLong_CheckExact(x))
            return 0;
        v[i] = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (overflow || (v[i] == -1 && PyErr_Occurred()) || v[i] < 0)
            return 0;
        if (i >= 2 && v[i] > d->max_drop_count)
            return 0;
    }
    return v[0] <= v[1];
}

/* The envelope's fields by key, or 0 (nothing set) when the batch is not one this path decodes. */
static int envelope(Decoder *d, Reader *r, PyObject **field) {
    if (r->p >= r->end || (*r->p != (0x80 | N_REQUIRED) && *r->p != (0x80 | N_KEYS)))
        return 0;
    /* nine keys: the ninth can only be "drops", as the duplicate check leaves no other key free */
    int n_keys = *r->p & 0x0f;
    r->p++;
    for (int i = 0; i < n_keys; i++) {
        int k = key_of(r);
        if (k < 0 || field[k] != NULL)
            return 0;
        if ((field[k] = value(d, r, 1)) == NULL)
            return 0;
    }
    if (r->p != r->end)
        return 0;
    for (int k = 0; k < N_REQUIRED; k++)
        if (field[k] == NULL)
            return 0;
    if (field[K_DROPS] != NULL && !drops_ok(d, field[K_DROPS]))
        return 0;
    for (int k = K_SEQ; k <= K_T_LAST; k++)
        if (!PyLong_CheckExact(field[k]))
            return 0;
    if (!PyLong_CheckExact(field[K_V]) || PyLong_AsLong(field[K_V]) != d->version || PyErr_Occurred())
        return 0;
    if (!PyUnicode_CheckExact(field[K_NODE]) || PyUnicode_GET_LENGTH(field[K_NODE]) == 0 ||
        !PyUnicode_CheckExact(field[K_BOOT_ID]) || !PyList_CheckExact(field[K_PROCS]) ||
        !PyList_CheckExact(field[K_EVENTS]))
        return 0;
    return resolve_procs(d, field[K_PROCS]) && resolve_events(d, field[K_EVENTS], field[K_PROCS]);
}

static PyObject *Decoder_decode(Decoder *self, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    Reader r = {view.buf, (const uint8_t *)view.buf + view.len};
    PyObject *field[N_KEYS] = {NULL};
    int ok = envelope(self, &r, field);
    PyBuffer_Release(&view);
    PyObject *out = NULL;
    if (ok)
        out = PyTuple_Pack(9, field[K_NODE], field[K_BOOT_ID], field[K_SEQ], field[K_T_FIRST], field[K_T_LAST],
                           field[K_PROCS], field[K_EVENTS], field[K_V],
                           field[K_DROPS] != NULL ? field[K_DROPS] : Py_None);
    for (int k = 0; k < N_KEYS; k++)
        Py_XDECREF(field[k]);
    if (out != NULL)
        return out;
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError))
            return NULL;
        PyErr_Clear(); /* e.g. invalid UTF-8: the Python path reports it */
    }
    Py_RETURN_NONE;
}

static PyObject *Decoder_counts(Decoder *self, PyObject *unused) {
    return Py_BuildValue("(KK)", self->hits, self->misses);
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"version", "event_len", "process_len", "ev_type", "ev_proc", "ev_args",
                             "p_parent", "p_container", "n_params", "drops_len", "max_drop_count",
                             "ev_fdtypes", "fdtypes_max_len", "fdtypes_max_code", NULL};
    PyObject *n_params;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "lnnnnnnnO!nLnnn", kwlist, &self->version, &self->event_len,
                                     &self->process_len, &self->ev_type, &self->ev_proc, &self->ev_args,
                                     &self->p_parent, &self->p_container, &PyTuple_Type, &n_params,
                                     &self->drops_len, &self->max_drop_count, &self->ev_fdtypes,
                                     &self->fdtypes_max_len, &self->fdtypes_max_code))
        return -1;
    if (self->ev_fdtypes != self->event_len - 1 || self->fdtypes_max_len < 0 || self->fdtypes_max_code < 0 ||
        self->fdtypes_max_code > 255) {
        PyErr_SetString(PyExc_ValueError, "fd types slot or bounds out of range");
        return -1;
    }
    if (self->drops_len < 2 || self->drops_len > 64) {
        PyErr_SetString(PyExc_ValueError, "drops_len out of range");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(n_params);
    Py_ssize_t slots[] = {self->ev_type, self->ev_proc, self->ev_args};
    for (int i = 0; i < 3; i++)
        if (slots[i] < 0 || slots[i] >= self->event_len) {
            PyErr_SetString(PyExc_ValueError, "event slot out of range");
            return -1;
        }
    if (self->p_parent < 0 || self->p_parent >= self->process_len || self->p_container < 0 ||
        self->p_container >= self->process_len) {
        PyErr_SetString(PyExc_ValueError, "process slot out of range");
        return -1;
    }
    PyMem_Free(self->n_params);
    self->n_params = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (self->cache == NULL)
        self->cache = PyMem_Calloc(CACHE_SLOTS, sizeof(Slot));
    if (self->n_params == NULL || self->cache == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        self->n_params[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(n_params, i));
        if (self->n_params[i] == -1 && PyErr_Occurred())
            return -1;
    }
    self->n_types = n;
    return 0;
}

static void Decoder_dealloc(Decoder *self) {
    if (self->cache != NULL) {
        for (unsigned i = 0; i < CACHE_SLOTS; i++)
            Py_XDECREF(self->cache[i].str);
        PyMem_Free(self->cache);
    }
    PyMem_Free(self->n_params);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_O,
     "decode(data) -> (node, boot_id, seq, t_first, t_last, procs, events, v, drops or None), or None: decode "
     "with Python"},
    {"counts", (PyCFunction)Decoder_counts, METH_NOARGS, "(string cache hits, misses) since the decoder was made"},
    {NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wiredecode.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decoder(version, event_len, process_len, ev_type, ev_proc, ev_args, p_parent, p_container, n_params, "
              "drops_len, max_drop_count, ev_fdtypes, fdtypes_max_len, fdtypes_max_code)",
    .tp_methods = Decoder_methods,
    .tp_init = (initproc)Decoder_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef wiredecode_module = {PyModuleDef_HEAD_INIT, "wiredecode", NULL, -1, NULL};

PyMODINIT_FUNC PyInit_wiredecode(void) {
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&wiredecode_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
