/*
 * h2bench: ssebench with its subscribers on HTTP/2 over TLS.
 *
 * Everything but the subscribers' transport is ssebench.c's, compiled in
 * here with SSEBENCH_H2: the options, the publisher (plain HTTP/1.1 POSTs
 * to --port), the plan, the payload format and its checks (missing,
 * duplicated, out of order, latency from the send time written into the
 * data), the server sampling and the JSON.  So both clients measure the
 * same way, and a change to the checks reaches both.
 *
 * What this file brings: the subscribers as EventSource-style streams
 * (GET, accept: text/event-stream), --streams of them on each TLS
 * connection to --h2-port (ALPN "h2"), driven by nghttp2's session API
 * over non-blocking sockets in the child's epoll loop.  OpenSSL does the
 * TLS on memory nghttp2 serializes (nghttp2_session_mem_send/_mem_recv),
 * so the HTTP/2 framing, HPACK and flow control are the library's, not
 * ours.  The windows are the largest HTTP/2 allows (SETTINGS
 * INITIAL_WINDOW_SIZE for the streams, the connection's own), so flow
 * control is respected as nghttp2 does it but never holds the server back.
 *
 * Subscriber j of a child is on its connection j / --streams.  A
 * connection that cannot be set up (TCP, TLS, ALPN) is retried with
 * ssebench's backoff and tries; a stream refused (a status other than 200)
 * is counted as failed, not retried.  A connection lost later ends all its
 * streams: each counts as closed early, as an HTTP/1.1 subscriber would.
 *
 * Build: gcc -O2 -g -Wall -Wextra -Werror -std=gnu11 -o h2bench h2bench.c \
 *            -lnghttp2 -lssl -lcrypto -lm
 */
#define SSEBENCH_H2 1
#define PROG "h2bench"
#include "ssebench.c"

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* Bytes of nghttp2 output gathered for one SSL_write: one TLS record and
 * one write() for many small frames (the requests, window updates). */
#define H2_STAGE      16384

enum conn_state { C_QUEUED, C_CONNECTING, C_HANDSHAKE, C_UP, C_DOWN, C_FAILED };

struct h2conn {
    int fd;
    uint8_t state, tries;
    bool want_out;
    SSL *ssl;
    nghttp2_session *ng;
    uint32_t first, n;          /* its subscribers: ch.subs[first, first + n) */
    const uint8_t *out;         /* nghttp2's output not yet staged, valid */
    size_t out_len;             /* until the next nghttp2_session_mem_send */
    uint8_t *pend;              /* staged bytes TLS has not taken yet */
    size_t pend_len, pend_off;
};

static struct {
    SSL_CTX *ctx;
    nghttp2_session_callbacks *cbs;
    struct h2conn *conns;
    uint32_t nconns;
    uint8_t stage[H2_STAGE];
    uint64_t now;               /* the time of the read being parsed */
} H;

static uint64_t conn_key(const struct h2conn *c)
{
    /* tries tells an event of an earlier attempt from the current one */
    return (uint64_t)c->tries << 32 | (uint32_t)(c - H.conns);
}

static void conn_want(struct h2conn *c, uint32_t events)
{
    epoll_set(ch.ep, EPOLL_CTL_MOD, c->fd, events, conn_key(c));
}

/* Frees what an attempt or a connection held; its subscribers are the
 * caller's to settle. */
static void conn_close(struct h2conn *c)
{
    if (c->ng)
        nghttp2_session_del(c->ng);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);                   /* also leaves the epoll set */
    free(c->pend);
    *c = (struct h2conn){ .fd = -1, .state = c->state, .tries = c->tries,
                          .first = c->first, .n = c->n };
}

/* Setting up the connection failed: retry after the backoff, or give its
 * subscribers up. */
static void conn_attempt_failed(struct h2conn *c, uint64_t now, const char *why)
{
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
        ch.inflight--;
    if (++ch.refusals_logged <= 3)
        verbose("connection %u: %s%s", (unsigned)(c - H.conns), why,
                ch.refusals_logged == 3 ? " (further failures not shown)" : "");
    conn_close(c);
    if (c->tries < CONNECT_TRIES) {
        c->state = C_QUEUED;
        rq_push((uint32_t)(c - H.conns), now + RETRY_NS);
        return;
    }
    c->state = C_FAILED;
    for (uint32_t j = c->first; j < c->first + c->n; j++)
        if (ch.subs[j].state <= S_HEADERS) {
            ch.subs[j].state = S_FAILED;
            ch.failed++;
        }
}

/* A stream that never got its 200. */
static void stream_failed(struct sub *s)
{
    s->state = S_FAILED;
    ch.failed++;
}

/* An established connection is gone: every stream on it ends. */
static void conn_lost(struct h2conn *c, const char *why)
{
    verbose("connection %u lost: %s", (unsigned)(c - H.conns), why);
    /* the streams are settled first, so that nothing nghttp2 might still
     * call back while the session is freed finds one to count again */
    for (uint32_t j = c->first; j < c->first + c->n; j++) {
        struct sub *s = &ch.subs[j];
        if (s->state == S_STREAM)
            sub_closed(s);
        else if (s->state == S_HEADERS)
            stream_failed(s);
    }
    c->state = C_DOWN;
    conn_close(c);
}

/* --- TLS under nghttp2 */

/* Writes what nghttp2 has to send, staged into records of up to
 * H2_STAGE bytes; what TLS cannot take now waits for EPOLLOUT.  Returns
 * false when the connection broke. */
static bool conn_flush(struct h2conn *c)
{
    for (;;) {
        if (!c->pend) {
            size_t n = 0;
            while (n < H2_STAGE) {
                if (!c->out_len) {
                    ssize_t r = nghttp2_session_mem_send(c->ng, &c->out);
                    if (r < 0)
                        return false;
                    if (r == 0)
                        break;
                    c->out_len = (size_t)r;
                }
                size_t k = c->out_len < H2_STAGE - n ? c->out_len : H2_STAGE - n;
                memcpy(H.stage + n, c->out, k);
                c->out += k;
                c->out_len -= k;
                n += k;
            }
            if (n == 0)
                break;
            /* the staged bytes are kept per connection only when TLS
             * cannot take them at once, which is rare */
            int w = SSL_write(c->ssl, H.stage, (int)n);
            if (w > 0 && (size_t)w == n)
                continue;
            c->pend = xcalloc(1, n);
            memcpy(c->pend, H.stage, n);
            c->pend_len = n;
            c->pend_off = w > 0 ? (size_t)w : 0;
            if (w <= 0) {
                int e = SSL_get_error(c->ssl, w);
                if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
                    return false;
                break;
            }
        }
        int w = SSL_write(c->ssl, c->pend + c->pend_off, (int)(c->pend_len - c->pend_off));
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
                return false;
            break;
        }
        c->pend_off += (size_t)w;
        if (c->pend_off == c->pend_len) {
            free(c->pend);
            c->pend = NULL;
        }
    }
    bool out = c->pend != NULL;
    if (out != c->want_out) {
        c->want_out = out;
        conn_want(c, EPOLLIN | (out ? EPOLLOUT : 0));
    }
    return true;
}

/* Reads every record there is and hands it to nghttp2, then sends what
 * that produced (window updates, SETTINGS acks). */
static void conn_read(struct h2conn *c)
{
    for (;;) {
        int r = SSL_read(c->ssl, ch.rbuf, RBUF_SIZE);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            conn_lost(c, e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL
                         ? "closed by the server" : "TLS error");
            return;
        }
        H.now = now_ns();
        ssize_t m = nghttp2_session_mem_recv(c->ng, (const uint8_t *)ch.rbuf, (size_t)r);
        if (m < 0) {
            conn_lost(c, nghttp2_strerror((int)m));
            return;
        }
    }
    if (!conn_flush(c))
        conn_lost(c, "write failed");
    else if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng))
        conn_lost(c, "the session ended (GOAWAY)");
}

/* --- nghttp2 callbacks: user_data is the connection, a stream's user
 * data its subscriber */

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_RESPONSE ||
        namelen != 7 || memcmp(name, ":status", 7) != 0)
        return 0;
    struct sub *s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!s || s->state != S_HEADERS)
        return 0;
    if (valuelen == 3 && memcmp(value, "200", 3) == 0) {
        sub_connected(s, false);
        return 0;
    }
    if (++ch.refusals_logged <= 3)
        verbose("subscriber %u: status %.*s%s", s->idx, (int)valuelen, value,
                ch.refusals_logged == 3 ? " (further refusals not shown)" : "");
    stream_failed(s);
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_CANCEL);
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t stream_id,
                   const uint8_t *data, size_t len, void *ud)
{
    (void)flags, (void)ud;
    struct sub *s = nghttp2_session_get_stream_user_data(ng, stream_id);

    if (s && s->state == S_STREAM)
        sse_feed(s, (const char *)data, len, H.now);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code,
                           void *ud)
{
    (void)error_code, (void)ud;
    struct sub *s = nghttp2_session_get_stream_user_data(ng, stream_id);

    if (!s)
        return 0;
    if (s->state == S_STREAM)
        sub_closed(s);
    else if (s->state == S_HEADERS)
        stream_failed(s);
    return 0;
}

/* --- setting a connection up */

/* TLS is up with h2: the session, its windows, every stream's request. */
static void conn_up(struct h2conn *c, uint64_t now)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    char path[600], authority[32];

    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        conn_attempt_failed(c, now, "the server did not choose h2 (ALPN)");
        return;
    }
    if (nghttp2_session_client_new(&c->ng, H.cbs, c) != 0)
        die("nghttp2_session_client_new failed");
    c->state = C_UP;
    ch.inflight--;

    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, NGHTTP2_MAX_WINDOW_SIZE },
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof *iv);
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                          NGHTTP2_MAX_WINDOW_SIZE);

    snprintf(authority, sizeof authority, "127.0.0.1:%d", O.h2_port);
    for (uint32_t j = c->first; j < c->first + c->n; j++) {
        struct sub *s = &ch.subs[j];
        snprintf(path, sizeof path, "%s%s%u", O.sub_prefix, O.chan_prefix, s->chan);
#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), \
                   NGHTTP2_NV_FLAG_NONE }
        nghttp2_nv nv[] = {
            NV(":method", "GET"), NV(":scheme", "https"),
            NV(":authority", authority), NV(":path", path),
            NV("accept", "text/event-stream"), NV("cache-control", "no-cache"),
        };
#undef NV
        if (nghttp2_submit_request(c->ng, NULL, nv, sizeof nv / sizeof *nv, NULL, s) < 0) {
            stream_failed(s);
            continue;
        }
        s->state = S_HEADERS;
    }
    c->want_out = false;
    conn_want(c, EPOLLIN);
    if (!conn_flush(c))
        conn_lost(c, "write failed");
}

static void conn_handshake(struct h2conn *c, uint64_t now)
{
    int r = SSL_do_handshake(c->ssl);

    if (r == 1) {
        conn_up(c, now);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        conn_want(c, EPOLLIN);
    else if (e == SSL_ERROR_WANT_WRITE)
        conn_want(c, EPOLLOUT);
    else
        conn_attempt_failed(c, now, "TLS handshake failed");
}

static void conn_connected(struct h2conn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        conn_attempt_failed(c, now, err ? strerror(err) : "connect failed");
        return;
    }
    c->ssl = SSL_new(H.ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
        die("SSL_new: %s", ERR_error_string(ERR_get_error(), NULL));
    SSL_set_connect_state(c->ssl);
    c->state = C_HANDSHAKE;
    conn_handshake(c, now);
}

static void conn_connect(struct h2conn *c, uint64_t now)
{
    uint32_t k = (uint32_t)(c - H.conns);
    uint32_t host = 1 + ((uint32_t)child_index + k * O.procs) % O.addrs;
    struct sockaddr_in src = { .sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(0x7f000000u | host) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)O.h2_port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;

    c->tries++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (use more --procs)", strerror(errno));
    c->state = C_CONNECTING;
    ch.inflight++;
    /* many small frames each way: no Nagle delay on the requests */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
        conn_attempt_failed(c, now, strerror(errno));
        return;
    }
    epoll_set(ch.ep, EPOLL_CTL_ADD, c->fd, EPOLLOUT, conn_key(c));
}

/* --- the transport's four entry points (see ssebench.c) */

static void transport_init(void)
{
    static const unsigned char alpn[] = "\x02h2";

    H.ctx = SSL_CTX_new(TLS_client_method());
    if (!H.ctx)
        die("SSL_CTX_new: %s", ERR_error_string(ERR_get_error(), NULL));
    SSL_CTX_set_min_proto_version(H.ctx, TLS1_2_VERSION);
    /* a benchmark against our own self-signed certificate */
    SSL_CTX_set_verify(H.ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_alpn_protos(H.ctx, alpn, sizeof alpn - 1);
    /* a retried write passes the same bytes from the connection's own
     * copy; idle connections give their buffers back (thousands of them) */
    SSL_CTX_set_mode(H.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);

    if (nghttp2_session_callbacks_new(&H.cbs) != 0)
        die("nghttp2_session_callbacks_new failed");
    nghttp2_session_callbacks_set_on_header_callback(H.cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(H.cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(H.cbs, on_stream_close);

    H.nconns = (ch.n + O.streams - 1) / O.streams;
    H.conns = xcalloc(H.nconns ? H.nconns : 1, sizeof *H.conns);
    for (uint32_t k = 0; k < H.nconns; k++) {
        struct h2conn *c = &H.conns[k];
        c->fd = -1;
        c->first = k * O.streams;
        c->n = ch.n - c->first < O.streams ? ch.n - c->first : O.streams;
    }
}

static void transport_event(uint64_t key, uint32_t events)
{
    struct h2conn *c = &H.conns[(uint32_t)key];
    uint64_t now = now_ns();

    if (c->fd < 0 || c->tries != (uint8_t)(key >> 32))
        return;
    switch (c->state) {
    case C_CONNECTING:
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_connected(c, now);
        break;
    case C_HANDSHAKE:
        conn_handshake(c, now);
        break;
    case C_UP:
        if ((events & EPOLLOUT) && !conn_flush(c)) {
            conn_lost(c, "write failed");
            break;
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(c);
        break;
    }
}

/* Starts connections while fewer than --connect-concurrency are being set
 * up: retries first once their backoff is over, then fresh ones. */
static void pump_connects(uint64_t now)
{
    while (ch.inflight < O.concurrency) {
        struct h2conn *c;
        if (ch.rq_len && ch.rq_due[ch.rq_head] <= now) {
            c = &H.conns[ch.rq[ch.rq_head]];
            ch.rq_head = (ch.rq_head + 1) % ch.n;
            ch.rq_len--;
            if (c->state != C_QUEUED)
                continue;
        } else if (ch.next_fresh < H.nconns) {
            c = &H.conns[ch.next_fresh++];
        } else {
            break;
        }
        conn_connect(c, now);
    }
}

/* --connect-timeout is over: connections not up, and streams without
 * their 200, have failed. */
static void connect_give_up(void)
{
    for (uint32_t k = 0; k < H.nconns; k++) {
        struct h2conn *c = &H.conns[k];
        if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
            ch.inflight--;
        if (c->state <= C_HANDSHAKE) {
            conn_close(c);
            c->state = C_FAILED;
        }
    }
    for (uint32_t j = 0; j < ch.n; j++)
        if (ch.subs[j].state <= S_HEADERS)
            stream_failed(&ch.subs[j]);
    ch.next_fresh = H.nconns;
    ch.rq_len = 0;
}
