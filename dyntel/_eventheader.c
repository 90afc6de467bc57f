/*
 * dyntel's native EventHeader path: an event's header, extension blocks and payload walked in C, giving either
 * the reference decoder's JSON (for `dyntel decode`, through _speedups' perf.data writer) or the same Python values
 * the pure-Python decoder gives (dyntel._eventheader.Payload, for replay and live).
 *
 * The metadata of an event type is parsed once, by the Python reference (dyntel.decoders.eventheader_native
 * turns its field tree into a "program" of nested tuples), and cached here keyed on the metadata bytes, which every
 * event carries. The walk per event is then a loop over a small array of nodes.
 *
 * Bytes are untrusted: every read is checked against the end of the event. Anything this code finds wrong with an
 * event is reported as "no" (-1) and never guessed at: the JSON writer then leaves the whole file to the Python
 * decoder (which counts and reports it), and Payload hands the event to the Python decoder, which raises the error
 * the reference would report. So the Python decoder stays the one place that words errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_eventheader.h"

/* Node kinds; must match dyntel/decoders/eventheader_native.py. */
enum {
    K_ERROR = 0, K_STRUCT = 1, K_U = 2, K_S = 3, K_HEX = 4, K_ERRNO = 5, K_TIME = 6, K_BOOL = 7, K_F32 = 8,
    K_F64 = 9, K_HEXBYTES = 10, K_CHAR8 = 11, K_UCS = 12, K_PORT = 13, K_IP = 14, K_UUID = 15, K_STR = 16
};
enum { R_UTF8 = 1, R_LATIN1 = 2, R_BYTES = 3, R_UTF16 = 4, R_UTF32 = 5, R_BOM = 6, R_SIZED = 7 };
/* Formats (event_field_format) that a sized length-prefixed char8 field can have. */
enum {
    F_UNSIGNED = 1, F_SIGNED = 2, F_HEX = 3, F_ERRNO = 4, F_PID = 5, F_TIME = 6, F_BOOL = 7, F_FLOAT = 8,
    F_UUID = 15, F_PORT = 16, F_IP = 17
};
enum { A_NONE = 0, A_FIXED = 1, A_VARIABLE = 2 };

typedef struct EhNode {
    int kind, size, array;
    uint32_t count, elem_items;
    int zero, unit, reader, sized_fmt, fallback_bytes;
    Py_ssize_t nchildren;
    struct EhNode *children;
    char *key; /* `,"name":` */
    size_t key_len;
    PyObject *pyreader; /* Payload: the Python text reader for what C does not build itself */
} EhNode;

struct EhType {
    char *name; /* the event name, JSON-escaped, and the closing quote */
    size_t name_len;
    int always_error;
    int64_t room; /* steps left for variable arrays (the reference's 4096-step walk limit) */
    Py_ssize_t nfields;
    EhNode *fields;
};

/* ---- output buffer ------------------------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} Buf;

static int grow(Buf *b, size_t need) {
    if (b->len + need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) { b->oom = 1; return -1; }
    b->p = np;
    b->cap = cap;
    return 0;
}

#define ROOM(b, n) do { if (grow((b), (n)) < 0) return -1; } while (0)

static inline void put(Buf *b, const char *s, size_t n) { memcpy(b->p + b->len, s, n); b->len += n; }
static inline void putc_(Buf *b, char c) { b->p[b->len++] = c; }

static int put_s(Buf *b, const char *s) {
    size_t n = strlen(s);
    ROOM(b, n);
    put(b, s, n);
    return 0;
}

static int put_u64(Buf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    ROOM(b, 24);
    put(b, tmp + i, (size_t)(24 - i));
    return 0;
}

static int put_i64(Buf *b, int64_t v) {
    if (v < 0) {
        ROOM(b, 1);
        putc_(b, '-');
        return put_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(b, (uint64_t)v);
}

static const char HEXU[] = "0123456789ABCDEF";
static const char HEXL[] = "0123456789abcdef";

static int put_hex(Buf *b, uint64_t v) { /* "0x1F" with the quotes */
    char tmp[20];
    int i = 20;
    do { tmp[--i] = HEXU[v & 15]; v >>= 4; } while (v);
    ROOM(b, 26);
    put(b, "\"0x", 3);
    put(b, tmp + i, (size_t)(20 - i));
    putc_(b, '"');
    return 0;
}

/* ---- reading the event ---------------------------------------------------------------------------------------- */

static inline uint64_t rd(const uint8_t *p, int size, int big) {
    uint64_t v = 0;
    if (big) {
        for (int i = 0; i < size; i++) v = v << 8 | p[i];
    } else {
        for (int i = size - 1; i >= 0; i--) v = v << 8 | p[i];
    }
    return v;
}

static inline int64_t sx(uint64_t v, int size) {
    if (size >= 8) return (int64_t)v;
    int shift = 64 - 8 * size;
    return (int64_t)(v << shift) >> shift;
}

/* ---- JSON text -------------------------------------------------------------------------------------------------- */

/* One code point as the reference writes it: ASCII escaped as json.encoder does, anything else in UTF-8, extended
 * past U+10FFFF to the old 5- and 6-byte forms and surrogates kept as 3 bytes (eventheader_text._extended_utf8). */
static inline void emit_cp(Buf *b, uint32_t cp) { /* room: 7 bytes */
    if (cp < 0x80) {
        if (cp >= 0x20 && cp != '"' && cp != '\\') { putc_(b, (char)cp); return; }
        putc_(b, '\\');
        switch (cp) {
        case '"': putc_(b, '"'); return;
        case '\\': putc_(b, '\\'); return;
        case '\n': putc_(b, 'n'); return;
        case '\r': putc_(b, 'r'); return;
        case '\t': putc_(b, 't'); return;
        case '\b': putc_(b, 'b'); return;
        case '\f': putc_(b, 'f'); return;
        default:
            put(b, "u00", 3);
            putc_(b, HEXL[cp >> 4]);
            putc_(b, HEXL[cp & 15]);
            return;
        }
    }
    if (cp < 0x800) {
        putc_(b, (char)(0xC0 | cp >> 6));
    } else if (cp < 0x10000) {
        putc_(b, (char)(0xE0 | cp >> 12));
        putc_(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    } else if (cp < 0x200000) {
        putc_(b, (char)(0xF0 | cp >> 18));
        putc_(b, (char)(0x80 | (cp >> 12 & 0x3F)));
        putc_(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    } else if (cp < 0x4000000) {
        putc_(b, (char)(0xF8 | cp >> 24));
        putc_(b, (char)(0x80 | (cp >> 18 & 0x3F)));
        putc_(b, (char)(0x80 | (cp >> 12 & 0x3F)));
        putc_(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    } else if (cp < 0x80000000u) {
        putc_(b, (char)(0xFC | cp >> 30));
        for (int s = 24; s >= 6; s -= 6) putc_(b, (char)(0x80 | (cp >> s & 0x3F)));
    } else {
        putc_(b, (char)0xFE);
        for (int s = 30; s >= 6; s -= 6) putc_(b, (char)(0x80 | (cp >> s & 0x3F)));
    }
    putc_(b, (char)(0x80 | (cp & 0x3F)));
}

/* Length of a valid UTF-8 sequence at p (as Python's strict decoder accepts it), or 0. */
static inline int utf8_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[2] & 0xC0) != 0x80) return 0;
        uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

/* eventheader_text.utf8_text, written out: valid sequences as they are, a surrogate's 3 bytes as they are, any
 * other byte as Latin-1. */
static int text_utf8(Buf *b, const uint8_t *p, size_t n) {
    ROOM(b, n * 6);
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) { emit_cp(b, c); i++; continue; }
        int k = utf8_seq(p + i, n - i);
        if (!k && c == 0xED && n - i >= 3 && p[i + 1] >= 0xA0 && p[i + 1] <= 0xBF && (p[i + 2] & 0xC0) == 0x80)
            k = 3;
        if (k) { put(b, (const char *)p + i, (size_t)k); i += (size_t)k; }
        else { emit_cp(b, c); i++; }
    }
    return 0;
}

static int text_latin1(Buf *b, const uint8_t *p, size_t n) {
    ROOM(b, n * 6);
    for (size_t i = 0; i < n; i++) emit_cp(b, p[i]);
    return 0;
}

/* eventheader_text.utf16_text: pairs joined the reference's way ((cp - 0x10000) | 0x10000), lone surrogates as
 * their 3-byte forms. n is even. */
static int text_utf16(Buf *b, const uint8_t *p, size_t n, int big) {
    ROOM(b, n / 2 * 7);
    for (size_t i = 0; i + 2 <= n; i += 2) {
        uint32_t u = (uint32_t)rd(p + i, 2, big);
        if (u >= 0xD800 && u < 0xDC00 && i + 4 <= n) {
            uint32_t lo = (uint32_t)rd(p + i + 2, 2, big);
            if (lo >= 0xDC00 && lo < 0xE000) {
                uint32_t cp = 0x10000 + ((u - 0xD800) << 10 | (lo - 0xDC00));
                emit_cp(b, (cp - 0x10000) | 0x10000);
                i += 2;
                continue;
            }
        }
        emit_cp(b, u);
    }
    return 0;
}

static int text_utf32(Buf *b, const uint8_t *p, size_t n, int big) {
    ROOM(b, n / 4 * 7);
    for (size_t i = 0; i + 4 <= n; i += 4) emit_cp(b, (uint32_t)rd(p + i, 4, big));
    return 0;
}

/* The text of a string field as the plain reader for its code unit reads it (quotes not included). */
static int text_plain(Buf *b, const uint8_t *p, size_t n, int unit, int big) {
    if (unit == 1) return text_utf8(b, p, n);
    if (unit == 2) return text_utf16(b, p, n, big);
    return text_utf32(b, p, n, big);
}

/* eventheader_text.bom_text: the marks compared byte for byte, UTF-32 before UTF-16. */
static int text_bom(Buf *b, const uint8_t *p, size_t n, int unit, int big) {
    if (n >= 4 && !memcmp(p, "\xff\xfe\x00\x00", 4)) return text_utf32(b, p + 4, (n & ~(size_t)3) - 4, 0);
    if (n >= 4 && !memcmp(p, "\x00\x00\xfe\xff", 4)) return text_utf32(b, p + 4, (n & ~(size_t)3) - 4, 1);
    if (n >= 2 && !memcmp(p, "\xff\xfe", 2)) return text_utf16(b, p + 2, (n & ~(size_t)1) - 2, 0);
    if (n >= 2 && !memcmp(p, "\xfe\xff", 2)) return text_utf16(b, p + 2, (n & ~(size_t)1) - 2, 1);
    if (n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) return text_utf8(b, p + 3, n - 3);
    return text_plain(b, p, n, unit, big);
}

static int put_hex_bytes(Buf *b, const uint8_t *p, size_t n) {
    ROOM(b, n * 3 + 2);
    putc_(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (i) putc_(b, ' ');
        putc_(b, HEXL[p[i] >> 4]);
        putc_(b, HEXL[p[i] & 15]);
    }
    putc_(b, '"');
    return 0;
}

static int put_uuid(Buf *b, const uint8_t *p) {
    ROOM(b, 38);
    putc_(b, '"');
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) putc_(b, '-');
        putc_(b, HEXL[p[i] >> 4]);
        putc_(b, HEXL[p[i] & 15]);
    }
    putc_(b, '"');
    return 0;
}

static int put_ip(Buf *b, const uint8_t *p, int n) {
    char text[INET6_ADDRSTRLEN + 2];
    if (n == 4) {
        snprintf(text, sizeof text, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
    } else if (!inet_ntop(AF_INET6, p, text, sizeof text)) {
        return -1;
    }
    ROOM(b, strlen(text) + 2);
    putc_(b, '"');
    put(b, text, strlen(text));
    putc_(b, '"');
    return 0;
}

static const char *const ERRNO_NAMES[] = {
    NULL, "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD", "EAGAIN",
    "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL",
    "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM",
    "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", NULL, "ENOMSG", "EIDRM", "ECHRNG",
    "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL", "ENOANO",
    "EBADRQC", "EBADSLT", NULL, "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG", "EREMOTE",
    "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ",
    "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE",
    "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN",
    "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN",
    "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE",
    "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED",
    "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
};

static int put_errno(Buf *b, uint64_t v) { /* value_format.errno_text, quoted */
    int32_t e = (int32_t)(uint32_t)v;
    char text[40];
    size_t count = sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0];
    if (e >= 0 && (size_t)e < count && ERRNO_NAMES[e]) snprintf(text, sizeof text, "\"%s(%d)\"", ERRNO_NAMES[e], e);
    else snprintf(text, sizeof text, "\"ERRNO(%d)\"", e);
    return put_s(b, text);
}

static inline int64_t floordiv(int64_t a, int64_t d) {
    int64_t q = a / d;
    if ((a % d != 0) && ((a < 0) != (d < 0))) q--;
    return q;
}

static int put_time(Buf *b, int64_t t) { /* value_format.time_text, quoted */
    char text[160];
    int64_t days = floordiv(t, 86400), sec = t - days * 86400;
    int64_t z = days + 719468;
    int64_t era = floordiv(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t year = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    if (month <= 2) year += 1;
    if (year - 1900 < INT32_MIN || year - 1900 > INT32_MAX) {
        snprintf(text, sizeof text, "\"TIME(%lld)\"", (long long)t);
    } else {
        if (year > INT32_MAX) year -= (int64_t)1 << 32;
        int64_t hour = sec / 3600, rem = sec % 3600;
        snprintf(text, sizeof text, "\"%04lld-%02lld-%02lldT%02lld:%02lld:%02lld\"", (long long)year,
                 (long long)month, (long long)day, (long long)hour, (long long)(rem / 60), (long long)(rem % 60));
    }
    return put_s(b, text);
}

static int put_bool(Buf *b, uint64_t v) {
    if (v == 0) return put_s(b, "false");
    if (v == 1) return put_s(b, "true");
    return put_i64(b, (int32_t)(uint32_t)v);
}

/* ---- floats: the shortest text that reads back (std::to_chars), as value_format.float32_text/float64_text ---- */

/* The significant digits (no leading or trailing zeros) and the decimal point's place of a "%.*e" numeral. */
static void digits_point(const char *s, char *digits, int *point) {
    char all[64];
    int n = 0, whole = 0, seen_point = 0;
    const char *q = s;
    for (; *q && *q != 'e'; q++) {
        if (*q == '.') { seen_point = 1; continue; }
        all[n++] = *q;
        if (!seen_point) whole++;
    }
    int exp = *q == 'e' ? atoi(q + 1) : 0;
    int lead = 0;
    while (lead < n && all[lead] == '0') lead++;
    int end = n;
    while (end > lead && all[end - 1] == '0') end--;
    memcpy(digits, all + lead, (size_t)(end - lead));
    digits[end - lead] = 0;
    *point = whole + exp - lead;
}

static int shortest_text(Buf *b, double x, const char *digits, int point) {
    char text[400];
    int n = (int)strlen(digits);
    int sci_exp = point - 1;
    int abs_exp = sci_exp < 0 ? -sci_exp : sci_exp;
    int exp_digits = abs_exp >= 100 ? 3 : 2;
    int sci_len = n + (n > 1) + 2 + exp_digits;
    int fixed_len = sci_exp < 0 ? n + 1 - sci_exp : (n > sci_exp + 1 ? n : sci_exp + 1) + (n > sci_exp + 1);
    const char *sign = x < 0 ? "-" : "";
    if (fixed_len <= sci_len) {
        if (sci_exp >= n - 1) {
            snprintf(text, sizeof text, "%s%.0f", sign, fabs(x));
        } else if (sci_exp >= 0) {
            snprintf(text, sizeof text, "%s%.*s.%s", sign, point, digits, digits + point);
        } else {
            snprintf(text, sizeof text, "%s0.%0*d%s", sign, -point, 0, digits);
            if (point == 0) snprintf(text, sizeof text, "%s0.%s", sign, digits);
        }
    } else if (n > 1) {
        snprintf(text, sizeof text, "%s%c.%se%c%02d", sign, digits[0], digits + 1, sci_exp < 0 ? '-' : '+', abs_exp);
    } else {
        snprintf(text, sizeof text, "%s%se%c%02d", sign, digits, sci_exp < 0 ? '-' : '+', abs_exp);
    }
    return put_s(b, text);
}

static int put_nonfinite(Buf *b, double x) {
    if (isnan(x)) return put_s(b, signbit(x) ? "\"-nan\"" : "\"nan\"");
    return put_s(b, x < 0 ? "\"-inf\"" : "\"inf\"");
}

static inline int reads_back(double candidate, double a, int single) {
    return single ? (double)(float)candidate == a : candidate == a;
}

/* The numeral of `precision` digits after the point in %e form that reads back to a: the nearest one, or (below a
 * power of two, where the gap under the value is half the gap above) the next one up; 0 when neither does. */
static int numeral(char *s, size_t cap, int precision, double a, int single) {
    snprintf(s, cap, "%.*e", precision, a);
    double v = strtod(s, NULL);
    if (reads_back(v, a, single)) return 1;
    if (v >= a) return 0;
    char mant[40];
    int m = 0;
    const char *q = s;
    for (; *q != 'e'; q++) if (*q != '.') mant[m++] = *q;
    mant[m] = 0;
    int exp = atoi(q + 1) - precision;
    int i = m - 1;
    while (i >= 0 && mant[i] == '9') mant[i--] = '0';
    char up[64];
    if (i < 0) snprintf(up, sizeof up, "1%se%d", mant, exp);
    else { mant[i]++; snprintf(up, sizeof up, "%se%d", mant, exp); }
    if (!reads_back(strtod(up, NULL), a, single)) return 0;
    snprintf(s, cap, "%s", up);
    return 1;
}

/* The shortest numeral that reads back to |x|, as value_format's loop over precisions finds it. Whether a precision
 * has one only turns from no to yes as precisions grow (a numeral of p digits is one of p + 1 digits too, and the
 * nearest or next-up one of p + 1 digits is at least as close), so the shortest is found by bisection. */
static int put_float(Buf *b, double x, int single) {
    if (isnan(x) || isinf(x)) return put_nonfinite(b, x);
    if (x == 0) return put_s(b, signbit(x) ? "-0" : "0");
    double a = fabs(x);
    char s[64], digits[64];
    int point;
    if (a < (single ? 16777216.0 : 9007199254740992.0) && a == floor(a)) {
        /* A whole number below 2^24 (2^53): its neighbours are at most 1 away, so its own digits are the shortest
         * that read back. */
        snprintf(s, sizeof s, "%.0f", a);
        digits_point(s, digits, &point);
        return shortest_text(b, x, digits, point);
    }
    int lo = 0, hi = single ? 8 : 16; /* 9 and 17 significant digits always read back */
    /* Short numerals first (the common values), one at a time, then bisection. */
    for (; lo < 3 && !numeral(s, sizeof s, lo, a, single); lo++) {
    }
    if (lo < 3) hi = lo;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (numeral(s, sizeof s, mid, a, single)) hi = mid;
        else lo = mid + 1;
    }
    if (!numeral(s, sizeof s, lo, a, single)) snprintf(s, sizeof s, "%.*e", lo, a);
    digits_point(s, digits, &point);
    return shortest_text(b, x, digits, point);
}

/* ---- the walk ----------------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t pos, end;
    int big;
    int64_t k; /* steps taken by variable arrays */
    Buf *out;  /* NULL: check only */
} Walk;

static int value_json(Walk *w, const EhNode *f);

static int fields_json(Walk *w, const EhNode *fields, Py_ssize_t n, int first);

/* A leaf value (one element) of `size` bytes at the walk's position, formatted as value_format formats it. */
static int leaf_json(Walk *w, const EhNode *f) {
    size_t size = (size_t)f->size;
    if (w->end - w->pos < size) return -1;
    const uint8_t *p = w->buf + w->pos;
    w->pos += size;
    Buf *b = w->out;
    if (!b) return 0;
    int big = w->big;
    switch (f->kind) {
    case K_U: return put_u64(b, rd(p, (int)size, big));
    case K_S: return put_i64(b, sx(rd(p, (int)size, big), (int)size));
    case K_HEX: return put_hex(b, rd(p, (int)size, big));
    case K_ERRNO: return put_errno(b, rd(p, (int)size, big));
    case K_TIME: return put_time(b, sx(rd(p, (int)size, big), (int)size));
    case K_BOOL: return put_bool(b, rd(p, (int)size, big));
    case K_F32: {
        uint32_t bits = (uint32_t)rd(p, 4, big);
        float v;
        memcpy(&v, &bits, 4);
        return put_float(b, (double)v, 1);
    }
    case K_F64: {
        uint64_t bits = rd(p, 8, big);
        double v;
        memcpy(&v, &bits, 8);
        return put_float(b, v, 0);
    }
    case K_HEXBYTES: return put_hex_bytes(b, p, size);
    case K_CHAR8:
        ROOM(b, 8);
        putc_(b, '"');
        emit_cp(b, p[0]);
        putc_(b, '"');
        return 0;
    case K_UCS:
        ROOM(b, 9);
        putc_(b, '"');
        emit_cp(b, (uint32_t)rd(p, (int)size, big));
        putc_(b, '"');
        return 0;
    case K_PORT: return put_u64(b, rd(p, 2, 1));
    case K_IP: return put_ip(b, p, (int)size);
    case K_UUID: return put_uuid(b, p);
    default: return -1;
    }
}

/* A length-prefixed char8 field with a fixed-size format (value_format._sized_formatter). */
static int sized_json(Buf *b, const EhNode *f, const uint8_t *p, size_t n, int big) {
    int fmt = f->sized_fmt, fits;
    switch (fmt) {
    case F_ERRNO: case F_PID: fits = n == 4; break;
    case F_TIME: case F_FLOAT: fits = n == 4 || n == 8; break;
    case F_BOOL: fits = n == 1 || n == 2 || n == 4; break;
    case F_UUID: fits = n == 16; break;
    case F_PORT: fits = n == 2; break;
    case F_IP: fits = n == 4 || n == 16; break;
    default: fits = n == 1 || n == 2 || n == 4 || n == 8; break;
    }
    if (n == 0) return put_s(b, "null");
    if (!fits) {
        if (f->fallback_bytes) return put_hex_bytes(b, p, n);
        ROOM(b, 2);
        putc_(b, '"');
        if (text_utf8(b, p, n) < 0) return -1;
        ROOM(b, 1);
        putc_(b, '"');
        return 0;
    }
    int size = (int)n;
    switch (fmt) {
    case F_FLOAT:
        if (n == 4) {
            uint32_t bits = (uint32_t)rd(p, 4, big);
            float v;
            memcpy(&v, &bits, 4);
            return put_float(b, (double)v, 1);
        } else {
            uint64_t bits = rd(p, 8, big);
            double v;
            memcpy(&v, &bits, 8);
            return put_float(b, v, 0);
        }
    case F_UUID: return put_uuid(b, p);
    case F_IP: return put_ip(b, p, size);
    case F_PORT: return put_u64(b, rd(p, 2, 1));
    case F_HEX: return put_hex(b, rd(p, size, big));
    case F_ERRNO: return put_errno(b, rd(p, size, big));
    case F_TIME: return put_time(b, sx(rd(p, size, big), size));
    case F_BOOL: return put_bool(b, rd(p, size, big));
    case F_SIGNED: case F_PID: return put_i64(b, sx(rd(p, size, big), size));
    default: return put_u64(b, rd(p, size, big));
    }
}

/* Where a string field's bytes are: [*p, *p + *n), the walk moved past it. */
static int string_bytes(Walk *w, const EhNode *f, const uint8_t **p, size_t *n) {
    size_t unit = (size_t)f->unit;
    if (f->zero) {
        size_t j = w->pos;
        for (;;) {
            if (w->end - j < unit) return -1;
            const uint8_t *q = w->buf + j;
            if (unit == 1) {
                const uint8_t *z = memchr(q, 0, w->end - j);
                if (!z) return -1;
                j = (size_t)(z - w->buf);
                break;
            }
            if (!q[0] && !q[1] && (unit == 2 || (!q[2] && !q[3]))) break;
            j += unit;
        }
        *p = w->buf + w->pos;
        *n = j - w->pos;
        w->pos = j + unit;
        return 0;
    }
    if (w->end - w->pos < 2) return -1;
    size_t m = (size_t)rd(w->buf + w->pos, 2, w->big) * unit;
    w->pos += 2;
    if (w->end - w->pos < m) return -1;
    *p = w->buf + w->pos;
    *n = m;
    w->pos += m;
    return 0;
}

static int string_json(Walk *w, const EhNode *f) {
    const uint8_t *p;
    size_t n;
    if (string_bytes(w, f, &p, &n) < 0) return -1;
    Buf *b = w->out;
    if (!b) return 0;
    switch (f->reader) {
    case R_BYTES: return put_hex_bytes(b, p, n);
    case R_SIZED: return sized_json(b, f, p, n, w->big);
    default: break;
    }
    ROOM(b, 1);
    putc_(b, '"');
    int r;
    switch (f->reader) {
    case R_LATIN1: r = text_latin1(b, p, n); break;
    case R_BOM: r = text_bom(b, p, n, f->unit, w->big); break;
    case R_UTF16: r = text_utf16(b, p, n, w->big); break;
    case R_UTF32: r = text_utf32(b, p, n, w->big); break;
    default: r = text_utf8(b, p, n); break;
    }
    if (r < 0) return -1;
    ROOM(b, 1);
    putc_(b, '"');
    return 0;
}

static int value_json(Walk *w, const EhNode *f) {
    if (f->kind == K_STRUCT) {
        if (w->out) { ROOM(w->out, 1); putc_(w->out, '{'); }
        if (fields_json(w, f->children, f->nchildren, 1) < 0) return -1;
        if (w->out) { ROOM(w->out, 1); putc_(w->out, '}'); }
        return 0;
    }
    if (f->kind == K_STR) return string_json(w, f);
    return leaf_json(w, f);
}

static int field_json(Walk *w, const EhNode *f, int first) {
    if (f->kind == K_ERROR) return -1;
    Buf *b = w->out;
    if (b) {
        ROOM(b, f->key_len);
        put(b, f->key + first, f->key_len - (size_t)first);
    }
    if (f->array == A_NONE) return value_json(w, f);
    uint32_t count = f->count;
    if (f->array == A_VARIABLE) {
        if (w->end - w->pos < 2) return -1;
        count = (uint32_t)rd(w->buf + w->pos, 2, w->big);
        w->pos += 2;
        w->k += (int64_t)count * f->elem_items;
    }
    if (b) { ROOM(b, 1); putc_(b, '['); }
    for (uint32_t i = 0; i < count; i++) {
        if (b && i) { ROOM(b, 1); putc_(b, ','); }
        if (value_json(w, f) < 0) return -1;
    }
    if (b) { ROOM(b, 1); putc_(b, ']'); }
    return 0;
}

static int fields_json(Walk *w, const EhNode *fields, Py_ssize_t n, int first) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (field_json(w, &fields[i], first && i == 0) < 0) return -1;
    }
    return 0;
}

/* The walk of a whole payload; fails where the Python decoder raises. */
static int payload_json(const EhType *t, const uint8_t *buf, size_t pos, size_t end, int big, Buf *out) {
    if (t->always_error) return -1;
    Walk w = {buf, pos, end, big, 0, out};
    if (fields_json(&w, t->fields, t->nfields, 0) < 0) return -1;
    if (w.k > t->room) return -1;
    return 0;
}

/* ---- Python values (the Payload object) --------------------------------------------------------------------- */

static PyObject *value_py(Walk *w, const EhNode *f);

static PyObject *fields_py(Walk *w, const EhNode *fields, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        const EhNode *f = &fields[i];
        PyObject *v;
        if (f->kind == K_ERROR) { Py_DECREF(list); return NULL; }
        if (f->array == A_NONE) {
            v = value_py(w, f);
        } else {
            uint32_t count = f->count;
            if (f->array == A_VARIABLE) {
                if (w->end - w->pos < 2) { Py_DECREF(list); return NULL; }
                count = (uint32_t)rd(w->buf + w->pos, 2, w->big);
                w->pos += 2;
                w->k += (int64_t)count * f->elem_items;
            }
            v = PyList_New(count);
            for (uint32_t j = 0; v && j < count; j++) {
                PyObject *x = value_py(w, f);
                if (!x) Py_CLEAR(v);
                else PyList_SET_ITEM(v, j, x);
            }
        }
        if (!v) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *value_py(Walk *w, const EhNode *f) {
    if (f->kind == K_STRUCT) return fields_py(w, f->children, f->nchildren);
    if (f->kind == K_STR) {
        const uint8_t *p;
        size_t n;
        if (string_bytes(w, f, &p, &n) < 0) return NULL;
        if (f->reader == R_BYTES) return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
        if (f->reader == R_LATIN1) return PyUnicode_DecodeLatin1((const char *)p, (Py_ssize_t)n, NULL);
        if (f->reader == R_UTF8) {
            PyObject *s = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, NULL);
            if (s || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return s;
            PyErr_Clear();
        }
        if (!f->pyreader) return NULL;
        PyObject *raw = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
        if (!raw) return NULL;
        PyObject *s = PyObject_CallOneArg(f->pyreader, raw);
        Py_DECREF(raw);
        return s;
    }
    size_t size = (size_t)f->size;
    if (w->end - w->pos < size) return NULL;
    const uint8_t *p = w->buf + w->pos;
    w->pos += size;
    int big = w->big;
    switch (f->kind) {
    case K_U: case K_HEX: case K_BOOL: return PyLong_FromUnsignedLongLong(rd(p, (int)size, big));
    case K_S: case K_ERRNO: case K_TIME: return PyLong_FromLongLong(sx(rd(p, (int)size, big), (int)size));
    case K_PORT: return PyLong_FromUnsignedLong((unsigned long)rd(p, 2, 1));
    case K_F32: {
        uint32_t bits = (uint32_t)rd(p, 4, big);
        float v;
        memcpy(&v, &bits, 4);
        return PyFloat_FromDouble((double)v);
    }
    case K_F64: {
        uint64_t bits = rd(p, 8, big);
        double v;
        memcpy(&v, &bits, 8);
        return PyFloat_FromDouble(v);
    }
    case K_HEXBYTES: case K_IP: case K_UUID: return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)size);
    case K_CHAR8: return PyUnicode_FromOrdinal(p[0]);
    case K_UCS: {
        uint64_t cp = rd(p, (int)size, big);
        if (cp < 0xD800 || (cp >= 0xE000 && cp < 0x110000)) return PyUnicode_FromOrdinal((int)cp);
        if (!f->pyreader) return NULL;
        PyObject *n = PyLong_FromUnsignedLongLong(cp);
        if (!n) return NULL;
        PyObject *s = PyObject_CallOneArg(f->pyreader, n);
        Py_DECREF(n);
        return s;
    }
    default: return NULL;
    }
}

/* ---- programs ----------------------------------------------------------------------------------------------- */

static void free_nodes(EhNode *nodes, Py_ssize_t n) {
    if (!nodes) return;
    for (Py_ssize_t i = 0; i < n; i++) {
        free_nodes(nodes[i].children, nodes[i].nchildren);
        PyMem_Free(nodes[i].key);
        Py_XDECREF(nodes[i].pyreader);
    }
    PyMem_Free(nodes);
}

static void free_type(EhType *t) {
    if (!t) return;
    free_nodes(t->fields, t->nfields);
    PyMem_Free(t->name);
    PyMem_Free(t);
}

static char *copy_bytes(PyObject *b, size_t *len) {
    *len = (size_t)PyBytes_GET_SIZE(b);
    char *p = PyMem_Malloc(*len + 1);
    if (!p) { PyErr_NoMemory(); return NULL; }
    memcpy(p, PyBytes_AS_STRING(b), *len);
    p[*len] = 0;
    return p;
}

static int parse_nodes(PyObject *tuple, EhNode **out, Py_ssize_t *count, int depth) {
    if (!PyTuple_Check(tuple) || depth > 64) {
        PyErr_SetString(PyExc_TypeError, "EventHeader program: fields must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    EhNode *nodes = PyMem_Calloc((size_t)n + 1, sizeof(EhNode));
    if (!nodes) { PyErr_NoMemory(); return -1; }
    *out = nodes;
    *count = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        EhNode *f = &nodes[i];
        PyObject *key, *children, *reader;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(tuple, i), "SiiiIIiiiiiOO", &key, &f->kind, &f->size, &f->array,
                              &f->count, &f->elem_items, &f->zero, &f->unit, &f->reader, &f->sized_fmt,
                              &f->fallback_bytes, &children, &reader))
            return -1;
        if (!(f->key = copy_bytes(key, &f->key_len))) return -1;
        if (f->key_len < 1) { PyErr_SetString(PyExc_ValueError, "EventHeader program: empty key"); return -1; }
        if (reader != Py_None) { Py_INCREF(reader); f->pyreader = reader; }
        int leaf_ok = f->size == 1 || f->size == 2 || f->size == 4 || f->size == 8 || f->size == 16;
        int unit_ok = f->unit == 1 || f->unit == 2 || f->unit == 4;
        if ((f->kind >= K_U && f->kind < K_STR && !leaf_ok) || (f->kind == K_STR && !unit_ok) || f->kind < 0 ||
            f->kind > K_STR || f->array < 0 || f->array > A_VARIABLE) {
            PyErr_SetString(PyExc_ValueError, "EventHeader program: bad node");
            return -1;
        }
        if (f->kind == K_STRUCT && parse_nodes(children, &f->children, &f->nchildren, depth + 1) < 0) return -1;
    }
    return 0;
}

/* program = (name: bytes, always_error: bool, room: int, fields: tuple) */
static EhType *type_from_program(PyObject *program) {
    PyObject *name, *fields;
    int always_error;
    long long room;
    if (!PyArg_ParseTuple(program, "SpLO", &name, &always_error, &room, &fields)) return NULL;
    EhType *t = PyMem_Calloc(1, sizeof(EhType));
    if (!t) { PyErr_NoMemory(); return NULL; }
    t->always_error = always_error;
    t->room = room;
    if (!(t->name = copy_bytes(name, &t->name_len)) || parse_nodes(fields, &t->fields, &t->nfields, 0) < 0) {
        free_type(t);
        return NULL;
    }
    return t;
}

/* ---- the cache ---------------------------------------------------------------------------------------------- */

typedef struct {
    uint64_t hash;
    char *meta; /* NULL: empty slot */
    size_t len;
    int big;
    EhType *type; /* NULL: not an EventHeader type (no NUL in the metadata) */
} Slot;

struct EhCache {
    PyObject *compile;
    Slot *slots;
    size_t cap, used;
    Buf body, info;
};

EhCache *eh_cache_new(PyObject *compile) {
    EhCache *c = PyMem_Calloc(1, sizeof(EhCache));
    if (!c) { PyErr_NoMemory(); return NULL; }
    c->cap = 64;
    c->slots = PyMem_Calloc(c->cap, sizeof(Slot));
    if (!c->slots) { PyMem_Free(c); PyErr_NoMemory(); return NULL; }
    Py_INCREF(compile);
    c->compile = compile;
    return c;
}

void eh_cache_free(EhCache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++) {
        if (c->slots[i].meta) {
            PyMem_Free(c->slots[i].meta);
            free_type(c->slots[i].type);
        }
    }
    PyMem_Free(c->slots);
    Py_XDECREF(c->compile);
    free(c->body.p);
    free(c->info.p);
    PyMem_Free(c);
}

/* Metadata is hashed for every event, and can be hundreds of bytes: eight at a time. */
static uint64_t hash_bytes(const uint8_t *p, size_t n, int big) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)big ^ ((uint64_t)n << 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h ^ (h >> 32);
}

/* The type of this metadata: 0 and *type (NULL when it is not an EventHeader type), or -1 with an exception. */
static int cache_get(EhCache *c, const uint8_t *meta, size_t len, int big, EhType **type) {
    uint64_t h = hash_bytes(meta, len, big);
    size_t mask = c->cap - 1, i = (size_t)h & mask;
    while (c->slots[i].meta) {
        Slot *s = &c->slots[i];
        if (s->hash == h && s->len == len && s->big == big && !memcmp(s->meta, meta, len)) {
            *type = s->type;
            return 0;
        }
        i = (i + 1) & mask;
    }
    /* A miss: the type is compiled by the Python reference's parser. Kept for the life of the cache (one file). */
    PyObject *program = PyObject_CallFunction(c->compile, "y#O", (const char *)meta, (Py_ssize_t)len,
                                              big ? Py_True : Py_False);
    if (!program) return -1;
    EhType *t = NULL;
    if (program != Py_None) {
        t = type_from_program(program);
        if (!t) { Py_DECREF(program); return -1; }
    }
    Py_DECREF(program);
    if ((c->used + 1) * 2 > c->cap) {
        size_t ncap = c->cap * 2;
        Slot *ns = PyMem_Calloc(ncap, sizeof(Slot));
        if (!ns) { free_type(t); PyErr_NoMemory(); return -1; }
        for (size_t k = 0; k < c->cap; k++) {
            if (!c->slots[k].meta) continue;
            size_t j = (size_t)c->slots[k].hash & (ncap - 1);
            while (ns[j].meta) j = (j + 1) & (ncap - 1);
            ns[j] = c->slots[k];
        }
        PyMem_Free(c->slots);
        c->slots = ns;
        c->cap = ncap;
        mask = ncap - 1;
        i = (size_t)h & mask;
        while (c->slots[i].meta) i = (i + 1) & mask;
    }
    char *copy = PyMem_Malloc(len + 1);
    if (!copy) { free_type(t); PyErr_NoMemory(); return -1; }
    memcpy(copy, meta, len);
    c->slots[i] = (Slot){h, copy, len, big, t};
    c->used++;
    *type = t;
    return 0;
}

/* ---- events ------------------------------------------------------------------------------------------------- */

#define FLAG_POINTER64 0x01
#define FLAG_LITTLE_ENDIAN 0x02
#define FLAG_EXTENSION 0x04

int eh_check(EhCache *c, const EhPlan *plan, const uint8_t *raw, uint32_t raw_size, EhEvent *ev, int walk) {
    /* EventHeaderDecoder.decode's checks, in its order; any failure is "not for the native path". */
    if (plan->offset > raw_size) return -1;
    const uint8_t *data = raw + plan->offset;
    size_t end = raw_size - plan->offset;
    if (end < 8 || end > 0x7FFFFFFF) return -1;
    uint8_t flags = data[0];
    if (flags & ~(FLAG_POINTER64 | FLAG_LITTLE_ENDIAN | FLAG_EXTENSION)) return -1;
    int big = !(flags & FLAG_LITTLE_ENDIAN);
    ev->flags = flags;
    ev->version = data[1];
    ev->id = (uint16_t)rd(data + 2, 2, big);
    ev->tag = (uint16_t)rd(data + 4, 2, big);
    ev->opcode = data[6];
    ev->level = data[7];
    if (ev->level != plan->level) return -1;
    size_t pos = 8;
    const uint8_t *meta = NULL;
    size_t meta_len = 0;
    ev->activity = ev->related = -1;
    if (flags & FLAG_EXTENSION) {
        unsigned kind = 0x8000;
        while (kind & 0x8000) {
            if (end - pos < 4) return -1;
            size_t size = (size_t)rd(data + pos, 2, big);
            kind = (unsigned)rd(data + pos + 2, 2, big);
            pos += 4;
            if (end - pos < size) return -1;
            unsigned k = kind & 0x7FFF;
            if (k == 1) {
                if (meta) return -1;
                meta = data + pos;
                meta_len = size;
            } else if (k == 2) {
                if (ev->activity >= 0 || (size != 16 && size != 32)) return -1;
                ev->activity = (int32_t)(plan->offset + pos);
                if (size == 32) ev->related = (int32_t)(plan->offset + pos + 16);
            } else if (k == 0) {
                return -1;
            }
            pos += size;
        }
    }
    if (!meta) return -1;
    EhType *t;
    if (cache_get(c, meta, meta_len, big, &t) < 0) {
        PyErr_Clear(); /* the Python decoder, which the caller falls back to, meets the same problem and reports it */
        return -1;
    }
    if (!t) return -1;
    ev->type = t;
    ev->payload = (uint32_t)(plan->offset + pos);
    return walk ? payload_json(t, raw, ev->payload, raw_size, big, NULL) : 0;
}

static int put_member_u64(Buf *b, const char *key, size_t key_len, uint64_t v) {
    ROOM(b, key_len);
    put(b, key, key_len);
    return put_u64(b, v);
}

static int put_info(Buf *b, const EhPlan *plan, const EhEvent *ev, const uint8_t *raw) {
    if (ev->id && put_member_u64(b, ",\"id\":", 6, ev->id) < 0) return -1;
    if (ev->version && put_member_u64(b, ",\"version\":", 11, ev->version) < 0) return -1;
    if (ev->level && put_member_u64(b, ",\"level\":", 9, ev->level) < 0) return -1;
    if (plan->keyword) {
        if (put_s(b, ",\"keyword\":") < 0 || put_hex(b, plan->keyword) < 0) return -1;
    }
    if (ev->opcode && put_member_u64(b, ",\"opcode\":", 10, ev->opcode) < 0) return -1;
    if (ev->tag) {
        if (put_s(b, ",\"tag\":") < 0 || put_hex(b, ev->tag) < 0) return -1;
    }
    if (ev->activity >= 0) {
        if (put_s(b, ",\"activity\":") < 0 || put_uuid(b, raw + ev->activity) < 0) return -1;
    }
    if (ev->related >= 0) {
        if (put_s(b, ",\"relatedActivity\":") < 0 || put_uuid(b, raw + ev->related) < 0) return -1;
    }
    return 0;
}

int eh_format(EhCache *c, const EhPlan *plan, const uint8_t *raw, uint32_t raw_size, const EhEvent *ev,
              const char **body, size_t *body_len, const char **info, size_t *info_len) {
    Buf *b = &c->body, *i = &c->info;
    b->len = i->len = 0;
    b->oom = i->oom = 0;
    const EhType *t = ev->type;
    if (grow(b, plan->prefix_len + t->name_len) < 0) { errno = ENOMEM; return -1; }
    put(b, plan->prefix, plan->prefix_len);
    put(b, t->name, t->name_len);
    int r = payload_json(t, raw, ev->payload, raw_size, !(ev->flags & FLAG_LITTLE_ENDIAN), b);
    if (r == 0) r = put_info(i, plan, ev, raw);
    if (r < 0) {
        errno = b->oom || i->oom ? ENOMEM : EINVAL;
        return -1;
    }
    *body = b->p;
    *body_len = b->len;
    *info = i->p ? i->p : "";
    *info_len = i->len;
    return 0;
}

/* ---- the Python module: Payload(program, fallback) ---------------------------------------------------------- */

#ifndef DYNTEL_EVENTHEADER_NO_MODULE

typedef struct {
    PyObject_HEAD
    EhType *type;
    int big;
    PyObject *fallback;
} Payload;

static void payload_dealloc(Payload *self) {
    free_type(self->type);
    Py_XDECREF(self->fallback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int payload_init(Payload *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"program", "big_endian", "fallback", NULL};
    PyObject *program, *fallback;
    int big;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OpO", kwlist, &program, &big, &fallback)) return -1;
    EhType *t = type_from_program(program);
    if (!t) return -1;
    free_type(self->type);
    self->type = t;
    self->big = big;
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    return 0;
}

static int read_span(PyObject *const *args, Py_ssize_t nargs, Py_buffer *view, Py_ssize_t *pos, Py_ssize_t *end) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected (buf, pos, end)");
        return -1;
    }
    *pos = PyLong_AsSsize_t(args[1]);
    *end = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) return -1;
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0) return -1;
    if (*end > view->len) *end = view->len;
    if (*pos < 0 || *pos > *end) *pos = *end < 0 ? 0 : *end;
    if (*end < 0) *end = 0;
    return 0;
}

/* payload(buf, pos, end) -> list: the values the Python decoder gives; on anything amiss, what it does. */
static PyObject *payload_call(Payload *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_buffer view;
    Py_ssize_t pos, end;
    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "no keyword arguments");
        return NULL;
    }
    if (read_span(args, nargs, &view, &pos, &end) < 0) return NULL;
    PyObject *values = NULL;
    const EhType *t = self->type;
    if (!t->always_error) {
        Walk w = {view.buf, (size_t)pos, (size_t)end, self->big, 0, NULL};
        values = fields_py(&w, t->fields, t->nfields);
        if (values && w.k > t->room) Py_CLEAR(values);
    }
    PyBuffer_Release(&view);
    if (values) return values;
    PyErr_Clear();
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

/* payload.json(buf, pos, end) -> bytes | None: the fields' JSON (`,"name":value...`), None where it fails. */
static PyObject *payload_json_py(Payload *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    Py_ssize_t pos, end;
    if (read_span(args, nargs, &view, &pos, &end) < 0) return NULL;
    Buf b = {0};
    int r = payload_json(self->type, view.buf, (size_t)pos, (size_t)end, self->big, &b);
    PyBuffer_Release(&view);
    PyObject *result;
    if (b.oom) result = PyErr_NoMemory();
    else if (r < 0) result = Py_NewRef(Py_None);
    else result = PyBytes_FromStringAndSize(b.p ? b.p : "", (Py_ssize_t)b.len);
    free(b.p);
    return result;
}

static PyMethodDef payload_methods[] = {
    {"json", (PyCFunction)(void (*)(void))payload_json_py, METH_FASTCALL,
     "json(buf, pos, end): the payload's fields as JSON members (bytes), or None where the payload is bad."},
    {NULL, NULL, 0, NULL}};

static PyObject *payload_vectorcall_entry(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kw) {
    return payload_call((Payload *)self, args, nargsf, kw);
}

typedef struct {
    Payload base;
    vectorcallfunc vectorcall;
} PayloadObject;

static PyObject *payload_new2(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    (void)args;
    (void)kwargs;
    PayloadObject *self = (PayloadObject *)type->tp_alloc(type, 0);
    if (self) self->vectorcall = payload_vectorcall_entry;
    return (PyObject *)self;
}

static PyTypeObject PayloadType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dyntel._eventheader.Payload",
    .tp_basicsize = sizeof(PayloadObject),
    .tp_dealloc = (destructor)payload_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(PayloadObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_doc = "Payload(program, big_endian, fallback): one EventHeader event type's payload decoder, native.",
    .tp_methods = payload_methods,
    .tp_init = (initproc)payload_init,
    .tp_new = payload_new2,
};

/* ---- TypeIndex: the header, the extension blocks and the type lookup of one event, for the Python decoder ---- */

typedef struct {
    uint64_t hash;
    char *meta; /* NULL: empty slot */
    size_t len;
    int big;
    PyObject *type;
} IndexSlot;

typedef struct {
    PyObject_HEAD
    PyObject *compile; /* compile(meta: bytes, big_endian: bool) -> the event type (TypeCache.get) */
    IndexSlot *slots;
    size_t cap, used, max_types;
} TypeIndex;

static void index_clear_slots(TypeIndex *self) {
    for (size_t i = 0; i < self->cap; i++) {
        if (self->slots[i].meta) {
            PyMem_Free(self->slots[i].meta);
            Py_CLEAR(self->slots[i].type);
            self->slots[i].meta = NULL;
        }
    }
    self->used = 0;
}

/* An index refers to its cache's `get`, whose cache holds the index: a cycle the garbage collector must see. */
static int index_traverse(TypeIndex *self, visitproc visit, void *arg) {
    Py_VISIT(self->compile);
    for (size_t i = 0; self->slots && i < self->cap; i++) Py_VISIT(self->slots[i].type);
    return 0;
}

static int index_gc_clear(TypeIndex *self) {
    if (self->slots) index_clear_slots(self);
    Py_CLEAR(self->compile);
    return 0;
}

static void index_dealloc(TypeIndex *self) {
    PyObject_GC_UnTrack(self);
    if (self->slots) {
        index_clear_slots(self);
        PyMem_Free(self->slots);
    }
    Py_XDECREF(self->compile);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int index_init(TypeIndex *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"compile", "max_types", NULL};
    PyObject *compile;
    Py_ssize_t max_types = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n", kwlist, &compile, &max_types)) return -1;
    if (max_types < 1) max_types = 1;
    Py_INCREF(compile);
    Py_XSETREF(self->compile, compile);
    if (self->slots) {
        index_clear_slots(self);
        PyMem_Free(self->slots);
    }
    self->max_types = (size_t)max_types;
    self->cap = 64;
    while (self->cap < self->max_types * 2 + 2 && self->cap < ((size_t)1 << 20)) self->cap *= 2;
    if (self->cap < self->max_types * 2 + 2) self->max_types = self->cap / 2 - 1;
    self->slots = PyMem_Calloc(self->cap, sizeof(IndexSlot));
    if (!self->slots) { PyErr_NoMemory(); return -1; }
    self->used = 0;
    return 0;
}

/* The event type of this metadata (a new reference), compiled on a miss; NULL with an exception. */
static PyObject *index_get(TypeIndex *self, const uint8_t *meta, size_t len, int big) {
    uint64_t h = hash_bytes(meta, len, big);
    size_t mask = self->cap - 1, i = (size_t)h & mask;
    while (self->slots[i].meta) {
        IndexSlot *s = &self->slots[i];
        if (s->hash == h && s->len == len && s->big == big && !memcmp(s->meta, meta, len)) return Py_NewRef(s->type);
        i = (i + 1) & mask;
    }
    if (!self->compile) {
        PyErr_SetString(PyExc_RuntimeError, "TypeIndex was cleared");
        return NULL;
    }
    PyObject *type = PyObject_CallFunction(self->compile, "y#O", (const char *)meta, (Py_ssize_t)len,
                                           big ? Py_True : Py_False);
    if (!type) return NULL;
    if (self->used >= self->max_types) { /* bounded as TypeCache is: start over */
        index_clear_slots(self);
        i = (size_t)h & mask;
    }
    char *copy = PyMem_Malloc(len + 1);
    if (!copy) { Py_DECREF(type); return PyErr_NoMemory(); }
    memcpy(copy, meta, len);
    self->slots[i] = (IndexSlot){h, copy, len, big, Py_NewRef(type)};
    self->used++;
    return type;
}

/* parse(data, offset, end, level) -> (type, version, id, tag, opcode, activity, related, payload_pos), or None
 * when the bytes are not an EventHeader event of that level (the Python decoder then says why). */
static PyObject *index_parse(TypeIndex *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "parse(data, offset, end, level)");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]), stop = PyLong_AsSsize_t(args[2]);
    long level = PyLong_AsLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = Py_None;
    const uint8_t *data = (const uint8_t *)view.buf + offset;
    if (stop > view.len) stop = view.len;
    size_t end = offset >= 0 && stop >= offset ? (size_t)(stop - offset) : 0;
    if (offset < 0 || stop < offset || end < 8 || end > 0x7FFFFFFF) goto done;
    uint8_t flags = data[0];
    if (flags & ~(FLAG_POINTER64 | FLAG_LITTLE_ENDIAN | FLAG_EXTENSION)) goto done;
    int big = !(flags & FLAG_LITTLE_ENDIAN);
    if (data[7] != level) goto done;
    size_t pos = 8, meta_len = 0;
    const uint8_t *meta = NULL, *activity = NULL;
    size_t activity_len = 0;
    if (flags & FLAG_EXTENSION) {
        unsigned kind = 0x8000;
        while (kind & 0x8000) {
            if (end - pos < 4) goto done;
            size_t size = (size_t)rd(data + pos, 2, big);
            kind = (unsigned)rd(data + pos + 2, 2, big);
            pos += 4;
            if (end - pos < size) goto done;
            unsigned k = kind & 0x7FFF;
            if (k == 1) {
                if (meta) goto done;
                meta = data + pos;
                meta_len = size;
            } else if (k == 2) {
                if (activity || (size != 16 && size != 32)) goto done;
                activity = data + pos;
                activity_len = size;
            } else if (k == 0) {
                goto done;
            }
            pos += size;
        }
    }
    if (!meta) goto done;
    PyObject *type = index_get(self, meta, meta_len, big);
    if (!type) { result = NULL; goto done; }
    PyObject *act = activity ? PyBytes_FromStringAndSize((const char *)activity, 16) : Py_NewRef(Py_None);
    PyObject *rel = activity_len == 32 ? PyBytes_FromStringAndSize((const char *)activity + 16, 16)
                                       : Py_NewRef(Py_None);
    if (!act || !rel) {
        Py_DECREF(type);
        Py_XDECREF(act);
        Py_XDECREF(rel);
        result = NULL;
        goto done;
    }
    result = Py_BuildValue("(NiiiiNNn)", type, data[1], (int)rd(data + 2, 2, big), (int)rd(data + 4, 2, big),
                           data[6], act, rel, (Py_ssize_t)(offset + (Py_ssize_t)pos));
    PyBuffer_Release(&view);
    return result;
done:
    PyBuffer_Release(&view);
    return result == Py_None ? Py_NewRef(Py_None) : result;
}

static PyObject *index_clear(TypeIndex *self, PyObject *unused) {
    (void)unused;
    index_clear_slots(self);
    Py_RETURN_NONE;
}

static Py_ssize_t index_len(TypeIndex *self) { return (Py_ssize_t)self->used; }

static PyMethodDef index_methods[] = {
    {"parse", (PyCFunction)(void (*)(void))index_parse, METH_FASTCALL,
     "parse(data, offset, end, level): (type, version, id, tag, opcode, activity, related, payload_pos) of the "
     "EventHeader event at data[offset:end], or None when it is not one of that level."},
    {"clear", (PyCFunction)index_clear, METH_NOARGS, "Forget every type."},
    {NULL, NULL, 0, NULL}};

static PySequenceMethods index_as_sequence = {.sq_length = (lenfunc)index_len};

static PyTypeObject TypeIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dyntel._eventheader.TypeIndex",
    .tp_basicsize = sizeof(TypeIndex),
    .tp_dealloc = (destructor)index_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)index_traverse,
    .tp_clear = (inquiry)index_gc_clear,
    .tp_doc = "TypeIndex(compile, max_types=4096): EventHeader headers read in C, event types by metadata bytes.",
    .tp_methods = index_methods,
    .tp_as_sequence = &index_as_sequence,
    .tp_init = (initproc)index_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "dyntel._eventheader",
                                    "Native EventHeader payload decoding (values and JSON).", -1, NULL};

PyMODINIT_FUNC PyInit__eventheader(void) {
    if (PyType_Ready(&PayloadType) < 0 || PyType_Ready(&TypeIndexType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&PayloadType);
    if (PyModule_AddObject(m, "Payload", (PyObject *)&PayloadType) < 0) {
        Py_DECREF(&PayloadType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&TypeIndexType);
    if (PyModule_AddObject(m, "TypeIndex", (PyObject *)&TypeIndexType) < 0) {
        Py_DECREF(&TypeIndexType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#endif
