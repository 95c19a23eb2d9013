/*
 * ssebench: a Server-Sent Events load client for benchmarking nginx SSE hubs
 * (ngx_http_sse_module, nchan) side by side.
 *
 * One run is one scenario against one server.  The parent process is the
 * publisher and the aggregator; the subscribers live in P forked children
 * (subscriber i belongs to child i % P), because one process may hold at
 * most 20,000 descriptors here.  Every process runs its own epoll loop on
 * non-blocking sockets, without threads.  Parent and children talk over a
 * socketpair with small binary messages (a header, then a fixed struct or
 * an array).  The results go to stdout as one JSON object; progress goes
 * to stderr with -v.
 *
 * Several servers (--port P1,P2: nodes of one hub, e.g. on one Redis): the
 * subscribers are split among them, the POSTs go to each in turn, and each
 * --pidfile / --pids is sampled and reported apart.  An event is known by
 * the channel and sequence number its publisher wrote into its data, never
 * by its SSE id (an id may be a server's own counter or Redis's <ms>-<seq>,
 * whose seq restarts every millisecond): duplicates and order are checked
 * per subscriber against those sequence numbers.
 *
 * Build: gcc -O2 -g -Wall -Wextra -Werror -std=gnu11 -o ssebench ssebench.c -lm
 * Linux only (epoll, timerfd, /proc, IP_BIND_ADDRESS_NO_PORT).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24      /* <linux/in.h>, not in glibc's */
#endif

#define NS_PER_S      1000000000ull
#define NS_PER_MS     1000000ull
#define RBUF_SIZE     (256 * 1024)      /* one read buffer per process */
#define HDR_MAX       8192              /* longest response head accepted */
#define RESP_MAX      65536             /* longest publish response accepted */
#define LINE_KEEP     96                /* line prefix kept across reads: the
                                           payload fields fit in ~60 bytes */
#define CONNECT_TRIES 6                 /* the first attempt and 5 retries */
#define RETRY_NS      (100 * NS_PER_MS)
#define WARMUP_NS     (30 * NS_PER_S)
#define PUB_STALL_NS  (30 * NS_PER_S)   /* a POST unanswered this long is fatal */
#define EPOLL_BATCH   1024
#define MAX_PIDS      256
#define MAX_PORTS     64                /* servers in --port */
#define MAX_GROUPS    16                /* --pidfile and --pids groups */

#ifndef PROG
#define PROG          "ssebench"        /* h2bench.c names itself */
#endif

/* ------------------------------------------------------------ options */

/* What --pidfile or --pids names: the processes of one server, sampled
 * and reported together (a pid file: its master and the master's children). */
struct group {
    const char *pidfile, *pids;
};

static struct opts {
    int ports[MAX_PORTS];
    uint32_t nports;
    const char *sub_prefix, *pub_prefix, *chan_prefix;
    uint32_t subs, channels, addrs, procs, concurrency;
    double connect_timeout, hold, rate, drain_timeout;
    uint32_t events, size, batch, pub_conns;
    bool pub_event_stream, ordered, verbose;
    struct group groups[MAX_GROUPS];
    uint32_t ngroups;
    const char *label;
#ifdef SSEBENCH_H2
    int h2_port;                        /* subscribers: HTTP/2 over TLS there */
    uint32_t streams;                   /* streams per HTTP/2 connection */
#endif
} O = {
    .sub_prefix = "/events/", .pub_prefix = "/pub/", .chan_prefix = "c",
    .subs = 100, .channels = 1, .addrs = 1, .procs = 1, .concurrency = 256,
    .connect_timeout = 60, .drain_timeout = 10,
    .events = 1000, .size = 64, .batch = 1, .pub_conns = 4,
    .label = "",
#ifdef SSEBENCH_H2
    .streams = 100,
#endif
};

static const char usage_text[] =
"usage: ssebench --port P[,P2,...] [options]\n"
"\n"
"Opens N EventSource-style subscribers on 127.0.0.1:P, publishes M events\n"
"over keep-alive POSTs, counts what every subscriber received, and prints\n"
"one JSON object on stdout.\n"
"\n"
"  --port P[,P2,...]        server port(s) on 127.0.0.1 (required); with n\n"
"                           ports, subscriber i connects to port i % n,\n"
"                           publisher connection j to port j % n, and\n"
"                           POST b (batch b) goes to port b % n: the POSTs\n"
"                           go to the servers in turn\n"
"  --sub-prefix STR         subscribe path prefix (default /events/)\n"
"  --pub-prefix STR         publish path prefix (default /pub/)\n"
"  --channel-prefix STR     channel j is named STR<j> (default c)\n"
"  --subs N                 subscribers (default 100); i subscribes to i % C\n"
"  --channels C             channels (default 1)\n"
"  --procs P                subscriber processes (default 1)\n"
"  --addrs K                source addresses 127.0.0.1..127.0.0.K (default 1)\n"
"  --connect-concurrency X  connects in flight per process (default 256)\n"
"  --connect-timeout S      seconds for the whole connect phase (default 60)\n"
"  --hold S                 idle seconds after connecting, before the\n"
"                           warm-up; server memory is sampled at its end (default 0)\n"
"  --events M               measured events in total (default 1000)\n"
"  --rate R                 measured events per second, 0 = as fast as\n"
"                           possible (default 0; fractions allowed)\n"
"  --size B                 bytes of event data (default 64)\n"
"  --batch K                events per POST, as a text/event-stream body (default 1)\n"
"  --pub-format F           plain (default) or event-stream, for --batch 1\n"
"  --pub-conns J            publisher keep-alive connections (default 4)\n"
"  --ordered                at most one POST in flight per channel: every\n"
"                           pair of events then has an order to check (by\n"
"                           default, POSTs in flight together may be\n"
"                           published in either order and are not counted\n"
"                           as out_of_order)\n"
"  --drain-timeout S        a subscriber process stops waiting after S\n"
"                           seconds without a new event (default 10)\n"
"  --pids LIST              server pids to sample (comma-separated), one\n"
"                           server; may be given again for another\n"
"  --pidfile F[,F2,...]     server master pid file(s); their children are\n"
"                           sampled too; may be given again.  Each pid file\n"
"                           and each --pids is one server, reported apart\n"
"                           in \"servers\" and summed in the totals\n"
"  --label STR              copied into the JSON\n"
"\n"
#ifdef SSEBENCH_H2
"\n"
"h2bench: the subscribers are HTTP/2 streams over TLS (ALPN h2, the server's\n"
"certificate not checked); the publisher stays on plain HTTP/1.1 (--port).\n"
"  --h2-port Q              the subscribers' TLS port on 127.0.0.1 (required)\n"
"  --streams S              streams per connection (default 100): N\n"
"                           subscribers make ceil(N/S) connections, and\n"
"                           --connect-concurrency counts connections\n"
#endif
"\n"
"The JSON has, among others, latency_us (POST sent to event received, over\n"
"every delivery) and post_latency_us (POST sent to its answer received).\n"
"  -v, --verbose            progress on stderr\n"
"  -h, --help               this text\n";

/* ------------------------------------------------------------ small helpers */

static int child_index = -1;            /* -1 in the parent */
static uint64_t run_start_ns;           /* CLOCK_MONOTONIC at start, before fork */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void vmsg(const char *fmt, va_list ap)
{
    char line[512];
    int n = 0;

    if (child_index >= 0)
        n = snprintf(line, sizeof line, PROG ": child %d: ", child_index);
    else
        n = snprintf(line, sizeof line, PROG ": ");
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    fprintf(stderr, "%s\n", line);
}

/* Progress, only with -v. */
static void verbose(const char *fmt, ...)
{
    va_list ap;

    if (!O.verbose)
        return;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

/* A setup error that leaves nothing to measure. */
static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    _exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (!p)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* Decimal digits of v at d; returns their count.  The publisher formats
 * every payload, so this avoids snprintf on the hot path. */
static size_t fmt_u64(char *d, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        d[i] = tmp[n - 1 - i];
    return n;
}

/* Parses digits followed by one space at *p; at most 19 digits. */
static bool take_uint(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    int digits = 0;

    while (s < end && *s >= '0' && *s <= '9' && digits < 19) {
        x = x * 10 + (uint64_t)(*s++ - '0');
        digits++;
    }
    if (!digits || s >= end || *s != ' ')
        return false;
    *v = x;
    *p = s + 1;
    return true;
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        len -= (size_t)r;
    }
    return true;
}

static void epoll_set(int ep, int op, int fd, uint32_t events, uint64_t key)
{
    struct epoll_event ev = { .events = events, .data.u64 = key };

    if (epoll_ctl(ep, op, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

/* Milliseconds for epoll_wait until deadline (rounded up); -1 for none. */
static int ms_until(uint64_t deadline, uint64_t now)
{
    if (deadline == UINT64_MAX)
        return -1;
    if (deadline <= now)
        return 0;
    uint64_t ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > 60000 ? 60000 : (int)ms;
}

static uint64_t rusage_cpu_ns(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * NS_PER_S +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* ------------------------------------------------------------ messages
 * Parent and child exchange messages on a blocking socketpair: a header
 * then the payload.  Both sides write a whole message at once and read one
 * only when epoll says it has begun to arrive, so the blocking reads are
 * short; the exchange is lock-step, so neither side can block on a write
 * while the other blocks on one. */

enum msg_type {
    MSG_CONNECTED = 1,      /* child: struct msg_connected */
    MSG_WARM,               /* child: struct msg_warm */
    MSG_RESULT,             /* child: struct stats */
    CMD_WARMUP,             /* parent: the warm-up is being published */
    CMD_START,              /* parent: the measured phase starts now */
    CMD_PUBLISHED,          /* parent: uint32_t per channel, events published */
    CMD_ABORT,              /* parent: report what you have, now */
};

struct msg_head {
    uint32_t type, len;
};

struct msg_connected {
    uint32_t connected, failed;
    uint64_t elapsed_ns;
};

struct msg_warm {
    uint32_t got, missing;
};

static bool msg_send(int fd, uint32_t type, const void *p, uint32_t len)
{
    struct msg_head h = { type, len };

    return write_all(fd, &h, sizeof h) && write_all(fd, p, len);
}

/* Reads one message into buf; returns its length, -1 at EOF or error. */
static long msg_recv(int fd, uint32_t *type, void *buf, size_t cap)
{
    struct msg_head h;

    if (!read_all(fd, &h, sizeof h) || h.len > cap || !read_all(fd, buf, h.len))
        return -1;
    *type = h.type;
    return h.len;
}

/* ------------------------------------------------------------ histogram
 * Log-linear latency histogram in microseconds: values below 64 have a
 * bucket each; above, every power of two is split into 64 sub-buckets, so
 * a bucket is at most 1/64 (1.6%) of its values wide.  2^27 us (134 s) and
 * above share the last bucket. */

#define H_SUB_BITS 6
#define H_SUB      (1u << H_SUB_BITS)
#define H_MAX_EXP  27
#define H_BUCKETS  (H_SUB + (H_MAX_EXP - H_SUB_BITS) * H_SUB)

static unsigned hist_bucket(uint64_t us)
{
    if (us < H_SUB)
        return (unsigned)us;
    unsigned k = 63 - (unsigned)__builtin_clzll(us);
    if (k >= H_MAX_EXP)
        return H_BUCKETS - 1;
    return H_SUB + (k - H_SUB_BITS) * H_SUB +
           (unsigned)((us >> (k - H_SUB_BITS)) - H_SUB);
}

/* The middle of bucket b, in microseconds. */
static double hist_value(unsigned b)
{
    if (b < H_SUB)
        return b + 0.5;
    unsigned shift = (b - H_SUB) / H_SUB;
    uint64_t low = (uint64_t)((b - H_SUB) % H_SUB + H_SUB) << shift;
    return (double)low + (double)(1ull << shift) / 2;
}

static double hist_percentile(const uint64_t *h, uint64_t count, double q, double max)
{
    uint64_t rank = (uint64_t)ceil(q * (double)count), seen = 0;

    if (rank < 1)
        rank = 1;
    for (unsigned b = 0; b < H_BUCKETS; b++) {
        seen += h[b];
        if (seen >= rank) {
            double v = hist_value(b);
            return v > max ? max : v;
        }
    }
    return max;
}

/* What one subscriber process reports (and the parent sums up). */
struct stats {
    uint64_t deliveries;        /* measured events received, seq >= 1 */
    uint64_t unique, duplicated, out_of_order, wrong_channel, closed_early;
    uint64_t expected, missing;
    uint64_t first_ns, last_ns; /* first and last measured delivery */
    uint64_t max_lat_ns;
    uint64_t cpu_ns;            /* user + system time of the measured phase */
    uint64_t hist[H_BUCKETS];
};

/* ------------------------------------------------------------ HTTP helpers */

struct http_head {
    int status;
    bool chunked, close;
    long long content_length;   /* -1 when absent */
};

/* Whether the n bytes at v contain tok, ignoring case. */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t t = strlen(tok);

    for (size_t i = 0; i + t <= n; i++)
        if (strncasecmp(v + i, tok, t) == 0)
            return true;
    return false;
}

static bool header_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);

    return n > k && line[k] == ':' && strncasecmp(line, name, k) == 0;
}

static void parse_header(struct http_head *h, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);

    if (!colon)
        return;
    const char *v = colon + 1;
    size_t vn = n - (size_t)(v - line);

    if (header_is(line, n, "transfer-encoding"))
        h->chunked = has_token(v, vn, "chunked");
    else if (header_is(line, n, "connection"))
        h->close = has_token(v, vn, "close");
    else if (header_is(line, n, "content-length")) {
        while (vn && (*v == ' ' || *v == '\t'))
            v++, vn--;
        h->content_length = 0;
        while (vn && *v >= '0' && *v <= '9')
            h->content_length = h->content_length * 10 + (*v++ - '0'), vn--;
    }
}

/* Parses a response head (status line and headers, len bytes ending with
 * CRLFCRLF).  Returns false when the status line is not HTTP. */
static bool parse_head(const char *buf, size_t len, struct http_head *h)
{
    const char *end = buf + len, *p;

    *h = (struct http_head){ .content_length = -1 };
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return false;
    if (!isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
        !isdigit((unsigned char)buf[11]))
        return false;
    h->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    h->close = buf[7] == '0';           /* HTTP/1.0 closes unless told otherwise */

    p = memchr(buf, '\n', len);
    while (p && ++p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (!n)
            break;                      /* the blank line ending the head */
        parse_header(h, p, n);
        p = nl;
    }
    return true;
}

/* Chunked transfer decoding, incremental: the state survives between the
 * pieces a body arrives in, and a chunk header, its CRLF or the data may be
 * split anywhere.  Only chunk headers are walked byte by byte; the data is
 * handed to the sink in as few pieces as the chunks allow. */

enum chunk_state {
    CK_SIZE,        /* hex digits of a chunk size */
    CK_EXT,         /* ";ext" after the size, up to LF */
    CK_SIZE_LF,     /* CR seen after the size */
    CK_DATA,        /* chunk data, *left bytes to go */
    CK_DATA_CR,     /* the CRLF after chunk data */
    CK_DATA_LF,
    CK_TRAILER,     /* after the 0 chunk: at the start of a trailer line */
    CK_TRAILER_LF,  /* CR seen at the start of a trailer line */
    CK_TRAILER_LINE,/* inside a trailer line */
    CK_END,         /* the body is complete */
    CK_RAW,         /* not chunked: the body runs to EOF */
};

typedef void sink_fn(void *ctx, const char *p, size_t n);

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One step of the chunk-header states at *p; returns false if malformed. */
static bool chunk_header_byte(uint8_t *st, uint64_t *left, char c)
{
    int v;

    switch (*st) {
    case CK_SIZE:
        if ((v = hex_value(c)) >= 0) {
            if (*left >> 56)
                return false;           /* absurd size */
            *left = *left * 16 + (uint64_t)v;
            return true;
        }
        if (c == ';' || c == ' ' || c == '\t')
            *st = CK_EXT;
        else if (c == '\r')
            *st = CK_SIZE_LF;
        else if (c == '\n')
            *st = *left ? CK_DATA : CK_TRAILER;
        else
            return false;
        return true;
    case CK_SIZE_LF:
        if (c != '\n')
            return false;
        *st = *left ? CK_DATA : CK_TRAILER;
        return true;
    case CK_DATA_CR:
        if (c == '\r')
            *st = CK_DATA_LF;
        else if (c == '\n')
            *st = CK_SIZE;
        else
            return false;
        return true;
    case CK_DATA_LF:
        if (c != '\n')
            return false;
        *st = CK_SIZE;
        return true;
    case CK_TRAILER:
        *st = c == '\r' ? CK_TRAILER_LF : c == '\n' ? CK_END : CK_TRAILER_LINE;
        return true;
    case CK_TRAILER_LF:
        *st = c == '\n' ? CK_END : CK_TRAILER_LINE;
        return true;
    }
    return false;
}

/* Feeds [p, end) through the decoder; data goes to sink (may be NULL).
 * Returns 1 once the body is complete, -1 if malformed, 0 otherwise. */
static int dechunk(uint8_t *st, uint64_t *left, const char *p, const char *end,
                   sink_fn *sink, void *ctx)
{
    while (p < end) {
        if (*st == CK_DATA) {
            size_t n = (size_t)(end - p) < *left ? (size_t)(end - p) : (size_t)*left;
            if (sink)
                sink(ctx, p, n);
            p += n;
            if ((*left -= n) == 0)
                *st = CK_DATA_CR;
        } else if (*st == CK_EXT || *st == CK_TRAILER_LINE) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                return 0;
            p = nl + 1;
            *st = *st == CK_EXT ? (*left ? CK_DATA : CK_TRAILER) : CK_TRAILER;
        } else if (*st == CK_END) {
            return 1;
        } else if (!chunk_header_byte(st, left, *p++)) {
            return -1;
        }
    }
    return *st == CK_END ? 1 : 0;
}

/* ------------------------------------------------------------ the plan
 * Which events the measured phase publishes is deterministic: batch b
 * (--batch events, the last one maybe fewer) goes to channel b % C.  Both
 * the parent and the children compute it, so a child can size its
 * per-subscriber bitmaps before anything is published. */

static uint32_t *plan;                  /* measured events per channel */

static uint32_t batch_count(void)
{
    return (uint32_t)(((uint64_t)O.events + O.batch - 1) / O.batch);
}

static uint32_t batch_events(uint32_t b)
{
    uint64_t first = (uint64_t)b * O.batch;

    return O.events - first < O.batch ? (uint32_t)(O.events - first) : O.batch;
}

static void make_plan(void)
{
    plan = xcalloc(O.channels, sizeof *plan);
    for (uint32_t b = 0, nb = batch_count(); b < nb; b++)
        plan[b % O.channels] += batch_events(b);
}

/* ======================================================================
 * Subscriber processes
 * ====================================================================== */

enum sub_state { S_QUEUED, S_CONNECTING, S_HEADERS, S_STREAM, S_CLOSED, S_FAILED };

#define F_AFTER_CR  0x01    /* the last piece ended in CR: a LF next is its pair */
#define F_INLINE    0x02    /* inside a line begun in an earlier piece */
#define F_EV_DATA   0x04    /* the current event had its first data line */
#define F_PENDING   0x08    /* ... and it carried one of our payloads */
#define F_WRONG     0x10    /* ... for another channel */
#define F_WARM      0x20    /* got the warm-up event */
#define F_DONE      0x40    /* got every event of its channel */

/* One subscriber, kept small: the parser state is a few flags, the pending
 * event's seq and latency, and a carry block only while a line is split. */
struct sub {
    int fd;
    uint32_t idx;           /* global subscriber number */
    uint32_t chan;
    uint8_t state, tries, flags, ck;
    uint16_t buf_len;
    uint32_t pend_seq, pend_floor;
    uint64_t pend_lat_ns;
    uint64_t ck_left;
    char *buf;              /* S_HEADERS: the response head; S_STREAM: carry */
    uint32_t unique;
    uint32_t max_floor;     /* highest floor of the events received */
    size_t bm_off;          /* first word of its bitmap in ch.bits */
};

static struct child {
    int ctl, ep;
    char *rbuf;
    uint32_t n;
    struct sub *subs;
    uint32_t *expect;       /* events per channel: the plan, then the published */
    uint64_t *bits;         /* every subscriber's seen-bitmap, one allocation */

    /* connect phase */
    uint32_t next_fresh, inflight, connected, failed;
    uint32_t *rq;           /* retry ring, in due order (fixed backoff) */
    uint64_t *rq_due;
    uint32_t rq_head, rq_len;
    uint64_t t_connect, connect_deadline;
    bool connect_reported;

    /* later phases */
    uint32_t waiting;       /* open subscribers still missing events */
    uint32_t warm_waiting;  /* open subscribers without the warm-up */
    uint32_t warm_got;
    bool warm_asked, warm_reported, published, result_sent;
    uint64_t warm_deadline, last_progress;
    uint64_t cpu0;
    uint32_t closes_logged, refusals_logged;
    uint64_t stale;         /* events of earlier runs, ignored */
    struct stats st;
} ch;

/* --- carry blocks: a free list of fixed blocks, so no malloc per event */

static char *carry_free;

static char *carry_get(void)
{
    if (!carry_free) {
        enum { SLAB = 256 };
        char *slab = xcalloc(SLAB, LINE_KEEP);
        for (int i = 0; i < SLAB; i++) {
            *(char **)(slab + i * LINE_KEEP) = carry_free;
            carry_free = slab + i * LINE_KEEP;
        }
    }
    char *b = carry_free;
    carry_free = *(char **)b;
    return b;
}

static void carry_put(char *b)
{
    *(char **)b = carry_free;
    carry_free = b;
}

static void carry_append(struct sub *s, const char *p, size_t n)
{
    size_t room = LINE_KEEP - s->buf_len;

    if (n > room)
        n = room;                       /* only the line's prefix matters */
    memcpy(s->buf + s->buf_len, p, n);
    s->buf_len = (uint16_t)(s->buf_len + n);
}

static void sub_free_buf(struct sub *s)
{
    if (!s->buf)
        return;
    if (s->state == S_HEADERS)
        free(s->buf);
    else
        carry_put(s->buf);
    s->buf = NULL;
    s->buf_len = 0;
}

/* --- counting */

static void sub_done(struct sub *s)
{
    s->flags |= F_DONE;
    if (s->state == S_STREAM)
        ch.waiting--;
}

static void got_warmup(struct sub *s)
{
    if (s->flags & F_WARM)
        return;                         /* a repeated warm-up is not counted */
    s->flags |= F_WARM;
    ch.warm_got++;
    ch.warm_waiting--;
}

/* Whether seq, just received for the first time, should have come before
 * an event already received: either it was answered before that event was
 * even sent (its floor says so; POSTs in flight together have no order,
 * see format_payload), or that event is its successor in the same POST (a
 * batch is published in order; per channel, seqs come in batches of K).
 * seq + 1 exists only below the channel's count. */
static bool arrived_late(const struct sub *s, uint32_t seq)
{
    if (seq <= s->max_floor)
        return true;
    if (seq % O.batch == 0 || seq >= ch.expect[s->chan])
        return false;
    uint32_t next = seq + 1;
    return ch.bits[s->bm_off + (next >> 6)] >> (next & 63) & 1;
}

/* The event whose first data line carried our payload was dispatched. */
static void deliver(struct sub *s, uint64_t now)
{
    uint32_t seq = s->pend_seq;

    if ((s->flags & F_WRONG) || seq > ch.expect[s->chan]) {
        ch.st.wrong_channel++;
        return;
    }
    if (seq == 0) {
        got_warmup(s);
        return;
    }

    uint64_t lat = s->pend_lat_ns;
    ch.st.deliveries++;
    ch.st.hist[hist_bucket(lat / 1000)]++;
    if (lat > ch.st.max_lat_ns)
        ch.st.max_lat_ns = lat;
    if (!ch.st.first_ns)
        ch.st.first_ns = now;
    ch.st.last_ns = ch.last_progress = now;

    uint64_t *w = ch.bits + s->bm_off + (seq >> 6), bit = 1ull << (seq & 63);
    if (*w & bit) {
        ch.st.duplicated++;
        return;
    }
    *w |= bit;
    if (arrived_late(s, seq))
        ch.st.out_of_order++;
    if (s->pend_floor > s->max_floor)
        s->max_floor = s->pend_floor;
    if (++s->unique == ch.expect[s->chan] && !(s->flags & F_DONE))
        sub_done(s);
}

/* --- SSE parsing */

/* Parses "B <chan> <seq> <send_ns> [<floor> ]" at the start of a data
 * value.  Without a floor, every earlier seq is taken as answered before. */
static void parse_payload(struct sub *s, const char *v, size_t n, uint64_t now)
{
    const char *p = v + 2, *end = v + n;
    uint64_t chan, seq, sent, floor;

    if (n < 2 || v[0] != 'B' || v[1] != ' ')
        return;                         /* not ours: a server's own message */
    if (!take_uint(&p, end, &chan) || !take_uint(&p, end, &seq) ||
        !take_uint(&p, end, &sent))
        return;
    if (sent < run_start_ns) {
        /* an earlier run's event, replayed from the channel's history (nchan
         * sends the newest one to a new subscriber): not part of this run */
        ch.stale++;
        return;
    }
    if (!take_uint(&p, end, &floor) || floor >= seq)
        floor = seq ? seq - 1 : 0;
    s->flags |= F_PENDING;
    if (chan != s->chan || seq > UINT32_MAX)
        s->flags |= F_WRONG;
    s->pend_seq = (uint32_t)seq;
    s->pend_floor = (uint32_t)floor;
    s->pend_lat_ns = now > sent ? now - sent : 0;
}

/* One complete line (without its end).  now is the time of the read that
 * completed it: the receive time of an event is taken at its data line. */
static void sse_line(struct sub *s, const char *l, size_t n, uint64_t now)
{
    if (n == 0) {                       /* blank line: dispatch */
        if (s->flags & F_PENDING)
            deliver(s, now);
        s->flags &= (uint8_t)~(F_EV_DATA | F_PENDING | F_WRONG);
        return;
    }
    if (s->flags & F_EV_DATA)
        return;                         /* only an event's first data line matters */
    if (n < 4 || memcmp(l, "data", 4) != 0 || (n > 4 && l[4] != ':'))
        return;                         /* id:, event:, retry:, comments, others */
    s->flags |= F_EV_DATA;
    if (n == 4)
        return;                         /* "data" alone: empty data */
    l += 5, n -= 5;
    if (n && *l == ' ')
        l++, n--;
    parse_payload(s, l, n, now);
}

/* The first line end (LF, CR or CRLF) in [p, end), or NULL. */
static const char *find_eol(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    const char *cr = memchr(p, '\r', (size_t)((lf ? lf : end) - p));

    return cr ? cr : lf;
}

/* Steps over the line end at eol.  A CR ending the piece may be half of a
 * CRLF split across reads, so the next piece skips a leading LF. */
static const char *past_eol(struct sub *s, const char *eol, const char *end)
{
    if (*eol == '\n')
        return eol + 1;
    if (eol + 1 == end) {
        s->flags |= F_AFTER_CR;
        return end;
    }
    return eol + (eol[1] == '\n' ? 2 : 1);
}

/* A piece ends inside a line.  Its prefix is kept only if the line may be
 * the event's first data line; anything else needs no copy, as a partial
 * line is never blank. */
static void start_line(struct sub *s, const char *p, size_t n)
{
    size_t m = n < 4 ? n : 4;

    s->flags |= F_INLINE;
    if ((s->flags & F_EV_DATA) || memcmp(p, "data", m) != 0)
        return;
    s->buf = carry_get();
    s->buf_len = 0;
    carry_append(s, p, n);
}

/* Continues a line begun in an earlier piece; returns where the rest of
 * the piece starts. */
static const char *finish_line(struct sub *s, const char *p, const char *end, uint64_t now)
{
    const char *eol = find_eol(p, end);

    if (s->buf)
        carry_append(s, p, (size_t)((eol ? eol : end) - p));
    if (!eol)
        return end;
    if (s->buf) {
        sse_line(s, s->buf, s->buf_len, now);
        carry_put(s->buf);
        s->buf = NULL;
        s->buf_len = 0;
    }
    s->flags &= (uint8_t)~F_INLINE;
    return past_eol(s, eol, end);
}

/* Parses a piece of the event stream of s. */
static void sse_feed(struct sub *s, const char *p, size_t n, uint64_t now)
{
    const char *end = p + n;

    if (p < end && (s->flags & F_AFTER_CR)) {
        s->flags &= (uint8_t)~F_AFTER_CR;
        if (*p == '\n')
            p++;
    }
    if (p < end && (s->flags & F_INLINE))
        p = finish_line(s, p, end, now);
    while (p < end) {
        const char *eol = find_eol(p, end);
        if (!eol) {
            start_line(s, p, (size_t)(end - p));
            return;
        }
        sse_line(s, p, (size_t)(eol - p), now);
        p = past_eol(s, eol, end);
    }
}

static void sub_close_fd(struct sub *s)
{
    if (s->fd >= 0)
        close(s->fd);                   /* also leaves the epoll set */
    s->fd = -1;
    sub_free_buf(s);
}

/* A subscriber's response head said 200: it now counts as connected. */
static void sub_connected(struct sub *s, bool chunked)
{
    s->state = S_STREAM;
    s->ck = chunked ? CK_SIZE : CK_RAW;
    s->ck_left = 0;
    ch.connected++;
    ch.warm_waiting++;
    if (ch.expect[s->chan] == 0)
        s->flags |= F_DONE;             /* nothing will be published to it */
    else
        ch.waiting++;
}

/* The server ended a connected subscriber's stream. */
static void sub_closed(struct sub *s)
{
    sub_close_fd(s);
    s->state = S_CLOSED;
    if (!(s->flags & F_DONE)) {
        ch.st.closed_early++;
        ch.waiting--;
    }
    if (!(s->flags & F_WARM))
        ch.warm_waiting--;
    /* a few examples; thousands of lines would bury the rest */
    if (++ch.closes_logged <= 3)
        verbose("subscriber %u closed by the server after %u events%s", s->idx, s->unique,
                ch.closes_logged == 3 ? " (further closes not shown)" : "");
}

/* Queues what the transport retries (a subscriber here, a connection in
 * h2bench.c) by its index, due after the fixed backoff. */
static void rq_push(uint32_t idx, uint64_t due)
{
    uint32_t at = (ch.rq_head + ch.rq_len++) % ch.n;

    ch.rq[at] = idx;
    ch.rq_due[at] = due;
}

#define KEY_CTL UINT64_MAX      /* the epoll key of the parent's socket */

/* ------------------------------------------------------------ transport
 * How subscribers reach the server.  Here: one HTTP/1.1 connection each,
 * the chunked body fed to sse_feed.  h2bench.c compiles this file with
 * SSEBENCH_H2 and brings its own: streams over HTTP/2 connections on TLS.
 * Either defines these four; the rest of the child is shared. */

static void transport_init(void);
static void transport_event(uint64_t key, uint32_t events);     /* not KEY_CTL */
static void pump_connects(uint64_t now);
static void connect_give_up(void);

#ifndef SSEBENCH_H2

struct feed_ctx {
    struct sub *s;
    uint64_t now;
};

static void feed_sink(void *ctx, const char *p, size_t n)
{
    struct feed_ctx *fc = ctx;

    sse_feed(fc->s, p, n, fc->now);
}

/* --- connections */

static uint64_t sub_key(const struct sub *s)
{
    /* tries tells a stale event of an earlier attempt from the current one */
    return (uint64_t)s->tries << 32 | (uint32_t)(s - ch.subs);
}


/* A connect attempt failed: retry after the backoff, or give up. */
static void sub_attempt_failed(struct sub *s, uint64_t now)
{
    if (s->state == S_CONNECTING || s->state == S_HEADERS)
        ch.inflight--;
    sub_close_fd(s);
    if (s->tries < CONNECT_TRIES) {
        s->state = S_QUEUED;
        rq_push((uint32_t)(s - ch.subs), now + RETRY_NS);
    } else {
        s->state = S_FAILED;
        ch.failed++;
    }
}

static void sub_connect(struct sub *s, uint64_t now)
{
    uint32_t host = 1 + (s->idx / O.procs) % O.addrs;
    struct sockaddr_in src = { .sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(0x7f000000u | host) };
    int port = O.ports[s->idx % O.nports];
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;

    s->tries++;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket: %s (too many subscribers per process? use more --procs)",
            strerror(errno));
    s->state = S_CONNECTING;
    ch.inflight++;
    /* the port is then picked at connect(), per destination, so more than
     * the ~28k ephemeral ports fit toward one server port */
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        (connect(s->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
        sub_attempt_failed(s, now);
        return;
    }
    epoll_set(ch.ep, EPOLL_CTL_ADD, s->fd, EPOLLOUT, sub_key(s));
}

static void sub_send_request(struct sub *s, uint64_t now)
{
    char req[1024];
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        sub_attempt_failed(s, now);
        return;
    }
    int n = snprintf(req, sizeof req,
                     "GET %s%s%u HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
                     O.sub_prefix, O.chan_prefix, s->chan);
    if (n <= 0 || n >= (int)sizeof req || send(s->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        sub_attempt_failed(s, now);
        return;
    }
    s->state = S_HEADERS;
    s->buf = xcalloc(1, HDR_MAX);
    s->buf_len = 0;
    epoll_set(ch.ep, EPOLL_CTL_MOD, s->fd, EPOLLIN, sub_key(s));
}

static void feed_body(struct sub *s, const char *p, size_t n, uint64_t now)
{
    struct feed_ctx fc = { s, now };

    if (s->ck == CK_RAW) {
        sse_feed(s, p, n, now);
        return;
    }
    int r = dechunk(&s->ck, &s->ck_left, p, p + n, feed_sink, &fc);
    if (r < 0)
        verbose("subscriber %u: malformed chunked body", s->idx);
    if (r != 0)
        sub_closed(s);                  /* the stream ended (or broke) */
}

static void sub_read_head(struct sub *s)
{
    ssize_t r = recv(s->fd, s->buf + s->buf_len, HDR_MAX - 1 - s->buf_len, 0);
    uint64_t now = now_ns();

    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {                       /* closed before the headers: retry */
        sub_attempt_failed(s, now);
        return;
    }
    size_t from = s->buf_len > 3 ? s->buf_len - 3u : 0;
    s->buf_len = (uint16_t)(s->buf_len + r);
    char *he = memmem(s->buf + from, s->buf_len - from, "\r\n\r\n", 4);
    if (!he) {
        if (s->buf_len >= HDR_MAX - 1)
            sub_attempt_failed(s, now);
        return;
    }

    struct http_head h;
    size_t head_len = (size_t)(he + 4 - s->buf);
    if (!parse_head(s->buf, head_len, &h) || h.status != 200) {
        if (++ch.refusals_logged <= 3)
            verbose("subscriber %u: status %d%s", s->idx, h.status,
                    ch.refusals_logged == 3 ? " (further refusals not shown)" : "");
        sub_attempt_failed(s, now);
        return;
    }
    /* the body's first bytes may have come with the head */
    size_t rest = s->buf_len - head_len;
    memcpy(ch.rbuf, s->buf + head_len, rest);
    sub_free_buf(s);
    ch.inflight--;
    sub_connected(s, h.chunked);
    if (rest)
        feed_body(s, ch.rbuf, rest, now);
}

static void sub_read_body(struct sub *s)
{
    ssize_t r = recv(s->fd, ch.rbuf, RBUF_SIZE, 0);

    if (r > 0)
        feed_body(s, ch.rbuf, (size_t)r, now_ns());
    else if (r == 0 || (errno != EAGAIN && errno != EINTR))
        sub_closed(s);
}

static void sub_event(struct sub *s, uint32_t events)
{
    switch (s->state) {
    case S_CONNECTING:
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            sub_send_request(s, now_ns());
        break;
    case S_HEADERS:
        sub_read_head(s);
        break;
    case S_STREAM:
        sub_read_body(s);
        break;
    }
}

/* Starts connects while fewer than --connect-concurrency are in flight:
 * retries first once their backoff is over, then fresh subscribers. */
static void pump_connects(uint64_t now)
{
    while (ch.inflight < O.concurrency) {
        struct sub *s;
        if (ch.rq_len && ch.rq_due[ch.rq_head] <= now) {
            s = &ch.subs[ch.rq[ch.rq_head]];
            ch.rq_head = (ch.rq_head + 1) % ch.n;
            ch.rq_len--;
            if (s->state != S_QUEUED)
                continue;
        } else if (ch.next_fresh < ch.n) {
            s = &ch.subs[ch.next_fresh++];
        } else {
            break;
        }
        sub_connect(s, now);
    }
}

/* --connect-timeout is over: whatever is not connected has failed. */
static void connect_give_up(void)
{
    for (uint32_t i = 0; i < ch.n; i++) {
        struct sub *s = &ch.subs[i];
        if (s->state > S_HEADERS)
            continue;
        if (s->state != S_QUEUED)
            ch.inflight--;
        sub_close_fd(s);
        s->state = S_FAILED;
        ch.failed++;
    }
    ch.next_fresh = ch.n;
    ch.rq_len = 0;
}

static void transport_init(void)
{
}

/* An epoll event of subscriber key's socket: the key also carries the
 * attempt it was armed for, so an event of a closed attempt is dropped. */
static void transport_event(uint64_t key, uint32_t events)
{
    struct sub *s = &ch.subs[(uint32_t)key];

    if (s->fd >= 0 && s->tries == (uint8_t)(key >> 32))
        sub_event(s, events);
}

#endif /* !SSEBENCH_H2 */

/* --- reports to the parent */

static void child_send(uint32_t type, const void *p, uint32_t len)
{
    if (!msg_send(ch.ctl, type, p, len))
        _exit(0);                       /* the parent is gone */
}

static void report_connected(uint64_t now)
{
    struct msg_connected m = { ch.connected, ch.failed, now - ch.t_connect };

    ch.connect_reported = true;
    verbose("%u connected, %u failed in %.3f s", m.connected, m.failed,
            (double)m.elapsed_ns / NS_PER_S);
    child_send(MSG_CONNECTED, &m, sizeof m);
}

static void report_warm(void)
{
    struct msg_warm m = { ch.warm_got, ch.connected - ch.warm_got };

    ch.warm_reported = true;
    child_send(MSG_WARM, &m, sizeof m);
}

static void report_result(void)
{
    for (uint32_t i = 0; i < ch.n; i++) {
        struct sub *s = &ch.subs[i];
        if (s->state != S_STREAM && s->state != S_CLOSED)
            continue;                   /* never connected */
        ch.st.expected += ch.expect[s->chan];
        ch.st.unique += s->unique;
        ch.st.missing += ch.expect[s->chan] - s->unique;
    }
    ch.st.cpu_ns = rusage_cpu_ns() - ch.cpu0;
    ch.result_sent = true;
    verbose("result: %llu deliveries, %llu missing, %u subscribers still waiting, "
            "%llu events of earlier runs ignored",
            (unsigned long long)ch.st.deliveries, (unsigned long long)ch.st.missing,
            ch.waiting, (unsigned long long)ch.stale);
    child_send(MSG_RESULT, &ch.st, sizeof ch.st);
}

/* --- the child's loop */

/* The published counts replace the plan; they match it unless the parent
 * stopped early, and then it sends CMD_ABORT instead. */
static void on_published(const uint32_t *counts, uint64_t now)
{
    memcpy(ch.expect, counts, O.channels * sizeof *counts);
    ch.published = true;
    ch.last_progress = now;
    for (uint32_t i = 0; i < ch.n; i++) {
        struct sub *s = &ch.subs[i];
        if (s->state == S_STREAM && !(s->flags & F_DONE) && s->unique >= ch.expect[s->chan])
            sub_done(s);
    }
}

static void child_ctl(void *buf, size_t cap)
{
    uint32_t type;
    long len = msg_recv(ch.ctl, &type, buf, cap);
    uint64_t now = now_ns();

    if (len < 0)
        _exit(0);                       /* the parent is done with us */
    switch (type) {
    case CMD_WARMUP:
        ch.warm_asked = true;
        ch.warm_deadline = now + WARMUP_NS;
        break;
    case CMD_START:
        ch.cpu0 = rusage_cpu_ns();
        break;
    case CMD_PUBLISHED:
        if ((size_t)len == O.channels * sizeof(uint32_t))
            on_published(buf, now);
        break;
    case CMD_ABORT:                     /* with what was handed out, if anything */
        if ((size_t)len == O.channels * sizeof(uint32_t))
            on_published(buf, now);
        if (!ch.result_sent)
            report_result();
        break;
    }
}

/* What is due after a batch of events: phase ends and reports. */
static void child_tick(uint64_t now)
{
    if (!ch.connect_reported) {
        if (now >= ch.connect_deadline)
            connect_give_up();
        pump_connects(now);
        if (ch.connected + ch.failed == ch.n)
            report_connected(now);
    }
    if (ch.warm_asked && !ch.warm_reported &&
        (ch.warm_waiting == 0 || now >= ch.warm_deadline))
        report_warm();
    if (ch.published && !ch.result_sent &&
        (ch.waiting == 0 || now >= ch.last_progress + (uint64_t)(O.drain_timeout * NS_PER_S)))
        report_result();
}

static uint64_t child_next_deadline(void)
{
    uint64_t d = UINT64_MAX;

    if (!ch.connect_reported) {
        d = ch.connect_deadline;
        if (ch.rq_len && ch.rq_due[ch.rq_head] < d)
            d = ch.rq_due[ch.rq_head];
    }
    if (ch.warm_asked && !ch.warm_reported && ch.warm_deadline < d)
        d = ch.warm_deadline;
    if (ch.published && !ch.result_sent) {
        uint64_t drain = ch.last_progress + (uint64_t)(O.drain_timeout * NS_PER_S);
        if (drain < d)
            d = drain;
    }
    return d;
}

static void child_init(int ctl)
{
    ch.ctl = ctl;
    ch.ep = epoll_create1(EPOLL_CLOEXEC);
    if (ch.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    epoll_set(ch.ep, EPOLL_CTL_ADD, ctl, EPOLLIN, KEY_CTL);
    ch.rbuf = xcalloc(1, RBUF_SIZE);
    ch.expect = xcalloc(O.channels, sizeof *ch.expect);
    memcpy(ch.expect, plan, O.channels * sizeof *plan);

    for (uint32_t i = (uint32_t)child_index; i < O.subs; i += O.procs)
        ch.n++;
    ch.subs = xcalloc(ch.n, sizeof *ch.subs);
    ch.rq = xcalloc(ch.n, sizeof *ch.rq);
    ch.rq_due = xcalloc(ch.n, sizeof *ch.rq_due);

    /* one bit per seq 0..E of the channel, for duplicates and order */
    size_t words = 0;
    for (uint32_t j = 0; j < ch.n; j++) {
        struct sub *s = &ch.subs[j];
        s->fd = -1;
        s->idx = (uint32_t)child_index + j * O.procs;
        s->chan = s->idx % O.channels;
        s->bm_off = words;
        words += plan[s->chan] / 64 + 1;
    }
    ch.bits = xcalloc(words, sizeof *ch.bits);
    transport_init();
}

static void child_main(int ctl)
{
    size_t cap = O.channels * sizeof(uint32_t) + 64;
    void *msgbuf = xcalloc(1, cap);
    struct epoll_event ev[EPOLL_BATCH];

    child_init(ctl);
    ch.t_connect = now_ns();
    ch.connect_deadline = ch.t_connect + (uint64_t)(O.connect_timeout * NS_PER_S);
    child_tick(ch.t_connect);

    for (;;) {
        int n = epoll_wait(ch.ep, ev, EPOLL_BATCH, ms_until(child_next_deadline(), now_ns()));
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            uint64_t key = ev[i].data.u64;
            if (key == KEY_CTL) {
                child_ctl(msgbuf, cap);
                continue;
            }
            transport_event(key, ev[i].events);
        }
        child_tick(now_ns());
    }
}

/* ======================================================================
 * The parent: publisher, server sampling, aggregation
 * ====================================================================== */

/* --- server sampling from /proc */

/* The pids of each --pidfile / --pids group, found again at every sample
 * (workers may come and go). */
static pid_t server_pid_list[MAX_GROUPS][MAX_PIDS];
static int server_pid_count[MAX_GROUPS];

static long read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* The number after "\n<name>" in a /proc status-like file; -1 if absent. */
static long long proc_field(const char *path, const char *name)
{
    char buf[8192], key[64];

    if (read_small_file(path, buf, sizeof buf) < 0)
        return -1;
    snprintf(key, sizeof key, "\n%s", name);
    const char *p = strstr(buf, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* The master from a pid file plus every process whose parent it is. */
static int pids_from_pidfile(const char *pidfile, pid_t *out)
{
    char buf[64], path[300];
    int n = 0;

    if (read_small_file(pidfile, buf, sizeof buf) < 0)
        return 0;
    pid_t master = (pid_t)atoi(buf);
    if (master <= 0)
        return 0;
    out[n++] = master;

    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < MAX_PIDS) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        if (proc_field(path, "PPid:") == master)
            out[n++] = (pid_t)atoi(e->d_name);
    }
    if (d)
        closedir(d);
    return n;
}

static int pids_from_list(const char *list, pid_t *out)
{
    int n = 0;

    for (const char *p = list; *p && n < MAX_PIDS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (v > 0)
            out[n++] = (pid_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut, st;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small_file(path, buf, sizeof buf) < 0)
        return 0;
    /* fields 14 and 15, counted after the ")" closing the command name */
    const char *p = strrchr(buf, ')');
    if (!p || sscanf(p + 1, " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
                     &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* One sample: each group's figures, and their sums.  syscw: the write-type
 * system calls (write, writev, sendmsg, ...) the processes have made, from
 * /proc/<pid>/io, without a pid file's master: the workers do the writing,
 * and the master's count would only add its own log lines. */
struct sample {
    bool taken, pss_ok, syscw_ok;
    double cpu_s;
    uint64_t rss_kb, pss_kb, syscw;
    struct {
        bool pss_ok;
        double cpu_s;
        uint64_t rss_kb, pss_kb, syscw;
    } g[MAX_GROUPS];
};

static void sample_server(struct sample *s)
{
    char path[64];

    *s = (struct sample){ 0 };
    if (!O.ngroups)
        return;
    s->taken = true;
    s->pss_ok = true;
    s->syscw_ok = true;
    for (uint32_t g = 0; g < O.ngroups; g++) {
        const struct group *gr = &O.groups[g];
        pid_t *list = server_pid_list[g];
        int n = gr->pids ? pids_from_list(gr->pids, list)
                         : pids_from_pidfile(gr->pidfile, list);
        server_pid_count[g] = n;
        s->g[g].pss_ok = true;
        for (int i = 0; i < n; i++) {
            pid_t pid = list[i];
            s->g[g].cpu_s += proc_cpu_s(pid);
            snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
            long long rss = proc_field(path, "VmRSS:");
            s->g[g].rss_kb += rss > 0 ? (uint64_t)rss : 0;
            snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
            long long pss = proc_field(path, "Pss:");
            if (pss < 0)
                s->g[g].pss_ok = false;
            else
                s->g[g].pss_kb += (uint64_t)pss;
            if (gr->pidfile && i == 0)
                continue;               /* the master */
            snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
            long long w = proc_field(path, "syscw:");
            if (w < 0)
                s->syscw_ok = false;    /* not ours to read, or gone */
            else
                s->g[g].syscw += (uint64_t)w;
        }
        s->cpu_s += s->g[g].cpu_s;
        s->rss_kb += s->g[g].rss_kb;
        s->pss_kb += s->g[g].pss_kb;
        s->syscw += s->g[g].syscw;
        s->pss_ok = s->pss_ok && s->g[g].pss_ok;
    }
}

/* --- the parent's state */

struct job {
    uint32_t chan, first_seq, nev;
    bool measured;
    uint8_t attempts;
};

enum pconn_state { PC_CLOSED, PC_CONNECTING, PC_SENDING, PC_WAITING, PC_IDLE };

/* A publisher keep-alive connection: at most one request in flight. */
struct pconn {
    int fd;
    uint8_t state;
    bool has_job, want_out;
    uint32_t gen;
    struct job job;
    uint64_t sent_ns;
    char *reqbuf, *req;     /* req points into reqbuf: head, then body */
    size_t req_len, req_off;
    char *resp;
    size_t resp_len;
};

struct kid {
    pid_t pid;
    int fd;
    bool got_conn, got_warm, got_result;
    struct msg_connected conn;
    struct msg_warm warm;
};

#define TAG_SHIFT 56
enum { TAG_KID = 1, TAG_PUB, TAG_TIMER };

static struct parent {
    int ep, tfd;
    struct kid *kids;
    struct pconn *pc;
    size_t head_room, req_cap;
    uint64_t timer_at;

    /* the jobs of the current phase */
    bool measuring;
    uint32_t jnext, jtotal, jdone;
    uint32_t *seq_next;     /* per channel: last seq handed out */
    uint8_t *chan_busy;     /* per channel: POSTs in flight */
    uint64_t t_start, last_resp_ns;

    /* figures */
    uint64_t published, requests, errors;
    uint64_t post_hist[H_BUCKETS];      /* measured POSTs: sent to answered */
    uint64_t post_max_ns;
    uint32_t connected, connect_failed, warm_missing;
    uint64_t connect_ns, cpu0, cpu_ns;
    struct stats total;
    struct sample s_before, s_idle, s_start, s_end;

    char fatal[512];
    volatile sig_atomic_t interrupted;
} P;

static void set_fatal(const char *fmt, ...)
{
    va_list ap;

    if (P.fatal[0])
        return;                         /* the first cause is the one to report */
    va_start(ap, fmt);
    vsnprintf(P.fatal, sizeof P.fatal, fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s\n", P.fatal);
}

static void on_signal(int sig)
{
    (void)sig;
    P.interrupted = 1;
}

/* --- children */

static void spawn_children(void)
{
    P.kids = xcalloc(O.procs, sizeof *P.kids);
    fflush(NULL);
    for (uint32_t i = 0; i < O.procs; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            die("socketpair: %s", strerror(errno));
        pid_t parent = getpid(), pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            /* drop the parent's ends, so each child sees EOF when the
             * parent closes its own end */
            for (uint32_t j = 0; j < i; j++)
                close(P.kids[j].fd);
            close(sv[0]);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(0);
            signal(SIGINT, SIG_IGN);    /* the parent stops us */
            child_index = (int)i;
            child_main(sv[1]);
        }
        close(sv[1]);
        P.kids[i] = (struct kid){ .pid = pid, .fd = sv[0] };
    }
}

static void kids_send(uint32_t type, const void *p, uint32_t len)
{
    for (uint32_t i = 0; i < O.procs; i++)
        if (P.kids[i].fd >= 0 && !msg_send(P.kids[i].fd, type, p, len))
            set_fatal("subscriber process %u is gone", i);
}

static void merge_stats(const struct stats *s)
{
    struct stats *t = &P.total;

    t->deliveries += s->deliveries;
    t->unique += s->unique;
    t->duplicated += s->duplicated;
    t->out_of_order += s->out_of_order;
    t->wrong_channel += s->wrong_channel;
    t->closed_early += s->closed_early;
    t->expected += s->expected;
    t->missing += s->missing;
    if (s->first_ns && (!t->first_ns || s->first_ns < t->first_ns))
        t->first_ns = s->first_ns;
    if (s->last_ns > t->last_ns)
        t->last_ns = s->last_ns;
    if (s->max_lat_ns > t->max_lat_ns)
        t->max_lat_ns = s->max_lat_ns;
    t->cpu_ns += s->cpu_ns;
    for (unsigned b = 0; b < H_BUCKETS; b++)
        t->hist[b] += s->hist[b];
}

static void kid_readable(struct kid *k)
{
    static struct stats buf;
    uint32_t type;
    long len = msg_recv(k->fd, &type, &buf, sizeof buf);

    if (len < 0) {
        close(k->fd);
        k->fd = -1;
        if (!k->got_result)
            set_fatal("subscriber process %d ended unexpectedly", (int)k->pid);
        return;
    }
    if (type == MSG_CONNECTED && len == sizeof k->conn) {
        memcpy(&k->conn, &buf, sizeof k->conn);
        k->got_conn = true;
    } else if (type == MSG_WARM && len == sizeof k->warm) {
        memcpy(&k->warm, &buf, sizeof k->warm);
        k->got_warm = true;
    } else if (type == MSG_RESULT && len == sizeof buf) {
        merge_stats(&buf);
        k->got_result = true;
    }
}

/* How many live children have reported what offset points at. */
static uint32_t kids_with(size_t flag_offset, uint32_t *alive)
{
    uint32_t n = 0;

    *alive = 0;
    for (uint32_t i = 0; i < O.procs; i++) {
        struct kid *k = &P.kids[i];
        bool flag = *(bool *)((char *)k + flag_offset);
        *alive += k->fd >= 0 || flag;
        n += flag;
    }
    return n;
}

static bool kids_all(size_t flag_offset)
{
    uint32_t alive, n = kids_with(flag_offset, &alive);

    return n == alive;
}

/* --- publisher: requests */

/* "B <chan> <seq> <send_ns> <floor> " padded with 'x' to --size bytes.
 * floor is the highest seq of the channel whose whole prefix 1..floor had
 * been answered when this event was sent: the server must deliver those
 * before this one.  With several POSTs to one channel in flight, the ones
 * in flight together may be published in either order, and a subscriber
 * must not count that as out of order. */
static size_t format_payload(char *d, uint32_t chan, uint32_t seq, uint64_t ns,
                             uint32_t floor)
{
    char *p = d;

    *p++ = 'B';
    *p++ = ' ';
    p += fmt_u64(p, chan);
    *p++ = ' ';
    p += fmt_u64(p, seq);
    *p++ = ' ';
    p += fmt_u64(p, ns);
    *p++ = ' ';
    p += fmt_u64(p, floor);
    *p++ = ' ';
    size_t n = (size_t)(p - d);
    if (n < O.size) {
        memset(p, 'x', O.size - n);
        n = O.size;
    }
    return n;
}

/* The floor of a POST to chan: every seq below the first one still in
 * flight there has been answered. */
static uint32_t answered_floor(uint32_t chan, const struct pconn *self)
{
    uint32_t floor = P.seq_next[chan];

    for (uint32_t i = 0; i < O.pub_conns; i++) {
        const struct pconn *c = &P.pc[i];
        if (c != self && c->has_job && c->job.measured && c->job.chan == chan &&
            c->job.first_seq <= floor)
            floor = c->job.first_seq - 1;
    }
    return floor;
}

/* Builds the POST of c's job: the body first (its length goes into the
 * head), then the head right in front of it, so one send() writes both. */
static void build_request(struct pconn *c)
{
    const struct job *j = &c->job;
    bool es = O.batch > 1 || O.pub_event_stream;
    char *body = c->reqbuf + P.head_room, *d = body, head[1024];
    uint64_t ns = now_ns();
    uint32_t floor = j->measured ? answered_floor(j->chan, c) : 0;

    if (floor >= j->first_seq)
        floor = j->first_seq ? j->first_seq - 1 : 0;
    for (uint32_t k = 0; k < j->nev; k++) {
        if (es)
            d = mempcpy(d, "data: ", 6);
        d += format_payload(d, j->chan, j->first_seq + k, ns, floor);
        if (es)
            d = mempcpy(d, "\n\n", 2);
    }
    int hl = snprintf(head, sizeof head,
                      "POST %s%s%u HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                      O.pub_prefix, O.chan_prefix, j->chan,
                      es ? "text/event-stream" : "text/plain", (size_t)(d - body));
    c->req = body - hl;
    memcpy(c->req, head, (size_t)hl);
    c->req_len = (size_t)hl + (size_t)(d - body);
    c->req_off = 0;
    c->sent_ns = ns;
}

static uint64_t pconn_key(const struct pconn *c)
{
    return (uint64_t)TAG_PUB << TAG_SHIFT | (uint64_t)c->gen << 16 | (uint64_t)(c - P.pc);
}

static void pconn_want_out(struct pconn *c, bool on)
{
    if (c->want_out == on)
        return;
    c->want_out = on;
    epoll_set(P.ep, EPOLL_CTL_MOD, c->fd, EPOLLIN | (on ? EPOLLOUT : 0), pconn_key(c));
}

static void pconn_close(struct pconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = PC_CLOSED;
}

/* Publisher connection j talks to port j % n. */
static int pconn_port(const struct pconn *c)
{
    return O.ports[(uint32_t)(c - P.pc) % O.nports];
}

static bool pconn_open(struct pconn *c)
{
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)pconn_port(c)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        pconn_close(c);
        return false;
    }
    c->gen++;
    c->state = PC_CONNECTING;
    c->want_out = true;
    epoll_set(P.ep, EPOLL_CTL_ADD, c->fd, EPOLLIN | EPOLLOUT, pconn_key(c));
    return true;
}

static void job_finished(struct job *j, int status, const char *why)
{
    bool ok = status >= 200 && status < 300;

    P.jdone++;
    P.last_resp_ns = now_ns();
    P.chan_busy[j->chan]--;
    if (j->measured) {
        P.requests++;
        if (ok)
            P.published += j->nev;
        else
            P.errors++;
    }
    if (ok)
        return;
    /* a lost publish makes the expected counts wrong: the run is invalid */
    if (why)
        set_fatal("publish to %s%s%u failed: %s", O.pub_prefix, O.chan_prefix, j->chan, why);
    else
        set_fatal("publish to %s%s%u answered HTTP %d", O.pub_prefix, O.chan_prefix,
                  j->chan, status);
}

static void pconn_write(struct pconn *c);
static void pconn_fail(struct pconn *c, const char *why);

static void pconn_send_job(struct pconn *c)
{
    build_request(c);
    c->state = PC_SENDING;
    c->resp_len = 0;
    pconn_write(c);
}

/* Sends c's job, connecting first when needed. */
static void pconn_run_job(struct pconn *c)
{
    if (c->state == PC_IDLE)
        pconn_send_job(c);
    else if (!pconn_open(c))
        pconn_fail(c, strerror(errno));
}

/* The connection broke with a job on it: the server may have closed a
 * keep-alive connection just as the request went out, so reconnect and
 * send it once more before calling it lost. */
static void pconn_fail(struct pconn *c, const char *why)
{
    pconn_close(c);
    if (!c->has_job)
        return;
    if (c->job.attempts < 2) {
        c->job.attempts++;
        verbose("publisher connection %d: %s; sending again", (int)(c - P.pc), why);
        pconn_run_job(c);
        return;
    }
    c->has_job = false;
    job_finished(&c->job, 0, why);
}

static void pconn_write(struct pconn *c)
{
    ssize_t w = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);

    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR)
            pconn_want_out(c, true);
        else
            pconn_fail(c, strerror(errno));
        return;
    }
    c->req_off += (size_t)w;
    if (c->req_off < c->req_len) {
        pconn_want_out(c, true);
        return;
    }
    c->state = PC_WAITING;
    pconn_want_out(c, false);
}

/* Whether resp holds a whole response: 1 yes, 0 not yet, -1 malformed. */
static int response_complete(const char *buf, size_t len, struct http_head *h)
{
    const char *he = memmem(buf, len, "\r\n\r\n", 4);

    if (!he)
        return 0;
    if (!parse_head(buf, (size_t)(he + 4 - buf), h))
        return -1;
    const char *body = he + 4, *end = buf + len;
    if (h->status == 204 || h->status == 304 || h->status < 200)
        return 1;
    if (h->chunked) {
        uint8_t st = CK_SIZE;
        uint64_t left = 0;
        return dechunk(&st, &left, body, end, NULL, NULL);
    }
    if (h->content_length >= 0)
        return end - body >= h->content_length;
    h->close = true;                    /* a body up to EOF: we cannot reuse it */
    return 0;
}

static void pconn_done(struct pconn *c, const struct http_head *h)
{
    struct job j = c->job;

    if (j.measured) {
        uint64_t took = now_ns() - c->sent_ns;
        P.post_hist[hist_bucket(took / 1000)]++;
        if (took > P.post_max_ns)
            P.post_max_ns = took;
    }

    c->has_job = false;
    /* an early answer while still sending leaves the connection unusable */
    if (h->close || c->state == PC_SENDING)
        pconn_close(c);
    else
        c->state = PC_IDLE;
    job_finished(&j, h->status, NULL);
}

static void pconn_read(struct pconn *c)
{
    struct http_head h = { .content_length = -1 };
    ssize_t r = recv(c->fd, c->resp + c->resp_len, RESP_MAX - 1 - c->resp_len, 0);

    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0 || c->state == PC_IDLE) {
        /* EOF on an idle connection is the server's keep-alive timeout */
        if (c->state == PC_IDLE) {
            pconn_close(c);
            return;
        }
        if (r == 0 && c->resp_len && response_complete(c->resp, c->resp_len, &h) == 0 &&
            h.close && h.content_length < 0 && !h.chunked) {
            pconn_done(c, &h);          /* that body ended at EOF */
            return;
        }
        pconn_fail(c, r == 0 ? "connection closed by the server" : strerror(errno));
        return;
    }
    c->resp_len += (size_t)r;
    c->resp[c->resp_len] = 0;
    int done = response_complete(c->resp, c->resp_len, &h);
    if (done < 0 || (done == 0 && c->resp_len >= RESP_MAX - 1)) {
        pconn_close(c);
        c->has_job = false;
        job_finished(&c->job, 0, "malformed or oversized response");
        return;
    }
    if (done > 0)
        pconn_done(c, &h);
}

static void pconn_event(struct pconn *c, uint32_t events)
{
    if (c->state == PC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            pconn_fail(c, strerror(err));
            return;
        }
        c->state = PC_IDLE;
        pconn_want_out(c, false);
        if (c->has_job)
            pconn_send_job(c);
        return;
    }
    /* a failed write may already have reconnected: these events are not
     * the new connection's */
    uint32_t gen = c->gen;
    if (c->state == PC_SENDING && (events & EPOLLOUT))
        pconn_write(c);
    if (c->gen == gen && c->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        pconn_read(c);
}

/* --- publisher: scheduling */

/* The next job of the current phase, and when it is due. */
static uint64_t job_peek(struct job *j)
{
    uint32_t b = P.jnext;

    if (!P.measuring) {                 /* warm-up: seq 0 to every channel */
        *j = (struct job){ .chan = b, .first_seq = 0, .nev = 1 };
        return 0;
    }
    *j = (struct job){ .chan = b % O.channels, .nev = batch_events(b), .measured = true };
    if (O.rate <= 0)
        return 0;
    /* event k is due at t0 + k/R; a batch when its first event is */
    return P.t_start + (uint64_t)((double)b * O.batch * 1e9 / O.rate);
}

/* A free connection to port index pi: idle, or else closed. */
static struct pconn *pconn_free(uint32_t pi)
{
    struct pconn *closed = NULL;

    for (uint32_t i = pi; i < O.pub_conns; i += O.nports) {
        if (P.pc[i].state == PC_IDLE)
            return &P.pc[i];
        if (P.pc[i].state == PC_CLOSED && !closed)
            closed = &P.pc[i];
    }
    return closed;
}

static void timer_arm(uint64_t at)
{
    struct itimerspec its = { .it_value = { .tv_sec = (time_t)(at / NS_PER_S),
                                            .tv_nsec = (long)(at % NS_PER_S) } };

    if (P.timer_at == at)
        return;
    P.timer_at = at;
    timerfd_settime(P.tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Hands due jobs to free connections, in order. */
static void pub_dispatch(void)
{
    while (P.jnext < P.jtotal && !P.fatal[0]) {
        struct job j;
        uint64_t due = job_peek(&j);
        if (O.ordered && P.chan_busy[j.chan])
            return;                     /* its response will dispatch again */
        /* job b to port b % n: the servers take the POSTs in turn */
        struct pconn *c = pconn_free(P.jnext % O.nports);
        if (!c)
            return;
        if (due > now_ns()) {
            timer_arm(due);
            return;
        }
        P.jnext++;
        if (j.measured) {
            j.first_seq = P.seq_next[j.chan] + 1;
            P.seq_next[j.chan] += j.nev;
        }
        j.attempts = 1;
        P.chan_busy[j.chan]++;
        c->job = j;
        c->has_job = true;
        c->sent_ns = now_ns();          /* for the stall check until it is sent */
        pconn_run_job(c);
    }
}

static void jobs_begin(bool measured, uint32_t total)
{
    P.measuring = measured;
    P.jnext = P.jdone = 0;
    P.jtotal = total;
    pub_dispatch();
}

/* A request in flight for too long means the server is stuck. */
static void check_stall(uint64_t now)
{
    for (uint32_t i = 0; i < O.pub_conns; i++) {
        struct pconn *c = &P.pc[i];
        if (c->has_job && now > c->sent_ns + PUB_STALL_NS)
            set_fatal("publish to %s%s%u unanswered for %llu s", O.pub_prefix,
                      O.chan_prefix, c->job.chan,
                      (unsigned long long)(PUB_STALL_NS / NS_PER_S));
    }
}

static void publisher_init(void)
{
    size_t prefix = strlen(O.pub_prefix) + strlen(O.chan_prefix);
    size_t per_event = (O.size > 64 ? O.size : 64) + 16;

    P.head_room = 256 + prefix;
    P.req_cap = P.head_room + (size_t)O.batch * per_event;
    P.pc = xcalloc(O.pub_conns, sizeof *P.pc);
    for (uint32_t i = 0; i < O.pub_conns; i++) {
        P.pc[i].fd = -1;
        P.pc[i].reqbuf = xcalloc(1, P.req_cap);
        P.pc[i].resp = xcalloc(1, RESP_MAX);
    }
    P.seq_next = xcalloc(O.channels, sizeof *P.seq_next);
    P.chan_busy = xcalloc(O.channels, sizeof *P.chan_busy);
    P.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (P.tfd < 0)
        die("timerfd_create: %s", strerror(errno));
    epoll_set(P.ep, EPOLL_CTL_ADD, P.tfd, EPOLLIN, (uint64_t)TAG_TIMER << TAG_SHIFT);
}

/* --- the parent's loop */

/* Waits for and handles one batch of events, at most until deadline. */
static void pump(uint64_t deadline)
{
    struct epoll_event ev[256];
    uint64_t now = now_ns(), until = now + NS_PER_S;
    int n = epoll_wait(P.ep, ev, 256, ms_until(deadline < until ? deadline : until, now));

    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        uint64_t key = ev[i].data.u64;
        unsigned tag = (unsigned)(key >> TAG_SHIFT);
        if (tag == TAG_KID) {
            struct kid *k = &P.kids[(uint32_t)key];
            if (k->fd >= 0)
                kid_readable(k);
        } else if (tag == TAG_PUB) {
            struct pconn *c = &P.pc[(uint16_t)key];
            if (c->fd >= 0 && c->gen == (uint32_t)((key >> 16) & 0xffffffffu))
                pconn_event(c, ev[i].events);
        } else if (tag == TAG_TIMER) {
            uint64_t expirations;
            if (read(P.tfd, &expirations, sizeof expirations) < 0) { /* spurious */ }
            P.timer_at = 0;
        }
    }
    if (P.interrupted)
        set_fatal("interrupted");
    pub_dispatch();
    check_stall(now_ns());
}

/* Pumps until every live child has set the flag, or the deadline. */
static bool wait_kids(size_t flag_offset, uint64_t deadline, const char *what)
{
    while (!kids_all(flag_offset) && !P.fatal[0] && now_ns() < deadline)
        pump(deadline);
    if (!kids_all(flag_offset) && !P.fatal[0])
        set_fatal("subscriber processes did not report %s in time", what);
    return !P.fatal[0];
}

/* --- phases */

static void phase_connect(void)
{
    uint64_t deadline = now_ns() + (uint64_t)((O.connect_timeout + 30) * NS_PER_S);

    if (!wait_kids(offsetof(struct kid, got_conn), deadline, "their connects"))
        return;
    for (uint32_t i = 0; i < O.procs; i++) {
        P.connected += P.kids[i].conn.connected;
        P.connect_failed += P.kids[i].conn.failed;
        if (P.kids[i].conn.elapsed_ns > P.connect_ns)
            P.connect_ns = P.kids[i].conn.elapsed_ns;
    }
    verbose("%u subscribers connected, %u failed, in %.3f s", P.connected,
            P.connect_failed, (double)P.connect_ns / NS_PER_S);
    if (P.connected == 0)
        set_fatal("no subscriber could connect to 127.0.0.1:%d%s", O.ports[0],
                  O.nports > 1 ? " (or the other ports)" : "");
}

static void phase_hold(void)
{
    uint64_t end = now_ns() + (uint64_t)(O.hold * NS_PER_S);

    if (O.hold > 0)
        verbose("holding %.1f s", O.hold);
    while (!P.fatal[0] && now_ns() < end)
        pump(end);
    sample_server(&P.s_idle);
}

static void phase_warmup(void)
{
    uint64_t deadline = now_ns() + 2 * WARMUP_NS;

    verbose("warm-up: one event to each of %u channels", O.channels);
    kids_send(CMD_WARMUP, NULL, 0);
    jobs_begin(false, O.channels);
    while (P.jdone < P.jtotal && !P.fatal[0] && now_ns() < deadline)
        pump(deadline);
    if (P.jdone < P.jtotal)
        set_fatal("the warm-up publishes were not answered in time");
    if (!wait_kids(offsetof(struct kid, got_warm), deadline, "the warm-up"))
        return;
    for (uint32_t i = 0; i < O.procs; i++)
        P.warm_missing += P.kids[i].warm.missing;
    verbose("warm-up received, %u subscribers without it", P.warm_missing);
}

static void phase_measure(void)
{
    sample_server(&P.s_start);
    P.cpu0 = rusage_cpu_ns();
    P.t_start = now_ns();
    kids_send(CMD_START, &P.t_start, sizeof P.t_start);
    verbose("publishing %u events", O.events);
    jobs_begin(true, batch_count());
    while (P.jdone < P.jtotal && !P.fatal[0])
        pump(UINT64_MAX);
    verbose("published %llu events in %llu requests, %.3f s",
            (unsigned long long)P.published, (unsigned long long)P.requests,
            (double)(P.last_resp_ns - P.t_start) / NS_PER_S);
}

/* Tells the children what was published (or to stop) and collects. */
static void phase_collect(bool measured)
{
    uint64_t deadline = UINT64_MAX;

    uint32_t counts_len = measured ? O.channels * (uint32_t)sizeof *P.seq_next : 0;

    /* after a fatal error the counts are what was handed out so far */
    if (measured && !P.fatal[0]) {
        kids_send(CMD_PUBLISHED, P.seq_next, counts_len);
    } else {
        kids_send(CMD_ABORT, P.seq_next, counts_len);
        deadline = now_ns() + 10 * NS_PER_S;
    }
    while (!kids_all(offsetof(struct kid, got_result)) && now_ns() < deadline) {
        if (P.interrupted && deadline == UINT64_MAX) {
            kids_send(CMD_ABORT, P.seq_next, counts_len);
            deadline = now_ns() + 10 * NS_PER_S;
        }
        pump(deadline);
    }
    P.cpu_ns = rusage_cpu_ns() - P.cpu0;
}

static void stop_children(void)
{
    for (uint32_t i = 0; i < O.procs; i++)
        if (P.kids[i].fd >= 0)
            close(P.kids[i].fd);        /* EOF tells a child to exit */
    for (uint32_t i = 0; i < O.procs; i++) {
        int status;
        for (int t = 0; t < 500 && waitpid(P.kids[i].pid, &status, WNOHANG) == 0; t++)
            usleep(10000);
        if (waitpid(P.kids[i].pid, &status, WNOHANG) == 0) {
            kill(P.kids[i].pid, SIGKILL);
            waitpid(P.kids[i].pid, &status, 0);
        }
    }
}

/* --- JSON */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* A number with prec decimals, or null. */
static const char *num(char *buf, double v, int prec, bool ok)
{
    if (!ok || !isfinite(v))
        return "null";
    snprintf(buf, 32, "%.*f", prec, v);
    return buf;
}

static void json_mem(const char *key, const struct sample *s[3], bool pss)
{
    char b[3][32];
    const char *v[3];

    for (int i = 0; i < 3; i++) {
        bool ok = s[i]->taken && (!pss || s[i]->pss_ok);
        v[i] = num(b[i], (double)(pss ? s[i]->pss_kb : s[i]->rss_kb), 0, ok);
    }
    printf(" \"%s\":{\"before\":%s,\"idle\":%s,\"end\":%s},\n", key, v[0], v[1], v[2]);
}

static void print_latency(void)
{
    const struct stats *t = &P.total;
    uint64_t count = 0;
    char b[5][32];

    for (unsigned i = 0; i < H_BUCKETS; i++)
        count += t->hist[i];
    double max = (double)t->max_lat_ns / 1000;
    printf(" \"latency_us\":{\"p50\":%s,\"p90\":%s,\"p99\":%s,\"p999\":%s,\"max\":%s,"
           "\"count\":%llu},\n",
           num(b[0], hist_percentile(t->hist, count, 0.50, max), 1, count),
           num(b[1], hist_percentile(t->hist, count, 0.90, max), 1, count),
           num(b[2], hist_percentile(t->hist, count, 0.99, max), 1, count),
           num(b[3], hist_percentile(t->hist, count, 0.999, max), 1, count),
           num(b[4], max, 1, count), (unsigned long long)count);
}

/* How long the measured POSTs took, from sending to the whole answer. */
static void print_post_latency(void)
{
    uint64_t count = 0;
    char b[4][32];

    for (unsigned i = 0; i < H_BUCKETS; i++)
        count += P.post_hist[i];
    double max = (double)P.post_max_ns / 1000;
    printf(" \"post_latency_us\":{\"p50\":%s,\"p90\":%s,\"p99\":%s,\"max\":%s,"
           "\"count\":%llu},\n",
           num(b[0], hist_percentile(P.post_hist, count, 0.50, max), 1, count),
           num(b[1], hist_percentile(P.post_hist, count, 0.90, max), 1, count),
           num(b[2], hist_percentile(P.post_hist, count, 0.99, max), 1, count),
           num(b[3], max, 1, count), (unsigned long long)count);
}

static void print_server(void)
{
    const struct sample *mem[3] = { &P.s_before, &P.s_idle, &P.s_end };
    bool cpu_ok = P.s_start.taken && P.s_end.taken;
    double cpu = P.s_end.cpu_s - P.s_start.cpu_s;
    double conn = P.connected;
    char b[5][32];

    printf(" \"server_cpu_s\":%s, \"server_cpu_us_per_delivery\":%s,\n",
           num(b[0], cpu, 3, cpu_ok),
           num(b[1], cpu * 1e6 / (double)P.total.deliveries, 2,
               cpu_ok && P.total.deliveries));
    /* a worker that exited during the phase takes its count with it: the
     * figure is then too low, and null would hide what is known */
    bool w_ok = cpu_ok && P.s_start.syscw_ok && P.s_end.syscw_ok &&
                P.s_end.syscw >= P.s_start.syscw;
    double writes = (double)(P.s_end.syscw - P.s_start.syscw);
    printf(" \"server_write_calls\":%s, \"writes_per_event\":%s,\n",
           num(b[2], writes, 0, w_ok),
           num(b[3], writes / (double)P.published, 2, w_ok && P.published));
    json_mem("server_rss_kb", mem, false);
    json_mem("server_pss_kb", mem, true);
    printf(" \"rss_per_sub_bytes\":%s, \"pss_per_sub_bytes\":%s,\n",
           num(b[2], ((double)P.s_idle.rss_kb - (double)P.s_before.rss_kb) * 1024 / conn, 0,
               P.s_idle.taken && P.s_before.taken && conn > 0),
           num(b[3], ((double)P.s_idle.pss_kb - (double)P.s_before.pss_kb) * 1024 / conn, 0,
               P.s_idle.taken && P.s_before.taken && P.s_idle.pss_ok &&
               P.s_before.pss_ok && conn > 0));

    /* each server apart: the CPU of a node and of what it relies on */
    printf(" \"servers\":[");
    for (uint32_t g = 0; g < O.ngroups; g++) {
        const struct group *gr = &O.groups[g];
        double gcpu = P.s_end.g[g].cpu_s - P.s_start.g[g].cpu_s;
        printf("%s\n  {\"%s\":", g ? "," : "", gr->pids ? "pids" : "pidfile");
        json_string(gr->pids ? gr->pids : gr->pidfile);
        printf(",\"cpu_s\":%s,\"cpu_us_per_delivery\":%s,"
               "\"rss_kb\":{\"before\":%s,\"idle\":%s,\"end\":%s},\"pids_seen\":[",
               num(b[0], gcpu, 3, cpu_ok),
               num(b[1], gcpu * 1e6 / (double)P.total.deliveries, 2,
                   cpu_ok && P.total.deliveries),
               num(b[2], (double)P.s_before.g[g].rss_kb, 0, P.s_before.taken),
               num(b[3], (double)P.s_idle.g[g].rss_kb, 0, P.s_idle.taken),
               num(b[4], (double)P.s_end.g[g].rss_kb, 0, P.s_end.taken));
        for (int i = 0; i < server_pid_count[g]; i++)
            printf("%s%d", i ? "," : "", (int)server_pid_list[g][i]);
        printf("]}");
    }
    printf("],\n");
}

static void print_json(void)
{
    const struct stats *t = &P.total;
    double elapsed = t->last_ns > P.t_start && P.t_start ?
                     (double)(t->last_ns - P.t_start) / 1e9 : NAN;
    double pub_s = P.last_resp_ns > P.t_start && P.t_start ?
                   (double)(P.last_resp_ns - P.t_start) / 1e9 : NAN;
    double client_cpu = (double)(t->cpu_ns + P.cpu_ns) / 1e9;
    char b[8][32];

    printf("{\"label\":");
    json_string(O.label);
    printf(",\"port\":%d,\"ports\":[", O.ports[0]);
    for (uint32_t i = 0; i < O.nports; i++)
        printf("%s%d", i ? "," : "", O.ports[i]);
    printf("],\"subscribers\":%u,\"channels\":%u,\"procs\":%u,\"addrs\":%u,\n",
           O.subs, O.channels, O.procs, O.addrs);
    printf(" \"connected\":%u,\"connect_failed\":%u,\"connect_s\":%s,\n",
           P.connected, P.connect_failed, num(b[0], (double)P.connect_ns / 1e9, 3, true));
    printf(" \"warmup_missing\":%u,\n", P.warm_missing);
    printf(" \"events\":%u,\"batch\":%u,\"rate\":%s,\"size\":%u,\n",
           O.events, O.batch, num(b[1], O.rate, O.rate == floor(O.rate) ? 0 : 3, true),
           O.size);
    printf(" \"published\":%llu,\"publish_requests\":%llu,\"publish_errors\":%llu,"
           "\"publish_s\":%s,\n",
           (unsigned long long)P.published, (unsigned long long)P.requests,
           (unsigned long long)P.errors, num(b[2], pub_s, 3, true));
    printf(" \"expected\":%llu,\"deliveries\":%llu,\"unique\":%llu,\"missing\":%llu,"
           "\"duplicated\":%llu,\"out_of_order\":%llu,\"wrong_channel\":%llu,"
           "\"closed_early\":%llu,\n",
           (unsigned long long)t->expected, (unsigned long long)t->deliveries,
           (unsigned long long)t->unique, (unsigned long long)t->missing,
           (unsigned long long)t->duplicated, (unsigned long long)t->out_of_order,
           (unsigned long long)t->wrong_channel, (unsigned long long)t->closed_early);
    printf(" \"elapsed_s\":%s, \"deliveries_per_s\":%s,\n", num(b[3], elapsed, 3, true),
           num(b[4], (double)t->unique / elapsed, 1, elapsed > 0));
    print_latency();
    print_post_latency();
    print_server();
    printf(" \"client_cpu_s\":%s, \"client_cpu_us_per_delivery\":%s,\n",
           num(b[5], client_cpu, 3, true),
           num(b[6], client_cpu * 1e6 / (double)t->deliveries, 2, t->deliveries));
    printf(" \"server_pids\":[");
    for (uint32_t g = 0, k = 0; g < O.ngroups; g++)
        for (int i = 0; i < server_pid_count[g]; i++)
            printf("%s%d", k++ ? "," : "", (int)server_pid_list[g][i]);
    printf("], \"fatal\":");
    if (P.fatal[0])
        json_string(P.fatal);
    else
        printf("null");
    printf("}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------ command line */

static uint32_t arg_u32(const char *name, const char *v, uint32_t min, uint32_t max)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);

    if (errno || end == v || *end || x < min || x > max || v[0] == '-')
        die("--%s: expected a whole number from %u to %u, got '%s'", name, min, max, v);
    return (uint32_t)x;
}

static double arg_double(const char *name, const char *v, double max)
{
    char *end;
    double x = strtod(v, &end);

    if (end == v || *end || !(x >= 0) || x > max)
        die("--%s: expected a number from 0 to %g, got '%s'", name, max, v);
    return x;
}

/* --port P or --port P1,P2,...; given again, it replaces the list. */
static void parse_ports(const char *name, const char *v)
{
    char buf[1024];

    if (strlen(v) >= sizeof buf)
        die("--%s: too long", name);
    strcpy(buf, v);
    O.nports = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (O.nports == MAX_PORTS)
            die("--%s: at most %d ports", name, MAX_PORTS);
        O.ports[O.nports++] = (int)arg_u32(name, t, 1, 65535);
    }
    if (!O.nports)
        die("--%s: expected a port or a comma-separated list, got '%s'", name, v);
}

static void add_group(const char *pidfile, const char *pids)
{
    if (O.ngroups == MAX_GROUPS)
        die("at most %d --pidfile and --pids servers", MAX_GROUPS);
    O.groups[O.ngroups++] = (struct group){ .pidfile = pidfile, .pids = pids };
}

/* --pidfile F1,F2,...: one server each (the strings stay in argv). */
static void add_pidfiles(char *v)
{
    for (char *save = NULL, *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save))
        add_group(t, NULL);
}

static void parse_args(int argc, char **argv)
{
    enum { O_PORT = 256, O_SUBP, O_PUBP, O_CHP, O_SUBS, O_CHANS, O_ADDRS, O_PROCS,
           O_CONC, O_CTO, O_HOLD, O_EVENTS, O_RATE, O_SIZE, O_BATCH, O_PUBF, O_PUBC,
           O_ORDERED, O_DRAIN, O_PIDS, O_PIDFILE, O_LABEL, O_H2PORT, O_STREAMS };
    static const struct option lopts[] = {
        { "port", 1, 0, O_PORT }, { "sub-prefix", 1, 0, O_SUBP },
        { "pub-prefix", 1, 0, O_PUBP }, { "channel-prefix", 1, 0, O_CHP },
        { "subs", 1, 0, O_SUBS }, { "channels", 1, 0, O_CHANS },
        { "addrs", 1, 0, O_ADDRS }, { "procs", 1, 0, O_PROCS },
        { "connect-concurrency", 1, 0, O_CONC }, { "connect-timeout", 1, 0, O_CTO },
        { "hold", 1, 0, O_HOLD }, { "events", 1, 0, O_EVENTS }, { "rate", 1, 0, O_RATE },
        { "size", 1, 0, O_SIZE }, { "batch", 1, 0, O_BATCH },
        { "pub-format", 1, 0, O_PUBF }, { "pub-conns", 1, 0, O_PUBC },
        { "ordered", 0, 0, O_ORDERED }, { "drain-timeout", 1, 0, O_DRAIN },
        { "pids", 1, 0, O_PIDS }, { "pidfile", 1, 0, O_PIDFILE },
        { "label", 1, 0, O_LABEL }, { "verbose", 0, 0, 'v' }, { "help", 0, 0, 'h' },
#ifdef SSEBENCH_H2
        { "h2-port", 1, 0, O_H2PORT }, { "streams", 1, 0, O_STREAMS },
#endif
        { 0, 0, 0, 0 },
    };
    int c;

    while ((c = getopt_long(argc, argv, "vh", lopts, NULL)) != -1) {
        const char *name = "";
        for (const struct option *o = lopts; o->name; o++)
            if (o->val == c)
                name = o->name;
        switch (c) {
        case O_PORT:    parse_ports(name, optarg); break;
        case O_SUBP:    O.sub_prefix = optarg; break;
        case O_PUBP:    O.pub_prefix = optarg; break;
        case O_CHP:     O.chan_prefix = optarg; break;
        case O_SUBS:    O.subs = arg_u32(name, optarg, 1, 10000000); break;
        case O_CHANS:   O.channels = arg_u32(name, optarg, 1, 10000000); break;
        case O_ADDRS:   O.addrs = arg_u32(name, optarg, 1, 254); break;
        case O_PROCS:   O.procs = arg_u32(name, optarg, 1, 256); break;
        case O_CONC:    O.concurrency = arg_u32(name, optarg, 1, 1000000); break;
        case O_CTO:     O.connect_timeout = arg_double(name, optarg, 86400); break;
        case O_HOLD:    O.hold = arg_double(name, optarg, 86400); break;
        case O_EVENTS:  O.events = arg_u32(name, optarg, 0, 1000000000); break;
        case O_RATE:    O.rate = arg_double(name, optarg, 1e9); break;
        case O_SIZE:    O.size = arg_u32(name, optarg, 0, 1 << 20); break;
        case O_BATCH:   O.batch = arg_u32(name, optarg, 1, 100000); break;
        case O_PUBC:    O.pub_conns = arg_u32(name, optarg, 1, 1000); break;
        case O_ORDERED: O.ordered = true; break;
        case O_DRAIN:   O.drain_timeout = arg_double(name, optarg, 86400); break;
        case O_PIDS:    add_group(NULL, optarg); break;
        case O_PIDFILE: add_pidfiles(optarg); break;
        case O_LABEL:   O.label = optarg; break;
#ifdef SSEBENCH_H2
        case O_H2PORT:  O.h2_port = (int)arg_u32(name, optarg, 1, 65535); break;
        case O_STREAMS: O.streams = arg_u32(name, optarg, 1, 100000); break;
#endif
        case 'v':       O.verbose = true; break;
        case 'h':       fputs(usage_text, stdout); exit(0);
        case O_PUBF:
            if (strcmp(optarg, "plain") && strcmp(optarg, "event-stream"))
                die("--pub-format: plain or event-stream, got '%s'", optarg);
            O.pub_event_stream = !strcmp(optarg, "event-stream");
            break;
        default:        fputs(usage_text, stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    if (!O.nports)
        die("--port is required (see --help)");
#ifdef SSEBENCH_H2
    if (!O.h2_port)
        die("--h2-port is required (see --help)");
#endif
    if (O.pub_conns < O.nports)
        die("--pub-conns %u: at least one publisher connection per port (%u ports)",
            O.pub_conns, O.nports);
    if (strlen(O.sub_prefix) > 256 || strlen(O.pub_prefix) > 256 || strlen(O.chan_prefix) > 256)
        die("prefixes are limited to 256 bytes");
    if ((uint64_t)O.events * O.size > (uint64_t)1 << 40)
        die("--events x --size is too large");
}

/* Each child holds ceil(N/P) sockets (h2bench: its subscribers'
 * connections): raise the soft limit to the hard one and refuse a split
 * that cannot fit. */
static void check_fd_limit(void)
{
    struct rlimit rl;
    uint64_t per_child = (O.subs + O.procs - 1) / O.procs;
#ifdef SSEBENCH_H2
    per_child = (per_child + O.streams - 1) / O.streams;
#endif
    per_child += 32;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        per_child > rl.rlim_cur)
        die("%u subscribers in %u processes need %llu files each, the limit is %llu:"
            " use more --procs", O.subs, O.procs, (unsigned long long)per_child,
            (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    struct sigaction sa = { .sa_handler = on_signal };

    run_start_ns = now_ns();
    parse_args(argc, argv);
    check_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    make_plan();

    sample_server(&P.s_before);
    spawn_children();

    P.ep = epoll_create1(EPOLL_CLOEXEC);
    if (P.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    for (uint32_t i = 0; i < O.procs; i++)
        epoll_set(P.ep, EPOLL_CTL_ADD, P.kids[i].fd, EPOLLIN, (uint64_t)TAG_KID << TAG_SHIFT | i);
    publisher_init();

    phase_connect();
    if (!P.fatal[0])
        phase_hold();
    if (!P.fatal[0])
        phase_warmup();
    bool measured = !P.fatal[0];
    if (measured)
        phase_measure();
    phase_collect(measured);
    sample_server(&P.s_end);
    stop_children();
    print_json();
    return P.fatal[0] ? 1 : 0;
}
