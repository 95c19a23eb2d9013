
/*
 * ngx_http_sse_module: what every handler does with its request: the
 * channels its location names, and its one-shot answers (a body of JSON
 * or text, the one-line JSON errors, the headers it adds).
 *
 * Calls: ngx_http_sse_event.c.
 */


#include "ngx_http_sse.h"


static ngx_str_t  ngx_http_sse_json = ngx_string("application/json");


/* the channels of the location's directive, for this request */

ngx_int_t
ngx_http_sse_request_channels(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *names, ngx_uint_t *n,
    const char **err)
{
    ngx_str_t  value;

    if (cv == NULL) {
        /* cannot happen since merge inherits it; never dereference NULL */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sse: no channels configured for this location");
        return NGX_ERROR;
    }

    if (ngx_http_complex_value(r, cv, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_sse_parse_channels(&value, names, n, err);
}


/*
 * A request header by name: NGX_DECLINED when absent, NGX_BUSY when sent
 * more than once (a single-valued header then has no one value)
 */

ngx_int_t
ngx_http_sse_request_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    size_t            len;
    ngx_int_t         rc;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    rc = NGX_DECLINED;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            if (rc == NGX_OK) {
                return NGX_BUSY;
            }

            *value = h[i].value;
            rc = NGX_OK;
        }
    }

    return rc;
}


ngx_int_t
ngx_http_sse_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *type,
    u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_sse_send_json(ngx_http_request_t *r, ngx_uint_t status, u_char *data,
    size_t len)
{
    return ngx_http_sse_send(r, status, &ngx_http_sse_json, data, len);
}


/* every error is one line of JSON: {"error":"<what was wrong>"} */

ngx_int_t
ngx_http_sse_error(ngx_http_request_t *r, ngx_uint_t status, const char *msg)
{
    u_char  *buf, *p;
    size_t   len;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    len = ngx_strlen(msg);

    buf = ngx_pnalloc(r->pool, sizeof("{\"error\":\"\"}\n") - 1 + len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(buf, "{\"error\":\"%s\"}\n", msg);

    return ngx_http_sse_send_json(r, status, buf, p - buf);
}


ngx_int_t
ngx_http_sse_not_allowed(ngx_http_request_t *r, const char *allow)
{
    if (ngx_http_sse_add_header(r, "Allow", allow) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sse_error(r, NGX_HTTP_NOT_ALLOWED, "method not allowed");
}


ngx_table_elt_t *
ngx_http_sse_add_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
    h->lowcase_key = NULL;

#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return h;
}
