/*
 * The native EventHeader path (dyntel/_eventheader.c), as the perf.data JSON writer (_speedups.c) calls it.
 *
 * An EhCache holds compiled event types keyed on their metadata bytes (and byte order); a miss calls the Python
 * compiler it was made with (dyntel.decoders.eventheader_native.program), so the metadata is read by one parser,
 * once per type. Everything per event (header, extensions, lookup, payload walk, JSON) is C.
 */
#ifndef DYNTEL_EVENTHEADER_H
#define DYNTEL_EVENTHEADER_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

typedef struct EhCache EhCache;
typedef struct EhType EhType;

/* One EventHeader tracepoint (an attr of the recording): what its name says and where its header starts. */
typedef struct {
    const char *prefix; /* `{"n":"` + the provider's JSON-escaped text + `:` */
    size_t prefix_len;
    uint8_t level;
    uint64_t keyword;
    uint32_t offset; /* of the eventheader in the sample's raw data */
} EhPlan;

/* A checked event, ready to be written. */
typedef struct {
    const EhType *type;
    uint32_t payload; /* offset of the payload in the raw data */
    uint8_t flags;
    uint8_t version, opcode, level;
    uint16_t id, tag;
    int32_t activity; /* offset of the activity id in the raw data, or -1 */
    int32_t related;  /* offset of the related activity id, or -1 */
} EhEvent;

/* With the GIL (it may compile a type). `compile(meta: bytes, big_endian: bool)` gives a program or None. */
EhCache *eh_cache_new(PyObject *compile);
void eh_cache_free(EhCache *cache);

/* With the GIL. 0 and *ev filled when the raw data is an EventHeader event whose payload matches its metadata
 * (so that writing it cannot fail); -1 otherwise. `walk` 0 skips the payload walk, for an event already checked
 * (the header is read again to fill *ev). */
int eh_check(EhCache *cache, const EhPlan *plan, const uint8_t *raw, uint32_t raw_size, EhEvent *ev, int walk);

/* Without the GIL: the JSON of a checked event. `*body` gets `{"n":"provider:name"` and the fields; `*info` the
 * event's identity members for "meta" (each with a leading comma). Both valid until the next call. 0, or -1 when
 * out of memory (errno ENOMEM) or when the event did not match after all. */
int eh_format(EhCache *cache, const EhPlan *plan, const uint8_t *raw, uint32_t raw_size, const EhEvent *ev,
              const char **body, size_t *body_len, const char **info, size_t *info_len);

#endif
