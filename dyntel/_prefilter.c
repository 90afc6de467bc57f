/*
 * dyntel._prefilter: which samples of a perf.data data section any rule can use, decided before Python sees them.
 *
 * A replay reads recordings in which most samples match no rule. In Python, even a sample that is only looked at
 * and dropped costs about half a microsecond (a header unpack, an id look-up, a branch), as much as perf spends on
 * a sample it passes over; a rule whose condition is rarely true still has every sample of its tracepoint decoded
 * into an Event and evaluated. This module walks the records in C and keeps a sample only when
 *   - its sample id belongs to a tracepoint some rule matches (`plans[i]` is not None), and
 *   - for tracepoints whose every candidate rule needs an integer field to compare a certain way (the rules'
 *     top-level `fields.NAME == 5`-style conjuncts), at least one rule's comparisons hold on the raw bytes.
 * The comparisons are necessary conditions of the rules, read exactly as the Python decoder reads the field, so a
 * dropped sample is one the engine would have passed over; whatever is in doubt (a field the sample is too short
 * to hold) keeps the sample.
 *
 * It returns the kept samples as (offset << 16 | size) words in the order Python should decode them (sorted by
 * time within each FINISHED_ROUND, or in file order), where each round ends among them, record counts by type,
 * and what it dropped, and where it stopped (`end`: with partial=True, a record cut by the end of the range ends
 * the scan at its start instead of declining, for a live ring read in stretches). Anything it does not model (a metadata record in the stream, a malformed or truncated
 * record, an unknown sample id, an AUX or compressed record) makes it decline with None before Python has seen a
 * sample, and the Python reader, which reports such things, reads the file instead.
 *
 *   plan_ids = {sample id: index in plans}; with id_offset 0 (samples carry no id) plans has one plan for all
 *   plan  = None (drop every sample) | (sample_type, alternatives)
 *   alternatives = () (keep every sample) | ((test, ...), ...): keep when all tests of any alternative hold
 *   test  = (offset in the raw data, element size 1/2/4/8, signed, op, (value, ...))
 *   op    = 0 ==, 1 !=, 2 <, 3 <=, 4 >, 5 >=, 6 in, 7 not in
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_perf_record.h"

enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOT_IN };

typedef __int128 wide;

typedef struct {
    uint32_t offset, size;
    int is_signed, op;
    wide *values;
    Py_ssize_t nvalues;
} Test;

typedef struct {
    Test *tests;
    Py_ssize_t ntests;
} Alternative;

typedef struct {
    int drop;
    uint64_t sample_type;
    Alternative *alts;
    Py_ssize_t nalts; /* 0: keep every sample */
} Plan;

typedef struct {
    uint64_t time, word; /* word = offset << 16 | size */
} Kept;

typedef struct {
    uint64_t *keys;
    int32_t *vals;
    size_t mask;
} IdTable;

static void free_plans(Plan *plans, Py_ssize_t n) {
    if (!plans) return;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t a = 0; a < plans[i].nalts; a++) {
            for (Py_ssize_t t = 0; t < plans[i].alts[a].ntests; t++) PyMem_Free(plans[i].alts[a].tests[t].values);
            PyMem_Free(plans[i].alts[a].tests);
        }
        PyMem_Free(plans[i].alts);
    }
    PyMem_Free(plans);
}

static int to_wide(PyObject *v, wide *out) {
    int overflow = 0;
    long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred()) return -1;
    if (!overflow) { *out = s; return 0; }
    unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = (wide)u;
    return 0;
}

static int parse_test(PyObject *obj, Test *t) {
    PyObject *values;
    if (!PyArg_ParseTuple(obj, "IIpiO!", &t->offset, &t->size, &t->is_signed, &t->op, &PyTuple_Type, &values))
        return -1;
    if (t->size != 1 && t->size != 2 && t->size != 4 && t->size != 8) {
        PyErr_SetString(PyExc_ValueError, "test size must be 1, 2, 4 or 8");
        return -1;
    }
    if (t->op < OP_EQ || t->op > OP_NOT_IN) {
        PyErr_SetString(PyExc_ValueError, "unknown test op");
        return -1;
    }
    t->nvalues = PyTuple_GET_SIZE(values);
    if (t->nvalues < 1) {
        PyErr_SetString(PyExc_ValueError, "a test needs a value");
        return -1;
    }
    t->values = PyMem_Calloc((size_t)t->nvalues, sizeof(wide));
    if (!t->values) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < t->nvalues; i++)
        if (to_wide(PyTuple_GET_ITEM(values, i), &t->values[i]) < 0) return -1;
    return 0;
}

static int parse_plan(PyObject *obj, Plan *plan) {
    if (obj == Py_None) { plan->drop = 1; return 0; }
    unsigned long long st;
    PyObject *alts;
    if (!PyArg_ParseTuple(obj, "KO!", &st, &PyTuple_Type, &alts)) return -1;
    plan->sample_type = st;
    plan->nalts = PyTuple_GET_SIZE(alts);
    if (plan->nalts && (st & ~(unsigned long long)S_WALKABLE || !(st & S_RAW))) {
        PyErr_SetString(PyExc_ValueError, "tests need a sample layout with RAW and no READ, BRANCH_STACK, ...");
        return -1;
    }
    plan->alts = PyMem_Calloc((size_t)plan->nalts + 1, sizeof(Alternative));
    if (!plan->alts) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t a = 0; a < plan->nalts; a++) {
        PyObject *tests = PyTuple_GET_ITEM(alts, a);
        if (!PyTuple_Check(tests) || PyTuple_GET_SIZE(tests) == 0) {
            PyErr_SetString(PyExc_ValueError, "an alternative is a non-empty tuple of tests");
            return -1;
        }
        Alternative *alt = &plan->alts[a];
        alt->ntests = PyTuple_GET_SIZE(tests);
        alt->tests = PyMem_Calloc((size_t)alt->ntests, sizeof(Test));
        if (!alt->tests) { PyErr_NoMemory(); return -1; }
        for (Py_ssize_t t = 0; t < alt->ntests; t++)
            if (parse_test(PyTuple_GET_ITEM(tests, t), &alt->tests[t]) < 0) return -1;
    }
    return 0;
}

static inline size_t id_hash(uint64_t id, size_t mask) {
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

static int build_ids(PyObject *plan_ids, Py_ssize_t nplans, IdTable *tab) {
    Py_ssize_t n = PyDict_GET_SIZE(plan_ids);
    size_t cap = 16;
    while (cap < (size_t)n * 2 + 2) cap <<= 1;
    tab->mask = cap - 1;
    tab->keys = PyMem_Calloc(cap, sizeof(uint64_t));
    tab->vals = PyMem_Malloc(cap * sizeof(int32_t));
    if (!tab->keys || !tab->vals) { PyErr_NoMemory(); return -1; }
    for (size_t i = 0; i < cap; i++) tab->vals[i] = -1;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(plan_ids, &pos, &k, &v)) {
        uint64_t id = PyLong_AsUnsignedLongLong(k);
        Py_ssize_t idx = PyLong_AsSsize_t(v);
        if (PyErr_Occurred()) return -1;
        if (idx < 0 || idx >= nplans) {
            PyErr_SetString(PyExc_ValueError, "plan index out of range");
            return -1;
        }
        size_t h = id_hash(id, tab->mask);
        while (tab->vals[h] >= 0 && tab->keys[h] != id) h = (h + 1) & tab->mask;
        tab->keys[h] = id;
        tab->vals[h] = (int32_t)idx;
    }
    return 0;
}

static inline int32_t id_lookup(const IdTable *tab, uint64_t id) {
    size_t h = id_hash(id, tab->mask);
    while (tab->vals[h] >= 0) {
        if (tab->keys[h] == id) return tab->vals[h];
        h = (h + 1) & tab->mask;
    }
    return -1;
}

/* The raw data of a sample: 1 found, 0 malformed. */
static int find_raw(const uint8_t *p, const uint8_t *end, uint64_t st, const uint8_t **raw, uint32_t *raw_size) {
#define SKIP(bit, n) if (st & (bit)) { if ((size_t)(end - p) < (n)) return 0; p += (n); }
    SKIP(S_IDENTIFIER, 8)
    SKIP(S_IP, 8)
    SKIP(S_TID, 8)
    SKIP(S_TIME, 8)
    SKIP(S_ADDR, 8)
    SKIP(S_ID, 8)
    SKIP(S_STREAM_ID, 8)
    SKIP(S_CPU, 8)
    SKIP(S_PERIOD, 8)
#undef SKIP
    if (st & S_CALLCHAIN) {
        uint64_t nr;
        if ((size_t)(end - p) < 8) return 0;
        memcpy(&nr, p, 8);
        p += 8;
        if (nr > (uint64_t)(end - p) / 8) return 0;
        p += nr * 8;
    }
    uint32_t n;
    if ((size_t)(end - p) < 4) return 0;
    memcpy(&n, p, 4);
    p += 4;
    if (n > (size_t)(end - p)) return 0;
    *raw = p;
    *raw_size = n;
    return 1;
}

/* As the Python decoder reads a tracefs integer (little-endian; signed only where the field's reading is). */
static inline wide read_value(const uint8_t *p, const Test *t) {
    switch (t->size) {
    case 1: return t->is_signed ? (wide)(int8_t)p[0] : (wide)p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return t->is_signed ? (wide)(int16_t)v : (wide)v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return t->is_signed ? (wide)(int32_t)v : (wide)v; }
    default: { uint64_t v; memcpy(&v, p, 8); return t->is_signed ? (wide)(int64_t)v : (wide)v; }
    }
}

static inline int test_holds(const Test *t, const uint8_t *raw, uint32_t raw_size) {
    if ((uint64_t)t->offset + t->size > raw_size) return 1; /* in doubt: Python decides */
    wide v = read_value(raw + t->offset, t), c = t->values[0];
    switch (t->op) {
    case OP_EQ: return v == c;
    case OP_NE: return v != c;
    case OP_LT: return v < c;
    case OP_LE: return v <= c;
    case OP_GT: return v > c;
    case OP_GE: return v >= c;
    default: {
        int found = 0;
        for (Py_ssize_t i = 0; i < t->nvalues && !found; i++) found = v == t->values[i];
        return t->op == OP_IN ? found : !found;
    }
    }
}

static int keep_sample(const Plan *plan, const uint8_t *rec, const uint8_t *rec_end, int *malformed) {
    const uint8_t *raw;
    uint32_t raw_size;
    if (!find_raw(rec + 8, rec_end, plan->sample_type, &raw, &raw_size)) { *malformed = 1; return 0; }
    for (Py_ssize_t a = 0; a < plan->nalts; a++) {
        const Alternative *alt = &plan->alts[a];
        Py_ssize_t t = 0;
        while (t < alt->ntests && test_holds(&alt->tests[t], raw, raw_size)) t++;
        if (t == alt->ntests) return 1;
    }
    return 0;
}

static int cmp_kept(const void *a, const void *b) {
    const Kept *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return x->word < y->word ? -1 : (x->word > y->word);
}


static int declines(uint32_t type) {
    switch (type) {
    case 64: /* HEADER_ATTR */
    case 65: /* HEADER_EVENT_TYPE */
    case 66: /* HEADER_TRACING_DATA */
    case 71: /* AUXTRACE: data follows the record */
    case 78: /* EVENT_UPDATE */
    case 80: /* HEADER_FEATURE */
    case 81: /* COMPRESSED */
    case 83: /* COMPRESSED2 */
        return 1;
    default:
        return type > 0xFFFF;
    }
}

/* result["keys"]: time << 48 | base + offset for each kept sample, made as 16 little-endian bytes (the key is
   wider than 64 bits: times are up to 2^63); result["max_kept_time"]. */
static int add_keys(PyObject *result, const Kept *kept, size_t nkept, uint64_t base) {
    PyObject *keys = PyList_New((Py_ssize_t)nkept);
    if (!keys) return -1;
    long long max_time = -1;
    for (size_t i = 0; i < nkept; i++) {
        uint64_t t = kept[i].time, low = t << 48 | (base + (kept[i].word >> 16)), high = t >> 16;
        unsigned char b[16];
        for (int j = 0; j < 8; j++) {
            b[j] = (unsigned char)(low >> (8 * j));
            b[8 + j] = (unsigned char)(high >> (8 * j));
        }
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *k = PyLong_FromUnsignedNativeBytes(b, 16, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
        PyObject *k = _PyLong_FromByteArray(b, 16, 1, 0);
#endif
        if (!k) { Py_DECREF(keys); return -1; }
        PyList_SET_ITEM(keys, (Py_ssize_t)i, k);
        if ((long long)t > max_time) max_time = (long long)t;
    }
    PyObject *m = PyLong_FromLongLong(max_time);
    int rc = m ? PyDict_SetItemString(result, "max_kept_time", m) : -1;
    Py_XDECREF(m);
    if (rc == 0) rc = PyDict_SetItemString(result, "keys", keys);
    Py_DECREF(keys);
    return rc;
}

static PyObject *scan(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"buffer", "start", "end", "id_offset", "time_offset", "plan_ids", "plans", "sort",
                             "partial", "key_base", NULL};
    Py_buffer view;
    Py_ssize_t start, end, id_off, time_off;
    PyObject *plan_ids, *plan_list;
    int sort, partial = 0;
    /* key_base >= 0: also return "keys", one int a kept sample, time << 48 | key_base + offset (the live reader's
       sort keys: dyntel.sources.perf.ring_reader), and "max_kept_time" (-1 with none kept). */
    long long key_base = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nnnnO!O!p|pL", kwlist, &view, &start, &end, &id_off, &time_off,
                                     &PyDict_Type, &plan_ids, &PyList_Type, &plan_list, &sort, &partial, &key_base))
        return NULL;
    PyObject *result = NULL;
    Plan *plans = NULL;
    Py_ssize_t nplans = PyList_GET_SIZE(plan_list);
    IdTable ids = {NULL, NULL, 0};
    Kept *kept = NULL;
    size_t nkept = 0, cap = 0, round_start = 0;
    Py_ssize_t *round_ends = NULL;
    size_t nrounds = 0, rounds_cap = 0;
    uint64_t counts[256] = {0}, other = 0, samples = 0, dropped_type = 0, dropped_value = 0, max_dropped = 0;
    int declined = 0;

    if (start < 0 || end < start || end > view.len || (id_off && id_off < 8) || time_off < 0 ||
        (!id_off && nplans != 1)) {
        PyErr_SetString(PyExc_ValueError, "bad bounds or offsets");
        goto done;
    }
    plans = PyMem_Calloc((size_t)nplans + 1, sizeof(Plan));
    if (!plans) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < nplans; i++)
        if (parse_plan(PyList_GET_ITEM(plan_list, i), &plans[i]) < 0) goto done;
    if (build_ids(plan_ids, nplans, &ids) < 0) goto done;

    const uint8_t *buf = view.buf;
    size_t pos = (size_t)start, stop = (size_t)end;
    Py_BEGIN_ALLOW_THREADS
    while (pos < stop) {
        /* partial (a live ring read in stretches): a record cut by `end` ends the scan at its start */
        if (stop - pos < 8) { declined = !partial; break; }
        uint32_t type;
        uint16_t size;
        memcpy(&type, buf + pos, 4);
        memcpy(&size, buf + pos + 6, 2);
        if (partial && size >= 8 && size > stop - pos && !declines(type)) break;
        if (size < 8 || size > stop - pos || declines(type)) { declined = 1; break; }
        if (type == REC_SAMPLE) {
            samples++;
            uint64_t id, t = 0;
            int32_t idx = 0; /* without sample ids (id_off 0), every sample is the one plan's */
            if ((size_t)id_off + 8 > size || (time_off && (size_t)time_off + 8 > size)) { declined = 1; break; }
            if (time_off) memcpy(&t, buf + pos + time_off, 8);
            if (id_off) {
                memcpy(&id, buf + pos + id_off, 8);
                idx = id_lookup(&ids, id);
                if (idx < 0) { declined = 1; break; }
            }
            const Plan *plan = &plans[idx];
            int keep = 1;
            if (plan->drop) {
                keep = 0;
                dropped_type++;
            } else if (plan->nalts) {
                int malformed = 0;
                keep = keep_sample(plan, buf + pos, buf + pos + size, &malformed);
                if (malformed) { declined = 1; break; }
                if (!keep) dropped_value++;
            }
            if (!keep) {
                if (t > max_dropped) max_dropped = t;
            } else {
                if (nkept == cap) {
                    size_t ncap = cap ? cap * 2 : 4096;
                    Kept *nk = realloc(kept, ncap * sizeof(Kept));
                    if (!nk) { declined = 2; break; }
                    kept = nk;
                    cap = ncap;
                }
                kept[nkept].time = t;
                kept[nkept].word = (uint64_t)pos << 16 | size;
                nkept++;
            }
        } else {
            if (type < 256) counts[type]++;
            else other++;
            if (type == REC_FINISHED_ROUND) {
                if (sort && nkept - round_start > 1)
                    qsort(kept + round_start, nkept - round_start, sizeof(Kept), cmp_kept);
                round_start = nkept;
                if (nrounds == rounds_cap) {
                    size_t ncap = rounds_cap ? rounds_cap * 2 : 1024;
                    Py_ssize_t *nr = realloc(round_ends, ncap * sizeof(Py_ssize_t));
                    if (!nr) { declined = 2; break; }
                    round_ends = nr;
                    rounds_cap = ncap;
                }
                round_ends[nrounds++] = (Py_ssize_t)nkept;
            }
        }
        pos += size;
    }
    if (!declined && sort && nkept - round_start > 1)
        qsort(kept + round_start, nkept - round_start, sizeof(Kept), cmp_kept);
    Py_END_ALLOW_THREADS
    if (declined == 2) { PyErr_NoMemory(); goto done; }
    if (declined) { result = Py_NewRef(Py_None); goto done; }

    PyObject *words = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nkept * 8));
    if (!words) goto done;
    uint64_t *w = (uint64_t *)PyBytes_AS_STRING(words);
    for (size_t i = 0; i < nkept; i++) w[i] = kept[i].word;
    PyObject *rounds = PyList_New((Py_ssize_t)nrounds);
    PyObject *count_dict = PyDict_New();
    if (!rounds || !count_dict) { Py_XDECREF(rounds); Py_XDECREF(count_dict); Py_DECREF(words); goto done; }
    for (size_t i = 0; i < nrounds; i++) PyList_SET_ITEM(rounds, (Py_ssize_t)i, PyLong_FromSsize_t(round_ends[i]));
    for (int i = 0; i < 256; i++) {
        if (!counts[i]) continue;
        PyObject *k = PyLong_FromLong(i), *v = PyLong_FromUnsignedLongLong(counts[i]);
        if (!k || !v || PyDict_SetItem(count_dict, k, v) < 0) {
            Py_XDECREF(k); Py_XDECREF(v); Py_DECREF(rounds); Py_DECREF(count_dict); Py_DECREF(words);
            goto done;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    (void)other; /* types past 255 decline above */
    result = Py_BuildValue("{s:N,s:N,s:N,s:K,s:K,s:K,s:K,s:n}", "words", words, "round_ends", rounds, "counts",
                           count_dict, "samples", samples, "dropped_type", dropped_type, "dropped_value",
                           dropped_value, "max_dropped_time", max_dropped, "end", (Py_ssize_t)pos);
    if (result && key_base >= 0 && add_keys(result, kept, nkept, (uint64_t)key_base) < 0) Py_CLEAR(result);
done:
    free(kept);
    free(round_ends);
    PyMem_Free(ids.keys);
    PyMem_Free(ids.vals);
    free_plans(plans, nplans);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_VARARGS | METH_KEYWORDS,
     "scan(buffer, start, end, id_offset, time_offset, plan_ids, plans, sort, partial=False, key_base=-1) -> dict or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "dyntel._prefilter",
                                    "Which perf.data samples any rule can use, decided in C.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__prefilter(void) { return PyModule_Create(&module); }
