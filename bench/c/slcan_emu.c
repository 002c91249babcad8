/* An SLCAN adapter on a TCP port of 127.0.0.1, for the benchmarks (bench/serve.py).
 *
 *     slcan_emu            prints its port, serves one connection
 *
 * It answers the adapter commands like tests/emulators/slcan_adapter.py (CR for each command,
 * BEL for an unknown one) and prints "open" once the channel is opened (O or L). Then, for each
 * line on stdin:
 *
 *     go MODE RATE COUNT   write COUNT frame lines, then print "sent COUNT SECONDS"
 *
 * MODE: "frame" (one write per frame at RATE frames/s, as an adapter that hands over each line
 * as it comes), "burst" (every 1 ms one write of the frames due by then: a USB adapter's
 * rhythm), "unpaced" (64 KiB writes as fast as the socket takes them; RATE ignored).
 * Frame k of a run is the 29-bit line T<k mod 2^29>8<16 hex digits>; its 8 data bytes are
 * CLOCK_MONOTONIC in nanoseconds just before the write that carries it, so a client can
 * measure the delay from the adapter's write to its own read. Written in C so that pacing is
 * exact and the emulator costs little CPU next to the server being measured.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_LEN 27 /* T + 8 id + 1 dlc + 16 data + CR */
#define CHUNK (64 * 1024)

static int conn = -1;
static char cmd[256];
static size_t cmd_len;
static int opened;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void write_all(const char *p, size_t n) {
    while (n) {
        ssize_t w = send(conn, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            perror("slcan_emu: write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Answer whatever commands arrived (non-blocking); CR ends a command. */
static void serve_commands(int wait_ms) {
    struct pollfd p = {conn, POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0) return;
    char buf[4096];
    ssize_t n = recv(conn, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) exit(0); /* the reader closed the port: the server under test stopped */
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != '\r') {
            if (cmd_len < sizeof cmd - 1) cmd[cmd_len++] = buf[i];
            continue;
        }
        cmd[cmd_len] = 0;
        const char *reply = "\r";
        if (cmd_len && !strchr("CSOLVNsFZMmXY", cmd[0])) reply = "\a";
        else if (!strcmp(cmd, "V")) reply = "V1013\r";
        else if (!strcmp(cmd, "N")) reply = "NA123\r";
        write_all(reply, strlen(reply));
        if (!strcmp(cmd, "O") || !strcmp(cmd, "L")) {
            if (!opened) {
                printf("open\n");
                fflush(stdout);
            }
            opened = 1;
        }
        cmd_len = 0;
    }
}

static const char HEX[] = "0123456789ABCDEF";

static char *put_line(char *p, uint64_t k, uint64_t stamp) {
    uint32_t id = (uint32_t)(k & 0x1FFFFFFF);
    *p++ = 'T';
    for (int s = 28; s >= 0; s -= 4) *p++ = HEX[(id >> s) & 15];
    *p++ = '8';
    for (int s = 60; s >= 0; s -= 4) *p++ = HEX[(stamp >> s) & 15];
    *p++ = '\r';
    return p;
}

static void run(const char *mode, double rate, uint64_t count) {
    static char buf[CHUNK + LINE_LEN];
    uint64_t start = now_ns() + 1000000, k = 0; /* the first frame 1 ms from now */
    if (!strcmp(mode, "unpaced")) {
        start = now_ns();
        while (k < count) {
            uint64_t stamp = now_ns();
            char *p = buf;
            while (k < count && p - buf < CHUNK) p = put_line(p, k++, stamp);
            write_all(buf, (size_t)(p - buf));
        }
    } else if (!strcmp(mode, "frame")) {
        uint64_t last_poll = start;
        while (k < count) {
            uint64_t due = start + (uint64_t)((double)k * 1e9 / rate);
            uint64_t t = now_ns();
            if (t < due) {
                if (t - last_poll > 10000000) { /* commands are rare: look every 10 ms */
                    serve_commands(0);
                    last_poll = t;
                }
                sleep_until(due);
            }
            char *p = put_line(buf, k++, now_ns());
            write_all(buf, (size_t)(p - buf));
        }
    } else if (!strcmp(mode, "burst")) {
        for (uint64_t tick = 1; k < count; tick++) {
            sleep_until(start + tick * 1000000);
            serve_commands(0);
            uint64_t due = (uint64_t)((double)tick * rate / 1000.0); /* frames due by this tick */
            if (due > count) due = count;
            while (k < due) {
                uint64_t stamp = now_ns();
                char *p = buf;
                while (k < due && p - buf < CHUNK) p = put_line(p, k++, stamp);
                write_all(buf, (size_t)(p - buf));
            }
        }
    } else {
        fprintf(stderr, "slcan_emu: unknown mode %s\n", mode);
        exit(2);
    }
    printf("sent %llu %.6f\n", (unsigned long long)count, (double)(now_ns() - start) / 1e9);
    fflush(stdout);
}

int main(void) {
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* wake within microseconds, not 50 us */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&a, &alen)) {
        perror("slcan_emu: listen");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    conn = accept(ls, NULL, NULL);
    if (conn < 0) {
        perror("slcan_emu: accept");
        return 1;
    }
    close(ls);
    int one = 1;
    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char line[256];
    for (;;) {
        struct pollfd p[2] = {{conn, POLLIN, 0}, {0, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) return 1;
        if (p[0].revents) serve_commands(0);
        if (!p[1].revents) continue;
        if (!fgets(line, sizeof line, stdin)) break; /* the benchmark is done with us */
        char mode[32];
        double rate;
        unsigned long long count;
        if (sscanf(line, "go %31s %lf %llu", mode, &rate, &count) != 3) {
            fprintf(stderr, "slcan_emu: expected 'go MODE RATE COUNT', got %s", line);
            return 2;
        }
        run(mode, rate, count);
    }
    close(conn);
    return 0;
}
