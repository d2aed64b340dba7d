/* The external term format codec of py_nodes, in C: the fast path of py_nodes._codec.
 *
 * It handles the terms that make up distribution traffic (atoms, integers, floats,
 * binaries, lists, tuples, maps, pids, references) and hands everything else to the
 * pure-Python codec, which stays the reference: a tag or a Python type this file does
 * not know is decoded / encoded by the pure code for that one sub-term, and a term
 * nested deeper than C_DEPTH, or any error other than DecodeError / EncodeError, makes
 * the whole term go through the pure code again.  So the results are the pure codec's
 * results, and the C recursion never goes deeper than C_DEPTH.
 *
 * _codec.py calls setup() once with the Python types and helpers this file builds on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define C_DEPTH 200 /* the pure decoder's recursive depth too: deeper terms go to it */
#define VERSION 131
#define INLINE_OUT 512
#if PY_VERSION_HEX >= 0x030D0000
#define BYTEARRAY_EXC , 1 /* 3.13 added with_exceptions */
#else
#define BYTEARRAY_EXC
#endif

typedef struct {
    PyObject *DecodeError, *EncodeError, *TooDeep;
    PyTypeObject *Atom, *Pid, *Reference, *ImproperList;
    PyObject *cache_utf8, *cache_latin1; /* bytes -> Atom / True / False */
    PyObject *make_atom;                 /* (raw, utf8) -> atom, or DecodeError */
    PyObject *decode_tag;                /* (buf, pos, depth) -> (term, end): one sub-term */
    PyObject *encode_sub;                /* (term, depth) -> bytearray: one sub-term */
    PyObject *py_decode, *py_decode_prefix, *py_encode; /* whole-term fallbacks */
    PyObject *freeze, *disambiguate, *improper, *as_bytes;
    PyObject *atom_true, *atom_false; /* Atom("true") / Atom("false") for node names */
    PyObject *ext_true, *ext_false, *ext_undefined;
    Py_ssize_t atom_ext, pid_node, pid_id, pid_serial, pid_creation;
    Py_ssize_t ref_node, ref_creation, ref_ids, imp_items, imp_tail;
    PyObject *layouts; /* type -> bytes: the offsets of its __slots__, for make() */
    int ready;
} State;

static State S;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* ------------------------------------------------------------------------------------------ */
/* Decoder */

typedef struct {
    const unsigned char *b;
    Py_ssize_t n;
    PyObject *obj; /* the bytes object b points into */
} Buf;

static PyObject *dec(Buf *B, Py_ssize_t *pos, int depth);

static PyObject *
fail(const char *msg)
{
    PyErr_SetString(S.DecodeError, msg);
    return NULL;
}

#define NEED(k, what)                                                                   \
    do {                                                                                \
        if (B->n - *pos < (Py_ssize_t)(k))                                              \
            return fail("truncated " what);                                             \
    } while (0)

static inline uint32_t
rd32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t
rd16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* Atoms by their raw bytes, direct-mapped, in front of the pure codec's atom caches: a hit
 * costs no bytes object.  A slot holds its atom, which keeps it in the intern table, so an
 * entry never goes stale. */
#define ATOM_SLOTS 4096
static struct {
    PyObject *raw; /* bytes */
    PyObject *atom;
    int utf8;
} atom_slots[ATOM_SLOTS];

static PyObject *
atom_at(Buf *B, Py_ssize_t start, Py_ssize_t len, int utf8)
{
    const unsigned char *p = B->b + start;
    uint32_t h = 2166136261u ^ (uint32_t)utf8; /* FNV-1a */
    for (Py_ssize_t k = 0; k < len; k++)
        h = (h ^ p[k]) * 16777619u;
    h ^= h >> 15;
    PyObject *cached = atom_slots[h % ATOM_SLOTS].raw;
    if (cached != NULL && atom_slots[h % ATOM_SLOTS].utf8 == utf8
        && PyBytes_GET_SIZE(cached) == len && memcmp(PyBytes_AS_STRING(cached), p, len) == 0) {
        PyObject *a = atom_slots[h % ATOM_SLOTS].atom;
        Py_INCREF(a);
        return a;
    }
    PyObject *key = PyBytes_FromStringAndSize((const char *)p, len);
    if (key == NULL)
        return NULL;
    PyObject *a = PyDict_GetItemWithError(utf8 ? S.cache_utf8 : S.cache_latin1, key);
    if (a != NULL) {
        Py_INCREF(a);
    }
    else if (!PyErr_Occurred()) {
        a = PyObject_CallFunctionObjArgs(S.make_atom, key, utf8 ? Py_True : Py_False, NULL);
    }
    if (a == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_XSETREF(atom_slots[h % ATOM_SLOTS].raw, key); /* the slot takes the key */
    Py_INCREF(a);
    Py_XSETREF(atom_slots[h % ATOM_SLOTS].atom, a);
    atom_slots[h % ATOM_SLOTS].utf8 = utf8;
    return a;
}

/* An atom tag and its body at *pos (any of the four atom encodings). */
static PyObject *
dec_atom(Buf *B, Py_ssize_t *pos, unsigned char tag)
{
    Py_ssize_t len;
    if (tag == 119 || tag == 115) {
        NEED(1, "atom");
        len = B->b[*pos];
        *pos += 1;
    }
    else {
        NEED(2, "atom");
        len = rd16(B->b + *pos);
        *pos += 2;
    }
    NEED(len, "atom");
    PyObject *a = atom_at(B, *pos, len, tag == 119 || tag == 118);
    if (a != NULL)
        *pos += len;
    return a;
}

/* An atom where the format requires one (node names): true / false stay atoms. */
static PyObject *
read_node(Buf *B, Py_ssize_t *pos)
{
    NEED(1, "node name");
    unsigned char tag = B->b[*pos];
    if (tag != 119 && tag != 118 && tag != 115 && tag != 100) {
        PyErr_Format(S.DecodeError, "expected an atom, got tag %d", tag);
        return NULL;
    }
    *pos += 1;
    PyObject *a = dec_atom(B, pos, tag);
    if (a == Py_True || a == Py_False) {
        PyObject *named = a == Py_True ? S.atom_true : S.atom_false;
        Py_DECREF(a);
        Py_INCREF(named);
        return named;
    }
    return a;
}

static PyObject *
new_slotted(PyTypeObject *tp)
{
    return tp->tp_alloc(tp, 0);
}

/* A pid or reference holds only an atom, ints and a tuple of ints: it can never be part
   of a reference cycle, so the cyclic collector need not track it. A node holding 10^5
   processes holds several of them per process, and each full collection would walk them
   all. */
static PyObject *
new_leaf(PyTypeObject *tp)
{
    PyObject *obj = tp->tp_alloc(tp, 0);
    if (obj != NULL && PyObject_GC_IsTracked(obj))
        PyObject_GC_UnTrack(obj);
    return obj;
}

static PyObject *
dec_pid(Buf *B, Py_ssize_t *pos)
{
    PyObject *node = read_node(B, pos);
    if (node == NULL)
        return NULL;
    if (B->n - *pos < 12) {
        Py_DECREF(node);
        return fail("truncated pid");
    }
    const unsigned char *p = B->b + *pos;
    PyObject *pid = new_leaf(S.Pid);
    PyObject *i = PyLong_FromUnsignedLong(rd32(p));
    PyObject *s = PyLong_FromUnsignedLong(rd32(p + 4));
    PyObject *c = PyLong_FromUnsignedLong(rd32(p + 8));
    if (pid == NULL || i == NULL || s == NULL || c == NULL) {
        Py_XDECREF(pid);
        Py_XDECREF(i);
        Py_XDECREF(s);
        Py_XDECREF(c);
        Py_DECREF(node);
        return NULL;
    }
    SLOT(pid, S.pid_node) = node;
    SLOT(pid, S.pid_id) = i;
    SLOT(pid, S.pid_serial) = s;
    SLOT(pid, S.pid_creation) = c;
    *pos += 12;
    return pid;
}

/* NEWER_REFERENCE_EXT (creation 32 bits) or NEW_REFERENCE_EXT (creation 8 bits). */
static PyObject *
dec_ref(Buf *B, Py_ssize_t *pos, int newer)
{
    NEED(2, "reference");
    Py_ssize_t n = rd16(B->b + *pos);
    if (n > 5)
        return fail("bad reference length");
    *pos += 2;
    PyObject *node = read_node(B, pos);
    if (node == NULL)
        return NULL;
    Py_ssize_t csize = newer ? 4 : 1;
    if (B->n - *pos < csize + 4 * n) {
        Py_DECREF(node);
        return fail("truncated reference");
    }
    const unsigned char *p = B->b + *pos;
    PyObject *ref = new_leaf(S.Reference);
    PyObject *creation = PyLong_FromUnsignedLong(newer ? rd32(p) : p[0]);
    PyObject *ids = PyTuple_New(n);
    if (ref == NULL || creation == NULL || ids == NULL)
        goto error;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *id = PyLong_FromUnsignedLong(rd32(p + csize + 4 * k));
        if (id == NULL)
            goto error;
        PyTuple_SET_ITEM(ids, k, id);
    }
    SLOT(ref, S.ref_node) = node;
    SLOT(ref, S.ref_creation) = creation;
    SLOT(ref, S.ref_ids) = ids;
    *pos += csize + 4 * n;
    return ref;
error:
    Py_XDECREF(ref);
    Py_XDECREF(creation);
    Py_XDECREF(ids);
    Py_DECREF(node);
    return NULL;
}

static PyObject *
dec_big(Buf *B, Py_ssize_t *pos, Py_ssize_t n)
{
    NEED(1, "big integer");
    int negative = B->b[*pos] != 0;
    *pos += 1;
    NEED(n, "big integer");
    PyObject *v = _PyLong_FromByteArray(B->b + *pos, (size_t)n, 1, 0);
    if (v == NULL)
        return NULL;
    *pos += n;
    if (negative) {
        PyObject *neg = PyNumber_Negative(v);
        Py_DECREF(v);
        return neg;
    }
    return v;
}

static int
too_deep(int depth)
{
    if (depth >= C_DEPTH) {
        PyErr_SetNone(S.TooDeep);
        return 1;
    }
    return 0;
}

static PyObject *
dec_tuple(Buf *B, Py_ssize_t *pos, Py_ssize_t n, int depth)
{
    if (too_deep(depth))
        return NULL;
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *x = dec(B, pos, depth + 1);
        if (x == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, x);
    }
    return t;
}

static PyObject *
dec_list(Buf *B, Py_ssize_t *pos, int depth)
{
    NEED(4, "list");
    Py_ssize_t n = rd32(B->b + *pos);
    *pos += 4;
    if (n > B->n - *pos)
        return fail("list length larger than the input");
    if (too_deep(depth))
        return NULL;
    PyObject *items = PyList_New(n);
    if (items == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *x = dec(B, pos, depth + 1);
        if (x == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        PyList_SET_ITEM(items, k, x);
    }
    NEED(1, "list");
    if (B->b[*pos] == 106) {
        *pos += 1;
        return items;
    }
    PyObject *tail = dec(B, pos, depth + 1);
    if (tail == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    PyObject *r;
    if (n > 0 && !PyList_CheckExact(tail) && !Py_IS_TYPE(tail, S.ImproperList)) {
        /* [alias | Ref] and the like: ImproperList(tuple(items), tail) */
        r = new_slotted(S.ImproperList);
        PyObject *t = r ? PyList_AsTuple(items) : NULL;
        if (t == NULL) {
            Py_CLEAR(r);
            Py_DECREF(tail);
        }
        else {
            SLOT(r, S.imp_items) = t;
            SLOT(r, S.imp_tail) = tail;
        }
    }
    else { /* tails that merge into the list: the pure code's rules */
        r = PyObject_CallFunctionObjArgs(S.improper, items, tail, NULL);
        Py_DECREF(tail);
    }
    Py_DECREF(items);
    return r;
}

/* A map whose keys Python equality merges: its pairs again, for _disambiguate. */
static PyObject *
dec_map_pairs(Buf *B, Py_ssize_t *pos, Py_ssize_t n, int depth)
{
    PyObject *pairs = PyList_New(n);
    if (pairs == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *key = dec(B, pos, depth + 1);
        PyObject *v = key ? dec(B, pos, depth + 1) : NULL;
        PyObject *pair = v ? PyTuple_Pack(2, key, v) : NULL;
        Py_XDECREF(key);
        Py_XDECREF(v);
        if (pair == NULL) {
            Py_DECREF(pairs);
            return NULL;
        }
        PyList_SET_ITEM(pairs, k, pair);
    }
    PyObject *d = PyObject_CallOneArg(S.disambiguate, pairs);
    Py_DECREF(pairs);
    return d;
}

static PyObject *
dec_map(Buf *B, Py_ssize_t *pos, int depth)
{
    NEED(4, "map");
    Py_ssize_t n = rd32(B->b + *pos);
    *pos += 4;
    Py_ssize_t start = *pos;
    if (n > (B->n - *pos) >> 1)
        return fail("map size larger than the input");
    if (too_deep(depth))
        return NULL;
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *key = dec(B, pos, depth + 1);
        PyObject *v = key ? dec(B, pos, depth + 1) : NULL;
        int rc = v ? PyDict_SetItem(d, key, v) : -1;
        if (rc < 0 && v != NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear(); /* an unhashable key (a list or map): freeze it */
            PyObject *frozen = PyObject_CallOneArg(S.freeze, key);
            rc = frozen ? PyDict_SetItem(d, frozen, v) : -1;
            Py_XDECREF(frozen);
        }
        Py_XDECREF(key);
        Py_XDECREF(v);
        if (rc < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    if (PyDict_GET_SIZE(d) != n) {
        Py_DECREF(d);
        *pos = start;
        return dec_map_pairs(B, pos, n, depth);
    }
    return d;
}

/* A tag this file leaves to the pure decoder, for this one sub-term. */
static PyObject *
dec_deferred(Buf *B, Py_ssize_t *pos, int depth)
{
    PyObject *r = PyObject_CallFunction(S.decode_tag, "Oni", B->obj, *pos, depth);
    if (r == NULL)
        return NULL;
    Py_ssize_t end;
    if (!PyTuple_CheckExact(r) || PyTuple_GET_SIZE(r) != 2
        || (end = PyLong_AsSsize_t(PyTuple_GET_ITEM(r, 1))) < 0) {
        Py_DECREF(r);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "bad sub-term decoder result");
        return NULL;
    }
    if (end > B->n || end <= *pos) {
        Py_DECREF(r);
        return fail("truncated term");
    }
    PyObject *term = PyTuple_GET_ITEM(r, 0);
    Py_INCREF(term);
    Py_DECREF(r);
    *pos = end;
    return term;
}

static PyObject *
dec(Buf *B, Py_ssize_t *pos, int depth)
{
    NEED(1, "term");
    const unsigned char tag = B->b[*pos];
    *pos += 1;
    switch (tag) {
    case 97: /* SMALL_INTEGER_EXT */
        NEED(1, "integer");
        *pos += 1;
        return PyLong_FromLong(B->b[*pos - 1]);
    case 98: /* INTEGER_EXT */
        NEED(4, "integer");
        *pos += 4;
        return PyLong_FromLong((int32_t)rd32(B->b + *pos - 4));
    case 119: /* SMALL_ATOM_UTF8_EXT */
    case 118: /* ATOM_UTF8_EXT */
    case 115: /* SMALL_ATOM_EXT */
    case 100: /* ATOM_EXT */
        return dec_atom(B, pos, tag);
    case 104: /* SMALL_TUPLE_EXT */
        NEED(1, "tuple");
        *pos += 1;
        return dec_tuple(B, pos, B->b[*pos - 1], depth);
    case 105: { /* LARGE_TUPLE_EXT */
        NEED(4, "tuple");
        Py_ssize_t n = rd32(B->b + *pos);
        *pos += 4;
        if (n > B->n - *pos)
            return fail("tuple arity larger than the input");
        return dec_tuple(B, pos, n, depth);
    }
    case 106: /* NIL_EXT */
        return PyList_New(0);
    case 107: { /* STRING_EXT */
        NEED(2, "string");
        Py_ssize_t n = rd16(B->b + *pos);
        *pos += 2;
        NEED(n, "string");
        PyObject *l = PyList_New(n);
        if (l == NULL)
            return NULL;
        for (Py_ssize_t k = 0; k < n; k++)
            PyList_SET_ITEM(l, k, PyLong_FromLong(B->b[*pos + k])); /* cached small ints */
        *pos += n;
        return l;
    }
    case 108: /* LIST_EXT */
        return dec_list(B, pos, depth);
    case 109: { /* BINARY_EXT */
        NEED(4, "binary");
        Py_ssize_t n = rd32(B->b + *pos);
        *pos += 4;
        NEED(n, "binary");
        *pos += n;
        return PyBytes_FromStringAndSize((const char *)B->b + *pos - n, n);
    }
    case 116: /* MAP_EXT */
        return dec_map(B, pos, depth);
    case 88: /* NEW_PID_EXT */
        return dec_pid(B, pos);
    case 90: /* NEWER_REFERENCE_EXT */
        return dec_ref(B, pos, 1);
    case 114: /* NEW_REFERENCE_EXT */
        return dec_ref(B, pos, 0);
    case 70: { /* NEW_FLOAT_EXT */
        NEED(8, "float");
        double f = PyFloat_Unpack8((const char *)B->b + *pos, 0);
        if (f == -1.0 && PyErr_Occurred())
            return NULL;
        if (!isfinite(f))
            return fail("float is not finite");
        *pos += 8;
        return PyFloat_FromDouble(f);
    }
    case 110: /* SMALL_BIG_EXT */
        NEED(1, "big integer");
        *pos += 1;
        return dec_big(B, pos, B->b[*pos - 1]);
    case 111: { /* LARGE_BIG_EXT */
        NEED(4, "big integer");
        Py_ssize_t n = rd32(B->b + *pos);
        *pos += 4;
        return dec_big(B, pos, n);
    }
    default:
        *pos -= 1;
        return dec_deferred(B, pos, depth);
    }
}

/* Decode the term at pos (its version byte included), within buf[:limit].  NULL with
 * DecodeError set, or NULL with nothing set: then the caller asks the pure decoder. */
static PyObject *
dec_top(PyObject *buf, Py_ssize_t pos, Py_ssize_t limit, Py_ssize_t *end)
{
    Buf B = {(const unsigned char *)PyBytes_AS_STRING(buf), limit, buf};
    if (B.n - pos < 2 || B.b[pos] != VERSION || B.b[pos + 1] == 80)
        return NULL; /* errors and compressed terms: the pure decoder */
    pos += 1;
    PyObject *term = dec(&B, &pos, 0);
    if (term == NULL && !PyErr_ExceptionMatches(S.DecodeError))
        PyErr_Clear(); /* too deep, or a failure of the pure code: redo it all there */
    *end = pos;
    return term;
}

static PyObject *
bytes_arg(PyObject *data)
{
    if (PyBytes_CheckExact(data)) {
        Py_INCREF(data);
        return data;
    }
    return PyObject_CallOneArg(S.as_bytes, data);
}

static PyObject *
c_decode(PyObject *self, PyObject *data)
{
    PyObject *buf = bytes_arg(data);
    if (buf == NULL)
        return NULL;
    Py_ssize_t end = 0;
    PyObject *term = dec_top(buf, 0, PyBytes_GET_SIZE(buf), &end);
    if (term == NULL) {
        if (!PyErr_Occurred())
            term = PyObject_CallOneArg(S.py_decode, buf);
    }
    else if (end != PyBytes_GET_SIZE(buf)) {
        PyErr_Format(S.DecodeError, "%zd trailing bytes after the term",
                     PyBytes_GET_SIZE(buf) - end);
        Py_CLEAR(term);
    }
    Py_DECREF(buf);
    return term;
}

static PyObject *
c_decode_prefix(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "decode_prefix(data, offset=0)");
        return NULL;
    }
    Py_ssize_t offset = 0;
    if (nargs == 2) {
        offset = PyLong_AsSsize_t(args[1]);
        if (offset == -1 && PyErr_Occurred())
            return NULL;
    }
    PyObject *buf = bytes_arg(args[0]);
    if (buf == NULL)
        return NULL;
    PyObject *r = NULL;
    if (offset < 0 || offset >= PyBytes_GET_SIZE(buf)) {
        PyErr_SetString(S.DecodeError, "offset out of range");
    }
    else {
        Py_ssize_t end = 0;
        PyObject *term = dec_top(buf, offset, PyBytes_GET_SIZE(buf), &end);
        if (term != NULL) {
            r = Py_BuildValue("(Nn)", term, end);
        }
        else if (!PyErr_Occurred()) {
            PyObject *off = PyLong_FromSsize_t(offset);
            if (off != NULL)
                r = PyObject_CallFunctionObjArgs(S.py_decode_prefix, buf, off, NULL);
            Py_XDECREF(off);
        }
    }
    Py_DECREF(buf);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoder */

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
    unsigned char inline_buf[INLINE_OUT];
} Out;

static int
grow(Out *o, Py_ssize_t k)
{
    if (o->cap - o->len >= k)
        return 0;
    if (k > PY_SSIZE_T_MAX / 2 - o->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = (o->len + k) * 2;
    unsigned char *p;
    if (o->p == o->inline_buf) {
        p = PyMem_Malloc(cap);
        if (p != NULL)
            memcpy(p, o->p, o->len);
    }
    else {
        p = PyMem_Realloc(o->p, cap);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->p = p;
    o->cap = cap;
    return 0;
}

static inline int
put(Out *o, const void *src, Py_ssize_t k)
{
    if (grow(o, k) < 0)
        return -1;
    memcpy(o->p + o->len, src, k);
    o->len += k;
    return 0;
}

static inline void
wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline int
put_tag32(Out *o, unsigned char tag, uint32_t v)
{
    if (grow(o, 5) < 0)
        return -1;
    o->p[o->len] = tag;
    wr32(o->p + o->len + 1, v);
    o->len += 5;
    return 0;
}

static int
put_bytes_obj(Out *o, PyObject *b)
{
    return put(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
}

static int enc(Out *o, PyObject *t, int depth);

/* A value this file leaves to the pure encoder, for this one sub-term. */
static int
enc_deferred(Out *o, PyObject *t, int depth)
{
    PyObject *r = PyObject_CallFunction(S.encode_sub, "Oi", t, depth);
    if (r == NULL)
        return -1;
    int rc = put(o, PyByteArray_AS_STRING(r), PyByteArray_GET_SIZE(r));
    Py_DECREF(r);
    return rc;
}

/* An int as a uint32, or -1 when it is not an exact int in 0..2**32-1. */
static int64_t
as_u32(PyObject *v)
{
    if (!PyLong_CheckExact(v))
        return -1;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || x < 0 || x > 0xFFFFFFFFLL) {
        PyErr_Clear();
        return -1;
    }
    return x;
}

static PyObject *
atom_ext(PyObject *a)
{
    PyObject *ext = SLOT(a, S.atom_ext);
    return ext != NULL && PyBytes_CheckExact(ext) ? ext : NULL;
}

static int
enc_int(Out *o, PyObject *t)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(t, &overflow);
    if (!overflow) {
        if (v >= 0 && v < 256) {
            unsigned char b[2] = {97, (unsigned char)v};
            return put(o, b, 2);
        }
        if (v >= INT32_MIN && v <= INT32_MAX)
            return put_tag32(o, 98, (uint32_t)(int32_t)v);
    }
    else if (PyErr_Occurred()) {
        return -1;
    }
    int negative = _PyLong_Sign(t) < 0;
    PyObject *mag = negative ? PyNumber_Negative(t) : (Py_INCREF(t), t);
    if (mag == NULL)
        return -1;
    size_t bits = _PyLong_NumBits(mag);
    size_t n = (bits + 7) / 8;
    int rc = -1;
    if (bits == (size_t)-1 && PyErr_Occurred()) {
        /* fall through with rc = -1 */
    }
    else if (n > 0xFFFFFFFFu) {
        PyErr_SetString(S.EncodeError, "integer too large");
    }
    else if (grow(o, 6 + (Py_ssize_t)n) == 0) {
        unsigned char *p = o->p + o->len;
        if (n < 256) {
            p[0] = 110;
            p[1] = (unsigned char)n;
            p[2] = (unsigned char)negative;
            p += 3;
        }
        else {
            p[0] = 111;
            wr32(p + 1, (uint32_t)n);
            p[5] = (unsigned char)negative;
            p += 6;
        }
        if (_PyLong_AsByteArray((PyLongObject *)mag, p, n, 1, 0 BYTEARRAY_EXC) == 0) {
            o->len = (p - o->p) + (Py_ssize_t)n;
            rc = 0;
        }
    }
    Py_DECREF(mag);
    return rc;
}

static int
enc_binary(Out *o, const char *data, Py_ssize_t n)
{
    if ((size_t)n > 0xFFFFFFFFu) {
        PyErr_SetString(S.EncodeError, "binary too large");
        return -1;
    }
    if (put_tag32(o, 109, (uint32_t)n) < 0)
        return -1;
    return put(o, data, n);
}

static int
enc_seq(Out *o, PyObject *seq, int depth)
{
    /* a list may change under a deferred encoder: re-read its size, hold each item */
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        PyObject *x = PySequence_Fast_GET_ITEM(seq, k);
        Py_INCREF(x);
        int rc = enc(o, x, depth);
        Py_DECREF(x);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int
enc_list(Out *o, PyObject *t, int depth)
{
    Py_ssize_t n = PyList_GET_SIZE(t);
    if (n == 0)
        return put(o, "j", 1);
    if (n < 0x10000) {
        Py_ssize_t k;
        for (k = 0; k < n; k++) {
            PyObject *x = PyList_GET_ITEM(t, k);
            if (!PyLong_CheckExact(x))
                break;
            long v = PyLong_AsLong(x);
            if (v < 0 || v > 255) {
                PyErr_Clear();
                break;
            }
        }
        if (k == n) { /* STRING_EXT */
            if (grow(o, 3 + n) < 0)
                return -1;
            unsigned char *p = o->p + o->len;
            p[0] = 107;
            p[1] = (unsigned char)(n >> 8);
            p[2] = (unsigned char)n;
            for (k = 0; k < n; k++)
                p[3 + k] = (unsigned char)PyLong_AsLong(PyList_GET_ITEM(t, k));
            o->len += 3 + n;
            return 0;
        }
    }
    if (put_tag32(o, 108, (uint32_t)n) < 0 || enc_seq(o, t, depth + 1) < 0)
        return -1;
    return put(o, "j", 1);
}

static int
enc_dict(Out *o, PyObject *t, int depth)
{
    if (put_tag32(o, 116, (uint32_t)PyDict_GET_SIZE(t)) < 0)
        return -1;
    Py_ssize_t i = 0;
    PyObject *k, *v;
    while (PyDict_Next(t, &i, &k, &v)) {
        Py_INCREF(k);
        Py_INCREF(v);
        int rc = enc(o, k, depth + 1);
        if (rc == 0)
            rc = enc(o, v, depth + 1);
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* NEW_PID_EXT, or 1 when the fields are not the usual ones (the pure encoder decides). */
static int
enc_pid(Out *o, PyObject *t)
{
    PyObject *node = SLOT(t, S.pid_node);
    PyObject *ext = node != NULL && Py_IS_TYPE(node, S.Atom) ? atom_ext(node) : NULL;
    if (ext == NULL || SLOT(t, S.pid_id) == NULL || SLOT(t, S.pid_serial) == NULL
        || SLOT(t, S.pid_creation) == NULL)
        return 1;
    int64_t i = as_u32(SLOT(t, S.pid_id)), s = as_u32(SLOT(t, S.pid_serial)),
            c = as_u32(SLOT(t, S.pid_creation));
    if (i < 0 || s < 0 || c < 0)
        return 1;
    if (put(o, "X", 1) < 0 || put_bytes_obj(o, ext) < 0 || grow(o, 12) < 0)
        return -1;
    wr32(o->p + o->len, (uint32_t)i);
    wr32(o->p + o->len + 4, (uint32_t)s);
    wr32(o->p + o->len + 8, (uint32_t)c);
    o->len += 12;
    return 0;
}

/* NEWER_REFERENCE_EXT, or 1 when the fields are not the usual ones. */
static int
enc_ref(Out *o, PyObject *t)
{
    PyObject *node = SLOT(t, S.ref_node), *ids = SLOT(t, S.ref_ids);
    PyObject *ext = node != NULL && Py_IS_TYPE(node, S.Atom) ? atom_ext(node) : NULL;
    if (ext == NULL || ids == NULL || !PyTuple_CheckExact(ids) || PyTuple_GET_SIZE(ids) > 5
        || SLOT(t, S.ref_creation) == NULL)
        return 1;
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    uint32_t words[6];
    int64_t c = as_u32(SLOT(t, S.ref_creation));
    if (c < 0)
        return 1;
    words[0] = (uint32_t)c;
    for (Py_ssize_t k = 0; k < n; k++) {
        int64_t w = as_u32(PyTuple_GET_ITEM(ids, k));
        if (w < 0)
            return 1;
        words[k + 1] = (uint32_t)w;
    }
    unsigned char head[3] = {90, 0, (unsigned char)n};
    if (put(o, head, 3) < 0 || put_bytes_obj(o, ext) < 0 || grow(o, 4 * (n + 1)) < 0)
        return -1;
    for (Py_ssize_t k = 0; k <= n; k++)
        wr32(o->p + o->len + 4 * k, words[k]);
    o->len += 4 * (n + 1);
    return 0;
}

static int
enc(Out *o, PyObject *t, int depth)
{
    PyTypeObject *tp = Py_TYPE(t);
    if (tp == S.Atom) {
        PyObject *ext = atom_ext(t);
        if (ext != NULL)
            return put_bytes_obj(o, ext);
    }
    else if (tp == &PyLong_Type) {
        return enc_int(o, t);
    }
    else if (tp == &PyTuple_Type) {
        if (too_deep(depth))
            return -1;
        Py_ssize_t n = PyTuple_GET_SIZE(t);
        if (n < 256) {
            unsigned char b[2] = {104, (unsigned char)n};
            if (put(o, b, 2) < 0)
                return -1;
        }
        else if (put_tag32(o, 105, (uint32_t)n) < 0) {
            return -1;
        }
        return enc_seq(o, t, depth + 1);
    }
    else if (tp == &PyBytes_Type) {
        return enc_binary(o, PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t));
    }
    else if (tp == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(t, &n);
        if (s != NULL)
            return enc_binary(o, s, n);
        PyErr_Clear(); /* lone surrogates: the pure encoder says why */
    }
    else if (tp == &PyList_Type) {
        if (too_deep(depth))
            return -1;
        return enc_list(o, t, depth);
    }
    else if (tp == &PyDict_Type) {
        if (too_deep(depth))
            return -1;
        return enc_dict(o, t, depth);
    }
    else if (tp == &PyBool_Type) {
        return put_bytes_obj(o, t == Py_True ? S.ext_true : S.ext_false);
    }
    else if (t == Py_None) {
        return put_bytes_obj(o, S.ext_undefined);
    }
    else if (tp == &PyFloat_Type) {
        double f = PyFloat_AS_DOUBLE(t);
        if (!isfinite(f)) {
            PyErr_Format(S.EncodeError, "Erlang has no %R", t);
            return -1;
        }
        if (grow(o, 9) < 0)
            return -1;
        o->p[o->len] = 70;
        if (PyFloat_Pack8(f, (char *)o->p + o->len + 1, 0) < 0)
            return -1;
        o->len += 9;
        return 0;
    }
    else if (tp == S.Pid) {
        int rc = enc_pid(o, t);
        if (rc <= 0)
            return rc;
    }
    else if (tp == S.Reference) {
        int rc = enc_ref(o, t);
        if (rc <= 0)
            return rc;
    }
    else if (tp == S.ImproperList) {
        PyObject *items = SLOT(t, S.imp_items), *tail = SLOT(t, S.imp_tail);
        if (items != NULL && tail != NULL && PyTuple_CheckExact(items)
            && PyTuple_GET_SIZE(items) > 0) {
            if (too_deep(depth))
                return -1;
            if (put_tag32(o, 108, (uint32_t)PyTuple_GET_SIZE(items)) < 0
                || enc_seq(o, items, depth + 1) < 0)
                return -1;
            return enc(o, tail, depth + 1);
        }
    }
    else if (tp == &PyByteArray_Type) {
        return enc_binary(o, PyByteArray_AS_STRING(t), PyByteArray_GET_SIZE(t));
    }
    return enc_deferred(o, t, depth);
}

/* Append VERSION and the encoding of term; a term the C encoder gives up on is encoded by
 * the pure encoder, as c_encode does. */
static int
enc_top(Out *o, PyObject *term)
{
    Py_ssize_t start = o->len;
    if (put(o, "\x83", 1) < 0)
        return -1;
    if (enc(o, term, 0) == 0)
        return 0;
    if (PyErr_ExceptionMatches(S.EncodeError))
        return -1;
    PyErr_Clear();
    o->len = start;
    PyObject *b = PyObject_CallOneArg(S.py_encode, term);
    if (b == NULL)
        return -1;
    int rc = PyBytes_Check(b) ? put_bytes_obj(o, b) : -1;
    if (rc < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_SystemError, "the pure encoder did not return bytes");
    Py_DECREF(b);
    return rc;
}

static PyObject *
c_encode(PyObject *self, PyObject *term)
{
    Out o;
    o.p = o.inline_buf;
    o.len = 0;
    o.cap = INLINE_OUT;
    PyObject *r = NULL;
    if (enc_top(&o, term) == 0)
        r = PyBytes_FromStringAndSize((const char *)o.p, o.len);
    if (o.p != o.inline_buf)
        PyMem_Free(o.p);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Set-up */

static int
member_offset(PyTypeObject *tp, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)tp, name);
    if (d == NULL)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type)
             && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok)
        *off = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (!ok)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", tp->tp_name, name);
    return ok ? 0 : -1;
}

static int
take(PyObject *kw, const char *name, PyObject **dst)
{
    PyObject *v = PyDict_GetItemString(kw, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "setup() needs %s", name);
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(*dst, v);
    return 0;
}

static int
take_type(PyObject *kw, const char *name, PyTypeObject **dst)
{
    PyObject *v = NULL;
    if (take(kw, name, &v) < 0)
        return -1;
    if (!PyType_Check(v)) {
        Py_DECREF(v);
        PyErr_Format(PyExc_TypeError, "setup(): %s must be a type", name);
        return -1;
    }
    Py_XSETREF(*dst, (PyTypeObject *)v);
    return 0;
}

static PyObject *
c_setup(PyObject *self, PyObject *kw)
{
    if (!PyDict_Check(kw)) {
        PyErr_SetString(PyExc_TypeError, "setup() takes a dict");
        return NULL;
    }
    if (take(kw, "DecodeError", &S.DecodeError) < 0 || take(kw, "EncodeError", &S.EncodeError) < 0
        || take(kw, "TooDeep", &S.TooDeep) < 0 || take_type(kw, "Atom", &S.Atom) < 0
        || take_type(kw, "Pid", &S.Pid) < 0 || take_type(kw, "Reference", &S.Reference) < 0
        || take_type(kw, "ImproperList", &S.ImproperList) < 0
        || take(kw, "cache_utf8", &S.cache_utf8) < 0
        || take(kw, "cache_latin1", &S.cache_latin1) < 0
        || take(kw, "make_atom", &S.make_atom) < 0 || take(kw, "decode_tag", &S.decode_tag) < 0
        || take(kw, "encode_sub", &S.encode_sub) < 0 || take(kw, "decode", &S.py_decode) < 0
        || take(kw, "decode_prefix", &S.py_decode_prefix) < 0
        || take(kw, "encode", &S.py_encode) < 0 || take(kw, "freeze", &S.freeze) < 0
        || take(kw, "disambiguate", &S.disambiguate) < 0 || take(kw, "improper", &S.improper) < 0
        || take(kw, "as_bytes", &S.as_bytes) < 0 || take(kw, "atom_true", &S.atom_true) < 0
        || take(kw, "atom_false", &S.atom_false) < 0 || take(kw, "ext_true", &S.ext_true) < 0
        || take(kw, "ext_false", &S.ext_false) < 0
        || take(kw, "ext_undefined", &S.ext_undefined) < 0)
        return NULL;
    if (!PyDict_CheckExact(S.cache_utf8) || !PyDict_CheckExact(S.cache_latin1)
        || !PyBytes_CheckExact(S.ext_true) || !PyBytes_CheckExact(S.ext_false)
        || !PyBytes_CheckExact(S.ext_undefined)) {
        PyErr_SetString(PyExc_TypeError, "setup(): atom caches are dicts, atom encodings bytes");
        return NULL;
    }
    if (member_offset(S.Atom, "ext", &S.atom_ext) < 0
        || member_offset(S.Pid, "node", &S.pid_node) < 0
        || member_offset(S.Pid, "id", &S.pid_id) < 0
        || member_offset(S.Pid, "serial", &S.pid_serial) < 0
        || member_offset(S.Pid, "creation", &S.pid_creation) < 0
        || member_offset(S.Reference, "node", &S.ref_node) < 0
        || member_offset(S.Reference, "creation", &S.ref_creation) < 0
        || member_offset(S.Reference, "ids", &S.ref_ids) < 0
        || member_offset(S.ImproperList, "items", &S.imp_items) < 0
        || member_offset(S.ImproperList, "tail", &S.imp_tail) < 0)
        return NULL;
    S.ready = 1;
    Py_RETURN_NONE;
}

/* The slot offsets of a slotted class, in __slots__ order, as a bytes of Py_ssize_t. */
static PyObject *
layout_of(PyTypeObject *tp)
{
    PyObject *lay = PyDict_GetItemWithError(S.layouts, (PyObject *)tp);
    if (lay != NULL || PyErr_Occurred())
        return lay;
    PyObject *slots = PyObject_GetAttrString((PyObject *)tp, "__slots__");
    if (slots == NULL)
        return NULL;
    PyObject *names = PySequence_Tuple(slots);
    Py_DECREF(slots);
    if (names == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    lay = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(Py_ssize_t));
    for (Py_ssize_t k = 0; lay != NULL && k < n; k++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, k));
        if (name == NULL
            || member_offset(tp, name, (Py_ssize_t *)PyBytes_AS_STRING(lay) + k) < 0)
            Py_CLEAR(lay);
    }
    Py_DECREF(names);
    if (lay == NULL || PyDict_SetItem(S.layouts, (PyObject *)tp, lay) < 0) {
        Py_XDECREF(lay);
        return NULL;
    }
    Py_DECREF(lay); /* the dict holds it */
    return lay;
}

/* The slot offsets of tp (layout_of) and their number; NULL with an error set. */
static const Py_ssize_t *
slot_offsets(PyTypeObject *tp, Py_ssize_t *n)
{
    PyObject *lay = layout_of(tp);
    if (lay == NULL)
        return NULL;
    *n = PyBytes_GET_SIZE(lay) / (Py_ssize_t)sizeof(Py_ssize_t);
    return (const Py_ssize_t *)PyBytes_AS_STRING(lay);
}

/* make(cls, *values): an instance of a slotted class (a frozen dataclass) with its slots
 * set in __slots__ order, without running __init__: the same object, several times cheaper. */
static PyObject *
c_make(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "make(cls, *values)");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)args[0];
    Py_ssize_t n = 0;
    const Py_ssize_t *off = slot_offsets(tp, &n);
    if (off == NULL)
        return NULL;
    if (nargs - 1 != n) {
        PyErr_Format(PyExc_TypeError, "make(%s, ...) takes %zd values, not %zd", tp->tp_name, n,
                     nargs - 1);
        return NULL;
    }
    PyObject *obj = new_slotted(tp);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_INCREF(args[k + 1]);
        SLOT(obj, off[k]) = args[k + 1];
    }
    return obj;
}

/* ------------------------------------------------------------------------------------------ */
/* Identifier: the base of Pid, Reference and Port.  Two of them are equal when they are of
 * the same class and their slots are equal, and hash by their slots, as a frozen dataclass
 * would; done here, a dict lookup by pid or reference runs no Python code.  Each keeps its
 * hash once computed: a node's tables are keyed by the pids of all of its processes, and
 * a pid looked up there again (a process that exits leaves several of them) would
 * otherwise read its slots from memory that is rarely in the cache any more. */

typedef struct {
    PyObject_HEAD
    Py_hash_t hash; /* 0: not computed yet */
} IdentifierObject;

static Py_hash_t
identifier_hash(PyObject *self)
{
    IdentifierObject *io = (IdentifierObject *)self;
    if (io->hash != 0)
        return io->hash;
    Py_ssize_t n = 0;
    const Py_ssize_t *off = slot_offsets(Py_TYPE(self), &n);
    if (off == NULL)
        return -1;
    Py_uhash_t acc = (Py_uhash_t)0x9E3779B97F4A7C15ULL ^ (Py_uhash_t)n;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *v = SLOT(self, off[k]);
        if (v == NULL)
            return 1; /* not built yet (no hash is asked for then): not kept */
        Py_hash_t h = PyObject_Hash(v);
        if (h == -1)
            return -1;
        acc = (acc ^ (Py_uhash_t)h) * (Py_uhash_t)0x100000001B3ULL;
        acc ^= acc >> 29;
    }
    io->hash = acc == (Py_uhash_t)-1 || acc == 0 ? (Py_hash_t)1 : (Py_hash_t)acc;
    return io->hash;
}

static PyObject *
identifier_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(a) != Py_TYPE(b))
        Py_RETURN_NOTIMPLEMENTED;
    int equal = 1;
    if (a != b) {
        Py_ssize_t n = 0;
        const Py_ssize_t *off = slot_offsets(Py_TYPE(a), &n);
        if (off == NULL)
            return NULL;
        for (Py_ssize_t k = 0; k < n && equal; k++) {
            PyObject *x = SLOT(a, off[k]), *y = SLOT(b, off[k]);
            if (x == y)
                continue;
            equal = x != NULL && y != NULL ? PyObject_RichCompareBool(x, y, Py_EQ) : 0;
            if (equal < 0)
                return NULL;
        }
    }
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static PyTypeObject Identifier = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "py_nodes._ccodec.Identifier",
    .tp_basicsize = sizeof(IdentifierObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Base of Pid, Reference and Port: equal and hashed by their slots.",
    .tp_hash = identifier_hash,
    .tp_richcompare = identifier_richcompare,
    .tp_new = PyType_GenericNew,
};

static PyObject *
c_untrack(PyObject *self, PyObject *obj)
{
    if (PyObject_IS_GC(obj) && PyObject_GC_IsTracked(obj))
        PyObject_GC_UnTrack(obj);
    Py_INCREF(obj);
    return obj;
}

static int
check_ready(void)
{
    if (!S.ready)
        PyErr_SetString(PyExc_RuntimeError, "py_nodes._ccodec.setup() was not called");
    return S.ready;
}

/* ------------------------------------------------------------------------------------------ */
/* Frames: the fast path of py_nodes._control.read_frames
 *
 * A buffer holds frames of Length:4 then Length bytes; an empty one is a tick.  A frame
 * body is 112, the control tuple, then for some operations the message.  This loop cuts
 * the frames, decodes both terms and builds the events of the operations whose fields are
 * picked straight from the control tuple (the table of _control.py).  Any other frame
 * (an operation with a builder of its own, a term the C decoder leaves to the pure one,
 * anything malformed) goes to _control.decode_frame, which builds the event or raises the
 * ProtocolError: that code stays the reference for what a frame means. */

#define FRAME_OPS 64
#define FRAME_FIELDS 8
#define FIELD_MESSAGE (-2)
#define FIELD_NONE (-1)

typedef struct {
    PyTypeObject *cls; /* NULL: decode_frame builds this operation */
    int arity, with_message, nfields;
    int fields[FRAME_FIELDS];
} FrameOp;

static struct {
    FrameOp ops[FRAME_OPS];
    PyObject *ProtocolError, *decode_frame, *tick, *no_message;
    PyTypeObject *Monitor;
    int ready;
} F;

/* MONITOR_P and DEMONITOR_P frames: 112, 131, SMALL_TUPLE_EXT 4, SMALL_INTEGER_EXT, op. */
static const unsigned char CTRL4_PREFIX[5] = {112, 131, 104, 4, 97};
#define OP_MONITOR_P 19
#define OP_DEMONITOR_P 20

static PyObject *
build_event(const FrameOp *op, PyObject *ctrl, PyObject *message)
{
    Py_ssize_t n = 0;
    const Py_ssize_t *off = slot_offsets(op->cls, &n);
    if (off == NULL)
        return NULL;
    if (n != op->nfields) {
        PyErr_Format(PyExc_TypeError, "%s does not have %d fields", op->cls->tp_name,
                     op->nfields);
        return NULL;
    }
    PyObject *ev = new_slotted(op->cls);
    if (ev == NULL)
        return NULL;
    for (int k = 0; k < op->nfields; k++) {
        int f = op->fields[k];
        PyObject *v = f == FIELD_MESSAGE ? message
                      : f == FIELD_NONE  ? Py_None
                                         : PyTuple_GET_ITEM(ctrl, f);
        Py_INCREF(v);
        SLOT(ev, off[k]) = v;
    }
    return ev;
}

/* The event of the frame body at b[start:end], or NULL with nothing set when decode_frame
 * must look at it. */
static PyObject *
fast_frame(PyObject *buf, Py_ssize_t start, Py_ssize_t end)
{
    if ((unsigned char)PyBytes_AS_STRING(buf)[start] != 112)
        return NULL;
    Py_ssize_t pos = start + 1;
    PyObject *ctrl = dec_top(buf, pos, end, &pos), *message = NULL, *ev = NULL;
    if (ctrl == NULL)
        goto slow;
    if (pos < end && ((message = dec_top(buf, pos, end, &pos)) == NULL || pos != end))
        goto slow;
    if (!PyTuple_CheckExact(ctrl) || PyTuple_GET_SIZE(ctrl) == 0
        || !PyLong_CheckExact(PyTuple_GET_ITEM(ctrl, 0)))
        goto slow;
    long code = PyLong_AsLong(PyTuple_GET_ITEM(ctrl, 0));
    if (code < 0 || code >= FRAME_OPS) {
        PyErr_Clear();
        goto slow;
    }
    const FrameOp *op = &F.ops[code];
    if (op->cls == NULL || PyTuple_GET_SIZE(ctrl) != op->arity
        || (op->with_message && message == NULL))
        goto slow;
    ev = build_event(op, ctrl, message);
    Py_DECREF(ctrl);
    Py_XDECREF(message);
    return ev;
slow:
    PyErr_Clear();
    Py_XDECREF(ctrl);
    Py_XDECREF(message);
    return NULL;
}

/* One frame: its event appended to events, or none for the DEMONITOR_P of a monitor
 * still pending in monitors.  Every MONITOR_P is also left pending there, under the bytes
 * after its operation (a DEMONITOR_P of it has the same), or under its whole body when it
 * is not in the usual form. */
static int
read_one(PyObject *buf, Py_ssize_t start, Py_ssize_t end, PyObject *monitors, PyObject *events)
{
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = end - start;
    int op = size > 6 && memcmp(b + start, CTRL4_PREFIX, 5) == 0 ? b[start + 5] : 0;
    PyObject *key = NULL, *ev = NULL;
    if ((op == OP_MONITOR_P || op == OP_DEMONITOR_P)
        && (key = PyBytes_FromStringAndSize((const char *)b + start + 6, size - 6)) == NULL)
        return -1;
    if (op == OP_DEMONITOR_P) {
        PyObject *known = PyDict_GetItemWithError(monitors, key);
        if (known != NULL && Py_IS_TYPE(known, F.Monitor)) {
            int r = PyDict_DelItem(monitors, key);
            Py_DECREF(key);
            return r;
        }
        if (PyErr_Occurred())
            goto error;
    }
    ev = fast_frame(buf, start, end);
    if (ev == NULL) {
        PyObject *body = PyBytes_FromStringAndSize((const char *)b + start, size);
        if (body == NULL)
            goto error;
        ev = PyObject_CallOneArg(F.decode_frame, body);
        Py_DECREF(body);
        if (ev == NULL)
            goto error;
    }
    if (Py_IS_TYPE(ev, F.Monitor)) {
        if (key == NULL || op != OP_MONITOR_P) {
            Py_XSETREF(key, PyBytes_FromStringAndSize((const char *)b + start, size));
            if (key == NULL)
                goto error;
        }
        if (PyDict_SetItem(monitors, key, ev) < 0)
            goto error;
    }
    Py_XDECREF(key);
    int r = PyList_Append(events, ev);
    Py_DECREF(ev);
    return r;
error:
    Py_XDECREF(key);
    Py_XDECREF(ev);
    return -1;
}

/* read_frames(buf, max_size, monitors) -> (events, end, need) */
static int
frames_ready(void)
{
    if (!F.ready)
        PyErr_SetString(PyExc_RuntimeError, "py_nodes._ccodec.setup_frames() was not called");
    return F.ready;
}

static PyObject *
c_read_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!frames_ready())
        return NULL;
    if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "read_frames(buf: bytes, max_size, monitors: dict)");
        return NULL;
    }
    PyObject *buf = args[0], *monitors = args[2];
    Py_ssize_t max_size = PyLong_AsSsize_t(args[1]);
    if (max_size == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t n = PyBytes_GET_SIZE(buf), pos = 0, need = 4;
    PyObject *events = PyList_New(0);
    if (events == NULL)
        return NULL;
    while (n - pos >= 4) {
        Py_ssize_t size = (Py_ssize_t)rd32(b + pos);
        if (size == 0) {
            if (PyList_Append(events, F.tick) < 0)
                goto error;
            pos += 4;
            continue;
        }
        if (size > max_size) {
            PyErr_Format(F.ProtocolError, "frame of %zd bytes exceeds max_frame_size %zd", size,
                         max_size);
            goto error;
        }
        if (n - pos - 4 < size) {
            need = 4 + size;
            break;
        }
        if (read_one(buf, pos + 4, pos + 4 + size, monitors, events) < 0)
            goto error;
        pos += 4 + size;
    }
    return Py_BuildValue("(Nnn)", events, pos, need);
error:
    Py_DECREF(events);
    return NULL;
}

/* encode_frame(ctrl, message) -> Length:4, 112, ctrl, then message unless it is the
 * no-message marker: one buffer for the whole frame. */
static PyObject *
c_encode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!frames_ready())
        return NULL;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode_frame(ctrl, message)");
        return NULL;
    }
    Out o;
    o.p = o.inline_buf;
    o.len = 5;
    o.cap = INLINE_OUT;
    o.p[4] = 112;
    PyObject *r = NULL;
    if (enc_top(&o, args[0]) == 0 && (args[1] == F.no_message || enc_top(&o, args[1]) == 0)) {
        if (o.len - 4 > (Py_ssize_t)UINT32_MAX) {
            PyErr_SetString(S.EncodeError, "frame over 4 GiB");
        }
        else {
            wr32(o.p, (uint32_t)(o.len - 4));
            r = PyBytes_FromStringAndSize((const char *)o.p, o.len);
        }
    }
    if (o.p != o.inline_buf)
        PyMem_Free(o.p);
    return r;
}

static int
frame_op(PyObject *code, PyObject *entry)
{
    long k = PyLong_AsLong(code);
    if (k == -1 && PyErr_Occurred())
        return -1;
    if (k < 0 || k >= FRAME_OPS || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 4) {
        PyErr_SetString(PyExc_ValueError, "setup_frames(): op -> (arity, message, cls, fields)");
        return -1;
    }
    FrameOp *op = &F.ops[k];
    PyObject *cls = PyTuple_GET_ITEM(entry, 2), *fields = PyTuple_GET_ITEM(entry, 3);
    memset(op, 0, sizeof(*op));
    if (!PyTuple_Check(fields))
        return 0; /* built by its own function: decode_frame does it */
    op->arity = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 0));
    op->with_message = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
    op->nfields = (int)PyTuple_GET_SIZE(fields);
    if (PyErr_Occurred())
        return -1;
    if (!PyType_Check(cls) || op->nfields > FRAME_FIELDS || op->with_message < 0) {
        PyErr_SetString(PyExc_ValueError, "setup_frames(): a bad operation entry");
        return -1;
    }
    for (int f = 0; f < op->nfields; f++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(fields, f));
        if (v < FIELD_MESSAGE || v >= op->arity) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "setup_frames(): a field out of range");
            return -1;
        }
        op->fields[f] = (int)v;
    }
    op->cls = (PyTypeObject *)cls;
    Py_INCREF(cls);
    return 0;
}

static PyObject *
c_setup_frames(PyObject *self, PyObject *kw)
{
    PyObject *ops = NULL;
    if (!check_ready())
        return NULL;
    if (!PyDict_Check(kw) || take(kw, "ProtocolError", &F.ProtocolError) < 0
        || take(kw, "decode_frame", &F.decode_frame) < 0 || take(kw, "tick", &F.tick) < 0
        || take(kw, "no_message", &F.no_message) < 0
        || take_type(kw, "Monitor", &F.Monitor) < 0 || take(kw, "ops", &ops) < 0)
        goto error;
    if (!PyDict_Check(ops)) {
        PyErr_SetString(PyExc_TypeError, "setup_frames(): ops must be a dict");
        goto error;
    }
    Py_ssize_t it = 0;
    PyObject *code, *entry;
    while (PyDict_Next(ops, &it, &code, &entry))
        if (frame_op(code, entry) < 0)
            goto error;
    F.ready = 1;
    Py_DECREF(ops);
    Py_RETURN_NONE;
error:
    Py_XDECREF(ops);
    return NULL;
}

static PyObject *
w_decode(PyObject *self, PyObject *data)
{
    return check_ready() ? c_decode(self, data) : NULL;
}

static PyObject *
w_decode_prefix(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return check_ready() ? c_decode_prefix(self, args, nargs) : NULL;
}

static PyObject *
w_encode(PyObject *self, PyObject *term)
{
    return check_ready() ? c_encode(self, term) : NULL;
}

static PyMethodDef methods[] = {
    {"setup", c_setup, METH_O, "Wire the codec to py_nodes' types and pure codec."},
    {"decode", w_decode, METH_O, "Decode one complete term (with its 131 version byte)."},
    {"decode_prefix", (PyCFunction)(void (*)(void))w_decode_prefix, METH_FASTCALL,
     "decode_prefix(data, offset=0) -> (term, end)"},
    {"encode", w_encode, METH_O, "Encode a term, with the 131 version byte."},
    {"make", (PyCFunction)(void (*)(void))c_make, METH_FASTCALL,
     "make(cls, *values): a slotted instance, its slots set in order, __init__ skipped."},
    {"setup_frames", c_setup_frames, METH_O,
     "Wire read_frames() to py_nodes._control's events and operation table."},
    {"read_frames", (PyCFunction)(void (*)(void))c_read_frames, METH_FASTCALL,
     "read_frames(buf, max_size, monitors) -> (events, end, need)"},
    {"encode_frame", (PyCFunction)(void (*)(void))c_encode_frame, METH_FASTCALL,
     "encode_frame(ctrl, message) -> bytes: a whole frame, its length first."},
    {"untrack", c_untrack, METH_O,
     "untrack(obj) -> obj, no longer tracked by the cyclic collector. Only for objects that"
     " can never be part of a reference cycle (atoms, pids, references, ports)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "py_nodes._ccodec",
    "External term format codec in C: the fast path of py_nodes._codec.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__ccodec(void)
{
    if (S.layouts == NULL && (S.layouts = PyDict_New()) == NULL)
        return NULL;
    if (PyType_Ready(&Identifier) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddObjectRef(m, "Identifier", (PyObject *)&Identifier) < 0)
        Py_CLEAR(m);
    return m;
}
