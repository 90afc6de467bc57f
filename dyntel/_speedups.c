/*
 * dyntel._speedups: the one hot path that Python cannot carry at perf's speed.
 *
 * Turning a million tracefs samples of a file-mode perf.data into JSON costs about 3 us a sample in the
 * tightest pure-Python loop (unpack, format, join), against under 2 us for `perf script`. This module does
 * exactly that case and nothing else: tracefs (non-EventHeader) samples of a little-endian perf.data, written
 * as the reference decoder writes them, in file order or sorted by time within each FINISHED_ROUND. Everything it is not sure
 * about (an unknown sample layout, a malformed record, a field that runs past its sample) makes it decline
 * before writing a byte, and the Python decoder, which counts and reports such things, does the file instead.
 *
 * The caller (dyntel.sources.perf.fast) prepares a "plan" per sample id from the parsed tracefs formats:
 *   plan = (prefix: bytes, fields: tuple of (member: bytes, kind, offset, size, elem_size, array))
 * kind:  0 unknown (hex bytes), 1 hex, 2 unsigned, 3 signed, 4 string (Latin-1 bytes up to NUL)
 * array: 0 scalar, 1 fixed array, 2 __data_loc, 3 __rel_loc
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>

enum { K_NONE = 0, K_HEX = 1, K_UNSIGNED = 2, K_SIGNED = 3, K_STRING = 4 };
enum { A_NONE = 0, A_FIXED = 1, A_DATA_LOC = 2, A_REL_LOC = 3 };

#include "_perf_record.h"
#include "_eventheader.h"


typedef struct {
    const char *member;
    Py_ssize_t member_len;
    int kind, array;
    uint32_t offset, size, elem_size;
} Field;

typedef struct {
    const char *prefix;
    Py_ssize_t prefix_len;
    Field *fields;
    Py_ssize_t nfields;
    int is_eh; /* an EventHeader tracepoint: written by _eventheader.c */
    EhPlan eh;
} Plan;

typedef struct {
    uint64_t time;
    uint64_t seq;
    const uint8_t *raw;
    uint32_t raw_size;
    uint32_t pid, tid, cpu;
    const Plan *plan;
    EhEvent eh; /* an EventHeader sample's checked header */
} Sample;

typedef struct {
    char *buf;
    size_t len, cap;
    int fd;
    int failed;
} Out;

static int out_flush(Out *o) {
    size_t done = 0;
    while (done < o->len) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            o->failed = errno;
            return -1;
        }
        done += (size_t)n;
    }
    o->len = 0;
    return 0;
}

static inline int out_room(Out *o, size_t need) {
    if (o->len + need <= o->cap) return 0;
    if (out_flush(o) < 0) return -1;
    if (need > o->cap) {
        char *nb = realloc(o->buf, need);
        if (!nb) { o->failed = ENOMEM; return -1; }
        o->buf = nb;
        o->cap = need;
    }
    return 0;
}

static inline void put(Out *o, const char *s, size_t n) {
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static inline void put_u64(Out *o, uint64_t v) {
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(o, tmp + i, (size_t)(24 - i));
}

static inline void put_i64(Out *o, int64_t v) {
    if (v < 0) {
        o->buf[o->len++] = '-';
        put_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(o, (uint64_t)v);
    }
}

static const char HEXU[] = "0123456789ABCDEF";
static const char HEXL[] = "0123456789abcdef";

static inline void put_hex(Out *o, uint64_t v) {
    char tmp[20];
    int i = 20;
    do { tmp[--i] = HEXU[v & 15]; v >>= 4; } while (v);
    put(o, "\"0x", 3);
    put(o, tmp + i, (size_t)(20 - i));
    o->buf[o->len++] = '"';
}

static inline uint64_t read_elem(const uint8_t *p, uint32_t size) {
    switch (size) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

/* One integer as the reference prints it: it reads 8- and 16-bit elements unsigned and hands them to a
 * "%d" format, so only 32- and 64-bit signed fields come out negative. */
static inline void put_int(Out *o, int kind, uint64_t v, uint32_t size) {
    if (kind == K_HEX) {
        put_hex(o, v);
    } else if (kind == K_SIGNED && size == 4) {
        put_i64(o, (int32_t)(uint32_t)v);
    } else if (kind == K_SIGNED && size == 8) {
        put_i64(o, (int64_t)v);
    } else {
        put_u64(o, v);
    }
}

static void put_hex_bytes(Out *o, const uint8_t *p, uint32_t n) {
    o->buf[o->len++] = '"';
    for (uint32_t i = 0; i < n; i++) {
        if (i) o->buf[o->len++] = ' ';
        o->buf[o->len++] = HEXL[p[i] >> 4];
        o->buf[o->len++] = HEXL[p[i] & 15];
    }
    o->buf[o->len++] = '"';
}

/* JSON's two-character escapes of control characters (0 where there is none and \u00XX is written). */
static const char SHORT_ESCAPE[0x20] = {['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r'};

/* Bytes are Latin-1 code points, as the reference reads tracefs char arrays. */
static void put_latin1_string(Out *o, const uint8_t *p, uint32_t n) {
    uint32_t len = 0;
    while (len < n && p[len]) len++;
    o->buf[o->len++] = '"';
    for (uint32_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (c >= 0x80) {
            o->buf[o->len++] = (char)(0xC0 | (c >> 6));
            o->buf[o->len++] = (char)(0x80 | (c & 0x3F));
        } else if (c == '"' || c == '\\') {
            o->buf[o->len++] = '\\';
            o->buf[o->len++] = (char)c;
        } else if (c < 0x20) {
            /* The short escapes first, as perf-decode and the Python path (json's encoder) write them. */
            char e = SHORT_ESCAPE[c];
            if (e) {
                o->buf[o->len++] = '\\';
                o->buf[o->len++] = e;
                continue;
            }
            put(o, "\\u00", 4);
            o->buf[o->len++] = HEXL[c >> 4];
            o->buf[o->len++] = HEXL[c & 15];
        } else {
            o->buf[o->len++] = (char)c;
        }
    }
    o->buf[o->len++] = '"';
}

/* Where a field's bytes are in the sample, as the reference's GetFieldBytes finds them; -1 when it would
 * find none (the Python decoder then handles the file, so that "null" and empty cases stay in one place). */
static int field_bytes(const Field *f, const uint8_t *raw, uint32_t raw_size, const uint8_t **p, uint32_t *n) {
    if ((uint64_t)f->offset + f->size > raw_size) return -1;
    if (f->size == 0) {
        *p = raw + f->offset;
        *n = raw_size - f->offset;
        return 0;
    }
    if (f->array == A_DATA_LOC || f->array == A_REL_LOC) {
        if (f->size != 4) return -1;
        uint32_t loc;
        memcpy(&loc, raw + f->offset, 4);
        uint32_t dsize = loc >> 16, doff = loc & 0xFFFF;
        if (f->array == A_REL_LOC) doff += f->offset + 4;
        if ((uint64_t)doff + dsize > raw_size) return -1;
        *p = raw + doff;
        *n = dsize;
        return 0;
    }
    *p = raw + f->offset;
    *n = f->size;
    return 0;
}

static size_t field_room(const Field *f, uint32_t n) {
    /* Worst cases: a string byte becomes "\u00XX" (6), a hex byte "xx " (3), an integer element up to 22. */
    return (size_t)f->member_len + 8 + (size_t)n * 6 + (size_t)(n + 1) * 24;
}

static void put_field(Out *o, const Field *f, const uint8_t *p, uint32_t n) {
    put(o, f->member, (size_t)f->member_len);
    int scalar = f->array == A_NONE;
    if (f->kind == K_STRING) {
        put_latin1_string(o, p, n);
        return;
    }
    if (f->kind == K_NONE && (scalar || f->elem_size == 1)) {
        put_hex_bytes(o, p, n);
        return;
    }
    int kind = f->kind == K_NONE ? K_HEX : f->kind;
    uint32_t es = f->elem_size;
    if (scalar) {
        put_int(o, kind, read_elem(p, es), es);
        return;
    }
    o->buf[o->len++] = '[';
    for (uint32_t i = 0; i + es <= n; i += es) {
        if (i) o->buf[o->len++] = ',';
        put_int(o, kind, read_elem(p + i, es), es);
    }
    o->buf[o->len++] = ']';
}

typedef struct {
    time_t sec;
    char text[32];
    size_t len;
} DateCache;

static void put_time(Out *o, uint64_t t, int is_wall, int64_t offset, DateCache *dc) {
    if (!is_wall) {
        put_u64(o, t / 1000000000u);
        char frac[10];
        uint32_t ns = (uint32_t)(t % 1000000000u);
        for (int i = 8; i >= 0; i--) { frac[i] = (char)('0' + ns % 10); ns /= 10; }
        o->buf[o->len++] = '.';
        put(o, frac, 9);
        return;
    }
    /* In 128 bits, as Python's integers do it: a sample time past 2^63 or a clock offset that carries it past
     * either end of int64 would otherwise overflow (undefined behaviour; found by fuzzing under UBSan). The
     * seconds of a u64 plus an int64 fit a time_t with room to spare. */
    __int128 wall = (__int128)t + offset;
    int64_t sec = (int64_t)(wall / 1000000000), ns = (int64_t)(wall % 1000000000);
    if (ns < 0) { ns += 1000000000; sec -= 1; }
    if ((time_t)sec != dc->sec || dc->len == 0) {
        struct tm tm;
        time_t s = (time_t)sec;
        gmtime_r(&s, &tm);
        dc->len = strftime(dc->text, sizeof dc->text, "%Y-%m-%dT%H:%M:%S", &tm);
        dc->sec = s;
    }
    o->buf[o->len++] = '"';
    put(o, dc->text, dc->len);
    char frac[11];
    frac[0] = '.';
    uint32_t v = (uint32_t)ns;
    for (int i = 9; i >= 1; i--) { frac[i] = (char)('0' + v % 10); v /= 10; }
    frac[10] = 'Z';
    put(o, frac, 11);
    o->buf[o->len++] = '"';
}

static int cmp_sample(const void *a, const void *b) {
    const Sample *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static void free_plans(Plan *plans, Py_ssize_t n) {
    if (!plans) return;
    for (Py_ssize_t i = 0; i < n; i++) PyMem_Free(plans[i].fields);
    PyMem_Free(plans);
}

/* Parse one plan tuple; the bytes it points into stay alive as long as the caller's plan objects. */
static int parse_plan(PyObject *obj, Plan *plan) {
    PyObject *prefix, *fields;
    if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 4) {
        /* EventHeader: (prefix, level, keyword, offset of the eventheader in the raw data) */
        unsigned char level;
        unsigned long long keyword;
        unsigned int offset;
        if (!PyArg_ParseTuple(obj, "SbKI", &prefix, &level, &keyword, &offset)) return -1;
        plan->is_eh = 1;
        plan->eh = (EhPlan){PyBytes_AS_STRING(prefix), (size_t)PyBytes_GET_SIZE(prefix), level, keyword, offset};
        plan->prefix = plan->eh.prefix;
        plan->prefix_len = PyBytes_GET_SIZE(prefix);
        return 0;
    }
    if (!PyArg_ParseTuple(obj, "SO!", &prefix, &PyTuple_Type, &fields)) return -1;
    plan->prefix = PyBytes_AS_STRING(prefix);
    plan->prefix_len = PyBytes_GET_SIZE(prefix);
    plan->nfields = PyTuple_GET_SIZE(fields);
    plan->fields = PyMem_Calloc((size_t)plan->nfields + 1, sizeof(Field));
    if (!plan->fields) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < plan->nfields; i++) {
        PyObject *member;
        Field *f = &plan->fields[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "SiIIIi", &member, &f->kind, &f->offset, &f->size,
                              &f->elem_size, &f->array))
            return -1;
        if (f->elem_size != 1 && f->elem_size != 2 && f->elem_size != 4 && f->elem_size != 8) f->elem_size = 1;
        f->member = PyBytes_AS_STRING(member);
        f->member_len = PyBytes_GET_SIZE(member);
    }
    return 0;
}

/* Walk the samples; fill `samples` (may be NULL to count) and `round_ends`. Returns the sample count, or -1
 * when the file is outside what this module handles. */
static Py_ssize_t scan(const uint8_t *buf, size_t start, size_t end, uint64_t sample_type, PyObject *plan_ids,
                      Plan *plans, Py_ssize_t nplans, Sample *samples, Py_ssize_t *round_ends,
                      Py_ssize_t *nrounds, EhCache *eh) {
    size_t pos = start;
    Py_ssize_t n = 0, r = 0;
    int by_id = (sample_type & (S_IDENTIFIER | S_ID)) != 0;
    while (pos < end) {
        if (end - pos < 8) return -1;
        uint16_t type, size;
        uint32_t type32;
        memcpy(&type32, buf + pos, 4);
        memcpy(&size, buf + pos + 6, 2);
        type = (uint16_t)type32;
        if (size < 8 || size > end - pos || type32 > 0xFFFF) return -1;
        if (type == REC_COMPRESSED || type == REC_COMPRESSED2) {
            return -1; /* zstd records are expanded by the Python side (perf_zstd); never skipped here */
        } else if (type == REC_FINISHED_ROUND) {
            if (round_ends) round_ends[r] = n;
            r++;
        } else if (type == REC_SAMPLE) {
            const uint8_t *p = buf + pos + 8, *rec_end = buf + pos + size;
            uint64_t id = 0, t = 0;
            uint32_t pid = 0, tid = 0, cpu = 0;
#define NEED(k) if ((size_t)(rec_end - p) < (size_t)(k)) return -1
            if (sample_type & S_IDENTIFIER) { NEED(8); memcpy(&id, p, 8); p += 8; }
            if (sample_type & S_IP) { NEED(8); p += 8; }
            if (sample_type & S_TID) { NEED(8); memcpy(&pid, p, 4); memcpy(&tid, p + 4, 4); p += 8; }
            if (sample_type & S_TIME) { NEED(8); memcpy(&t, p, 8); p += 8; }
            if (sample_type & S_ADDR) { NEED(8); p += 8; }
            if (sample_type & S_ID) { NEED(8); if (!(sample_type & S_IDENTIFIER)) memcpy(&id, p, 8); p += 8; }
            if (sample_type & S_STREAM_ID) { NEED(8); p += 8; }
            if (sample_type & S_CPU) { NEED(8); memcpy(&cpu, p, 4); p += 8; }
            if (sample_type & S_PERIOD) { NEED(8); p += 8; }
            if (sample_type & S_CALLCHAIN) {
                uint64_t nr;
                NEED(8);
                memcpy(&nr, p, 8);
                p += 8;
                if (nr > (uint64_t)(rec_end - p) / 8) return -1;
                p += nr * 8;
            }
            uint32_t raw_size;
            NEED(4);
            memcpy(&raw_size, p, 4);
            p += 4;
            if (raw_size > (size_t)(rec_end - p)) return -1;
#undef NEED
            const Plan *plan;
            if (by_id) {
                PyObject *key = PyLong_FromUnsignedLongLong(id);
                if (!key) return -1;
                PyObject *idx = PyDict_GetItemWithError(plan_ids, key);
                Py_DECREF(key);
                if (!idx) { PyErr_Clear(); return -1; }
                Py_ssize_t i = PyLong_AsSsize_t(idx);
                if (i < 0 || i >= nplans) { PyErr_Clear(); return -1; }
                plan = &plans[i];
            } else {
                if (nplans != 1) return -1;
                plan = &plans[0];
            }
            if (!plan->prefix_len) return -1; /* a sample the fast path does not format (no format) */
            EhEvent ev;
            /* The payload is walked on the first pass only; the second finds the same bytes. */
            if (plan->is_eh && (!eh || eh_check(eh, &plan->eh, p, raw_size, &ev, samples == NULL) < 0)) return -1;
            for (Py_ssize_t i = 0; i < plan->nfields; i++) {
                const uint8_t *fp;
                uint32_t fn;
                if (field_bytes(&plan->fields[i], p, raw_size, &fp, &fn) < 0) return -1;
            }
            if (samples) {
                Sample *s = &samples[n];
                s->time = (sample_type & S_TIME) ? t : 0;
                s->seq = (uint64_t)n;
                s->raw = p;
                s->raw_size = raw_size;
                s->pid = pid;
                s->tid = tid;
                s->cpu = cpu;
                s->plan = plan;
                if (plan->is_eh) s->eh = ev;
            }
            n++;
        }
        pos += size;
    }
    if (round_ends) round_ends[r] = n;
    *nrounds = r + 1;
    return n;
}

static PyObject *write_tracefs_samples(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"buffer", "start", "end", "sample_type", "plan_ids", "plans", "time_is_wall",
                             "clock_offset", "first_sep", "sep", "suffix", "fd", "sort", "eh_compile", NULL};
    Py_buffer view;
    Py_ssize_t start, end;
    unsigned long long sample_type;
    PyObject *plan_ids, *plan_list;
    int time_is_wall, fd, sort = 1;
    PyObject *eh_compile = Py_None;
    long long clock_offset;
    const char *first_sep, *sep, *suffix;
    Py_ssize_t first_sep_len, sep_len, suffix_len;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nnKO!O!pLy#y#y#i|pO", kwlist, &view, &start, &end,
                                     &sample_type, &PyDict_Type, &plan_ids, &PyList_Type, &plan_list,
                                     &time_is_wall, &clock_offset, &first_sep, &first_sep_len, &sep, &sep_len,
                                     &suffix, &suffix_len, &fd, &sort, &eh_compile))
        return NULL;
    PyObject *result = NULL;
    Plan *plans = NULL;
    Sample *samples = NULL;
    Py_ssize_t *round_ends = NULL;
    Out out = {0};
    EhCache *eh = NULL;
    Py_ssize_t nplans = PyList_GET_SIZE(plan_list);

    if (start < 0 || end < start || end > view.len || (sample_type & ~(unsigned long long)S_WALKABLE) ||
        !(sample_type & S_RAW)) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    plans = PyMem_Calloc((size_t)nplans + 1, sizeof(Plan));
    if (!plans) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < nplans; i++) {
        PyObject *item = PyList_GET_ITEM(plan_list, i);
        if (item == Py_None) continue; /* prefix_len 0: not for the fast path */
        if (parse_plan(item, &plans[i]) < 0) goto done;
    }
    if (eh_compile != Py_None && !(eh = eh_cache_new(eh_compile))) goto done;
    const uint8_t *buf = view.buf;
    Py_ssize_t nrounds = 0;
    Py_ssize_t n = scan(buf, (size_t)start, (size_t)end, sample_type, plan_ids, plans, nplans, NULL, NULL, &nrounds,
                        eh);
    if (n < 0) {
        if (PyErr_Occurred()) goto done;
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    samples = PyMem_Malloc(sizeof(Sample) * (size_t)(n + 1));
    round_ends = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(nrounds + 1));
    if (!samples || !round_ends) { PyErr_NoMemory(); goto done; }
    if (scan(buf, (size_t)start, (size_t)end, sample_type, plan_ids, plans, nplans, samples, round_ends,
             &nrounds, eh) != n) {
        PyErr_SetString(PyExc_RuntimeError, "perf.data changed while it was read");
        goto done;
    }

    out.fd = fd;
    out.cap = 1 << 20;
    out.buf = malloc(out.cap);
    if (!out.buf) { PyErr_NoMemory(); goto done; }
    DateCache dc = {.sec = 0, .len = 0};
    int ok = 1;
    Py_ssize_t written = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t begin = 0;
    for (Py_ssize_t r = 0; r < nrounds && ok; r++) {
        Py_ssize_t stop = round_ends[r];
        if (sort && stop > begin && (sample_type & S_TIME))
            qsort(samples + begin, (size_t)(stop - begin), sizeof(Sample), cmp_sample);
        for (Py_ssize_t i = begin; i < stop; i++) {
            const Sample *s = &samples[i];
            const Plan *plan = s->plan;
            size_t need = (size_t)plan->prefix_len + (size_t)first_sep_len + (size_t)sep_len +
                          (size_t)suffix_len + 200;
            const char *eh_body = NULL, *eh_info = NULL;
            size_t eh_body_len = 0, eh_info_len = 0;
            if (plan->is_eh) {
                if (eh_format(eh, &plan->eh, s->raw, s->raw_size, &s->eh, &eh_body, &eh_body_len, &eh_info,
                              &eh_info_len) < 0) {
                    out.failed = errno;
                    ok = 0;
                    break;
                }
                need += eh_body_len + eh_info_len;
            }
            for (Py_ssize_t k = 0; k < plan->nfields; k++) {
                const uint8_t *fp;
                uint32_t fn;
                field_bytes(&plan->fields[k], s->raw, s->raw_size, &fp, &fn);
                need += field_room(&plan->fields[k], fn);
            }
            if (out_room(&out, need) < 0) { ok = 0; break; }
            if (written) put(&out, sep, (size_t)sep_len);
            else put(&out, first_sep, (size_t)first_sep_len);
            if (plan->is_eh) put(&out, eh_body, eh_body_len);
            else put(&out, plan->prefix, (size_t)plan->prefix_len);
            for (Py_ssize_t k = 0; k < plan->nfields; k++) {
                const uint8_t *fp;
                uint32_t fn;
                field_bytes(&plan->fields[k], s->raw, s->raw_size, &fp, &fn);
                put_field(&out, &plan->fields[k], fp, fn);
            }
            put(&out, ",\"meta\":{", 9);
            int comma = 0;
            if (sample_type & S_TIME) {
                put(&out, "\"time\":", 7);
                put_time(&out, s->time, time_is_wall, (int64_t)clock_offset, &dc);
                comma = 1;
            }
            if (sample_type & S_CPU) {
                if (comma) out.buf[out.len++] = ',';
                put(&out, "\"cpu\":", 6);
                put_u64(&out, s->cpu);
                comma = 1;
            }
            if (sample_type & S_TID) {
                if (comma) out.buf[out.len++] = ',';
                put(&out, "\"pid\":", 6);
                put_u64(&out, s->pid);
                put(&out, ",\"tid\":", 7);
                put_u64(&out, s->tid);
                comma = 1;
            }
            if (eh_info_len) { /* the EventHeader identity members, each with its leading comma */
                if (comma) put(&out, eh_info, eh_info_len);
                else put(&out, eh_info + 1, eh_info_len - 1);
            }
            put(&out, "}}", 2);
            put(&out, suffix, (size_t)suffix_len);
            written++;
        }
        begin = stop;
    }
    if (ok && out_flush(&out) < 0) ok = 0;
    Py_END_ALLOW_THREADS
    if (!ok) {
        errno = out.failed;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyLong_FromSsize_t(written);

done:
    free(out.buf);
    PyMem_Free(samples);
    PyMem_Free(round_ends);
    free_plans(plans, nplans);
    eh_cache_free(eh);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"write_tracefs_samples", (PyCFunction)(void (*)(void))write_tracefs_samples, METH_VARARGS | METH_KEYWORDS,
     "Write the tracefs samples of a perf.data data section as JSON to fd; the count written, or None when the "
     "file needs the full Python decoder (nothing is written then)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "dyntel._speedups",
                                    "Native fast path for decoding perf.data tracefs samples to JSON.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
