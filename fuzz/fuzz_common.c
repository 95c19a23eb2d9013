/*
 * The pool, the property check and the references of fuzz.h.  Nothing
 * here calls the module except fuzz_frame_roundtrip().
 */

#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>


static ngx_log_t  fuzz_log;


ngx_pool_t *
fuzz_pool(void)
{
    ngx_pool_t  *pool;

    /* with an upstream tree, allocation failures are logged
       (ngx_upstream_stubs.c prints them) */
    fuzz_log.log_level = NGX_LOG_ERR;

    pool = ngx_create_pool(sizeof(ngx_pool_t), &fuzz_log);
    if (pool == NULL) {
        fuzz_fail(__FILE__, __LINE__, "pool", "ngx_create_pool() failed");
    }

    return pool;
}


void
fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "\nPROPERTY VIOLATED (%s:%d): %s\n  ", file, line, cond);

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    fprintf(stderr, "\n\n");
    fflush(stderr);

    abort();
}


const char *
fuzz_show(const u_char *p, size_t len)
{
    static char  buf[4][1024];
    static int   k;
    char        *b, *end;
    size_t       i;

    b = buf[k++ & 3];
    end = b + sizeof(buf[0]) - 8;

    *b++ = '"';

    for (i = 0; i < len && b < end; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
            *b++ = p[i];

        } else {
            b += snprintf(b, 5, "\\x%02x", p[i]);
        }
    }

    if (i < len) {
        b += snprintf(b, 4, "...");
    }

    *b++ = '"';
    *b = '\0';

    return buf[(k - 1) & 3];
}


u_char *
fuzz_copy(const u_char *p, size_t len)
{
    u_char  *c;

    c = malloc(len ? len : 1);
    if (c == NULL) {
        abort();
    }

    if (len) {
        memcpy(c, p, len);
    }

    return c;
}


/* ------------------------------------------------ the reference parser */

typedef struct {
    ref_stream_t  *s;
    int            mode;
    u_char        *dbuf;        /* this event's data, in s->buf */
    size_t         dlen;
    int            has_data;
    const u_char  *type;
    size_t         type_len;
    int            has_type;
} ref_state_t;


static void
ref_dispatch(ref_state_t *st)
{
    ref_event_t  *ev;

    if (!st->has_data) {
        if (st->mode == REF_MODULE && st->has_type) {
            st->s->error = 1;                   /* "empty event" */
        }

        st->has_type = 0;
        return;
    }

    ev = &st->s->events[st->s->nevents++];

    ev->data = st->dbuf;
    ev->data_len = st->dlen - 1;                /* the last LF */

    if (st->has_type && (st->type_len || st->mode == REF_MODULE)) {
        ev->type = (u_char *) st->type;
        ev->type_len = st->type_len;

    } else {
        ev->type = NULL;                        /* "message" */
        ev->type_len = 0;
    }

    st->dbuf += st->dlen;
    st->dlen = 0;
    st->has_data = 0;
    st->has_type = 0;
}


static void
ref_line(ref_state_t *st, const u_char *line, size_t len)
{
    const u_char  *colon, *value;
    size_t         nlen, vlen;

    if (len == 0) {
        ref_dispatch(st);
        return;
    }

    if (line[0] == ':') {
        return;
    }

    colon = memchr(line, ':', len);

    if (colon) {
        nlen = colon - line;
        value = colon + 1;
        vlen = len - nlen - 1;

        if (vlen && value[0] == ' ') {
            value++;
            vlen--;
        }

    } else {
        nlen = len;
        value = line + len;
        vlen = 0;
    }

    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        memcpy(st->dbuf + st->dlen, value, vlen);
        st->dlen += vlen;
        st->dbuf[st->dlen++] = '\n';
        st->has_data = 1;

    } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        st->type = value;
        st->type_len = vlen;
        st->has_type = 1;
    }

    /* "id", "retry" and any other field change nothing that is compared */
}


void
ref_parse(const u_char *in, size_t len, int mode, ref_stream_t *out)
{
    const u_char  *p, *end, *q;
    ref_state_t    st;

    memset(out, 0, sizeof(ref_stream_t));

    /* at most one event per two bytes, at most one data byte per byte */
    out->events = calloc(len / 2 + 2, sizeof(ref_event_t));
    out->buf = malloc(len + 2);

    if (out->events == NULL || out->buf == NULL) {
        abort();
    }

    memset(&st, 0, sizeof(ref_state_t));
    st.s = out;
    st.mode = mode;
    st.dbuf = out->buf;

    p = in;
    end = in + len;

    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        p += 3;
    }

    out->complete = 1;

    while (p < end && !out->error) {

        for (q = p; q < end && *q != '\r' && *q != '\n'; q++) {
            /* void */
        }

        if (q == end) {
            /* a last line without its line end */
            out->complete = 0;

            if (mode == REF_MODULE) {
                ref_line(&st, p, q - p);
            }

            break;
        }

        ref_line(&st, p, q - p);

        if (q[0] == '\r' && q + 1 < end && q[1] == '\n') {
            p = q + 2;

        } else {
            p = q + 1;
        }
    }

    if (mode == REF_MODULE && !out->error) {
        ref_dispatch(&st);

        if (out->nevents == 0) {
            out->error = 1;
        }
    }
}


void
ref_free(ref_stream_t *s)
{
    free(s->events);
    free(s->buf);
}


size_t
ref_normalize(const u_char *in, size_t len, u_char *out)
{
    size_t  i, n;

    for (i = 0, n = 0; i < len; i++) {
        if (in[i] == '\r') {
            out[n++] = '\n';

            if (i + 1 < len && in[i + 1] == '\n') {
                i++;
            }

        } else {
            out[n++] = in[i];
        }
    }

    return n;
}


/* ---------------------------------------------------------- the checks */

int
ref_utf8_valid(const u_char *p, size_t len)
{
    size_t  i, k, n;
    u_char  lo, hi;

    /*
     * Table 3-7: the first byte says how many bytes follow and the range
     * of the second; the third and fourth are always 80..BF
     */

    for (i = 0; i < len; i += n + 1) {
        u_char  c = p[i];

        lo = 0x80;
        hi = 0xbf;

        if (c <= 0x7f) {
            n = 0;

        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;

        } else if (c == 0xe0) {
            n = 2; lo = 0xa0;

        } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
            n = 2;

        } else if (c == 0xed) {
            n = 2; hi = 0x9f;

        } else if (c == 0xf0) {
            n = 3; lo = 0x90;

        } else if (c >= 0xf1 && c <= 0xf3) {
            n = 3;

        } else if (c == 0xf4) {
            n = 3; hi = 0x8f;

        } else {
            return 0;
        }

        if (len - i - 1 < n) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            if (p[i + k] < lo || p[i + k] > hi) {
                return 0;
            }

            lo = 0x80;
            hi = 0xbf;
        }
    }

    return 1;
}


int
ref_type_valid(const u_char *p, size_t len)
{
    size_t  i;

    if (len < 1 || len > 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == ':') {
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ref_check(const u_char *type, size_t type_len, const u_char *data,
    size_t data_len, size_t max)
{
    if (data_len == 0) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (data_len > max) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    if (!ref_type_valid(type, type_len)
        || memchr(data, '\0', data_len) != NULL
        || !ref_utf8_valid(data, data_len))
    {
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/* ------------------------------------------------- the frame round trip */

void
fuzz_frame_roundtrip(ngx_pool_t *pool, ngx_http_sse_fields_t *e)
{
    int            message;
    u_char        *norm, *head;
    size_t         nlen, hlen;
    ngx_str_t      out;
    ref_event_t   *ev;
    ref_stream_t   s;

    FUZZ_CHECK(ngx_http_sse_frame(pool, e, &out) == NGX_OK,
               "frame failed for data %s",
               fuzz_show(e->data.data, e->data.len));

    message = (e->type.len == 7 && memcmp(e->type.data, "message", 7) == 0);

    if (!message && !ref_type_valid(e->type.data, e->type.len)) {
        return;
    }

    FUZZ_CHECK(out.len >= 2
               && out.data[out.len - 2] == '\n'
               && out.data[out.len - 1] == '\n',
               "frame %s does not end with a blank line",
               fuzz_show(out.data, out.len));

    if (message) {
        FUZZ_CHECK(out.len >= 6 && memcmp(out.data, "data: ", 6) == 0,
                   "type message, frame %s does not begin with data:",
                   fuzz_show(out.data, out.len));

    } else {
        hlen = sizeof("event: \n") - 1 + e->type.len;
        head = malloc(hlen);
        memcpy(head, "event: ", 7);
        memcpy(head + 7, e->type.data, e->type.len);
        head[hlen - 1] = '\n';

        FUZZ_CHECK(out.len > hlen && memcmp(out.data, head, hlen) == 0,
                   "type %s, frame %s does not begin with its event: line",
                   fuzz_show(e->type.data, e->type.len),
                   fuzz_show(out.data, out.len));
        free(head);
    }

    ref_parse(out.data, out.len, REF_WHATWG, &s);

    FUZZ_CHECK(s.complete && s.nevents == 1,
               "EventSource reads %zu events (complete %d) from frame %s",
               s.nevents, s.complete, fuzz_show(out.data, out.len));

    ev = &s.events[0];

    if (message) {
        FUZZ_CHECK(ev->type == NULL
                   || (ev->type_len == 7
                       && memcmp(ev->type, "message", 7) == 0),
                   "type message read back as %s",
                   fuzz_show(ev->type, ev->type_len));

    } else {
        FUZZ_CHECK(ev->type && ev->type_len == e->type.len
                   && memcmp(ev->type, e->type.data, e->type.len) == 0,
                   "type %s read back as %s from %s",
                   fuzz_show(e->type.data, e->type.len),
                   ev->type ? fuzz_show(ev->type, ev->type_len) : "message",
                   fuzz_show(out.data, out.len));
    }

    norm = fuzz_copy(e->data.data, e->data.len);
    nlen = ref_normalize(e->data.data, e->data.len, norm);

    FUZZ_CHECK(ev->data_len == nlen && memcmp(ev->data, norm, nlen) == 0,
               "data %s read back as %s from frame %s",
               fuzz_show(e->data.data, e->data.len),
               fuzz_show(ev->data, ev->data_len),
               fuzz_show(out.data, out.len));

    free(norm);
    ref_free(&s);
}
