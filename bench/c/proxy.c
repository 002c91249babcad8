/* The reference for bench/serve.py: a minimal SLCAN-to-ECUconnect proxy in C.
 *
 *     proxy [--coalesce] ADAPTER_PORT   reads the SLCAN adapter at 127.0.0.1:ADAPTER_PORT
 *
 * What `cancorder serve -i slcan` does, and nothing more: one epoll loop; the adapter is read
 * in 64 KiB reads, lines become the same records (14-byte header, host time of the read in
 * microseconds: the lines carry no adapter stamp); records go to every client with one
 * non-blocking send per client per flush; what a client does not take waits in its own
 * backlog (sent on EPOLLOUT), and a client more than 4 MiB behind is dropped, as serve's
 * default --client-buffer. Client events are printed on stderr like serve's ("client
 * connected (N connected)").
 *
 * When records are flushed, two policies (a window is 1 ms, serve's default --coalesce):
 * - by default serve's own (_fast/broadcast.py): a read that finds nothing pending and the
 *   last flush at least half a window old is sent at once; otherwise its records wait for
 *   the window's end (one window after the last flush);
 * - --coalesce: always one flush per window: records wait one window after the first of them
 *   arrived, however quiet the link was.
 * Both are minimal: the loop wakes once per adapter read, plus at most once per window (an
 * epoll_pwait2 timeout in nanoseconds, armed only while records are pending).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024)
#define WINDOW_NS 1000000LL
#define CLIENT_BUFFER (4 << 20)
#define MAX_CLIENTS 64

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

typedef struct {
    int fd;
    buf_t backlog;
} client_t;

static client_t clients[MAX_CLIENTS];
static int nclients, ep;
static buf_t pending;
static int64_t last_flush = -WINDOW_NS;
static int64_t flush_due = -1; /* when pending records go out; -1: nothing pending */
static int coalesce_always;
static volatile sig_atomic_t stop;

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void append(buf_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->data = realloc(b->data, b->cap);
        if (!b->data) abort();
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void consume(buf_t *b, size_t n) {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void drop(int i, const char *why) {
    epoll_ctl(ep, EPOLL_CTL_DEL, clients[i].fd, NULL);
    close(clients[i].fd);
    free(clients[i].backlog.data);
    clients[i] = clients[--nclients];
    fprintf(stderr, "client %s (%d connected)\n", why, nclients);
}

static int find(int fd) {
    for (int i = 0; i < nclients; i++)
        if (clients[i].fd == fd) return i;
    return -1;
}

static void want_write(client_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush(void) {
    for (int i = 0; i < nclients; i++) {
        client_t *c = &clients[i];
        if (c->backlog.len) { /* behind: keep the order, the socket will say when */
            append(&c->backlog, pending.data, pending.len);
        } else {
            ssize_t sent = send(c->fd, pending.data, pending.len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent < 0 && errno != EAGAIN) {
                drop(i--, "disconnected (send failed)");
                continue;
            }
            if (sent < 0) sent = 0;
            if ((size_t)sent < pending.len) {
                append(&c->backlog, pending.data + sent, pending.len - (size_t)sent);
                want_write(c, 1);
            }
        }
        if (c->backlog.len > CLIENT_BUFFER) drop(i--, "dropped: over its 4 MiB backlog");
    }
    pending.len = 0;
    flush_due = -1;
}

/* Records were just added to `pending` by a read at `now` (nothing was pending when
 * `was_empty`): send them at once, or say when. */
static void schedule(int64_t now, int was_empty) {
    if (!pending.len || !was_empty) return; /* nothing new, or already due at a window's end */
    if (coalesce_always) {
        flush_due = now + WINDOW_NS;
    } else if (now - last_flush >= WINDOW_NS / 2) { /* a quiet link */
        last_flush = now;
        flush();
    } else {
        flush_due = last_flush + WINDOW_NS;
    }
}

static void write_backlog(int i) {
    client_t *c = &clients[i];
    ssize_t sent = send(c->fd, c->backlog.data, c->backlog.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN) drop(i, "disconnected (send failed)");
        return;
    }
    consume(&c->backlog, (size_t)sent);
    if (!c->backlog.len) want_write(c, 0);
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

static int hexnum(const char *p, int digits, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

static const uint8_t FD_LENGTHS[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64};

/* One SLCAN line (without its CR) to one record in `pending`; anything else is skipped. */
static void parse_line(const char *p, size_t n, uint64_t stamp_us) {
    if (!n) return;
    char kind = p[0];
    int ext = kind == 'T' || kind == 'R' || kind == 'D' || kind == 'B';
    int fd = kind == 'd' || kind == 'D' || kind == 'b' || kind == 'B';
    if (!strchr("tTdDbB", kind)) return; /* remote frames (r R) have no record; replies too */
    int id_digits = ext ? 8 : 3;
    uint32_t id, dlc;
    if (n < (size_t)(2 + id_digits) || hexnum(p + 1, id_digits, &id) ||
        hexnum(p + 1 + id_digits, 1, &dlc))
        return;
    if (id > (ext ? 0x1FFFFFFFu : 0x7FFu) || (!fd && dlc > 8)) return;
    uint32_t len = fd ? FD_LENGTHS[dlc] : dlc;
    size_t body = 2 + (size_t)id_digits;
    if (n != body + 2 * len && n != body + 2 * len + 4) return; /* an optional ms stamp */
    uint8_t rec[14 + 64];
    for (int i = 0; i < 8; i++) rec[i] = (uint8_t)(stamp_us >> (56 - 8 * i));
    rec[8] = (uint8_t)(id >> 24), rec[9] = (uint8_t)(id >> 16);
    rec[10] = (uint8_t)(id >> 8), rec[11] = (uint8_t)id;
    rec[12] = (uint8_t)(ext | (fd ? 2 : 0) | ((kind == 'b' || kind == 'B') ? 4 : 0));
    rec[13] = (uint8_t)len;
    for (uint32_t i = 0; i < len; i++) {
        int hi = hexval(p[body + 2 * i]), lo = hexval(p[body + 2 * i + 1]);
        if (hi < 0 || lo < 0) return;
        rec[14 + i] = (uint8_t)(hi << 4 | lo);
    }
    append(&pending, rec, 14 + len);
}

static void on_stop(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--coalesce")) {
        coalesce_always = 1;
        argv++, argc--;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: proxy [--coalesce] ADAPTER_PORT\n");
        return 2;
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    int adapter = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(adapter, (struct sockaddr *)&a, sizeof a)) {
        perror("proxy: adapter");
        return 1;
    }
    const char *setup = "C\rS8\rO\r";
    if (write(adapter, setup, strlen(setup)) < 0) return 1;

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    a.sin_port = 0;
    socklen_t alen = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 64) ||
        getsockname(ls, (struct sockaddr *)&a, &alen)) {
        perror("proxy: listen");
        return 1;
    }
    fprintf(stderr, "serving on TCP 127.0.0.1:%d\n", ntohs(a.sin_port));

    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = adapter};
    epoll_ctl(ep, EPOLL_CTL_ADD, adapter, &ev);
    ev.data.fd = ls;
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);

    static char in[READ_SIZE + 256];
    size_t carried = 0; /* the start of a line the last read ended in */
    struct epoll_event events[MAX_CLIENTS + 2];
    while (!stop) {
        struct timespec timeout, *tp = NULL;
        if (flush_due >= 0) {
            int64_t left = flush_due - mono_ns();
            if (left < 0) left = 0;
            timeout.tv_sec = left / 1000000000, timeout.tv_nsec = left % 1000000000;
            tp = &timeout;
        }
        int n = epoll_pwait2(ep, events, MAX_CLIENTS + 2, tp, NULL);
        if (n < 0 && errno != EINTR) return 1;
        for (int e = 0; e < n; e++) {
            int fd = events[e].data.fd;
            if (fd == adapter) {
                ssize_t got = read(adapter, in + carried, READ_SIZE);
                if (got <= 0) {
                    if (got < 0 && errno == EINTR) continue;
                    fprintf(stderr, "proxy: the adapter closed the port\n");
                    stop = 1;
                    break;
                }
                int64_t read_at = mono_ns();
                int was_empty = pending.len == 0;
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                uint64_t stamp = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
                size_t end = carried + (size_t)got, start = 0;
                for (size_t i = carried; i < end; i++) {
                    if (in[i] == '\r' || in[i] == '\n' || in[i] == '\a') {
                        parse_line(in + start, i - start, stamp);
                        start = i + 1;
                    }
                }
                carried = end - start;
                if (carried > 255) carried = 0; /* no line is that long: garbage */
                memmove(in, in + start, carried);
                schedule(read_at, was_empty);
            } else if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (nclients == MAX_CLIENTS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    clients[nclients] = (client_t){.fd = c};
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    fprintf(stderr, "client connected (%d connected)\n", ++nclients);
                }
            } else {
                int i = find(fd);
                if (i < 0) continue;
                if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    char junk[4096];
                    ssize_t got = recv(fd, junk, sizeof junk, MSG_DONTWAIT);
                    if (got == 0 || (got < 0 && errno != EAGAIN)) {
                        drop(i, "disconnected");
                        continue;
                    }
                }
                if (events[e].events & EPOLLOUT) write_backlog(i);
            }
        }
        if (flush_due >= 0) {
            int64_t now = mono_ns();
            if (now >= flush_due) {
                last_flush = now;
                flush();
            }
        }
    }
    if (pending.len) flush();
    return 0;
}
