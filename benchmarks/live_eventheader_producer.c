/*
 * The EventHeader producer of benchmarks/live_eventheader.py, in C so that the producer is not what limits the rate
 * (a Python loop of writev makes about 2k events/s in the emulated VM). It registers NAME with COMMAND through
 * user_events_data, says "ready", waits for a line on stdin and for a listener (the enable bit), then writes the
 * same log-like event as the Python producer, paced to RATE a second in 1 ms slices for SECONDS, and prints
 * "sent written seconds". It ends at the next line (or end) of stdin.
 *
 *     live_eventheader_producer NAME COMMAND RATE SECONDS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/ioctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct user_reg {
    uint32_t size;
    uint8_t enable_bit;
    uint8_t enable_size;
    uint16_t flags;
    uint64_t enable_addr;
    uint64_t name_args;
    uint32_t write_index;
} __attribute__((packed));

#define DIAG_IOCSREG _IOWR('*', 0, struct user_reg *)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s NAME COMMAND RATE SECONDS\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[3]), duration = atof(argv[4]);
    const char *paths[] = {"/sys/kernel/tracing/user_events_data", "/sys/kernel/debug/tracing/user_events_data"};
    int fd = -1;
    for (int i = 0; i < 2 && fd < 0; i++) fd = open(paths[i], O_WRONLY);
    if (fd < 0) { perror("user_events_data"); return 1; }
    static volatile uint32_t enabled;
    struct user_reg reg = {.size = sizeof reg, .enable_bit = 0, .enable_size = 4,
                           .enable_addr = (uint64_t)(uintptr_t)&enabled, .name_args = (uint64_t)(uintptr_t)argv[2]};
    if (ioctl(fd, DIAG_IOCSREG, &reg) < 0) { perror("DIAG_IOCSREG"); return 1; }
    static const char meta[] = "LogRecord\0seq\0\x05severity\0\x82\x02" "body\0\x07http.method\0\x07http.route\0\x07";
    uint8_t head[8 + 4 + sizeof meta - 1];
    uint16_t meta_len = sizeof meta - 1, kind = 1, id = 1;
    head[0] = 0x07; head[1] = 0; memcpy(head + 2, &id, 2); memset(head + 4, 0, 3); head[7] = 4;
    memcpy(head + 8, &meta_len, 2); memcpy(head + 10, &kind, 2); memcpy(head + 12, meta, meta_len);
    static const char tail[] = "GET\0/api/v1/orders/{id}";
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    double t0 = now();
    while (!(enabled & 1) && now() - t0 < 30) usleep(10000);
    uint64_t sent = 0, written = 0;
    uint32_t index = reg.write_index;
    t0 = now();
    for (;;) {
        double t = now() - t0;
        if (t >= duration) break;
        uint64_t target = (uint64_t)(t * rate);
        for (; sent < target; sent++) {
            uint8_t fixed[9];
            char body[64];
            int8_t severity = 9;
            memcpy(fixed, &sent, 8);
            memcpy(fixed + 8, &severity, 1);
            int n = snprintf(body, sizeof body, "request %llu served in 12 ms", (unsigned long long)sent);
            struct iovec iov[5] = {{&index, 4}, {head, sizeof head}, {fixed, 9}, {body, (size_t)n + 1},
                                   {(void *)tail, sizeof tail}};
            if (!(enabled & 1)) continue;
            if (writev(fd, iov, 5) > 0) written++;
        }
        usleep(1000);
    }
    printf("%llu %llu %f\n", (unsigned long long)sent, (unsigned long long)written, now() - t0);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 0;
    return 0;
}
