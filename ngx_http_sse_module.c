
/*
 * ngx_http_sse_module: directives, the subscriber, publisher and status
 * handlers, SSE framing, and each worker's subscribers.
 */


#include "ngx_http_sse.h"


#define NGX_HTTP_SSE_DEFAULT_ZONE_SIZE  (32 * 1024 * 1024)
#define NGX_HTTP_SSE_FREE_OUTS          4096
#ifndef NGX_HTTP_SSE_WRITE_SLICE
#define NGX_HTTP_SSE_WRITE_SLICE        256
#endif


typedef struct {
    ngx_shm_zone_t                 *shm_zone;
    ngx_flag_t                      used;
} ngx_http_sse_main_conf_t;


typedef struct {
    ngx_http_complex_value_t       *stream;
    ngx_http_complex_value_t       *publish;

    ngx_int_t                       history;
    ngx_msec_t                      history_ttl;
    ngx_msec_t                      retry;
    ngx_msec_t                      heartbeat;
    size_t                          max_pending;
    ngx_int_t                       max_subscribers;
    size_t                          max_message_size;

    /* client_max_body_size of a publish location, answered in JSON here */
    off_t                           max_body;
    ngx_http_core_loc_conf_t       *clcf;

    ngx_str_t                       retry_line;
} ngx_http_sse_loc_conf_t;


/* a buf of a subscriber's output, in a free list when not in use */

typedef struct {
    ngx_chain_t                     cl;
    ngx_buf_t                       buf;
    ngx_http_sse_msg_t             *msg;
    size_t                          owed;       /* counts for max_pending */
    ngx_uint_t                      framed;     /* an HTTP/1.1 chunk */
    u_char                          tmp[NGX_SIZE_T_LEN + 2];
} ngx_http_sse_out_t;


struct ngx_http_sse_sub_s {
    ngx_connection_t               *c;
    ngx_http_request_t             *r;          /* NULL in raw mode */
    ngx_http_sse_loc_conf_t        *slcf;
    ngx_queue_t                     queue;      /* this worker's streams */
    ngx_queue_t                     dirty;
    ngx_chain_t                    *out;        /* not yet handed on */
    ngx_chain_t                    *out_tail;
    ngx_chain_t                    *busy;       /* handed on, not sent */
    ngx_chain_t                    *busy_tail;
    size_t                          busy_size;
    ngx_event_t                     ev;         /* takeover, heartbeat */
    ngx_msec_t                      last_write;
    ngx_msec_t                      send_timeout;
    ngx_uint_t                      nlinks;
    ngx_http_sse_link_t            *links;
    ngx_http_sse_lchan_t          **lchans;
    unsigned                        attached:1;
    unsigned                        is_dirty:1;
    unsigned                        ending:1;
    unsigned                        raw:1;
    unsigned                        chunked:1;
    unsigned                        closing:1;
};


typedef struct {
    ngx_str_t                       type;
    ngx_str_t                       data;
} ngx_http_sse_raw_event_t;


static ngx_int_t ngx_http_sse_stream_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_send_retry_only(ngx_http_request_t *r,
    ngx_http_sse_loc_conf_t *slcf);
static ngx_int_t ngx_http_sse_last_id(ngx_http_request_t *r,
    ngx_http_sse_id_t *id);
static void ngx_http_sse_takeover(ngx_event_t *ev);
static void ngx_http_sse_sub_cleanup(void *data);
static void ngx_http_sse_sub_free(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_detach(ngx_http_sse_sub_t *sub);
static ngx_chain_t *ngx_http_sse_sub_queue(ngx_http_sse_sub_t *sub);
static size_t ngx_http_sse_sub_reap(ngx_http_sse_sub_t *sub);
static ngx_int_t ngx_http_sse_sub_flush(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_write(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_close(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_end(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_write_handler(ngx_http_request_t *r);
static void ngx_http_sse_raw_write_handler(ngx_event_t *wev);
static void ngx_http_sse_raw_read_handler(ngx_event_t *rev);
static void ngx_http_sse_heartbeat_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_sse_sub_append(ngx_http_sse_sub_t *sub,
    u_char *data, size_t len, ngx_http_sse_msg_t *msg, ngx_uint_t framed);
static ngx_http_sse_out_t *ngx_http_sse_out_get(ngx_http_sse_sub_t *sub,
    u_char *data, size_t len, ngx_http_sse_msg_t *msg, ngx_uint_t framed);
static void ngx_http_sse_out_free(ngx_chain_t *cl);
static void ngx_http_sse_sub_dirty(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_writer_handler(ngx_event_t *ev);

static ngx_int_t ngx_http_sse_publish_handler(ngx_http_request_t *r);
static void ngx_http_sse_publish_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_publish(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_sse_parse_stream(ngx_http_request_t *r,
    ngx_str_t *body, ngx_array_t *events, const char **err);
static ngx_int_t ngx_http_sse_check_event(ngx_http_sse_raw_event_t *e,
    size_t max, const char **err);
static ngx_int_t ngx_http_sse_frame(ngx_pool_t *pool,
    ngx_http_sse_raw_event_t *e, ngx_str_t *out);
static ngx_int_t ngx_http_sse_lookup(ngx_http_request_t *r, ngx_uint_t del);

static ngx_int_t ngx_http_sse_status_handler(ngx_http_request_t *r);

static ngx_int_t ngx_http_sse_channels(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *names, ngx_uint_t *n,
    const char **err);
static ngx_int_t ngx_http_sse_valid_utf8(u_char *p, size_t len);
static ngx_int_t ngx_http_sse_send_targets(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_sse_target_t *t, ngx_uint_t n);
static ngx_int_t ngx_http_sse_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len);
static ngx_int_t ngx_http_sse_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *msg);
static ngx_int_t ngx_http_sse_not_allowed(ngx_http_request_t *r,
    const char *allow);
static ngx_table_elt_t *ngx_http_sse_add_header(ngx_http_request_t *r,
    const char *key, const char *value);

static void *ngx_http_sse_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sse_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sse_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sse_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_sse_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_add_zone(ngx_conf_t *cf,
    ngx_http_sse_main_conf_t *smcf, ngx_str_t *name, size_t size);
static char *ngx_http_sse_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_publish_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_set_handler(ngx_conf_t *cf,
    ngx_http_handler_pt handler);
static char *ngx_http_sse_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_msec_or_off(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_sse_init_process(ngx_cycle_t *cycle);
static void ngx_http_sse_exit_process(ngx_cycle_t *cycle);


/* "sse_retry 0" is sent ("reconnect at once"), "off" is not */
#define NGX_HTTP_SSE_RETRY_OFF  ((ngx_msec_t) -2)

static ngx_msec_t  ngx_http_sse_retry_off = NGX_HTTP_SSE_RETRY_OFF;


static ngx_command_t  ngx_http_sse_commands[] = {

    { ngx_string("sse_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_publish"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_publish_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sse_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_history"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, history),
      NULL },

    { ngx_string("sse_history_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, history_ttl),
      NULL },

    { ngx_string("sse_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_msec_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, retry),
      &ngx_http_sse_retry_off },

    { ngx_string("sse_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_msec_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("sse_max_pending"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_pending),
      NULL },

    { ngx_string("sse_max_subscribers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_subscribers),
      NULL },

    { ngx_string("sse_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_message_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sse_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_sse_create_main_conf,         /* create main configuration */
    ngx_http_sse_init_main_conf,           /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sse_create_loc_conf,          /* create location configuration */
    ngx_http_sse_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_sse_module = {
    NGX_MODULE_V1,
    &ngx_http_sse_module_ctx,              /* module context */
    ngx_http_sse_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_sse_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_sse_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_sse_event_stream =
    ngx_string("text/event-stream; charset=utf-8");
static ngx_str_t  ngx_http_sse_json = ngx_string("application/json");
static ngx_str_t  ngx_http_sse_prometheus =
    ngx_string("text/plain; version=0.0.4");
static ngx_str_t  ngx_http_sse_message = ngx_string("message");

static u_char  ngx_http_sse_heartbeat_line[] = ": heartbeat\n\n";
static u_char  ngx_http_sse_heartbeat_chunk[] = "d" CRLF ": heartbeat\n\n" CRLF;


/* this worker's streams */
static ngx_queue_t          ngx_http_sse_subs;
static ngx_queue_t          ngx_http_sse_dirty;
static ngx_http_sse_out_t  *ngx_http_sse_free_outs;
static ngx_uint_t           ngx_http_sse_nfree_outs;
static ngx_event_t          ngx_http_sse_writer;


/*
 * Subscribing.
 *
 * A stream starts as an ordinary request: the headers, the retry line and
 * the replay go through the filters.  On HTTP/1.x with no content coding
 * the request is then freed and the stream keeps only its connection and a
 * small subscriber ("raw" mode): events are written with c->send_chain(),
 * framed as chunks here when the response is chunked.  HTTP/2 and gzip
 * streams stay requests and write through ngx_http_output_filter().
 */

static ngx_int_t
ngx_http_sse_stream_handler(ngx_http_request_t *r)
{
    size_t                     size;
    const char                *err;
    ngx_int_t                  rc;
    ngx_uint_t                 i, n;
    ngx_str_t                  names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_connection_t          *c;
    ngx_pool_cleanup_t        *cln;
    ngx_http_sse_sub_t        *sub;
    ngx_http_sse_link_t       *link;
    ngx_http_sse_loc_conf_t   *slcf;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_sse_subscribe_t   s;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_sse_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    c = r->connection;
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    rc = ngx_http_sse_channels(r, slcf->stream, names, &n, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_http_sse_event_stream;
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

    if (ngx_http_sse_add_header(r, "Cache-Control", "no-cache") == NULL
        || ngx_http_sse_add_header(r, "X-Accel-Buffering", "no") == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_HEAD) {
        return ngx_http_send_header(r);
    }

    if (ngx_exiting) {
        /* a worker on its way out: the client is told to come back */
        return ngx_http_sse_send_retry_only(r, slcf);
    }

    size = sizeof(ngx_http_sse_sub_t)
           + n * (sizeof(ngx_http_sse_link_t) + sizeof(ngx_http_sse_lchan_t *));

    sub = ngx_calloc(size, c->log);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(sub);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_sse_sub_cleanup;
    cln->data = sub;

    sub->c = c;
    sub->r = r;
    sub->slcf = slcf;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    sub->send_timeout = clcf->send_timeout;
    sub->nlinks = n;
    sub->links = (ngx_http_sse_link_t *) (sub + 1);
    sub->lchans = (ngx_http_sse_lchan_t **) (sub->links + n);

    sub->ev.data = sub;
    sub->ev.log = c->log;
    sub->ev.cancelable = 1;

    ngx_http_set_ctx(r, sub, ngx_http_sse_module);

    ngx_memzero(&s, sizeof(ngx_http_sse_subscribe_t));

    s.names = names;
    s.n = n;
    s.max_subscribers = slcf->max_subscribers;
    s.lchans = sub->lchans;
    s.resume = (ngx_http_sse_last_id(r, &s.last_id) == NGX_OK);

    rc = ngx_http_sse_hub_subscribe(&s, c->log);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_BUSY:
        return ngx_http_sse_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "too many subscribers");

    case NGX_DECLINED:
        return ngx_http_sse_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "no room in the sse zone");

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < n; i++) {
        link = &sub->links[i];
        link->sub = sub;
        link->lchan = sub->lchans[i];
        ngx_queue_insert_tail(n == 1 ? &link->lchan->links
                                     : &link->lchan->mlinks,
                              &link->queue);
    }

    ngx_queue_insert_tail(&ngx_http_sse_subs, &sub->queue);
    sub->attached = 1;

    if (r->http_version <= NGX_HTTP_VERSION_11 && clcf->tcp_nodelay) {
        /* small events must not wait for the previous one's ACK */
        if (ngx_tcp_nodelay(c) != NGX_OK) {
            rc = NGX_ERROR;
            goto failed;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        goto failed;
    }

    rc = NGX_OK;

    if (slcf->retry_line.len) {
        rc = ngx_http_sse_sub_append(sub, slcf->retry_line.data,
                                     slcf->retry_line.len, NULL, 0);
    }

    if (s.replay) {
        if (rc == NGX_OK) {
            rc = ngx_http_sse_sub_append(sub, s.replay->pos, s.replay->len,
                                         s.replay, 0);

            /*
             * the replay is what the client asked for, however large;
             * only live output it falls behind on counts as owed
             */
            if (rc == NGX_OK) {
                ((ngx_http_sse_out_t *) sub->out_tail)->owed = 0;
            }
        }

        ngx_http_sse_msg_release(s.replay);
        s.replay = NULL;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (sub->out == NULL) {
        /* the headers must leave now: the browser's "open" fires on them */
        rc = ngx_http_send_special(r, NGX_HTTP_FLUSH);

    } else {
        rc = ngx_http_sse_sub_flush(sub);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_sse_write_handler;

    if (r->http_version <= NGX_HTTP_VERSION_11
        && r == r->main
        && r->headers_out.content_encoding == NULL
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
       )
    {
        /* after this request has been finalized below */
        sub->ev.handler = ngx_http_sse_takeover;
        ngx_post_event(&sub->ev, &ngx_posted_events);

    } else if (slcf->heartbeat) {
        sub->ev.handler = ngx_http_sse_heartbeat_handler;
        ngx_add_timer(&sub->ev, slcf->heartbeat);
    }

    r->main->count++;

    return NGX_DONE;

failed:

    if (s.replay) {
        ngx_http_sse_msg_release(s.replay);
    }

    return rc;
}


static ngx_int_t
ngx_http_sse_send_retry_only(ngx_http_request_t *r,
    ngx_http_sse_loc_conf_t *slcf)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (slcf->retry_line.len == 0) {
        return ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = slcf->retry_line.data;
    b->last = b->pos + slcf->retry_line.len;
    b->memory = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_sse_last_id(ngx_http_request_t *r, ngx_http_sse_id_t *id)
{
    ngx_str_t         value;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

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

        if (h[i].key.len == sizeof("Last-Event-ID") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Last-Event-ID",
                               sizeof("Last-Event-ID") - 1)
               == 0)
        {
            return ngx_http_sse_id_parse(h[i].value.data, h[i].value.len, id);
        }
    }

    if (ngx_http_arg(r, (u_char *) "last_event_id",
                     sizeof("last_event_id") - 1, &value)
        == NGX_OK)
    {
        return ngx_http_sse_id_parse(value.data, value.len, id);
    }

    return NGX_DECLINED;
}


/*
 * The request is done with: free it, keep the connection.  The access log
 * line is written now, as for any request that ends.
 */

static void
ngx_http_sse_takeover(ngx_event_t *ev)
{
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_sse_sub_t        *sub;
    ngx_http_connection_t     *hc;

    sub = ev->data;
    r = sub->r;
    c = sub->c;

    ev->handler = ngx_http_sse_heartbeat_handler;

    if (r->main->count != 1 || r->out || r->postponed || r->blocked
        || c->buffered || c->error)
    {
        /* something still holds the request: it stays one */

        if (sub->slcf->heartbeat) {
            ngx_add_timer(ev, sub->slcf->heartbeat);
        }

        return;
    }

    sub->chunked = r->chunked;
    sub->raw = 1;
    sub->r = NULL;

    hc = r->http_connection;

    r->keepalive = 0;
    ngx_http_free_request(r, 0);

    c->destroyed = 0;
    c->data = sub;

    /* as for an idle keepalive connection: the header buffers go */

    b = c->buffer;

    if (b && ngx_pfree(c->pool, b->start) == NGX_OK) {
        c->buffer = NULL;
    }

    for (cl = hc->busy; cl; cl = cl->next) {
        ngx_pfree(c->pool, cl->buf->start);
    }

    for (cl = hc->free; cl; cl = cl->next) {
        ngx_pfree(c->pool, cl->buf->start);
    }

    hc->busy = NULL;
    hc->free = NULL;
    hc->nbusy = 0;

    c->log->action = "streaming events";

    c->read->handler = ngx_http_sse_raw_read_handler;
    c->write->handler = ngx_http_sse_raw_write_handler;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (sub->slcf->heartbeat) {
        ngx_add_timer(ev, sub->slcf->heartbeat);
    }

    /* whatever the client sent meanwhile, or its close, is seen now */
    ngx_http_sse_raw_read_handler(c->read);
}


/* the request is freed: in raw mode the subscriber lives on without it */

static void
ngx_http_sse_sub_cleanup(void *data)
{
    ngx_http_sse_sub_t  *sub = data;

    if (sub->raw) {
        return;
    }

    ngx_http_sse_sub_free(sub);
}


static void
ngx_http_sse_sub_free(ngx_http_sse_sub_t *sub)
{
    ngx_chain_t  *cl, *next;

    ngx_http_sse_sub_detach(sub);

    if (sub->closing) {
        ngx_queue_remove(&sub->queue);
    }

    for (cl = sub->busy; cl; cl = next) {
        next = cl->next;
        ngx_http_sse_out_free(cl);
    }

    for (cl = sub->out; cl; cl = next) {
        next = cl->next;
        ngx_http_sse_out_free(cl);
    }

    ngx_free(sub);
}


/* leaves the hub: no event is queued for this stream after this */

static void
ngx_http_sse_sub_detach(ngx_http_sse_sub_t *sub)
{
    ngx_uint_t  i;

    if (sub->ev.timer_set) {
        ngx_del_timer(&sub->ev);
    }

    if (sub->ev.posted) {
        ngx_delete_posted_event(&sub->ev);
    }

    if (sub->is_dirty) {
        ngx_queue_remove(&sub->dirty);
        sub->is_dirty = 0;
    }

    if (!sub->attached) {
        return;
    }

    sub->attached = 0;

    for (i = 0; i < sub->nlinks; i++) {
        ngx_queue_remove(&sub->links[i].queue);
    }

    ngx_queue_remove(&sub->queue);

    ngx_http_sse_hub_unsubscribe(sub->lchans, sub->nlinks);
}


static ngx_int_t
ngx_http_sse_sub_append(ngx_http_sse_sub_t *sub, u_char *data, size_t len,
    ngx_http_sse_msg_t *msg, ngx_uint_t framed)
{
    ngx_http_sse_out_t  *o;

    if (sub->out && msg) {
        o = (ngx_http_sse_out_t *) sub->out_tail;

        if (o->msg == msg && o->buf.last == data && o->framed == framed) {
            /* the next bytes of the same block: the buf grows */
            o->buf.last += len;
            o->buf.end = o->buf.last;
            o->owed += len;
            return NGX_OK;
        }
    }

    o = ngx_http_sse_out_get(sub, data, len, msg, framed);
    if (o == NULL) {
        return NGX_ERROR;
    }

    if (sub->out) {
        sub->out_tail->next = &o->cl;

    } else {
        sub->out = &o->cl;
    }

    sub->out_tail = &o->cl;

    return NGX_OK;
}


/* a buf of len bytes at data; data NULL: the header of a chunk of len */

static ngx_http_sse_out_t *
ngx_http_sse_out_get(ngx_http_sse_sub_t *sub, u_char *data, size_t len,
    ngx_http_sse_msg_t *msg, ngx_uint_t framed)
{
    ngx_http_sse_out_t  *o;

    o = ngx_http_sse_free_outs;

    if (o) {
        ngx_http_sse_free_outs = (ngx_http_sse_out_t *) o->cl.next;
        ngx_http_sse_nfree_outs--;

    } else {
        o = ngx_alloc(sizeof(ngx_http_sse_out_t), sub->c->log);
        if (o == NULL) {
            return NULL;
        }
    }

    ngx_memzero(&o->buf, sizeof(ngx_buf_t));

    if (data == NULL) {
        /* a chunk header, kept in the node itself */
        data = o->tmp;
        len = ngx_sprintf(o->tmp, "%xz" CRLF, len) - o->tmp;
    }

    o->buf.start = data;
    o->buf.pos = data;
    o->buf.last = data + len;
    o->buf.end = data + len;
    o->buf.memory = 1;
    o->buf.tag = (ngx_buf_tag_t) &ngx_http_sse_module;

    o->cl.buf = &o->buf;
    o->cl.next = NULL;

    o->msg = msg;
    o->owed = len;
    o->framed = framed;

    if (msg) {
        msg->refs++;
    }

    return o;
}


static void
ngx_http_sse_out_free(ngx_chain_t *cl)
{
    ngx_http_sse_out_t  *o;

    o = (ngx_http_sse_out_t *) cl;

    if (o->msg) {
        ngx_http_sse_msg_release(o->msg);
        o->msg = NULL;
    }

    if (ngx_http_sse_nfree_outs >= NGX_HTTP_SSE_FREE_OUTS) {
        ngx_free(o);
        return;
    }

    o->cl.next = (ngx_chain_t *) ngx_http_sse_free_outs;
    ngx_http_sse_free_outs = o;
    ngx_http_sse_nfree_outs++;
}


/*
 * Moves what was queued to the busy chain and returns it: a subscriber's
 * pending events leave in one writev().  In raw chunked mode each run of
 * bufs that are not chunks yet is framed as one chunk.
 */

static ngx_chain_t *
ngx_http_sse_sub_queue(ngx_http_sse_sub_t *sub)
{
    size_t               size;
    ngx_chain_t         *in, *cl, **ll, *last, *tail;
    ngx_http_sse_out_t  *head, *crlf;

    if (sub->out == NULL) {
        return NULL;
    }

    if (sub->raw && sub->chunked) {
        ll = &sub->out;
        tail = NULL;

        while (*ll) {
            if (((ngx_http_sse_out_t *) *ll)->framed) {
                tail = *ll;
                ll = &tail->next;
                continue;
            }

            size = 0;
            last = *ll;

            for (cl = *ll;
                 cl && !((ngx_http_sse_out_t *) cl)->framed;
                 cl = cl->next)
            {
                size += cl->buf->last - cl->buf->pos;
                last = cl;
            }

            if (size == 0) {
                tail = last;
                ll = &last->next;
                continue;
            }

            head = ngx_http_sse_out_get(sub, NULL, size, NULL, 1);
            crlf = ngx_http_sse_out_get(sub, (u_char *) CRLF, 2, NULL, 1);

            if (head == NULL || crlf == NULL) {
                if (head) {
                    ngx_http_sse_out_free(&head->cl);
                }

                if (crlf) {
                    ngx_http_sse_out_free(&crlf->cl);
                }

                return NGX_CHAIN_ERROR;
            }

            head->cl.next = *ll;
            *ll = &head->cl;

            crlf->cl.next = last->next;
            last->next = &crlf->cl;

            tail = &crlf->cl;
            ll = &tail->next;
        }

        sub->out_tail = tail;
    }

    in = sub->out;

    sub->out_tail->buf->flush = 1;

    for (cl = in; cl; cl = cl->next) {
        sub->busy_size += ((ngx_http_sse_out_t *) cl)->owed;
    }

    if (sub->busy) {
        sub->busy_tail->next = in;

    } else {
        sub->busy = in;
    }

    sub->busy_tail = sub->out_tail;
    sub->out = NULL;
    sub->out_tail = NULL;

    sub->last_write = ngx_current_msec;

    return in;
}


/* returns what the subscriber still owes, having freed what was sent */

static size_t
ngx_http_sse_sub_reap(ngx_http_sse_sub_t *sub)
{
    size_t               pending;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_sse_out_t  *o;

    while (sub->busy) {
        b = sub->busy->buf;

        if (b->pos != b->last) {
            break;
        }

        cl = sub->busy;
        sub->busy = cl->next;
        sub->busy_size -= ((ngx_http_sse_out_t *) cl)->owed;

        ngx_http_sse_out_free(cl);
    }

    pending = sub->busy_size;

    if (sub->busy) {
        o = (ngx_http_sse_out_t *) sub->busy;

        if (o->owed) {
            pending -= o->buf.pos - o->buf.start;
        }
    }

    return pending;
}


/* NGX_DECLINED: the subscriber is too slow */

static ngx_int_t
ngx_http_sse_sub_flush(ngx_http_sse_sub_t *sub)
{
    off_t                      sent;
    size_t                     pending;
    ngx_int_t                  rc;
    ngx_chain_t               *in, *cl;
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    c = sub->c;
    wev = c->write;
    sent = c->sent;

    in = ngx_http_sse_sub_queue(sub);
    if (in == NGX_CHAIN_ERROR) {
        return NGX_ERROR;
    }

    if (sub->raw) {
        rc = NGX_OK;

        /*
         * on TLS, ngx_ssl_send_chain() keeps what SSL_write() could not
         * send in c->ssl->buf (c->buffered), after the bufs were consumed
         */

        if ((sub->busy || c->buffered) && wev->ready) {
            cl = c->send_chain(c, sub->busy, 0);

            if (cl == NGX_CHAIN_ERROR) {
                c->error = 1;
                rc = NGX_ERROR;
            }
        }

    } else {
        rc = ngx_http_output_filter(sub->r, in);
    }

    pending = ngx_http_sse_sub_reap(sub);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* a stream being ended owes at most what was queued and its end */

    if (pending > sub->slcf->max_pending && !sub->ending) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "sse: closing a subscriber that owes %uz bytes, "
                      "over sse_max_pending", pending);
        ngx_http_sse_hub_count_slow();
        return NGX_DECLINED;
    }

    if (pending || c->buffered) {

        /*
         * send_timeout, as nginx applies it to any response: the time a
         * client may take to accept more of what it owes, restarted by
         * each write that sends something (limit_rate's own timer wins)
         */

        if (!wev->delayed && (c->sent != sent || !wev->timer_set)) {
            ngx_add_timer(wev, sub->send_timeout);
        }

        if (sub->raw) {
            rc = ngx_handle_write_event(wev, 0);

        } else {
            clcf = ngx_http_get_module_loc_conf(sub->r, ngx_http_core_module);
            rc = ngx_handle_write_event(wev, clcf->send_lowat);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (wev->timer_set && !wev->delayed) {
        ngx_del_timer(wev);
    }

    return NGX_OK;
}


/* writes what is queued; may free the subscriber */

static void
ngx_http_sse_sub_write(ngx_http_sse_sub_t *sub)
{
    if (ngx_http_sse_sub_flush(sub) != NGX_OK) {
        ngx_http_sse_sub_close(sub);
        return;
    }

    if (sub->ending) {
        ngx_http_sse_sub_end(sub);
    }
}


static void
ngx_http_sse_sub_close(ngx_http_sse_sub_t *sub)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (sub->raw) {
        c = sub->c;
        ngx_http_sse_sub_free(sub);
        ngx_http_close_connection(c);
        return;
    }

    r = sub->r;

    ngx_http_sse_sub_detach(sub);
    ngx_http_finalize_request(r, NGX_ERROR);
}


/* ends a stream cleanly: what was queued, then the end of the response */

static void
ngx_http_sse_sub_end(ngx_http_sse_sub_t *sub)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    ngx_http_sse_sub_detach(sub);

    if (!sub->raw) {
        r = sub->r;

        rc = ngx_http_send_special(r, NGX_HTTP_LAST);

        if (ngx_exiting && (rc == NGX_AGAIN || r->connection->buffered)) {
            /* a client that does not read must not hold an exiting worker */
            rc = NGX_ERROR;
        }

        ngx_http_finalize_request(r, rc);
        return;
    }

    c = sub->c;

    if (sub->chunked) {

        /* the last chunk goes after the pending ones, not framed itself */

        if (ngx_http_sse_sub_queue(sub) == NGX_CHAIN_ERROR
            || ngx_http_sse_sub_append(sub, (u_char *) "0" CRLF CRLF, 5, NULL,
                                       1)
               != NGX_OK)
        {
            ngx_http_sse_sub_close(sub);
            return;
        }

        sub->chunked = 0;
    }

    /* the terminator is not counted against sse_max_pending */
    rc = ngx_http_sse_sub_flush(sub);

    if (rc != NGX_OK || (sub->busy == NULL && !c->buffered) || ngx_exiting) {
        ngx_http_sse_sub_close(sub);
        return;
    }

    sub->closing = 1;
    ngx_queue_insert_tail(&ngx_http_sse_subs, &sub->queue);

    ngx_add_timer(c->write, sub->send_timeout);
}


static void
ngx_http_sse_write_handler(ngx_http_request_t *r)
{
    ngx_event_t         *wev;
    ngx_http_sse_sub_t  *sub;

    wev = r->connection->write;

    sub = ngx_http_get_module_ctx(r, ngx_http_sse_module);
    if (sub == NULL || !sub->attached) {
        return;
    }

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, wev->log, NGX_ETIMEDOUT,
                      "sse: client timed out");
        r->connection->timedout = 1;
        ngx_http_sse_sub_detach(sub);
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    ngx_http_sse_sub_write(sub);
}


static void
ngx_http_sse_raw_write_handler(ngx_event_t *wev)
{
    ngx_connection_t    *c;
    ngx_http_sse_sub_t  *sub;

    c = wev->data;
    sub = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "sse: client timed out");
        c->timedout = 1;
        ngx_http_sse_sub_close(sub);
        return;
    }

    if (sub->closing) {
        if (ngx_http_sse_sub_flush(sub) != NGX_OK
            || (sub->busy == NULL && !c->buffered))
        {
            ngx_http_sse_sub_close(sub);
        }

        return;
    }

    ngx_http_sse_sub_write(sub);
}


static void
ngx_http_sse_raw_read_handler(ngx_event_t *rev)
{
    u_char               buf[64];
    ssize_t              n;
    ngx_connection_t    *c;
    ngx_http_sse_sub_t  *sub;

    c = rev->data;
    sub = c->data;

    /* a subscriber has nothing more to say; reading only sees it leave */

    do {
        n = c->recv(c, buf, sizeof(buf));

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "sse: client closed the stream");
            ngx_http_sse_sub_close(sub);
            return;
        }

    } while (n > 0);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_sse_sub_close(sub);
    }
}


static void
ngx_http_sse_heartbeat_handler(ngx_event_t *ev)
{
    ngx_int_t            rc;
    ngx_uint_t           raw;
    ngx_msec_t           elapsed, interval;
    ngx_connection_t    *c;
    ngx_http_sse_sub_t  *sub;

    sub = ev->data;
    c = sub->c;
    raw = sub->raw;
    interval = sub->slcf->heartbeat;

    elapsed = ngx_current_msec - sub->last_write;

    if (elapsed < interval) {
        ngx_add_timer(ev, interval - elapsed);
        return;
    }

    /* set first: the write may free the subscriber, and the timer with it */
    ngx_add_timer(ev, interval);

    if (raw && sub->chunked) {
        rc = ngx_http_sse_sub_append(sub, ngx_http_sse_heartbeat_chunk,
                                     sizeof(ngx_http_sse_heartbeat_chunk) - 1,
                                     NULL, 1);

    } else {
        rc = ngx_http_sse_sub_append(sub, ngx_http_sse_heartbeat_line,
                                     sizeof(ngx_http_sse_heartbeat_line) - 1,
                                     NULL, 0);
    }

    if (rc != NGX_OK) {
        ngx_http_sse_sub_close(sub);

    } else {
        ngx_http_sse_sub_write(sub);
    }

    if (!raw) {
        ngx_http_run_posted_requests(c);
    }
}


/*
 * Called by the hub with what this worker read from the log: the events
 * are queued on the streams of their channels; the writer sends them.
 * A stream of one channel gets its channel's new events as one buf, or as
 * more of the buf it already has queued; a stream of several channels gets
 * each event in id order.
 */

void
ngx_http_sse_dispatch(ngx_http_sse_delivery_t *d, ngx_uint_t n,
    ngx_http_sse_lchan_t *touched)
{
    ngx_uint_t             i, count;
    ngx_queue_t           *q;
    ngx_http_sse_msg_t    *msg;
    ngx_http_sse_sub_t    *sub;
    ngx_http_sse_link_t   *link;
    ngx_http_sse_lchan_t  *lc, *next;

    count = 0;

    for (i = 0; i < n; i++) {

        for (q = ngx_queue_head(&d[i].lchan->mlinks);
             q != ngx_queue_sentinel(&d[i].lchan->mlinks);
             q = ngx_queue_next(q))
        {
            link = ngx_queue_data(q, ngx_http_sse_link_t, queue);
            sub = link->sub;

            if (sub->ending) {
                continue;
            }

            if (ngx_http_sse_sub_append(sub, d[i].pos, d[i].len, d[i].msg, 0)
                != NGX_OK)
            {
                sub->ending = 1;

            } else {
                count++;
            }

            ngx_http_sse_sub_dirty(sub);
        }
    }

    for (lc = touched; lc; lc = next) {
        next = lc->round_next;
        msg = lc->round;

        for (q = ngx_queue_head(&lc->links);
             q != ngx_queue_sentinel(&lc->links);
             q = ngx_queue_next(q))
        {
            link = ngx_queue_data(q, ngx_http_sse_link_t, queue);
            sub = link->sub;

            if (sub->ending) {
                continue;
            }

            if (msg && lc->round_size) {
                if (ngx_http_sse_sub_append(sub, lc->round_pos,
                                            lc->round_size, msg, 0)
                    != NGX_OK)
                {
                    sub->ending = 1;

                } else {
                    count += lc->round_events;
                }
            }

            if (lc->round_end) {
                sub->ending = 1;
            }

            ngx_http_sse_sub_dirty(sub);
        }

        if (lc->round_end) {
            /* the channel was deleted, or its events did not fit */

            for (q = ngx_queue_head(&lc->mlinks);
                 q != ngx_queue_sentinel(&lc->mlinks);
                 q = ngx_queue_next(q))
            {
                link = ngx_queue_data(q, ngx_http_sse_link_t, queue);
                link->sub->ending = 1;
                ngx_http_sse_sub_dirty(link->sub);
            }
        }

        lc->round = NULL;
        lc->round_next = NULL;
        lc->round_touched = 0;
        lc->round_end = 0;
    }

    ngx_http_sse_hub_count_delivered(count);

    if (!ngx_queue_empty(&ngx_http_sse_dirty)
        && !ngx_http_sse_writer.posted)
    {
        ngx_post_event(&ngx_http_sse_writer, &ngx_posted_events);
    }
}


static void
ngx_http_sse_sub_dirty(ngx_http_sse_sub_t *sub)
{
    if (!sub->is_dirty) {
        sub->is_dirty = 1;
        ngx_queue_insert_tail(&ngx_http_sse_dirty, &sub->dirty);
    }
}


/*
 * Writes the streams that have something queued, a slice at a time.  Between
 * slices the worker looks at the network (new publishes, wake-ups, clients
 * leaving) and at the hub log: an event published meanwhile joins what the
 * streams not yet written in this pass get, so no event waits for a whole
 * pass to end before its own pass starts.
 */

static void
ngx_http_sse_writer_handler(ngx_event_t *ev)
{
    ngx_uint_t           n, raw;
    ngx_queue_t         *q;
    ngx_connection_t    *c;
    ngx_http_sse_sub_t  *sub;

    ngx_http_sse_hub_read();

    for (n = 0;
         n < NGX_HTTP_SSE_WRITE_SLICE && !ngx_queue_empty(&ngx_http_sse_dirty);
         n++)
    {
        q = ngx_queue_head(&ngx_http_sse_dirty);
        ngx_queue_remove(q);

        sub = ngx_queue_data(q, ngx_http_sse_sub_t, dirty);
        sub->is_dirty = 0;

        c = sub->c;
        raw = sub->raw;

        ngx_http_sse_sub_write(sub);

        if (!raw) {
            ngx_http_run_posted_requests(c);
        }
    }

    if (ngx_queue_empty(&ngx_http_sse_dirty)) {
        return;
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

#if (nginx_version >= 1017005)
    ngx_post_event(ev, &ngx_posted_next_events);
#else
    /* no ngx_posted_next_events before 1.17.5: the pass is not sliced */
    ngx_post_event(ev, &ngx_posted_events);
#endif
}


/* the worker is exiting: every stream ends now, clients resume elsewhere */

void
ngx_http_sse_end_all(void)
{
    ngx_uint_t           raw;
    ngx_queue_t         *q;
    ngx_connection_t    *c;
    ngx_http_sse_sub_t  *sub;

    while (!ngx_queue_empty(&ngx_http_sse_subs)) {
        q = ngx_queue_head(&ngx_http_sse_subs);
        sub = ngx_queue_data(q, ngx_http_sse_sub_t, queue);

        c = sub->c;
        raw = sub->raw;

        if (sub->closing) {
            ngx_http_sse_sub_close(sub);
            continue;
        }

        sub->ending = 1;
        ngx_http_sse_sub_write(sub);

        if (!raw) {
            ngx_http_run_posted_requests(c);
        }
    }
}


/* publishing */

static ngx_int_t
ngx_http_sse_publish_handler(ngx_http_request_t *r)
{
    off_t                     len;
    ngx_int_t                 rc;
    ngx_http_sse_loc_conf_t  *slcf;

    switch (r->method) {

    case NGX_HTTP_GET:
        return ngx_http_sse_lookup(r, 0);

    case NGX_HTTP_DELETE:
        return ngx_http_sse_lookup(r, 1);

    case NGX_HTTP_POST:
    case NGX_HTTP_PUT:
        break;

    default:
        return ngx_http_sse_not_allowed(r, "GET, POST, PUT, DELETE");
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    len = r->headers_in.content_length_n;

    if (slcf->max_body && len > slcf->max_body) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sse: publish body of %O bytes is over "
                      "client_max_body_size", len);

        return ngx_http_sse_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "request body too large");
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_sse_publish_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_sse_publish_body(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_sse_publish(r));
}


static ngx_int_t
ngx_http_sse_publish(ngx_http_request_t *r)
{
    u_char                    *ct, *dst, *src;
    const char                *err;
    ngx_int_t                  rc;
    ngx_str_t                  body, names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_uint_t                 i, n;
    ngx_array_t                events;
    ngx_http_sse_publish_t     pub;
    ngx_http_sse_target_t     *t;
    ngx_http_sse_loc_conf_t   *slcf;
    ngx_http_sse_raw_event_t  *e;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    rc = ngx_http_sse_channels(r, slcf->publish, names, &n, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    rc = ngx_http_sse_read_body(r, &body);

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "request body too large");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_array_init(&events, r->pool, 4, sizeof(ngx_http_sse_raw_event_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ct = r->headers_in.content_type ? r->headers_in.content_type->value.data
                                    : NULL;

    if (ct
        && r->headers_in.content_type->value.len
           >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(ct, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0
        && (r->headers_in.content_type->value.len
               == sizeof("text/event-stream") - 1
            || ct[sizeof("text/event-stream") - 1] == ';'
            || ct[sizeof("text/event-stream") - 1] == ' '))
    {
        rc = ngx_http_sse_parse_stream(r, &body, &events, &err);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
        }

    } else {
        e = ngx_array_push(&events);
        if (e == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        e->data = body;

        if (ngx_http_arg(r, (u_char *) "event", sizeof("event") - 1, &e->type)
            == NGX_OK)
        {
            dst = ngx_pnalloc(r->pool, e->type.len);
            if (dst == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            src = e->type.data;
            e->type.data = dst;

            ngx_unescape_uri(&dst, &src, e->type.len, 0);
            e->type.len = dst - e->type.data;

        } else {
            e->type = ngx_http_sse_message;
        }
    }

    e = events.elts;

    for (i = 0; i < events.nelts; i++) {
        rc = ngx_http_sse_check_event(&e[i], slcf->max_message_size, &err);

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "sse: publish refused: %s", err);
            return ngx_http_sse_error(r, rc, err);
        }
    }

    ngx_memzero(&pub, sizeof(ngx_http_sse_publish_t));

    pub.nevents = events.nelts;
    pub.events = ngx_palloc(r->pool, pub.nevents * sizeof(ngx_str_t));
    pub.targets = ngx_pcalloc(r->pool, n * sizeof(ngx_http_sse_target_t));
    pub.scratch = ngx_palloc(r->pool, pub.nevents * n
                                      * sizeof(ngx_http_sse_event_t *));

    if (pub.events == NULL || pub.targets == NULL || pub.scratch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < events.nelts; i++) {
        if (ngx_http_sse_frame(r->pool, &e[i], &pub.events[i]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    pub.ntargets = n;
    pub.history = slcf->history;
    pub.history_ttl = slcf->history_ttl;

    for (i = 0; i < n; i++) {
        pub.targets[i].name = names[i];
    }

    rc = ngx_http_sse_hub_publish(&pub, r->connection->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                  "no room in the sse zone");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = pub.targets;

    for (i = 0; i < n; i++) {
        t[i].nevents = pub.nevents;
    }

    return ngx_http_sse_send_targets(r, NGX_HTTP_CREATED, t, n);
}


/* NGX_DECLINED: over client_max_body_size */

static ngx_int_t
ngx_http_sse_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t                     size;
    u_char                   *p;
    ssize_t                   n;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_sse_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    if (slcf->max_body && size > slcf->max_body) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sse: publish body of %O bytes is over "
                      "client_max_body_size", size);
        return NGX_DECLINED;
    }

    if (size == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "sse: cannot read the publish body from "
                              "\"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * A text/event-stream body: "event" and "data" fields, a blank line ends an
 * event; "id", "retry", comments and other fields are ignored.
 */

static ngx_int_t
ngx_http_sse_parse_stream(ngx_http_request_t *r, ngx_str_t *body,
    ngx_array_t *events, const char **err)
{
    u_char                    *p, *last, *line, *eol, *colon, *value, *dst;
    size_t                     flen, vlen;
    ngx_uint_t                 seen, has_data, has_type;
    ngx_http_sse_raw_event_t  *e, cur;

    dst = ngx_pnalloc(r->pool, body->len + 1);
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
    has_type = 0;
    cur.type = ngx_http_sse_message;
    cur.data.data = dst;
    cur.data.len = 0;

    for ( ;; ) {

        if (p < last) {
            line = p;

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

        } else {
            line = last;
            eol = last;
        }

        if (line == eol) {

            /* a blank line, or the end of the body: dispatch */

            if (seen) {
                if (!has_data) {
                    *err = "empty event";
                    return NGX_DECLINED;
                }

                /* the data lines were joined with LF; drop the last one */
                cur.data.len--;

                e = ngx_array_push(events);
                if (e == NULL) {
                    return NGX_ERROR;
                }

                *e = cur;

                dst = cur.data.data + cur.data.len + 1;
                cur.data.data = dst;
                cur.data.len = 0;
                cur.type = ngx_http_sse_message;
                seen = 0;
                has_data = 0;
                has_type = 0;
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
            has_type = 1;
            seen = 1;
        }
    }

    (void) has_type;

    if (events->nelts == 0) {
        *err = "empty event";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* returns NGX_OK or the status to answer with */

static ngx_int_t
ngx_http_sse_check_event(ngx_http_sse_raw_event_t *e, size_t max,
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


static ngx_int_t
ngx_http_sse_valid_utf8(u_char *p, size_t len)
{
    u_char    *last;
    uint32_t   u, min;
    ngx_uint_t n;

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


/* the wire form, less the "id:" line the hub puts in front */

static ngx_int_t
ngx_http_sse_frame(ngx_pool_t *pool, ngx_http_sse_raw_event_t *e,
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


static ngx_int_t
ngx_http_sse_lookup(ngx_http_request_t *r, ngx_uint_t del)
{
    const char               *err;
    ngx_int_t                 rc;
    ngx_str_t                 names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_uint_t                i, n, found;
    ngx_http_sse_target_t    *t;
    ngx_http_sse_loc_conf_t  *slcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    rc = ngx_http_sse_channels(r, slcf->publish, names, &n, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    t = ngx_pcalloc(r->pool, n * sizeof(ngx_http_sse_target_t));
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    found = 0;

    for (i = 0; i < n; i++) {
        t[i].name = names[i];

        rc = ngx_http_sse_hub_lookup(&t[i], del);

        if (rc == NGX_DECLINED) {
            return ngx_http_sse_error(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                      "no room in the sse zone");
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        found += t[i].found;
    }

    if (found == 0) {
        return ngx_http_sse_error(r, NGX_HTTP_NOT_FOUND, "channel not found");
    }

    return ngx_http_sse_send_targets(r, NGX_HTTP_OK, t, n);
}


/* status */

static ngx_int_t
ngx_http_sse_status_handler(ngx_http_request_t *r)
{
    u_char                *p, *buf;
    size_t                 size;
    ngx_int_t              rc;
    ngx_str_t              format;
    ngx_http_sse_stats_t   st;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_sse_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_sse_hub_stats(&st);

    size = 2048 + 10 * NGX_INT64_LEN;

    buf = ngx_pnalloc(r->pool, size);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "format", sizeof("format") - 1, &format)
        == NGX_OK
        && format.len == sizeof("prometheus") - 1
        && ngx_strncmp(format.data, "prometheus", format.len) == 0)
    {
        p = ngx_sprintf(buf,
            "# TYPE nginx_sse_subscribers gauge\n"
            "nginx_sse_subscribers %ui\n"
            "# TYPE nginx_sse_channels gauge\n"
            "nginx_sse_channels %ui\n"
            "# TYPE nginx_sse_events_published_total counter\n"
            "nginx_sse_events_published_total %uL\n"
            "# TYPE nginx_sse_events_delivered_total counter\n"
            "nginx_sse_events_delivered_total %uL\n"
            "# TYPE nginx_sse_events_kept gauge\n"
            "nginx_sse_events_kept %ui\n"
            "# TYPE nginx_sse_slow_closed_total counter\n"
            "nginx_sse_slow_closed_total %uL\n"
            "# TYPE nginx_sse_history_evicted_total counter\n"
            "nginx_sse_history_evicted_total %uL\n"
            "# TYPE nginx_sse_zone_bytes_used gauge\n"
            "nginx_sse_zone_bytes_used %uz\n"
            "# TYPE nginx_sse_zone_bytes_total gauge\n"
            "nginx_sse_zone_bytes_total %uz\n"
            "# TYPE nginx_sse_workers gauge\n"
            "nginx_sse_workers %ui\n"
            "# TYPE nginx_sse_redis_connected gauge\n"
            "nginx_sse_redis_connected 0\n",
            st.subscribers, st.channels, st.published, st.delivered,
            st.kept, st.slow_closed, st.evicted, st.bytes_used,
            st.bytes_total, st.workers);

        return ngx_http_sse_send(r, NGX_HTTP_OK, &ngx_http_sse_prometheus,
                                 buf, p - buf);
    }

    p = ngx_sprintf(buf,
        "{\"subscribers\":%ui,\"channels\":%ui,\"events_published\":%uL,"
        "\"events_delivered\":%uL,\"events_kept\":%ui,\"slow_closed\":%uL,"
        "\"history_evicted\":%uL,\"zone_bytes_used\":%uz,"
        "\"zone_bytes_total\":%uz,\"workers\":%ui,\"redis\":\"off\"}\n",
        st.subscribers, st.channels, st.published, st.delivered, st.kept,
        st.slow_closed, st.evicted, st.bytes_used, st.bytes_total,
        st.workers);

    return ngx_http_sse_send(r, NGX_HTTP_OK, &ngx_http_sse_json, buf, p - buf);
}


/* helpers */

static ngx_int_t
ngx_http_sse_channels(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_str_t *names, ngx_uint_t *n, const char **err)
{
    u_char      *p, *last, *start;
    size_t       len;
    ngx_str_t    value;
    ngx_uint_t   i, k;

    if (cv == NULL) {
        /* cannot happen since merge inherits it; never dereference NULL */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sse: no channels configured for this location");
        return NGX_ERROR;
    }

    if (ngx_http_complex_value(r, cv, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    *n = 0;
    p = value.data;
    last = p + value.len;

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
            i = (*n)++;

            if (i == NGX_HTTP_SSE_MAX_CHANNELS) {
                *err = "more than 16 channels";
                return NGX_DECLINED;
            }

            names[i].data = start;
            names[i].len = len;
        }

        if (p == last) {
            break;
        }

        p++;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sse_send_targets(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_sse_target_t *t, ngx_uint_t n)
{
    u_char      *buf, *p;
    size_t       size;
    ngx_uint_t   i;

    size = 3;

    for (i = 0; i < n; i++) {
        size += sizeof("{\"channel\":\"\",\"id\":\"\",\"events\":,"
                       "\"subscribers\":},") - 1
                + t[i].name.len + NGX_HTTP_SSE_ID_LEN + 2 * NGX_INT64_LEN;
    }

    buf = ngx_pnalloc(r->pool, size);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = buf;

    if (n > 1) {
        *p++ = '[';
    }

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "{\"channel\":\"%V\",\"id\":\"", &t[i].name);

        if (t[i].last_id.seq) {
            p = ngx_http_sse_id_format(p, &t[i].last_id);
        }

        p = ngx_sprintf(p, "\",\"events\":%ui,\"subscribers\":%ui}",
                        t[i].nevents, t[i].nsubs);
    }

    if (n > 1) {
        *p++ = ']';
    }

    *p++ = '\n';

    return ngx_http_sse_send(r, status, &ngx_http_sse_json, buf, p - buf);
}


static ngx_int_t
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


static ngx_int_t
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

    return ngx_http_sse_send(r, status, &ngx_http_sse_json, buf, p - buf);
}


static ngx_int_t
ngx_http_sse_not_allowed(ngx_http_request_t *r, const char *allow)
{
    if (ngx_http_sse_add_header(r, "Allow", allow) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sse_error(r, NGX_HTTP_NOT_ALLOWED, "method not allowed");
}


static ngx_table_elt_t *
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


/* configuration */

static void *
ngx_http_sse_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sse_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sse_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->shm_zone = NULL;
     *     smcf->used = 0;
     */

    return smcf;
}


static char *
ngx_http_sse_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sse_main_conf_t  *smcf = conf;

    ngx_str_t  name = ngx_string("sse");

    if (smcf->used && smcf->shm_zone == NULL) {
        return ngx_http_sse_add_zone(cf, smcf, &name,
                                     NGX_HTTP_SSE_DEFAULT_ZONE_SIZE);
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_sse_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sse_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sse_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->stream = NULL;
     *     conf->publish = NULL;
     *     conf->max_body = 0;
     *     conf->clcf = NULL;
     *     conf->retry_line = { 0, NULL };
     */

    conf->history = NGX_CONF_UNSET;
    conf->history_ttl = NGX_CONF_UNSET_MSEC;
    conf->retry = NGX_CONF_UNSET_MSEC;
    conf->heartbeat = NGX_CONF_UNSET_MSEC;
    conf->max_pending = NGX_CONF_UNSET_SIZE;
    conf->max_subscribers = NGX_CONF_UNSET;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_http_sse_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_sse_loc_conf_t *prev = parent;
    ngx_http_sse_loc_conf_t *conf = child;

    u_char  *p;

    /*
     * an "if" block in an sse_stream or sse_publish location runs the
     * location's handler with its own configuration: it needs the channels
     */

    if (conf->stream == NULL && conf->publish == NULL) {
        conf->stream = prev->stream;
        conf->publish = prev->publish;
        conf->max_body = prev->max_body;
    }

    ngx_conf_merge_value(conf->history, prev->history, 100);
    ngx_conf_merge_msec_value(conf->history_ttl, prev->history_ttl,
                              3600 * 1000);
    ngx_conf_merge_msec_value(conf->retry, prev->retry, 3000);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 25000);
    ngx_conf_merge_size_value(conf->max_pending, prev->max_pending,
                              256 * 1024);
    ngx_conf_merge_value(conf->max_subscribers, prev->max_subscribers, 0);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              64 * 1024);

    if (conf->history < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sse_history\" must not be negative");
        return NGX_CONF_ERROR;
    }

    if (conf->max_subscribers < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sse_max_subscribers\" must not be negative");
        return NGX_CONF_ERROR;
    }

    if (conf->stream && conf->retry != NGX_HTTP_SSE_RETRY_OFF) {
        p = ngx_pnalloc(cf->pool, sizeof("retry: \n\n") - 1 + NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->retry_line.data = p;
        conf->retry_line.len = ngx_sprintf(p, "retry: %M\n\n", conf->retry)
                               - p;
    }

    if (conf->publish && conf->clcf) {
        /*
         * the body limit is checked by the publish handler, so that a body
         * over it gets the JSON answer every other error gets
         */
        conf->max_body = conf->clcf->client_max_body_size;
        conf->clcf->client_max_body_size = 0;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_main_conf_t  *smcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (smcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = ngx_strlchr(value[1].data, value[1].data + value[1].len, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid sse_zone \"%V\", expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid sse_zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sse_zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_sse_add_zone(cf, smcf, &name, size);
}


static char *
ngx_http_sse_add_zone(ngx_conf_t *cf, ngx_http_sse_main_conf_t *smcf,
    ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t      *shm_zone;
    ngx_http_sse_hub_t  *hub;

    hub = ngx_pcalloc(cf->pool, sizeof(ngx_http_sse_hub_t));
    if (hub == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_http_sse_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate sse zone \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    hub->shm_zone = shm_zone;

    shm_zone->init = ngx_http_sse_hub_init_zone;
    shm_zone->data = hub;

    smcf->shm_zone = shm_zone;

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_loc_conf_t *slcf = conf;

    char                              *rv;
    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    rv = ngx_http_sse_set_handler(cf, ngx_http_sse_stream_handler);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    slcf->stream = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (slcf->stream == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = slcf->stream;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_publish_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_loc_conf_t *slcf = conf;

    char                              *rv;
    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    rv = ngx_http_sse_set_handler(cf, ngx_http_sse_publish_handler);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    slcf->publish = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (slcf->publish == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = slcf->publish;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    slcf->clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_sse_set_handler(cf, ngx_http_sse_status_handler);
}


/* one of sse_stream, sse_publish, sse_status per location */

static char *
ngx_http_sse_set_handler(ngx_conf_t *cf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_sse_main_conf_t  *smcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == handler) {
        return "is duplicate";
    }

    if (clcf->handler == ngx_http_sse_stream_handler
        || clcf->handler == ngx_http_sse_publish_handler
        || clcf->handler == ngx_http_sse_status_handler)
    {
        return "conflicts with another of sse_stream, sse_publish and "
               "sse_status in this location";
    }

    clcf->handler = handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sse_module);
    smcf->used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_msec_or_off(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_msec_t  *msp;

    msp = (ngx_msec_t *) (p + cmd->offset);

    if (*msp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *msp = cmd->post ? *(ngx_msec_t *) cmd->post : 0;
        return NGX_CONF_OK;
    }

    *msp = ngx_parse_time(&value[1], 0);

    if (*msp == (ngx_msec_t) NGX_ERROR) {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sse_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sse_main_conf_t  *smcf;

    ngx_queue_init(&ngx_http_sse_subs);
    ngx_queue_init(&ngx_http_sse_dirty);

    ngx_http_sse_writer.handler = ngx_http_sse_writer_handler;
    ngx_http_sse_writer.log = cycle->log;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        /* cache manager and loader never serve streams */
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sse_module);

    if (smcf == NULL || smcf->shm_zone == NULL) {
        return NGX_OK;
    }

    return ngx_http_sse_hub_init_worker(cycle, smcf->shm_zone->data);
}


static void
ngx_http_sse_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sse_out_t  *o;

    if (ngx_http_sse_writer.posted) {
        ngx_delete_posted_event(&ngx_http_sse_writer);
    }

    ngx_http_sse_hub_exit_worker(cycle);

    while (ngx_http_sse_free_outs) {
        o = ngx_http_sse_free_outs;
        ngx_http_sse_free_outs = (ngx_http_sse_out_t *) o->cl.next;
        ngx_free(o);
    }

    ngx_http_sse_nfree_outs = 0;
}
