/* collectors/openevent.c: the openat event built in C, the collector's most frequent event.
 *
 * `openat(h, table, current, epoch, num, abspath)` returns the same event list as collectors.decode
 * builds for an openat record in Python (`_openat` and the event literal of
 * `Decoder.decode_records`):
 *     [evt, ts + epoch, tid, proc, ret, [fd, dirfd, raw, flags, mode, None, None], fd_record, num]
 * `h` is a parsed record (collectors.decode.Record). The process is `table[tgid][0]` when that
 * entry's context key and cgroup equal the record's (ProcTable.entries), else `current(h)` (which
 * makes a new version). Paths that are absolute and already canonical
 * are used as they are; every other path goes through the Python `abspath` passed in, so the
 * normalisation rules live in one place. tests/ebpf/test_collector_openevent.py compares the two
 * builders. Built by collectors/native.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define H_TS 0
#define H_RET 2
#define H_A0 3
#define H_CGROUP 1
#define H_TGID 10
#define H_TID 11
#define H_CTX_FIRST 12 /* ppid, uid, gid, loginuid, tty: collectors.header H_CTX_FIRST..H_CTX_END */
#define H_CTX_END 17
#define H_EVT 20
#define H_ITEMS 25
#define O_DIRECTORY_ 0200000

static PyObject *str_d, *str_f, *str_empty;

static PyObject *u32_of(PyObject *v, int as_signed) {
    unsigned long long x = PyLong_AsUnsignedLongLongMask(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint32_t u = (uint32_t)x;
    return as_signed ? PyLong_FromLong((int32_t)u) : PyLong_FromUnsignedLong(u);
}

/* _str(it[0]) if it and it[0] else None; also whether the bytes are an absolute canonical path */
static PyObject *first_path(PyObject *items, int *canonical) {
    *canonical = 0;
    if (!PyList_Check(items) || PyList_GET_SIZE(items) == 0)
        Py_RETURN_NONE;
    PyObject *b = PyList_GET_ITEM(items, 0);
    if (!PyBytes_Check(b) || PyBytes_GET_SIZE(b) == 0)
        Py_RETURN_NONE;
    const char *s = PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    const char *nul = memchr(s, 0, (size_t)n);
    if (nul)
        n = nul - s;
    /* ASCII '/' and '.' survive a "replace" decoding unchanged, so the bytes can be checked */
    if (n > 0 && s[0] == '/') {
        *canonical = 1;
        for (Py_ssize_t i = 0; i + 1 < n; i++)
            if (s[i] == '/' && (s[i + 1] == '.' || s[i + 1] == '/')) {
                *canonical = 0;
                break;
            }
    }
    return PyUnicode_DecodeUTF8(s, n, "replace");
}

/* 1: the entry's record is current, 0: it is not, -1: error */
static int unchanged(PyObject *entry, PyObject *h) {
    if (!PyList_Check(entry) || PyList_GET_SIZE(entry) < 3)
        return 0;
    PyObject *ctx = PyList_GET_ITEM(entry, 1);
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != H_CTX_END - H_CTX_FIRST)
        return 0;
    for (int i = 0; i < H_CTX_END - H_CTX_FIRST; i++) {
        PyObject *was = PyTuple_GET_ITEM(ctx, i), *now = PyTuple_GET_ITEM(h, H_CTX_FIRST + i);
        int eq = PyObject_RichCompareBool(was, now, Py_EQ);
        if (eq <= 0)
            return eq;
    }
    return PyObject_RichCompareBool(PyList_GET_ITEM(entry, 2), PyTuple_GET_ITEM(h, H_CGROUP), Py_EQ);
}

/* ProcTable.current(h), with the unchanged-process case done here; a new reference */
static PyObject *current_process(PyObject *h, PyObject *table, PyObject *current) {
    PyObject *entry = PyDict_GetItemWithError(table, PyTuple_GET_ITEM(h, H_TGID));
    if (!entry && PyErr_Occurred())
        return NULL;
    if (entry) {
        int eq = unchanged(entry, h);
        if (eq < 0)
            return NULL;
        if (eq)
            return Py_NewRef(PyList_GET_ITEM(entry, 0));
    }
    return PyObject_CallOneArg(current, h);
}

static PyObject *openat_event(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "openat(h, table, current, epoch, num, abspath)");
        return NULL;
    }
    PyObject *h = args[0], *table = args[1], *current = args[2], *epoch = args[3], *num = args[4];
    PyObject *abspath = args[5];
    if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) <= H_ITEMS || !PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "h must be a parsed record and table a dict");
        return NULL;
    }
    PyObject *proc = current_process(h, table, current);
    if (!proc)
        return NULL;
    PyObject *ret = PyTuple_GET_ITEM(h, H_RET);
    PyObject *raw = NULL, *fd = NULL, *dirfd = NULL, *flags = NULL, *mode = NULL, *name = NULL;
    PyObject *ts = NULL, *a = NULL, *f = NULL, *ev = NULL;
    int canonical;

    raw = first_path(PyTuple_GET_ITEM(h, H_ITEMS), &canonical);
    if (!raw)
        goto done;
    int overflow = 0;
    long long r = PyLong_AsLongLongAndOverflow(ret, &overflow);
    if (r == -1 && PyErr_Occurred())
        goto done;
    if (!overflow && r >= INT32_MIN && r <= INT32_MAX)
        fd = Py_NewRef(ret);
    else
        fd = u32_of(ret, 1);
    dirfd = u32_of(PyTuple_GET_ITEM(h, H_A0), 1);
    flags = u32_of(PyTuple_GET_ITEM(h, H_A0 + 2), 0);
    mode = u32_of(PyTuple_GET_ITEM(h, H_A0 + 3), 0);
    if (!fd || !dirfd || !flags || !mode)
        goto done;
    if (raw == Py_None)
        name = Py_NewRef(str_empty);
    else if (canonical)
        name = Py_NewRef(raw);
    else {
        name = PyObject_CallFunctionObjArgs(abspath, proc, raw, dirfd, NULL);
        if (name == Py_None)
            Py_SETREF(name, Py_NewRef(str_empty));
    }
    if (!name)
        goto done;
    ts = PyNumber_Add(PyTuple_GET_ITEM(h, H_TS), epoch);
    if (!ts)
        goto done;
    unsigned long fl = PyLong_AsUnsignedLong(flags);
    a = PyList_New(7);
    f = PyList_New(12);
    ev = PyList_New(8);
    if (!a || !f || !ev) {
        Py_CLEAR(ev);
        goto done;
    }
    PyList_SET_ITEM(a, 0, Py_NewRef(fd));
    PyList_SET_ITEM(a, 1, Py_NewRef(dirfd));
    PyList_SET_ITEM(a, 2, Py_NewRef(raw));
    PyList_SET_ITEM(a, 3, Py_NewRef(flags));
    PyList_SET_ITEM(a, 4, Py_NewRef(mode));
    PyList_SET_ITEM(a, 5, Py_NewRef(Py_None));
    PyList_SET_ITEM(a, 6, Py_NewRef(Py_None));

    /* a failed open's fd.num is -1, its errno stays in the arguments (decode._file_fd says why) */
    PyList_SET_ITEM(f, 0, PyLong_AsLong(fd) < 0 ? PyLong_FromLong(-1) : Py_NewRef(fd));
    PyList_SET_ITEM(f, 1, Py_NewRef(fl & O_DIRECTORY_ ? str_d : str_f));
    PyList_SET_ITEM(f, 2, Py_NewRef(name));
    PyList_SET_ITEM(f, 3, Py_NewRef(raw));
    for (int i = 4; i < 9; i++)
        PyList_SET_ITEM(f, i, Py_NewRef(Py_None));
    for (int i = 9; i < 12; i++)
        PyList_SET_ITEM(f, i, Py_NewRef(Py_False));

    PyList_SET_ITEM(ev, 0, Py_NewRef(PyTuple_GET_ITEM(h, H_EVT)));
    PyList_SET_ITEM(ev, 1, Py_NewRef(ts));
    PyList_SET_ITEM(ev, 2, Py_NewRef(PyTuple_GET_ITEM(h, H_TID)));
    PyList_SET_ITEM(ev, 3, Py_NewRef(proc));
    PyList_SET_ITEM(ev, 4, Py_NewRef(ret));
    PyList_SET_ITEM(ev, 5, Py_NewRef(a));
    PyList_SET_ITEM(ev, 6, Py_NewRef(f));
    PyList_SET_ITEM(ev, 7, Py_NewRef(num));
done:
    Py_DECREF(proc);
    Py_XDECREF(raw);
    Py_XDECREF(fd);
    Py_XDECREF(dirfd);
    Py_XDECREF(flags);
    Py_XDECREF(mode);
    Py_XDECREF(name);
    Py_XDECREF(ts);
    Py_XDECREF(a);
    Py_XDECREF(f);
    return ev;
}

static PyMethodDef methods[] = {
    {"openat", (PyCFunction)(void (*)(void))openat_event, METH_FASTCALL,
     "openat(h, table, current, epoch, num, abspath): the event list of a parsed openat record"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "openevent", NULL, -1, methods};

PyMODINIT_FUNC PyInit_openevent(void) {
    str_d = PyUnicode_InternFromString("d");
    str_f = PyUnicode_InternFromString("f");
    str_empty = PyUnicode_InternFromString("");
    if (!str_d || !str_f || !str_empty)
        return NULL;
    return PyModule_Create(&module);
}
