
/*
 * ngx_http_sse_module: the pure parts, with no request and no zone: the
 * text/event-stream body parser, the checks an event must pass, UTF-8,
 * the wire framing, channel lists and ids.  HTTP and Redis ingress share
 * them, and the fuzzers call them directly.
 *
 * Calls: nothing of the module.
 */


#include "ngx_http_sse.h"


ngx_str_t  ngx_http_sse_message = ngx_string("message");


static ngx_int_t ngx_http_sse_body_dispatch(ngx_array_t *events,
    ngx_http_sse_fields_t *cur, const char **err);
static u_char *ngx_http_sse_next_line(u_char **pp, u_char *last);


/*
 * A text/event-stream body: "event" and "data" fields, a blank line ends an
 * event; "id", "retry", comments and other fields are ignored.  The events'
 * data is rebuilt in one buffer from the pool; NGX_DECLINED with *err for
 * a body without an event, or with an event without data; NGX_BUSY for
 * more than max events (0: no limit).
 */

ngx_int_t
ngx_http_sse_parse_body(ngx_pool_t *pool, ngx_str_t *body, ngx_uint_t max,
    ngx_array_t *events, const char **err)
{
    u_char                 *p, *last, *line, *eol, *colon, *value, *dst;
    size_t                  flen, vlen;
    ngx_uint_t              seen, has_data;
    ngx_http_sse_fields_t   cur;

    dst = ngx_pnalloc(pool, body->len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    p = body->data;
    last = p + body->len;

    /* a leading byte order mark is skipped, as EventSource skips it */

    if (last - p >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        p += 3;
    }

    seen = 0;
    has_data = 0;
    cur.type = ngx_http_sse_message;
    cur.data.data = dst;
    cur.data.len = 0;

    for ( ;; ) {
        line = p;
        eol = ngx_http_sse_next_line(&p, last);

        if (line == eol) {

            /* a blank line, or the end of the body: dispatch */

            if (seen) {
                if (!has_data) {
                    *err = "empty event";
                    return NGX_DECLINED;
                }

                if (max && events->nelts == max) {
                    *err = "more events than sse_max_events";
                    return NGX_BUSY;
                }

                if (ngx_http_sse_body_dispatch(events, &cur, err) != NGX_OK) {
                    return NGX_ERROR;
                }

                seen = 0;
                has_data = 0;
            }

            if (line == last) {
                break;
            }

            continue;
        }

        if (*line == ':') {
            continue;
        }

        colon = ngx_strlchr(line, eol, ':');

        if (colon) {
            flen = colon - line;
            value = colon + 1;

            if (value < eol && *value == ' ') {
                value++;
            }

        } else {
            flen = eol - line;
            value = eol;
        }

        vlen = eol - value;

        if (flen == 4 && ngx_strncmp(line, "data", 4) == 0) {
            dst = ngx_cpymem(cur.data.data + cur.data.len, value, vlen);
            *dst = '\n';
            cur.data.len += vlen + 1;
            has_data = 1;
            seen = 1;

        } else if (flen == 5 && ngx_strncmp(line, "event", 5) == 0) {
            cur.type.data = value;
            cur.type.len = vlen;
            seen = 1;
        }
    }

    if (events->nelts == 0) {
        *err = "empty event";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The line at *pp, ended by CRLF, LF, CR or the end of the body: returns
 * its end and moves *pp past its line end (at the end: returns last).
 */

static u_char *
ngx_http_sse_next_line(u_char **pp, u_char *last)
{
    u_char  *p, *eol;

    p = *pp;

    for (eol = p; eol < last && *eol != '\n' && *eol != '\r'; eol++) {
        /* void */
    }

    p = eol;

    if (p < last && *p == '\r') {
        p++;
    }

    if (p < last && *p == '\n' && (p == eol || *eol == '\r')) {
        p++;
    }

    *pp = p;

    return eol;
}


/* the event is complete; the next one's data follows in the same buffer */

static ngx_int_t
ngx_http_sse_body_dispatch(ngx_array_t *events, ngx_http_sse_fields_t *cur,
    const char **err)
{
    ngx_http_sse_fields_t  *e;

    /* the data lines were joined with LF; drop the last one */
    cur->data.len--;

    e = ngx_array_push(events);
    if (e == NULL) {
        return NGX_ERROR;
    }

    *e = *cur;

    cur->data.data += cur->data.len + 1;
    cur->data.len = 0;
    cur->type = ngx_http_sse_message;

    return NGX_OK;
}


/* returns NGX_OK or the HTTP status that says what is wrong, with *err */

ngx_int_t
ngx_http_sse_check_event(ngx_http_sse_fields_t *e, size_t max,
    const char **err)
{
    ngx_uint_t  i;

    if (e->data.len == 0) {
        *err = "empty event";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (e->data.len > max) {
        *err = "event data larger than sse_max_message_size";
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    if (e->type.len == 0 || e->type.len > NGX_HTTP_SSE_MAX_TYPE) {
        *err = "event type must be 1 to 64 bytes";
        return NGX_HTTP_BAD_REQUEST;
    }

    for (i = 0; i < e->type.len; i++) {
        if (e->type.data[i] < 0x21 || e->type.data[i] > 0x7e
            || e->type.data[i] == ':')
        {
            *err = "event type must be printable, without spaces or ':'";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (ngx_strlchr(e->data.data, e->data.data + e->data.len, '\0')) {
        *err = "event data contains a NUL byte";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_sse_valid_utf8(e->data.data, e->data.len) != NGX_OK) {
        *err = "event data is not valid UTF-8";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/* strict UTF-8: no overlong forms, no surrogates, nothing over U+10FFFF */

ngx_int_t
ngx_http_sse_valid_utf8(u_char *p, size_t len)
{
    u_char      *last;
    uint32_t     u, min;
    ngx_uint_t   n;

    last = p + len;

    while (p < last) {
        u = *p++;

        if (u < 0x80) {
            continue;
        }

        if (u >= 0xc2 && u <= 0xdf) {
            n = 1;
            u &= 0x1f;
            min = 0x80;

        } else if (u >= 0xe0 && u <= 0xef) {
            n = 2;
            u &= 0x0f;
            min = 0x800;

        } else if (u >= 0xf0 && u <= 0xf4) {
            n = 3;
            u &= 0x07;
            min = 0x10000;

        } else {
            return NGX_ERROR;
        }

        if ((size_t) (last - p) < n) {
            return NGX_ERROR;
        }

        while (n--) {
            if ((*p & 0xc0) != 0x80) {
                return NGX_ERROR;
            }

            u = (u << 6) | (*p++ & 0x3f);
        }

        if (u < min || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The wire form, less the "id:" line the hub puts in front: "event:" when
 * the type is not "message", one "data:" line per line of the data (split
 * on CRLF, LF and lone CR), and the blank line.
 */

ngx_int_t
ngx_http_sse_frame(ngx_pool_t *pool, ngx_http_sse_fields_t *e,
    ngx_str_t *out)
{
    u_char      *p, *last, *dst;
    size_t       size;
    ngx_uint_t   lines, typed;

    typed = !(e->type.len == ngx_http_sse_message.len
              && ngx_strncmp(e->type.data, "message", 7) == 0);

    lines = 1;
    last = e->data.data + e->data.len;

    for (p = e->data.data; p < last; p++) {
        if (*p == '\n' || (*p == '\r' && (p + 1 == last || p[1] != '\n'))) {
            lines++;
        }
    }

    size = (typed ? sizeof("event: \n") - 1 + e->type.len : 0)
           + lines * (sizeof("data: \n") - 1) + e->data.len + 1;

    dst = ngx_pnalloc(pool, size);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    out->data = dst;

    if (typed) {
        dst = ngx_cpymem(dst, "event: ", sizeof("event: ") - 1);
        dst = ngx_cpymem(dst, e->type.data, e->type.len);
        *dst++ = '\n';
    }

    dst = ngx_cpymem(dst, "data: ", sizeof("data: ") - 1);

    for (p = e->data.data; p < last; p++) {

        if (*p == '\r' || *p == '\n') {
            if (*p == '\r' && p + 1 < last && p[1] == '\n') {
                p++;
            }

            *dst++ = '\n';
            dst = ngx_cpymem(dst, "data: ", sizeof("data: ") - 1);
            continue;
        }

        *dst++ = *p;
    }

    *dst++ = '\n';
    *dst++ = '\n';

    out->len = dst - out->data;

    return NGX_OK;
}


/*
 * A comma-separated list of 1 to 16 channel names, each 1-128 bytes of
 * A-Z a-z 0-9 _ - . : @ /; duplicates are collapsed.  The names point into
 * value.  NGX_DECLINED with *err for anything else.
 */

ngx_int_t
ngx_http_sse_parse_channels(ngx_str_t *value, ngx_str_t *names, ngx_uint_t *n,
    const char **err)
{
    u_char      *p, *last, *start;
    size_t       len;
    ngx_uint_t   k;

    *n = 0;
    p = value->data;
    last = p + value->len;

    for ( ;; ) {
        start = p;

        while (p < last && *p != ',') {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
                  || *p == '.' || *p == ':' || *p == '@' || *p == '/'))
            {
                *err = "bad channel name";
                return NGX_DECLINED;
            }

            p++;
        }

        len = p - start;

        if (len == 0 || len > NGX_HTTP_SSE_MAX_NAME) {
            *err = "bad channel name";
            return NGX_DECLINED;
        }

        for (k = 0; k < *n; k++) {
            if (names[k].len == len
                && ngx_strncmp(names[k].data, start, len) == 0)
            {
                break;
            }
        }

        if (k == *n) {
            if (*n == NGX_HTTP_SSE_MAX_CHANNELS) {
                *err = "more than 16 channels";
                return NGX_DECLINED;
            }

            names[*n].data = start;
            names[*n].len = len;
            (*n)++;
        }

        if (p == last) {
            break;
        }

        p++;
    }

    return NGX_OK;
}


/* "text/event-stream", alone or with parameters (after optional spaces) */

ngx_uint_t
ngx_http_sse_is_event_stream(ngx_str_t *content_type)
{
    u_char  *ct;
    size_t   len;

    len = sizeof("text/event-stream") - 1;
    ct = content_type->data;

    return content_type->len >= len
           && ngx_strncasecmp(ct, (u_char *) "text/event-stream", len) == 0
           && (content_type->len == len
               || ct[len] == ';' || ct[len] == ' ' || ct[len] == '\t');
}


u_char *
ngx_http_sse_id_format(u_char *p, ngx_http_sse_id_t *id)
{
    return ngx_sprintf(p, "%uL-%uL", id->ms, id->seq);
}


/*
 * "<ms>-<seq>", decimal, each part 1 to 20 digits and at most 2^64 - 1:
 * any id Redis gives an entry, for Redis ids are two unsigned 64-bit parts
 */

ngx_int_t
ngx_http_sse_id_parse(u_char *p, size_t len, ngx_http_sse_id_t *id)
{
    u_char      *dash, *last;
    uint64_t     v[2], d;
    ngx_uint_t   i;

    last = p + len;

    dash = ngx_strlchr(p, last, '-');
    if (dash == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < 2; i++) {
        if (p == dash || dash - p > 20) {
            return NGX_ERROR;
        }

        v[i] = 0;

        while (p < dash) {
            if (*p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            d = *p++ - '0';

            if (v[i] > (UINT64_MAX - d) / 10) {
                return NGX_ERROR;
            }

            v[i] = v[i] * 10 + d;
        }

        p = dash + 1;
        dash = last;
    }

    id->ms = v[0];
    id->seq = v[1];

    return NGX_OK;
}
