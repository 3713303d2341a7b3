/* collectors/ringread.c: read the probe's BPF ring buffer directly, as parsed records.
 *
 * The bcc path costs about 1.5 us per record before any decoding (libbcc calls a ctypes callback
 * per record, which copies it into a bytes object, which Python then unpacks). Here the ring is
 * mmapped once (consumer page read-write, producer page and the twice-mapped data read-only, as
 * libbpf maps it) and `Ring.drain()` walks every committed record in C, returning for each the
 * tuple `struct.unpack("<QQq6QQ10I4H16s", header) + (items,)`, where items is the list of the
 * record's payload items as bytes: exactly what collectors.decode builds in Python from the same
 * bytes (its `parse`), so both paths feed the same decoder. A header field equal to the previous
 * record's reuses that record's object (see Prev). Built by collectors/native.py.
 *
 * Limits: x86_64 and little-endian only (the probe's record layout); one consumer per ring.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RB_BUSY (1U << 31)
#define RB_DISCARD (1U << 30)
#define RB_HDR 8
#define PG_HDR 144
#define N_FIELDS 25 /* header fields; items are field 25 */

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Field i of the header: byte offset, size, kind (0 unsigned, 1 signed, 2 bytes). */
static const struct { uint8_t off, size, kind; } FIELDS[N_FIELDS] = {
    {0, 8, 0}, {8, 8, 0}, {16, 8, 1}, {24, 8, 0}, {32, 8, 0}, {40, 8, 0}, {48, 8, 0}, {56, 8, 0},
    {64, 8, 0}, {72, 8, 0}, {80, 4, 0}, {84, 4, 0}, {88, 4, 0}, {92, 4, 0}, {96, 4, 0}, {100, 4, 0},
    {104, 4, 0}, {108, 4, 0}, {112, 4, 0}, {116, 4, 0}, {120, 2, 0}, {122, 2, 0}, {124, 2, 0},
    {126, 2, 0}, {128, 16, 2},
};

/* The previous record's header and field objects: consecutive records mostly come from the same
 * process, so a field equal to the previous one reuses its (immutable) object instead of
 * allocating, and freeing, a new one. */
typedef struct {
    int valid;
    uint8_t raw[PG_HDR];
    PyObject *obj[N_FIELDS];
} Prev;

typedef struct {
    PyObject_HEAD
    void *cons_map;
    void *prod_map;
    size_t page;
    size_t data_size;
    uint64_t mask;
    PyObject *error; /* the exception class for malformed records */
    Prev prev;
} Ring;

static PyObject *field(const uint8_t *r, int i) {
    const uint8_t *p = r + FIELDS[i].off;
    switch (FIELDS[i].size) {
    case 8:
        if (FIELDS[i].kind)
            return PyLong_FromLongLong((long long)rd64(p));
        return PyLong_FromUnsignedLongLong(rd64(p));
    case 4:
        return PyLong_FromUnsignedLong(rd32(p));
    case 2:
        return PyLong_FromLong(rd16(p));
    default:
        return PyBytes_FromStringAndSize((const char *)p, FIELDS[i].size);
    }
}

/* one record -> the 26-tuple; NULL with an exception set on failure */
static PyObject *parse(PyObject *error, const uint8_t *r, uint32_t size, Prev *prev) {
    if (size < PG_HDR) {
        PyErr_Format(error, "record of %u bytes is shorter than the %d-byte header", size, PG_HDR);
        return NULL;
    }
    uint32_t len = rd16(r + 122);
    if (PG_HDR + len > size) {
        PyErr_Format(error, "record says %u payload bytes, has %u", len, size - PG_HDR);
        return NULL;
    }
    PyObject *t = PyTuple_New(N_FIELDS + 1);
    if (!t)
        return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *o;
        if (prev && prev->valid && !memcmp(r + FIELDS[i].off, prev->raw + FIELDS[i].off, FIELDS[i].size)) {
            o = Py_NewRef(prev->obj[i]);
        } else {
            o = field(r, i);
            if (!o) {
                if (prev)
                    prev->valid = 0; /* its objects no longer match its bytes */
                Py_DECREF(t);
                return NULL;
            }
            if (prev)
                Py_XSETREF(prev->obj[i], Py_NewRef(o));
        }
        PyTuple_SET_ITEM(t, i, o);
    }
    if (prev) {
        memcpy(prev->raw, r, PG_HDR);
        prev->valid = 1;
    }
    uint32_t end = PG_HDR + len, n_items = 0;
    for (uint32_t off = PG_HDR; off + 2 <= end; off += 2 + rd16(r + off))
        n_items++;
    PyObject *items = PyList_New(n_items);
    if (!items) {
        Py_DECREF(t);
        return NULL;
    }
    PyTuple_SET_ITEM(t, N_FIELDS, items);
    uint32_t off = PG_HDR;
    for (uint32_t k = 0; k < n_items; k++) {
        uint32_t n = rd16(r + off);
        uint32_t stop = off + 2 + n > end ? end : off + 2 + n;
        PyObject *b = PyBytes_FromStringAndSize((const char *)r + off + 2, stop - off - 2);
        if (!b) {
            Py_DECREF(t);
            return NULL;
        }
        PyList_SET_ITEM(items, k, b);
        off += 2 + n;
    }
    return t;
}

static PyObject *Ring_drain(Ring *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->cons_map) {
        PyErr_SetString(PyExc_ValueError, "ring is closed");
        return NULL;
    }
    volatile uint64_t *cons_pos = (volatile uint64_t *)self->cons_map;
    const uint64_t *prod_pos = (const uint64_t *)self->prod_map;
    const uint8_t *data = (const uint8_t *)self->prod_map + self->page;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    uint64_t cons = __atomic_load_n(cons_pos, __ATOMIC_ACQUIRE);
    uint64_t prod = __atomic_load_n(prod_pos, __ATOMIC_ACQUIRE);
    PyObject *failed = NULL;
    while (cons < prod) {
        const uint8_t *rec = data + (cons & self->mask);
        uint32_t hdr = __atomic_load_n((const uint32_t *)rec, __ATOMIC_ACQUIRE);
        if (hdr & RB_BUSY)
            break; /* reserved, not committed yet: the next drain takes it */
        uint32_t size = hdr & ~(RB_BUSY | RB_DISCARD);
        if (!(hdr & RB_DISCARD) && !failed) {
            PyObject *t = parse(self->error, rec + RB_HDR, size, &self->prev);
            if (!t || PyList_Append(out, t) < 0)
                failed = out; /* keep consuming: a malformed record must not wedge the ring */
            Py_XDECREF(t);
        }
        cons += ((uint64_t)size + RB_HDR + 7) & ~(uint64_t)7;
    }
    __atomic_store_n(cons_pos, cons, __ATOMIC_RELEASE);
    if (failed) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *Ring_pending(Ring *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->cons_map)
        return PyLong_FromLong(0);
    uint64_t cons = __atomic_load_n((uint64_t *)self->cons_map, __ATOMIC_ACQUIRE);
    uint64_t prod = __atomic_load_n((const uint64_t *)self->prod_map, __ATOMIC_ACQUIRE);
    return PyLong_FromUnsignedLongLong(prod - cons);
}

static void ring_unmap(Ring *self) {
    if (self->cons_map)
        munmap(self->cons_map, self->page);
    if (self->prod_map)
        munmap(self->prod_map, self->page + 2 * self->data_size);
    self->cons_map = self->prod_map = NULL;
}

static PyObject *Ring_close(Ring *self, PyObject *Py_UNUSED(ignored)) {
    ring_unmap(self);
    Py_RETURN_NONE;
}

static int Ring_init(Ring *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"map_fd", "data_size", "error", NULL};
    int fd;
    Py_ssize_t size;
    PyObject *error;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "inO", kw, &fd, &size, &error))
        return -1;
    ring_unmap(self);
    self->page = (size_t)sysconf(_SC_PAGESIZE);
    if (size <= 0 || (size & (size - 1)) || (size_t)size % self->page) {
        PyErr_Format(PyExc_ValueError, "ring data size %zd is not a power-of-two number of pages", size);
        return -1;
    }
    self->data_size = (size_t)size;
    self->mask = (uint64_t)size - 1;
    void *c = mmap(NULL, self->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (c == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    void *p = mmap(NULL, self->page + 2 * self->data_size, PROT_READ, MAP_SHARED, fd, (off_t)self->page);
    if (p == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        munmap(c, self->page);
        return -1;
    }
    self->cons_map = c;
    self->prod_map = p;
    Py_XSETREF(self->error, Py_NewRef(error));
    return 0;
}

static void prev_clear(Prev *prev) {
    for (int i = 0; i < N_FIELDS; i++)
        Py_CLEAR(prev->obj[i]);
    prev->valid = 0;
}

static void Ring_dealloc(Ring *self) {
    ring_unmap(self);
    prev_clear(&self->prev);
    Py_XDECREF(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Ring_methods[] = {
    {"drain", (PyCFunction)Ring_drain, METH_NOARGS, "every committed record, parsed, in ring order"},
    {"pending", (PyCFunction)Ring_pending, METH_NOARGS, "bytes written by the probe and not yet drained"},
    {"close", (PyCFunction)Ring_close, METH_NOARGS, "unmap the ring"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringread.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(map_fd, data_size, error): a BPF ring buffer read in place",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_methods = Ring_methods,
};

/* parse(raw, error): one record from bytes, as drain() parses it (tests compare it with Python's) */
static PyObject *parse_bytes(PyObject *Py_UNUSED(m), PyObject *args) {
    Py_buffer raw;
    PyObject *error;
    if (!PyArg_ParseTuple(args, "y*O", &raw, &error))
        return NULL;
    PyObject *t = parse(error, (const uint8_t *)raw.buf, (uint32_t)raw.len, NULL);
    PyBuffer_Release(&raw);
    return t;
}

static PyMethodDef module_methods[] = {
    {"parse", parse_bytes, METH_VARARGS, "parse(raw, error): one record, as Ring.drain() parses it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ringread", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit_ringread(void) {
    if (PyType_Ready(&RingType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
