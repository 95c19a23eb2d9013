
/*
 * ngx_http_sse_module: what every handler does with its request: the
 * channels its location names, its headers, and its one-shot answers (a
 * body of JSON or text, the one-line JSON errors, the headers it adds).
 * The error filter gives nginx's own error pages in our locations (a body
 * over client_max_body_size, deny, limit_req, auth_request...) the same
 * one-line JSON body.
 *
 * Calls: ngx_http_sse_event.c.
 */


#include "ngx_http_sse.h"


static ngx_int_t ngx_http_sse_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_str_t *ngx_http_sse_error_text(ngx_uint_t status);


static ngx_str_t  ngx_http_sse_json = ngx_string("application/json");

/*
 * the same type, at an address of its own (an array, not a literal the
 * compiler may merge with the one above): an error page answered here
 */
static u_char     ngx_http_sse_json_page_type[] = "application/json";
static ngx_str_t  ngx_http_sse_json_page = {
    sizeof(ngx_http_sse_json_page_type) - 1, ngx_http_sse_json_page_type
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


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


/* the error filter */

ngx_int_t
ngx_http_sse_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_sse_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_sse_error_body_filter;

    return NGX_OK;
}


/*
 * An error page of nginx's own (r->err_status is set by the special
 * response handler) in a location of ours becomes one line of JSON.
 */

static ngx_int_t
ngx_http_sse_error_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                *text;
    ngx_http_sse_loc_conf_t  *slcf;

    if (r->err_status == 0 || r != r->main
        || r->headers_out.content_type.len != sizeof("text/html") - 1
        || ngx_strncmp(r->headers_out.content_type.data, "text/html",
                       sizeof("text/html") - 1) != 0)
    {
        return ngx_http_next_header_filter(r);
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    if (slcf == NULL || !(slcf->stream || slcf->publish || slcf->status)) {
        return ngx_http_next_header_filter(r);
    }

    text = ngx_http_sse_error_text(r->headers_out.status);

    r->headers_out.content_type = ngx_http_sse_json_page;
    r->headers_out.content_type_len = ngx_http_sse_json_page.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    r->headers_out.content_length_n = sizeof("{\"error\":\"\"}\n") - 1
                                      + text->len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


/* the page's own body goes; the JSON leaves with its last buf */

static ngx_int_t
ngx_http_sse_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char       *p;
    ngx_buf_t    *b;
    ngx_str_t    *text;
    ngx_uint_t    last;
    ngx_chain_t  *cl, out;

    if (in == NULL
        || r->headers_out.content_type.data != ngx_http_sse_json_page.data)
    {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf || b->last_in_chain) {
            last = 1;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    text = ngx_http_sse_error_text(r->headers_out.status);

    b = ngx_create_temp_buf(r->pool, sizeof("{\"error\":\"\"}\n") + text->len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(b->pos, "{\"error\":\"%V\"}\n", text);

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_str_t *
ngx_http_sse_error_text(ngx_uint_t status)
{
    static ngx_str_t  texts[] = {
        ngx_string("bad request"),                          /* 400 */
        ngx_string("unauthorized"),
        ngx_string("payment required"),
        ngx_string("forbidden"),
        ngx_string("not found"),
        ngx_string("method not allowed"),
        ngx_string("not acceptable"),
        ngx_string("proxy authentication required"),
        ngx_string("request timeout"),
        ngx_string("conflict"),
        ngx_string("gone"),                                 /* 410 */
        ngx_string("length required"),
        ngx_string("precondition failed"),
        ngx_string("request body too large"),
        ngx_string("request uri too large"),
        ngx_string("unsupported media type"),
        ngx_string("range not satisfiable"),
        ngx_string("expectation failed"),
        ngx_string("misdirected request"),
        ngx_string("unprocessable entity"),
        ngx_string("locked"),                               /* 423 */
        ngx_string("failed dependency"),
        ngx_string("too early"),
        ngx_string("upgrade required"),
        ngx_string("precondition required"),
        ngx_string("too many requests"),                    /* 429 */
    };

    static ngx_str_t  server = ngx_string("internal server error");
    static ngx_str_t  unavailable = ngx_string("service unavailable");
    static ngx_str_t  timeout = ngx_string("gateway timeout");
    static ngx_str_t  bad_gateway = ngx_string("bad gateway");
    static ngx_str_t  other = ngx_string("error");

    if (status >= 400 && status < 400 + sizeof(texts) / sizeof(ngx_str_t)) {
        return &texts[status - 400];
    }

    switch (status) {
    case 500:
        return &server;
    case 502:
        return &bad_gateway;
    case 503:
        return &unavailable;
    case 504:
        return &timeout;
    default:
        return &other;
    }
}
