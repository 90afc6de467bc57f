/*
 * perf record layout constants shared by dyntel's two native modules (_speedups.c, _prefilter.c): the
 * PERF_SAMPLE_* bits (include/uapi/linux/perf_event.h) and the record types they walk.
 */
#ifndef DYNTEL_PERF_RECORD_H
#define DYNTEL_PERF_RECORD_H

#define S_IP (1u << 0)
#define S_TID (1u << 1)
#define S_TIME (1u << 2)
#define S_ADDR (1u << 3)
#define S_READ (1u << 4)
#define S_CALLCHAIN (1u << 5)
#define S_ID (1u << 6)
#define S_CPU (1u << 7)
#define S_PERIOD (1u << 8)
#define S_STREAM_ID (1u << 9)
#define S_RAW (1u << 10)
#define S_IDENTIFIER (1u << 16)
/* The sample layouts both modules can walk to the RAW data: fixed fields, the call chain, RAW. */
#define S_WALKABLE (S_IP | S_TID | S_TIME | S_ADDR | S_CALLCHAIN | S_ID | S_CPU | S_PERIOD | S_STREAM_ID | S_RAW | \
                    S_IDENTIFIER)

#define REC_SAMPLE 9
#define REC_FINISHED_ROUND 68
#define REC_COMPRESSED 81
#define REC_COMPRESSED2 83

#endif
