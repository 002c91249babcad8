/*
 * A fake CAN API V3 library standing in for libUVCANTOU (MacCAN-TouCAN) in the tests.
 *
 * It exports the same functions with the same structure layouts and return codes, and behaves
 * like the TouCAN library where cancorder depends on it:
 *   - channel indexes 0..7 are valid; an index outside that range gives CANERR_NOTINIT from
 *     can_test/can_init (the library's "no such channel"); a valid index with no adapter gives
 *     CANBRD_NOT_PRESENT from can_test and CANERR_HANDLE from can_init;
 *   - mode flags other than MON, ERR, NRTR, NXTD are refused (no CAN FD on TouCAN);
 *   - can_start takes the presets 1M, 500K, 250K, 125K, 100K, 50K, 20K, 10K; 800K (-1) is
 *     refused with CANERR_BAUDRATE;
 *   - can_read waits up to its timeout (0 polls, 65535 waits forever); can_kill wakes it, and it
 *     then returns CANERR_RX_EMPTY;
 *   - status frames (sts = 1, data[0] = TouCAN state code) are delivered only in mode ERR;
 *   - timestamps are CLOCK_MONOTONIC, as the library anchors the device counter to it.
 *
 * Test-only additions:
 *   - in-process: fake_push_frame, fake_push_status, fake_push_failure, fake_calls,
 *     fake_last_mode, fake_last_bitrate_index, fake_reset, fake_set_present, and the layout
 *     probes fake_sizeof_* / fake_offsetof_*;
 *   - across processes: FAKE_TOUCAN_CONTROL names a Unix datagram socket the library binds at
 *     its first can_init; each datagram holds command lines:
 *         frame ID FLAGS DLC HEX|- SEC NSEC   (FLAGS: the can_message_t flag byte; SEC -1 = now)
 *         status CODE                          (a status frame with data[0] = CODE)
 *         fail RC                              (can_read returns RC after the frames queued)
 *         burst COUNT ID                       (COUNT 8-byte frames stamped now)
 *     FAKE_TOUCAN_LOG names a file that gets one line per call (init, start, reset, exit, kill,
 *     write, injected read failures); FAKE_TOUCAN_CHANNELS is the number of adapters present (1).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- CAN API V3 types, as the library declares them ---- */

typedef struct {
    uint32_t id;
    struct {
        uint8_t xtd : 1;
        uint8_t rtr : 1;
        uint8_t fdf : 1;
        uint8_t brs : 1;
        uint8_t esi : 1;
        uint8_t : 2;
        uint8_t sts : 1;
    };
    uint8_t dlc;
    uint8_t data[64];
    struct timespec timestamp;
} can_message_t;

typedef union {
    int32_t index;
    struct {
        int32_t frequency;
        struct {
            uint16_t brp, tseg1, tseg2, sjw;
            uint8_t sam;
        } nominal;
        struct {
            uint16_t brp, tseg1, tseg2, sjw;
        } data;
    } btr;
} can_bitrate_t;

typedef struct {
    struct {
        bool fdoe;
        float speed;
        float samplepoint;
    } nominal;
    struct {
        bool brse;
        float speed;
        float samplepoint;
    } data;
} can_speed_t;

#if defined(__LP64__)
_Static_assert(sizeof(can_message_t) == 88, "can_message_t is 88 bytes on 64-bit Unix");
_Static_assert(offsetof(can_message_t, dlc) == 5, "dlc at offset 5");
_Static_assert(offsetof(can_message_t, data) == 6, "data at offset 6");
_Static_assert(offsetof(can_message_t, timestamp) == 72, "timestamp at offset 72");
#endif
_Static_assert(sizeof(can_bitrate_t) == 24, "can_bitrate_t is 24 bytes");

#define CANMODE_MON 0x01
#define CANMODE_ERR 0x02
#define CANMODE_NRTR 0x04
#define CANMODE_NXTD 0x08
#define TOUCAN_MODES (CANMODE_MON | CANMODE_ERR | CANMODE_NRTR | CANMODE_NXTD)

#define CANSTAT_RESET 0x80
#define CANSTAT_RX_EMPTY 0x04
#define CANSTAT_QUE_OVR 0x01

#define CANERR_NOERROR 0
#define CANERR_ONLINE (-8)
#define CANERR_OFFLINE (-9)
#define CANERR_RX_EMPTY (-30)
#define CANERR_BAUDRATE (-91)
#define CANERR_HANDLE (-92)
#define CANERR_ILLPARA (-93)
#define CANERR_NULLPTR (-94)
#define CANERR_NOTINIT (-95)
#define CANERR_YETINIT (-96)
#define CANERR_NOTSUPP (-98)

#define CANBRD_NOT_PRESENT (-1)
#define CANBRD_PRESENT 0
#define CANBRD_OCCUPIED 1

#define CANREAD_INFINITE 65535u
#define CANEXIT_ALL (-1)
#define MAX_CHANNELS 8
#define CAN_CLOCK 50000000
#define QUEUE_SIZE 65536

/* ---- state ---- */

static struct {
    bool open;
    bool started;
    uint8_t mode;
    int32_t index;
    uint8_t status;
} chan[MAX_CHANNELS];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static can_message_t queue[QUEUE_SIZE];
static int queue_rc[QUEUE_SIZE]; /* non-zero: this entry is a failure can_read returns */
static unsigned q_head, q_count;
static unsigned overruns;
static int present = -1;         /* adapters present; -1: not read from the environment yet */
static int wake_pipe[2] = {-1, -1};
static int control_fd = -1;
static int last_mode = -1;
static int last_index = 1;       /* 1: never started (presets are <= 0) */
static struct {
    const char *name;
    unsigned count;
} calls[] = {{"can_test", 0},  {"can_init", 0},    {"can_exit", 0},     {"can_kill", 0},
             {"can_start", 0}, {"can_reset", 0},   {"can_write", 0},    {"can_read", 0},
             {"can_status", 0}, {"can_busload", 0}, {"can_bitrate", 0}, {"can_property", 0},
             {"can_hardware", 0}, {"can_firmware", 0}, {"can_version", 0}};

static void count_call(const char *name) {
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        if (strcmp(calls[i].name, name) == 0)
            calls[i].count++;
}

static void log_line(const char *fmt, ...) {
    const char *path = getenv("FAKE_TOUCAN_LOG");
    if (!path || !*path)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        ssize_t ignored = write(fd, line, (size_t)n); /* one write: whole lines even with O_APPEND */
        (void)ignored;
        close(fd);
    }
}

static int adapters_present(void) {
    if (present < 0) {
        const char *text = getenv("FAKE_TOUCAN_CHANNELS");
        present = text ? atoi(text) : 1;
    }
    return present;
}

static bool valid_handle(int handle) { return handle >= 0 && handle < MAX_CHANNELS && chan[handle].open; }

static void monotonic_now(struct timespec *ts) { clock_gettime(CLOCK_MONOTONIC, ts); }

static void ensure_wake_pipe(void) {
    if (wake_pipe[0] < 0 && pipe(wake_pipe) == 0) {
        fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
        fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
        fcntl(wake_pipe[0], F_SETFD, FD_CLOEXEC);
        fcntl(wake_pipe[1], F_SETFD, FD_CLOEXEC);
    }
}

static void wake(char why) {
    ensure_wake_pipe();
    ssize_t ignored = write(wake_pipe[1], &why, 1);
    (void)ignored;
}

/* Reads every pending byte; true if one of them was a kill. */
static bool drain_wake_pipe(void) {
    bool killed = false;
    char buf[64];
    ssize_t n;
    while (wake_pipe[0] >= 0 && (n = read(wake_pipe[0], buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++)
            killed |= buf[i] == 'k';
    return killed;
}

static void ensure_control_socket(void) {
    const char *path = getenv("FAKE_TOUCAN_CONTROL");
    if (control_fd >= 0 || !path || !*path)
        return;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path))
        return;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0)
        return;
    fcntl(fd, F_SETFL, O_NONBLOCK); /* not SOCK_NONBLOCK: macOS lacks it */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return;
    }
    control_fd = fd;
}

/* Call with the lock held. */
static void enqueue_entry(const can_message_t *msg, int rc) {
    if (q_count == QUEUE_SIZE) {
        overruns++;
        return;
    }
    unsigned tail = (q_head + q_count) % QUEUE_SIZE;
    if (msg)
        queue[tail] = *msg;
    queue_rc[tail] = rc;
    q_count++;
}

static void enqueue(const can_message_t *msg) { enqueue_entry(msg, 0); }

/* A status frame as TouCAN delivers it: suppressed unless some open channel is in mode ERR. */
static void enqueue_status(uint8_t code) {
    bool wanted = false;
    for (int i = 0; i < MAX_CHANNELS; i++)
        wanted |= chan[i].open && (chan[i].mode & CANMODE_ERR);
    if (!wanted)
        return;
    can_message_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.sts = 1;
    msg.dlc = 1;
    msg.data[0] = code;
    monotonic_now(&msg.timestamp);
    enqueue(&msg);
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void run_command(char *line) {
    unsigned id, flags, dlc, code, count;
    long long sec, nsec;
    int rc;
    char hex[160];
    if (sscanf(line, "frame %x %u %u %159s %lld %lld", &id, &flags, &dlc, hex, &sec, &nsec) == 6) {
        can_message_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.id = id;
        memcpy((uint8_t *)&msg + 4, &(uint8_t){(uint8_t)flags}, 1);
        msg.dlc = (uint8_t)dlc;
        if (strcmp(hex, "-") != 0)
            for (size_t i = 0; hex[2 * i] && hex[2 * i + 1] && i < 64; i++)
                msg.data[i] = (uint8_t)(hex_value(hex[2 * i]) * 16 + hex_value(hex[2 * i + 1]));
        if (sec < 0) {
            monotonic_now(&msg.timestamp);
        } else {
            msg.timestamp.tv_sec = (time_t)sec;
            msg.timestamp.tv_nsec = (long)nsec;
        }
        enqueue(&msg);
    } else if (sscanf(line, "status %i", &code) == 1) {
        enqueue_status((uint8_t)code);
    } else if (sscanf(line, "fail %d", &rc) == 1) {
        enqueue_entry(NULL, rc);
    } else if (sscanf(line, "burst %u %x", &count, &id) == 2) {
        can_message_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.id = id;
        msg.dlc = 8;
        for (unsigned i = 0; i < count; i++) {
            memcpy(msg.data, &i, sizeof(i));
            monotonic_now(&msg.timestamp);
            enqueue(&msg);
        }
    } else {
        log_line("bad-command %s", line);
    }
}

/* Takes every datagram waiting on the control socket. Call with the lock held. */
static void poll_control(void) {
    char buf[65536];
    ssize_t n;
    while (control_fd >= 0 && (n = recv(control_fd, buf, sizeof(buf) - 1, 0)) > 0) {
        buf[n] = 0;
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            run_command(line);
    }
}

/* ---- the CAN API V3 ---- */

int can_test(int32_t channel, uint8_t mode, const void *param, int *result) {
    (void)param;
    count_call("can_test");
    if (channel < 0 || channel >= MAX_CHANNELS) {
        log_line("test channel=%d rc=%d", channel, CANERR_NOTINIT);
        return CANERR_NOTINIT;
    }
    int state = channel >= adapters_present() ? CANBRD_NOT_PRESENT
              : chan[channel].open ? CANBRD_OCCUPIED : CANBRD_PRESENT;
    if (result)
        *result = state;
    int rc = (state != CANBRD_NOT_PRESENT && (mode & ~TOUCAN_MODES)) ? CANERR_ILLPARA : 0;
    log_line("test channel=%d mode=0x%02x result=%d rc=%d", channel, mode, state, rc);
    return rc;
}

int can_init(int32_t channel, uint8_t mode, const void *param) {
    (void)param;
    pthread_mutex_lock(&lock);
    count_call("can_init");
    int rc;
    if (channel < 0 || channel >= MAX_CHANNELS)
        rc = CANERR_NOTINIT;
    else if (channel >= adapters_present())
        rc = CANERR_HANDLE;
    else if (chan[channel].open)
        rc = CANERR_YETINIT;
    else if (mode & ~TOUCAN_MODES)
        rc = CANERR_ILLPARA;
    else {
        ensure_wake_pipe();
        ensure_control_socket();
        drain_wake_pipe();
        chan[channel].open = true;
        chan[channel].started = false;
        chan[channel].mode = mode;
        chan[channel].status = CANSTAT_RESET;
        last_mode = mode;
        rc = channel; /* the handle */
    }
    pthread_mutex_unlock(&lock);
    log_line("init channel=%d mode=0x%02x rc=%d", channel, mode, rc);
    return rc;
}

int can_exit(int handle) {
    pthread_mutex_lock(&lock);
    count_call("can_exit");
    int rc = CANERR_NOERROR;
    if (handle == CANEXIT_ALL) {
        for (int i = 0; i < MAX_CHANNELS; i++)
            chan[i].open = chan[i].started = false;
    } else if (!valid_handle(handle)) {
        rc = CANERR_HANDLE;
    } else {
        chan[handle].open = chan[handle].started = false;
        chan[handle].status = CANSTAT_RESET;
    }
    pthread_mutex_unlock(&lock);
    log_line("exit handle=%d rc=%d", handle, rc);
    return rc;
}

int can_kill(int handle) {
    count_call("can_kill");
    int rc = CANERR_NOERROR;
    if (handle != CANEXIT_ALL && !valid_handle(handle))
        rc = CANERR_HANDLE;
    else
        wake('k');
    log_line("kill handle=%d rc=%d", handle, rc);
    return rc;
}

static bool preset_timing(int32_t index, uint16_t *brp, uint16_t *tseg1, uint16_t *tseg2) {
    /* TouCAN's 50 MHz clock; 800K (-1) has no setting */
    static const struct { int32_t index; uint16_t brp, tseg1, tseg2; } presets[] = {
        {0, 5, 7, 2}, {-2, 5, 14, 5}, {-3, 10, 14, 5}, {-4, 20, 14, 5},
        {-5, 25, 14, 5}, {-6, 50, 14, 5}, {-7, 125, 14, 5}, {-8, 250, 14, 5}};
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (presets[i].index == index) {
            *brp = presets[i].brp;
            *tseg1 = presets[i].tseg1;
            *tseg2 = presets[i].tseg2;
            return true;
        }
    return false;
}

int can_start(int handle, const can_bitrate_t *bitrate) {
    pthread_mutex_lock(&lock);
    count_call("can_start");
    int rc = CANERR_NOERROR;
    int32_t index = bitrate ? bitrate->index : 1;
    uint16_t brp, tseg1, tseg2;
    if (!valid_handle(handle))
        rc = CANERR_HANDLE;
    else if (!bitrate)
        rc = CANERR_NULLPTR;
    else if (chan[handle].started)
        rc = CANERR_ONLINE;
    else if (index <= 0 && !preset_timing(index, &brp, &tseg1, &tseg2))
        rc = CANERR_BAUDRATE;
    else if (index > 0 && bitrate->btr.frequency != CAN_CLOCK)
        rc = CANERR_BAUDRATE;
    else {
        chan[handle].started = true;
        chan[handle].index = index;
        chan[handle].status = 0;
        last_index = index;
        q_head = q_count = 0; /* the library empties its receive queue on start */
        poll_control();       /* ...including what was sent before the start */
        q_head = q_count = 0;
        drain_wake_pipe();
    }
    pthread_mutex_unlock(&lock);
    log_line("start handle=%d index=%d rc=%d", handle, index, rc);
    return rc;
}

int can_reset(int handle) {
    pthread_mutex_lock(&lock);
    count_call("can_reset");
    int rc = CANERR_NOERROR;
    if (!valid_handle(handle))
        rc = CANERR_HANDLE;
    else {
        chan[handle].started = false;
        chan[handle].status = CANSTAT_RESET;
    }
    pthread_mutex_unlock(&lock);
    log_line("reset handle=%d rc=%d", handle, rc);
    return rc;
}

int can_write(int handle, const can_message_t *msg, uint16_t timeout) {
    (void)timeout;
    count_call("can_write");
    if (!valid_handle(handle))
        return CANERR_HANDLE;
    if (!msg)
        return CANERR_NULLPTR;
    int rc = CANERR_NOERROR;
    if (!chan[handle].started)
        rc = CANERR_OFFLINE;
    else if (chan[handle].mode & CANMODE_MON)
        rc = CANERR_ILLPARA;
    static const int lengths[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64};
    int n = msg->fdf ? lengths[msg->dlc & 0x0F] : (msg->dlc > 8 ? 8 : msg->dlc);
    char hex[129];
    for (int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02X", msg->data[i]);
    hex[2 * n] = 0;
    log_line("write handle=%d id=%X xtd=%d fdf=%d brs=%d dlc=%d data=%s rc=%d", handle,
             (unsigned)msg->id, msg->xtd, msg->fdf, msg->brs, msg->dlc, n ? hex : "-", rc);
    return rc;
}

static long remaining_ms(const struct timespec *deadline) {
    struct timespec now;
    monotonic_now(&now);
    long ms = (long)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms;
}

int can_read(int handle, can_message_t *msg, uint16_t timeout) {
    count_call("can_read");
    if (!valid_handle(handle))
        return CANERR_HANDLE;
    if (!msg)
        return CANERR_NULLPTR;
    struct timespec deadline;
    monotonic_now(&deadline);
    deadline.tv_sec += timeout / 1000;
    deadline.tv_nsec += (long)(timeout % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (;;) {
        pthread_mutex_lock(&lock);
        if (!chan[handle].started) {
            pthread_mutex_unlock(&lock);
            return CANERR_OFFLINE;
        }
        poll_control();
        if (q_count) {
            int rc = queue_rc[q_head];
            if (!rc)
                *msg = queue[q_head];
            q_head = (q_head + 1) % QUEUE_SIZE;
            q_count--;
            pthread_mutex_unlock(&lock);
            if (rc)
                log_line("read-fail handle=%d rc=%d", handle, rc);
            return rc;
        }
        pthread_mutex_unlock(&lock);
        if (timeout == 0)
            return CANERR_RX_EMPTY;
        struct pollfd fds[2] = {{wake_pipe[0], POLLIN, 0}, {control_fd, POLLIN, 0}};
        int wait = timeout == CANREAD_INFINITE ? -1 : (int)remaining_ms(&deadline);
        int ready = poll(fds, control_fd >= 0 ? 2 : 1, wait);
        if (ready < 0 && errno != EINTR)
            return CANERR_RX_EMPTY;
        if ((fds[0].revents & POLLIN) && drain_wake_pipe())
            return CANERR_RX_EMPTY; /* woken by can_kill */
        if (ready == 0)
            return CANERR_RX_EMPTY; /* nothing within the timeout */
    }
}

int can_status(int handle, uint8_t *status) {
    count_call("can_status");
    if (!valid_handle(handle))
        return CANERR_HANDLE;
    if (status)
        *status = chan[handle].status | (q_count ? 0 : CANSTAT_RX_EMPTY) | (overruns ? CANSTAT_QUE_OVR : 0);
    return CANERR_NOERROR;
}

int can_busload(int handle, uint8_t *load, uint8_t *status) {
    count_call("can_busload");
    if (load)
        *load = 0;
    return can_status(handle, status);
}

int can_bitrate(int handle, can_bitrate_t *bitrate, can_speed_t *speed) {
    count_call("can_bitrate");
    if (!valid_handle(handle))
        return CANERR_HANDLE;
    if (!chan[handle].started)
        return CANERR_OFFLINE;
    uint16_t brp, tseg1, tseg2;
    if (!preset_timing(chan[handle].index, &brp, &tseg1, &tseg2))
        return CANERR_BAUDRATE;
    if (bitrate) {
        memset(bitrate, 0, sizeof(*bitrate));
        bitrate->btr.frequency = CAN_CLOCK;
        bitrate->btr.nominal.brp = brp;
        bitrate->btr.nominal.tseg1 = tseg1;
        bitrate->btr.nominal.tseg2 = tseg2;
        bitrate->btr.nominal.sjw = 1;
    }
    if (speed) {
        memset(speed, 0, sizeof(*speed));
        speed->nominal.speed = (float)CAN_CLOCK / (float)(brp * (1 + tseg1 + tseg2));
        speed->nominal.samplepoint = (float)(1 + tseg1) / (float)(1 + tseg1 + tseg2);
    }
    return CANERR_NOERROR;
}

int can_property(int handle, uint16_t param, void *value, uint32_t nbyte) {
    (void)handle, (void)param, (void)value, (void)nbyte;
    count_call("can_property");
    return CANERR_NOTSUPP;
}

char *can_hardware(int handle) {
    static char text[64];
    count_call("can_hardware");
    if (!valid_handle(handle))
        return NULL;
    snprintf(text, sizeof(text), "TouCAN-USB%d (fake), hardware 1.0.0", handle + 1);
    return text;
}

char *can_firmware(int handle) {
    count_call("can_firmware");
    if (!valid_handle(handle))
        return NULL;
    return (char *)"fake firmware 1.0.0";
}

char *can_version(void) {
    count_call("can_version");
    return (char *)"CAN API V3 fake for the cancorder tests";
}

/* ---- test-only functions (in-process tests) ---- */

void fake_reset(void) {
    pthread_mutex_lock(&lock);
    memset(chan, 0, sizeof(chan));
    q_head = q_count = overruns = 0;
    present = -1;
    last_mode = -1;
    last_index = 1;
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        calls[i].count = 0;
    drain_wake_pipe();
    pthread_mutex_unlock(&lock);
}

void fake_set_present(int count) { present = count; }

void fake_push_frame(uint32_t id, uint8_t flags, uint8_t dlc, const uint8_t *data, int64_t sec, int64_t nsec) {
    can_message_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.id = id;
    memcpy((uint8_t *)&msg + 4, &flags, 1);
    msg.dlc = dlc;
    if (data)
        memcpy(msg.data, data, 64);
    if (sec < 0) {
        monotonic_now(&msg.timestamp);
    } else {
        msg.timestamp.tv_sec = (time_t)sec;
        msg.timestamp.tv_nsec = (long)nsec;
    }
    pthread_mutex_lock(&lock);
    enqueue(&msg);
    pthread_mutex_unlock(&lock);
    wake('w');
}

void fake_push_burst(unsigned count, uint32_t id) {
    char line[64];
    snprintf(line, sizeof(line), "burst %u %x", count, id);
    pthread_mutex_lock(&lock);
    run_command(line);
    pthread_mutex_unlock(&lock);
    wake('w');
}

void fake_push_status(uint8_t code) {
    pthread_mutex_lock(&lock);
    enqueue_status(code);
    pthread_mutex_unlock(&lock);
    wake('w');
}

/* can_read returns rc once the frames queued before it are read. */
void fake_push_failure(int rc) {
    pthread_mutex_lock(&lock);
    enqueue_entry(NULL, rc);
    pthread_mutex_unlock(&lock);
    wake('w');
}

unsigned fake_calls(const char *name) {
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        if (strcmp(calls[i].name, name) == 0)
            return calls[i].count;
    return 0;
}

int fake_last_mode(void) { return last_mode; }
int fake_last_bitrate_index(void) { return last_index; }
unsigned fake_queued(void) { return q_count; }

size_t fake_sizeof_message(void) { return sizeof(can_message_t); }
size_t fake_sizeof_bitrate(void) { return sizeof(can_bitrate_t); }
size_t fake_sizeof_speed(void) { return sizeof(can_speed_t); }
size_t fake_offsetof_dlc(void) { return offsetof(can_message_t, dlc); }
size_t fake_offsetof_data(void) { return offsetof(can_message_t, data); }
size_t fake_offsetof_timestamp(void) { return offsetof(can_message_t, timestamp); }

/* The flag byte with exactly one named bit-field set: ties the C bit-field order to the masks
 * the binding uses. */
uint8_t fake_flag_byte(const char *field) {
    can_message_t msg;
    memset(&msg, 0, sizeof(msg));
    if (strcmp(field, "xtd") == 0) msg.xtd = 1;
    else if (strcmp(field, "rtr") == 0) msg.rtr = 1;
    else if (strcmp(field, "fdf") == 0) msg.fdf = 1;
    else if (strcmp(field, "brs") == 0) msg.brs = 1;
    else if (strcmp(field, "esi") == 0) msg.esi = 1;
    else if (strcmp(field, "sts") == 0) msg.sts = 1;
    return ((uint8_t *)&msg)[4];
}
