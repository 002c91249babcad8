/* Checking clients for bench/serve.py: N TCP clients of one server, read in one epoll loop.
 *
 *     clients PORT N COUNT IDLE_SECONDS
 *
 * Connects N clients to 127.0.0.1:PORT, prints "ready", then reads 64 KiB at a time from
 * whichever is readable and checks every record: 29-bit id equal to the frame's sequence number
 * (mod 2^29), flags EXT, 8 data bytes. The data bytes are the emulator's CLOCK_MONOTONIC at its
 * write (bench/c/slcan_emu.c), so each frame's delay from the adapter's write to this read goes
 * into a histogram (1 us buckets). Ends when every client has COUNT frames, or when nothing
 * came for IDLE_SECONDS, or every client was closed; prints one JSON line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECORD 22 /* 14-byte header + 8 data bytes: the only record the emulator makes */
#define BUCKETS 1000000 /* 1 us each: up to 1 s */

typedef struct {
    int fd, open;
    uint64_t frames, bad;
    uint8_t part[RECORD];
    int part_len;
} client_t;

static uint32_t histogram[BUCKETS];
static uint64_t over, samples, max_ns;

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static void check(client_t *c, const uint8_t *r, uint64_t now) {
    if (be(r + 8, 4) != (c->frames & 0x1FFFFFFF) || r[12] != 1 || r[13] != 8) c->bad++;
    c->frames++;
    uint64_t sent = be(r + 14, 8), delay = now > sent ? now - sent : 0;
    if (delay > max_ns) max_ns = delay;
    if (delay / 1000 < BUCKETS) histogram[delay / 1000]++;
    else over++;
    samples++;
}

static double percentile(double q) {
    uint64_t want = (uint64_t)(q * (double)samples), seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
        seen += histogram[i];
        if (seen > want) return i / 1000.0;
    }
    return max_ns / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: clients PORT N COUNT IDLE_SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    uint64_t count = strtoull(argv[3], NULL, 10);
    int idle_ms = atoi(argv[4]) * 1000;
    client_t *clients = calloc((size_t)n, sizeof *clients);
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    for (int i = 0; i < n; i++) {
        clients[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(clients[i].fd, (struct sockaddr *)&a, sizeof a)) {
            perror("clients: connect");
            return 1;
        }
        clients[i].open = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, clients[i].fd, &ev);
    }
    printf("ready\n");
    fflush(stdout);
    static uint8_t buf[64 * 1024];
    int remaining = n, open = n;
    uint64_t first = 0, last = 0;
    if (!count) remaining = 0;
    while (remaining && open) {
        struct epoll_event events[64];
        int got = epoll_wait(ep, events, 64, idle_ms);
        if (got == 0) break; /* nothing for IDLE_SECONDS: report what came */
        for (int e = 0; e < got; e++) {
            client_t *c = &clients[events[e].data.u32];
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            uint64_t now = mono_ns();
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                c->open = 0;
                open--;
                if (c->frames < count) remaining--;
                continue;
            }
            if (!first) first = now;
            const uint8_t *p = buf;
            size_t left = (size_t)r;
            if (c->part_len) { /* a record split between reads */
                size_t take = RECORD - (size_t)c->part_len;
                if (take > left) take = left;
                memcpy(c->part + c->part_len, p, take);
                c->part_len += (int)take;
                p += take;
                left -= take;
                if (c->part_len == RECORD) {
                    check(c, c->part, now);
                    c->part_len = 0;
                }
            }
            for (; left >= RECORD; p += RECORD, left -= RECORD) check(c, p, now);
            memcpy(c->part, p, left);
            c->part_len = (int)left;
            if (c->frames >= count && c->open) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                remaining--;
                last = now;
            }
        }
    }
    uint64_t fmin = UINT64_MAX, fmax = 0, bad = 0;
    int complete = 0;
    for (int i = 0; i < n; i++) {
        if (clients[i].frames < fmin) fmin = clients[i].frames;
        if (clients[i].frames > fmax) fmax = clients[i].frames;
        bad += clients[i].bad + (clients[i].frames > count ? clients[i].frames - count : 0);
        complete += clients[i].frames == count;
        /* a reset, not a FIN: a server takes a half-closed client for one still listening
           (nc -N), and the next run must start with no clients connected */
        struct linger reset = {1, 0};
        setsockopt(clients[i].fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(clients[i].fd);
    }
    printf("{\"clients\": %d, \"complete\": %d, \"frames_min\": %llu, \"frames_max\": %llu, "
           "\"bad\": %llu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
           "\"seconds\": %.6f}\n",
           n, complete, (unsigned long long)(n ? fmin : 0), (unsigned long long)fmax,
           (unsigned long long)bad, percentile(0.5), percentile(0.99), max_ns / 1e6,
           first && last ? (double)(last - first) / 1e9 : 0.0);
    return 0;
}
