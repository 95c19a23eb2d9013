
/*
 * ngx_http_sse_module: the subscriber.  The sse_stream handler subscribes a
 * request to its channels, sends the headers, the retry line and the
 * replay, and then either keeps the request (HTTP/2, gzip) or takes its
 * connection over (HTTP/1.x).  The worker side hands each stream the
 * events it read (ngx_http_sse_dispatch); the writer sends what each
 * stream owes, a slice of streams at a time; heartbeats, slow subscribers,
 * send_timeout and the end of streams on exit are here too.
 *
 * Calls: ngx_http_sse_worker.c (subscribe, read), ngx_http_sse_request.c,
 * ngx_http_sse_event.c, and the hub's counters.
 */


#include "ngx_http_sse.h"


#define NGX_HTTP_SSE_FREE_OUTS          4096

/*
 * A replay is read from the zone in pieces of at most this (or half of
 * sse_max_pending), a next one when the stream owes less than a piece, and
 * at most this many pieces a turn before the other streams get theirs.
 */
#define NGX_HTTP_SSE_REPLAY_PIECE       32768
#define NGX_HTTP_SSE_REPLAY_TURN        8
/*
 * A writer slice: up to this many writes, then the event loop.  A stream
 * of an HTTP/2 connection already held in the slice adds no write (its
 * frames join the connection's), and counts for 1/NGX_HTTP_SSE_H2_SHARE.
 */
#ifndef NGX_HTTP_SSE_WRITE_SLICE
#define NGX_HTTP_SSE_WRITE_SLICE        256
#endif
#define NGX_HTTP_SSE_H2_SHARE           8


/* a buf of a subscriber's output, in a free list when not in use */

typedef struct {
    ngx_chain_t                     cl;
    ngx_buf_t                       buf;
    ngx_http_sse_block_t           *block;
    size_t                          owed;       /* counts for max_pending */
    ngx_uint_t                      framed;     /* an HTTP/1.1 chunk */
    u_char                          tmp[NGX_SIZE_T_LEN + 2];
} ngx_http_sse_out_t;


struct ngx_http_sse_sub_s {
    ngx_connection_t               *c;
    ngx_http_request_t             *r;          /* NULL once taken over */
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
    ngx_msec_t                      start;
    ngx_uint_t                      events;     /* sent, for the log */
    ngx_uint_t                      nlinks;
    ngx_http_sse_link_t            *links;
    ngx_http_sse_lchan_t          **lchans;
    ngx_http_sse_feed_t            *feed;       /* or channels: links */
    ngx_queue_t                     feed_q;
    ngx_http_sse_id_t               replay_last;    /* the last replayed */
    unsigned                        attached:1;
    unsigned                        is_dirty:1;
    unsigned                        ending:1;
    unsigned                        taken_over:1;
    unsigned                        chunked:1;
    unsigned                        closing:1;
    unsigned                        replaying:1;    /* not live yet */
    unsigned                        replay_first:1;
    unsigned                        replay_hold:1;  /* ids are Redis's */
    unsigned                        replay_wait:1;  /* ahead of the node */
    unsigned                        takeover_wait:1;  /* output to drain */
    unsigned                        h2_opening:1;   /* its first write */
};


static ngx_int_t ngx_http_sse_stream_open(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_stream_run(ngx_http_sse_sub_t *sub);
static ngx_int_t ngx_http_sse_stream_headers(ngx_http_request_t *r);
static ngx_http_sse_sub_t *ngx_http_sse_sub_create(ngx_http_request_t *r,
    ngx_uint_t n);
static ngx_int_t ngx_http_sse_sub_subscribe(ngx_http_sse_sub_t *sub,
    ngx_str_t *names);
static ngx_int_t ngx_http_sse_stream_start(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_stream_go_on(ngx_http_sse_sub_t *sub);
static ngx_int_t ngx_http_sse_send_retry_only(ngx_http_request_t *r,
    ngx_http_sse_loc_conf_t *slcf);
static ngx_int_t ngx_http_sse_last_id(ngx_http_request_t *r,
    ngx_http_sse_id_t *id);
static void ngx_http_sse_takeover(ngx_event_t *ev);
static ngx_int_t ngx_http_sse_takeover_test(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_takeover_retry(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_find_modules(ngx_cycle_t *cycle);
static void ngx_http_sse_sub_log(ngx_http_sse_sub_t *sub, ngx_uint_t level,
    const char *what);
static void ngx_http_sse_sub_cleanup(void *data);
static void ngx_http_sse_sub_free(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_detach(ngx_http_sse_sub_t *sub);
static ngx_int_t ngx_http_sse_sub_append(ngx_http_sse_sub_t *sub,
    u_char *data, size_t len, ngx_http_sse_block_t *block, ngx_uint_t framed);
static ngx_http_sse_out_t *ngx_http_sse_out_get(ngx_http_sse_sub_t *sub,
    u_char *data, size_t len, ngx_http_sse_block_t *block, ngx_uint_t framed);
static void ngx_http_sse_out_free(ngx_chain_t *cl);
static ngx_chain_t *ngx_http_sse_sub_queue(ngx_http_sse_sub_t *sub);
static size_t ngx_http_sse_sub_reap(ngx_http_sse_sub_t *sub);
static ngx_int_t ngx_http_sse_sub_flush(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_write(ngx_http_sse_sub_t *sub);
static ngx_int_t ngx_http_sse_sub_replay(ngx_http_sse_sub_t *sub);
static size_t ngx_http_sse_replay_piece(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_write_run(ngx_http_sse_sub_t *sub,
    ngx_int_t rc);
static void ngx_http_sse_sub_close(ngx_http_sse_sub_t *sub);
#if (NGX_SSL)
static void ngx_http_sse_ssl_buf_free(ngx_connection_t *c);
#endif
static void ngx_http_sse_sub_end(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_write_handler(ngx_http_request_t *r);
static void ngx_http_sse_conn_write_handler(ngx_event_t *wev);
static void ngx_http_sse_conn_read_handler(ngx_event_t *rev);
static void ngx_http_sse_heartbeat_handler(ngx_event_t *ev);
static void ngx_http_sse_dispatch(ngx_http_sse_delivery_t *d, ngx_uint_t n,
    ngx_http_sse_lchan_t *touched);
static void ngx_http_sse_sub_dirty(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_sub_later(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_writer_post(ngx_event_t *ev);
static void ngx_http_sse_writer_handler(ngx_event_t *ev);
#if (NGX_HTTP_V2)
static ngx_uint_t ngx_http_sse_h2_hold(ngx_http_sse_sub_t *sub);
static void ngx_http_sse_h2_flush(void);
#endif
static void ngx_http_sse_end_all(void);


static ngx_str_t  ngx_http_sse_event_stream =
    ngx_string("text/event-stream; charset=utf-8");

static u_char  ngx_http_sse_heartbeat_line[] = ": heartbeat\n\n";
static u_char  ngx_http_sse_heartbeat_chunk[] = "d" CRLF ": heartbeat\n\n" CRLF;


/* what the worker side calls with the events it read */
static ngx_http_sse_streams_t  ngx_http_sse_streams = {
    ngx_http_sse_dispatch,
    ngx_http_sse_end_all
};


/*
 * nginx's filters that rewrite a response's body: a stream they work on
 * keeps its request, whose filters it would bypass once taken over
 */
static char  *ngx_http_sse_rewriter_names[] = {
    "ngx_http_sub_filter_module",
    "ngx_http_ssi_filter_module",
    "ngx_http_addition_filter_module",
    "ngx_http_charset_filter_module",
    "ngx_http_xslt_filter_module",
    "ngx_http_image_filter_module",
    "ngx_http_gunzip_filter_module",
    NULL
};

static ngx_uint_t  ngx_http_sse_rewriters[8];   /* their ctx_index */
static ngx_uint_t  ngx_http_sse_nrewriters;
static ngx_int_t   ngx_http_sse_realip = -1;    /* its ctx_index, if any */


/* this worker's streams */
static ngx_queue_t          ngx_http_sse_subs;
static ngx_queue_t          ngx_http_sse_dirty;
static ngx_queue_t          ngx_http_sse_later;   /* the next writer pass */
static ngx_http_sse_out_t  *ngx_http_sse_free_outs;
static ngx_uint_t           ngx_http_sse_nfree_outs;
static ngx_event_t          ngx_http_sse_writer;


#if (NGX_HTTP_V2)

/*
 * The HTTP/2 connections a writer pass holds back: their streams' frames
 * are queued, and each connection is written once, after the pass.
 */

typedef struct {
    ngx_connection_t               *c;
    ngx_atomic_uint_t               number;     /* still that connection */
    ngx_uint_t                      opening;    /* a stream of it opened */
} ngx_http_sse_held_t;

static ngx_http_sse_held_t  ngx_http_sse_h2_held[NGX_HTTP_SSE_WRITE_SLICE];
static ngx_uint_t           ngx_http_sse_h2_nheld;

#endif


ngx_int_t
ngx_http_sse_stream_init_worker(ngx_cycle_t *cycle, ngx_http_sse_hub_t *hub)
{
    ngx_queue_init(&ngx_http_sse_subs);
    ngx_queue_init(&ngx_http_sse_dirty);
    ngx_queue_init(&ngx_http_sse_later);

    ngx_http_sse_writer.handler = ngx_http_sse_writer_handler;
    ngx_http_sse_writer.log = cycle->log;

    ngx_http_sse_find_modules(cycle);

    return ngx_http_sse_worker_init(cycle, hub, &ngx_http_sse_streams);
}


/* the modules whose state on a request the takeover must respect */

static void
ngx_http_sse_find_modules(ngx_cycle_t *cycle)
{
    ngx_uint_t   i, k;
    ngx_module_t  *m;

    ngx_http_sse_nrewriters = 0;
    ngx_http_sse_realip = -1;

    for (i = 0; cycle->modules[i]; i++) {
        m = cycle->modules[i];

        if (m->type != NGX_HTTP_MODULE || m->name == NULL) {
            continue;
        }

        if (ngx_strcmp(m->name, "ngx_http_realip_module") == 0) {
            ngx_http_sse_realip = m->ctx_index;
            continue;
        }

        for (k = 0; ngx_http_sse_rewriter_names[k]; k++) {
            if (ngx_strcmp(m->name, ngx_http_sse_rewriter_names[k]) == 0
                && ngx_http_sse_nrewriters < 8)
            {
                ngx_http_sse_rewriters[ngx_http_sse_nrewriters++] =
                                                                m->ctx_index;
            }
        }
    }
}


void
ngx_http_sse_stream_exit_worker(ngx_cycle_t *cycle)
{
    ngx_http_sse_out_t  *o;

    if (ngx_http_sse_writer.posted) {
        ngx_delete_posted_event(&ngx_http_sse_writer);
    }

    ngx_http_sse_worker_exit(cycle);

    while (ngx_http_sse_free_outs) {
        o = ngx_http_sse_free_outs;
        ngx_http_sse_free_outs = (ngx_http_sse_out_t *) o->cl.next;
        ngx_free(o);
    }

    ngx_http_sse_nfree_outs = 0;
}


/*
 * Subscribing.
 *
 * A stream starts as an ordinary request: the headers, the retry line and
 * the replay go through the filters.  On HTTP/1.x with no content coding
 * the request is then freed and the stream keeps only its connection and a
 * small subscriber (it is "taken over"): events are written with
 * c->send_chain(), framed as chunks here when the response is chunked.
 * HTTP/2 and gzip streams stay requests and write through
 * ngx_http_output_filter().
 */

ngx_int_t
ngx_http_sse_stream_handler(ngx_http_request_t *r)
{
    const char               *err;
    ngx_int_t                 rc;
    ngx_uint_t                n;
    ngx_str_t                 names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_http_sse_sub_t       *sub;
    ngx_http_sse_loc_conf_t  *slcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_sse_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    rc = ngx_http_sse_request_channels(r, slcf->stream, names, &n, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    rc = ngx_http_sse_stream_open(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    sub = ngx_http_sse_sub_create(r, n);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sse_sub_subscribe(sub, names);

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

    ngx_http_sse_sub_log(sub, NGX_LOG_INFO, "opened");

    return ngx_http_sse_stream_run(sub);
}


/*
 * The stream's headers; NGX_DECLINED when the stream goes on, else what
 * the handler answers (HEAD: the headers only; an exiting worker: come
 * back, with the retry line)
 */

static ngx_int_t
ngx_http_sse_stream_open(ngx_http_request_t *r)
{
    if (ngx_http_sse_stream_headers(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_HEAD) {
        return ngx_http_send_header(r);
    }

    if (ngx_exiting) {
        return ngx_http_sse_send_retry_only(r,
                          ngx_http_get_module_loc_conf(r, ngx_http_sse_module));
    }

    return NGX_DECLINED;
}


/* the stream has its subscriber: it starts, and lives on after the handler */

static ngx_int_t
ngx_http_sse_stream_run(ngx_http_sse_sub_t *sub)
{
    ngx_int_t  rc;

    rc = ngx_http_sse_stream_start(sub);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_sse_stream_go_on(sub);

    sub->r->main->count++;

    return NGX_DONE;
}


/*
 * A stream of no channel, fed by this worker (the stats stream): it is
 * written, heartbeated, taken over and ended as any other stream.
 */

ngx_int_t
ngx_http_sse_stream_feed(ngx_http_request_t *r, ngx_http_sse_feed_t *feed)
{
    ngx_int_t            rc;
    ngx_http_sse_sub_t  *sub;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_sse_stream_open(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    sub = ngx_http_sse_sub_create(r, 0);
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (feed->subs.prev == NULL) {
        ngx_queue_init(&feed->subs);
    }

    sub->feed = feed;
    ngx_queue_insert_tail(&feed->subs, &sub->feed_q);
    feed->n++;

    ngx_queue_insert_tail(&ngx_http_sse_subs, &sub->queue);
    sub->attached = 1;

    return ngx_http_sse_stream_run(sub);
}


/* the same bytes to each stream of the feed, from one block */

void
ngx_http_sse_feed_send(ngx_http_sse_feed_t *feed, u_char *data, size_t len)
{
    ngx_queue_t           *q;
    ngx_http_sse_sub_t    *sub;
    ngx_http_sse_block_t  *block;

    if (feed->n == 0) {
        return;
    }

    block = ngx_alloc(offsetof(ngx_http_sse_block_t, data) + len,
                      ngx_cycle->log);
    if (block == NULL) {
        return;
    }

    block->refs = 1;
    block->lchan = NULL;
    block->pos = block->data;
    block->len = len;
    block->size = len;
    ngx_memcpy(block->data, data, len);

    for (q = ngx_queue_head(&feed->subs);
         q != ngx_queue_sentinel(&feed->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_sse_sub_t, feed_q);

        if (sub->ending) {
            continue;
        }

        if (ngx_http_sse_sub_append(sub, block->pos, len, block, 0)
            != NGX_OK)
        {
            sub->ending = 1;
        }

        ngx_http_sse_sub_dirty(sub);
    }

    /* the bufs hold it now */
    ngx_http_sse_block_release(block);

    if (!ngx_queue_empty(&ngx_http_sse_dirty)
        && !ngx_http_sse_writer.posted)
    {
        ngx_post_event(&ngx_http_sse_writer, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_http_sse_stream_headers(ngx_http_request_t *r)
{
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_http_sse_event_stream;
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

    if (ngx_http_sse_add_header(r, "Cache-Control", "no-cache") == NULL
        || ngx_http_sse_add_header(r, "X-Accel-Buffering", "no") == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the subscriber, freed with the request unless the stream is taken over */

static ngx_http_sse_sub_t *
ngx_http_sse_sub_create(ngx_http_request_t *r, ngx_uint_t n)
{
    size_t                     size;
    ngx_connection_t          *c;
    ngx_pool_cleanup_t        *cln;
    ngx_http_sse_sub_t        *sub;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;

    size = sizeof(ngx_http_sse_sub_t)
           + n * (sizeof(ngx_http_sse_link_t) + sizeof(ngx_http_sse_lchan_t *));

    sub = ngx_calloc(size, c->log);
    if (sub == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(sub);
        return NULL;
    }

    cln->handler = ngx_http_sse_sub_cleanup;
    cln->data = sub;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    sub->c = c;
    sub->r = r;
    sub->start = ngx_current_msec;
    sub->slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);
    sub->send_timeout = clcf->send_timeout;
    sub->nlinks = n;
    sub->links = (ngx_http_sse_link_t *) (sub + 1);
    sub->lchans = (ngx_http_sse_lchan_t **) (sub->links + n);

    sub->ev.data = sub;
    sub->ev.log = c->log;
    sub->ev.cancelable = 1;

    ngx_http_set_ctx(r, sub, ngx_http_sse_module);

    return sub;
}


/*
 * Joins the hub and links the subscriber to its worker's channels; with
 * Last-Event-ID, it replays before it is live.
 */

static ngx_int_t
ngx_http_sse_sub_subscribe(ngx_http_sse_sub_t *sub, ngx_str_t *names)
{
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_http_sse_link_t       *link;
    ngx_http_sse_subscribe_t   s;

    ngx_memzero(&s, sizeof(ngx_http_sse_subscribe_t));

    s.names = names;
    s.n = sub->nlinks;
    s.max_subscribers = sub->slcf->max_subscribers;
    s.lchans = sub->lchans;

    rc = ngx_http_sse_worker_subscribe(&s, sub->c->log);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_sse_last_id(sub->r, &sub->replay_last) == NGX_OK) {
        sub->replaying = 1;
        sub->replay_first = 1;
        sub->replay_hold = ngx_http_sse_redis_on(sub->r) ? 1 : 0;
    }

    for (i = 0; i < sub->nlinks; i++) {
        link = &sub->links[i];
        link->sub = sub;
        link->lchan = sub->lchans[i];
        ngx_queue_insert_tail(sub->nlinks == 1 ? &link->lchan->links
                                               : &link->lchan->mlinks,
                              &link->queue);
    }

    ngx_queue_insert_tail(&ngx_http_sse_subs, &sub->queue);
    sub->attached = 1;

    return NGX_OK;
}


/* the headers, the retry line and the replay's first piece, at once */

static ngx_int_t
ngx_http_sse_stream_start(ngx_http_sse_sub_t *sub)
{
    ngx_int_t                  rc;
    ngx_uint_t                 more;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = sub->r;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->http_version <= NGX_HTTP_VERSION_11 && clcf->tcp_nodelay) {
        /* small events must not wait for the previous one's ACK */
        if (ngx_tcp_nodelay(sub->c) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (sub->slcf->retry_line.len
        && ngx_http_sse_sub_append(sub, sub->slcf->retry_line.data,
                                   sub->slcf->retry_line.len, NULL, 0)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (sub->replaying && ngx_http_sse_sub_replay(sub) != NGX_OK) {
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

    more = sub->replaying || sub->ending;

#if (NGX_HTTP_V2 && NGX_SSL)
    /*
     * the writer's pass writes its HTTP/2 connection, then gives the TLS
     * buffer back (ngx_http_sse_h2_flush()): the next connections reuse
     * it while they open
     */
    if (r->stream && r->stream->connection->connection->ssl) {
        sub->h2_opening = 1;
        more = 1;
    }
#endif

    if (more) {
        /* the writer goes on with it, as with any stream that owes more */
        ngx_http_sse_sub_dirty(sub);

        if (!ngx_http_sse_writer.posted) {
            ngx_post_event(&ngx_http_sse_writer, &ngx_posted_events);
        }
    }

    return NGX_OK;
}


/*
 * The next piece of the replay, counted as owed like any output, so that
 * sse_max_pending and send_timeout hold for it too.  A stream whose next
 * events left the history before it was sent them ends cleanly, and
 * resumes from what is kept then.
 */

static ngx_int_t
ngx_http_sse_sub_replay(ngx_http_sse_sub_t *sub)
{
    ngx_int_t              rc;
    ngx_http_sse_replay_t  rp;

    rp.last = sub->replay_last;
    rp.first = sub->replay_first;
    rp.hold = sub->replay_hold;
    rp.max = ngx_http_sse_replay_piece(sub);

    rc = ngx_http_sse_worker_replay(sub->lchans, sub->nlinks, &rp,
                                    sub->c->log);

    if (rp.block) {
        if (ngx_http_sse_sub_append(sub, rp.block->pos, rp.block->len,
                                    rp.block, 0)
            != NGX_OK)
        {
            rc = NGX_ERROR;
        }

        ngx_http_sse_block_release(rp.block);
        sub->events += rp.events;
    }

    sub->replay_last = rp.last;
    sub->replay_first = rp.first;
    sub->replay_wait = (rc == NGX_AGAIN);

    if (rc == NGX_AGAIN) {
        /*
         * no longer the first piece: should the history move past its id
         * while it waits (a catch-up longer than sse_history), the stream
         * ends cleanly and resumes, as any replay overtaken
         */
        sub->replay_first = 0;
    }

    switch (rc) {

    case NGX_OK:
    case NGX_AGAIN:
        /* NGX_AGAIN: the next events this node reads try again */
        return NGX_OK;

    case NGX_DONE:
        sub->replaying = 0;
        return NGX_OK;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_INFO, sub->c->log, 0,
                      "sse: the history moved past a replaying stream, "
                      "ending it so that it resumes");
        sub->replaying = 0;
        sub->ending = 1;
        return NGX_OK;

    default:
        return NGX_ERROR;
    }
}


static size_t
ngx_http_sse_replay_piece(ngx_http_sse_sub_t *sub)
{
    return ngx_max(1, ngx_min(NGX_HTTP_SSE_REPLAY_PIECE,
                              sub->slcf->max_pending / 2));
}


/*
 * The stream lives on: HTTP/1.x streams are taken over once this request
 * has been finalized, the others get their heartbeat timer.
 */

static void
ngx_http_sse_stream_go_on(ngx_http_sse_sub_t *sub)
{
    ngx_http_request_t  *r;

    r = sub->r;

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
        sub->ev.handler = ngx_http_sse_takeover;
        ngx_post_event(&sub->ev, &ngx_posted_events);

    } else if (sub->slcf->heartbeat) {
        sub->ev.handler = ngx_http_sse_heartbeat_handler;
        ngx_add_timer(&sub->ev, sub->slcf->heartbeat);
    }
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


/*
 * Last-Event-ID, or ?last_event_id= for clients that cannot set headers;
 * a malformed id, or two headers, is no id
 */

static ngx_int_t
ngx_http_sse_last_id(ngx_http_request_t *r, ngx_http_sse_id_t *id)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    rc = ngx_http_sse_request_header(r, "Last-Event-ID", &value);

    if (rc == NGX_DECLINED
        && ngx_http_arg(r, (u_char *) "last_event_id",
                        sizeof("last_event_id") - 1, &value)
           == NGX_OK)
    {
        rc = NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    return ngx_http_sse_id_parse(value.data, value.len, id);
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

    switch (ngx_http_sse_takeover_test(sub)) {

    case NGX_OK:
        break;

    case NGX_AGAIN:
        /* the write that drains what the filters hold tries again */
        sub->takeover_wait = 1;

        /* fall through */

    default:
        if (sub->slcf->heartbeat) {
            ngx_add_timer(ev, sub->slcf->heartbeat);
        }

        return;
    }

    sub->chunked = r->chunked;
    sub->taken_over = 1;
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

#if (NGX_SSL)
    ngx_http_sse_ssl_buf_free(c);
#endif

    c->read->handler = ngx_http_sse_conn_read_handler;
    c->write->handler = ngx_http_sse_conn_write_handler;

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
    ngx_http_sse_conn_read_handler(c->read);
}


/*
 * NGX_OK: nothing else needs the request; NGX_AGAIN: its output is still in
 * the filters; NGX_DECLINED: a module holds on to it for the stream's whole
 * life (limit_conn's cleanup releases the connection count, a filter
 * rewrites the body, limit_rate paces it), so it stays a request.
 */

static ngx_int_t
ngx_http_sse_takeover_test(ngx_http_sse_sub_t *sub)
{
    ngx_uint_t           i, foreign;
    ngx_connection_t    *c;
    ngx_pool_cleanup_t  *cln;
    ngx_http_request_t  *r;

    r = sub->r;
    c = sub->c;

    if (c->error || r->limit_rate || r->cleanup) {
        return NGX_DECLINED;
    }

    foreign = 0;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_sse_sub_cleanup
            && cln->handler != ngx_pool_cleanup_file
            && cln->handler != ngx_pool_delete_file)
        {
            foreign++;
        }
    }

    /*
     * realip's cleanup only gives the connection its own address back when
     * the request goes; it may, as the stream then lives on the connection
     */

    if (ngx_http_sse_realip >= 0 && r->ctx[ngx_http_sse_realip] && foreign) {
        foreign--;
    }

    if (foreign) {
        return NGX_DECLINED;
    }

    for (i = 0; i < ngx_http_sse_nrewriters; i++) {
        if (r->ctx[ngx_http_sse_rewriters[i]]) {
            return NGX_DECLINED;
        }
    }

    if (r->main->count != 1 || r->out || r->postponed || r->blocked
        || r->buffered || c->buffered)
    {
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/* what held the takeover back has drained: it is tried again, posted */

static void
ngx_http_sse_takeover_retry(ngx_http_sse_sub_t *sub)
{
    sub->takeover_wait = 0;

    if (sub->ev.timer_set) {
        ngx_del_timer(&sub->ev);
    }

    sub->ev.handler = ngx_http_sse_takeover;

    if (!sub->ev.posted) {
        ngx_post_event(&sub->ev, &ngx_posted_events);
    }
}


/*
 * "sse: stream of "news,sport" opened" / "ended after 12.5s, 7 events",
 * with the client's address from the connection's log context
 */

static void
ngx_http_sse_sub_log(ngx_http_sse_sub_t *sub, ngx_uint_t level,
    const char *what)
{
    u_char                  *p, *last;
    ngx_msec_t               ms;
    ngx_uint_t               i;
    ngx_http_sse_channel_t  *ch;
    u_char                   names[NGX_HTTP_SSE_MAX_CHANNELS
                                   * (NGX_HTTP_SSE_MAX_NAME + 1)];

    if (sub->c->log->log_level < level) {
        return;
    }

    p = names;
    last = names + sizeof(names);

    if (sub->feed) {
        p = ngx_cpymem(p, "status", sizeof("status") - 1);
    }

    for (i = 0; i < sub->nlinks && sub->lchans[i]; i++) {
        ch = sub->lchans[i]->channel;

        if (i) {
            *p++ = ',';
        }

        p = ngx_slprintf(p, last, "%V", &ch->sn.str);
    }

    if (sub->events == 0 && sub->start == ngx_current_msec) {
        ngx_log_error(level, sub->c->log, 0, "sse: stream of \"%*s\" %s",
                      p - names, names, what);
        return;
    }

    ms = ngx_current_msec - sub->start;

    ngx_log_error(level, sub->c->log, 0,
                  "sse: stream of \"%*s\" %s after %M.%03Ms, %ui events",
                  p - names, names, what, ms / 1000, ms % 1000, sub->events);
}


/* the request is freed: a taken-over subscriber lives on without it */

static void
ngx_http_sse_sub_cleanup(void *data)
{
    ngx_http_sse_sub_t  *sub = data;

    if (sub->taken_over) {
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

    ngx_http_sse_sub_log(sub, NGX_LOG_INFO, "ended");

    ngx_queue_remove(&sub->queue);

    if (sub->feed) {
        ngx_queue_remove(&sub->feed_q);
        sub->feed->n--;
        return;
    }

    for (i = 0; i < sub->nlinks; i++) {
        ngx_queue_remove(&sub->links[i].queue);
    }

    ngx_http_sse_worker_unsubscribe(sub->lchans, sub->nlinks);
}


static ngx_int_t
ngx_http_sse_sub_append(ngx_http_sse_sub_t *sub, u_char *data, size_t len,
    ngx_http_sse_block_t *block, ngx_uint_t framed)
{
    ngx_http_sse_out_t  *o;

    if (sub->out && block) {
        o = (ngx_http_sse_out_t *) sub->out_tail;

        if (o->block == block && o->buf.last == data && o->framed == framed) {
            /* the next bytes of the same block: the buf grows */
            o->buf.last += len;
            o->buf.end = o->buf.last;
            o->owed += len;
            return NGX_OK;
        }
    }

    o = ngx_http_sse_out_get(sub, data, len, block, framed);
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
    ngx_http_sse_block_t *block, ngx_uint_t framed)
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

    o->block = block;
    o->owed = len;
    o->framed = framed;

    if (block) {
        block->refs++;
    }

    return o;
}


static void
ngx_http_sse_out_free(ngx_chain_t *cl)
{
    ngx_http_sse_out_t  *o;

    o = (ngx_http_sse_out_t *) cl;

    if (o->block) {
        ngx_http_sse_block_release(o->block);
        o->block = NULL;
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
 * pending events leave in one writev().  Taken over and chunked, each run of
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

    if (sub->taken_over && sub->chunked) {
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

    if (sub->taken_over) {
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

#if (NGX_SSL)
        ngx_http_sse_ssl_buf_free(c);
#endif

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
        ngx_http_sse_sub_log(sub, NGX_LOG_WARN, "closed as too slow");
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

        if (sub->taken_over) {
            rc = ngx_handle_write_event(wev, 0);

        } else {
            clcf = ngx_http_get_module_loc_conf(sub->r, ngx_http_core_module);
            rc = ngx_handle_write_event(wev, clcf->send_lowat);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        if (wev->timer_set && !wev->delayed) {
            ngx_del_timer(wev);
        }

        /*
         * with poll or select a writable socket is reported again and
         * again: a drained stream stops watching it, as nginx does for an
         * idle keepalive connection
         */

        if (wev->active && (ngx_event_flags & NGX_USE_LEVEL_EVENT)) {
            if (ngx_del_event(wev, NGX_WRITE_EVENT, 0) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


#if (NGX_SSL)

/*
 * ngx_ssl_send_chain() gathers the bufs of one write into TLS records in a
 * buffer of ssl_buffer_size (16k) it keeps on the connection: an idle
 * stream gives it back, and the next write takes a new one.
 */

static void
ngx_http_sse_ssl_buf_free(ngx_connection_t *c)
{
    ngx_buf_t  *b;

    if (c->ssl == NULL || c->ssl->buf == NULL || c->buffered) {
        return;
    }

    b = c->ssl->buf;

    if (b->start && b->pos == b->last) {
        /* the buf stays, its memory goes: nginx takes new when start is NULL */
        ngx_ssl_free_buffer(c);
    }
}

#endif


/* writes what is queued; may free the subscriber */

static void
ngx_http_sse_sub_write(ngx_http_sse_sub_t *sub)
{
    ngx_uint_t  n;

    for (n = 0; /* void */; n++) {

        if (ngx_http_sse_sub_flush(sub) != NGX_OK) {
            ngx_http_sse_sub_close(sub);
            return;
        }

        if (!sub->replaying || sub->ending
            || ngx_http_sse_sub_reap(sub) >= ngx_http_sse_replay_piece(sub))
        {
            break;
        }

        if (n == NGX_HTTP_SSE_REPLAY_TURN) {
            /* the other streams' turn: the next writer pass goes on here */
            ngx_http_sse_sub_later(sub);
            break;
        }

        if (ngx_http_sse_sub_replay(sub) != NGX_OK) {
            ngx_http_sse_sub_close(sub);
            return;
        }

        if (sub->replay_wait) {
            break;
        }
    }

    if (sub->ending) {
        ngx_http_sse_sub_end(sub);
        return;
    }

    if (sub->takeover_wait && sub->busy == NULL && sub->r->out == NULL
        && !sub->c->buffered && !sub->r->buffered)
    {
        ngx_http_sse_takeover_retry(sub);
    }
}


static void
ngx_http_sse_sub_close(ngx_http_sse_sub_t *sub)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (sub->taken_over) {
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

    if (!sub->taken_over) {
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
ngx_http_sse_conn_write_handler(ngx_event_t *wev)
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
ngx_http_sse_conn_read_handler(ngx_event_t *rev)
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
    ngx_msec_t           elapsed, interval;
    ngx_http_sse_sub_t  *sub;

    sub = ev->data;
    interval = sub->slcf->heartbeat;

    elapsed = ngx_current_msec - sub->last_write;

    if (elapsed < interval) {
        ngx_add_timer(ev, interval - elapsed);
        return;
    }

    /* set first: the write may free the subscriber, and the timer with it */
    ngx_add_timer(ev, interval);

    if (sub->taken_over && sub->chunked) {
        rc = ngx_http_sse_sub_append(sub, ngx_http_sse_heartbeat_chunk,
                                     sizeof(ngx_http_sse_heartbeat_chunk) - 1,
                                     NULL, 1);

    } else {
        rc = ngx_http_sse_sub_append(sub, ngx_http_sse_heartbeat_line,
                                     sizeof(ngx_http_sse_heartbeat_line) - 1,
                                     NULL, 0);
    }

    ngx_http_sse_sub_write_run(sub, rc);
}


/*
 * Writes what is queued (or closes the stream when queueing failed), then
 * runs the subrequests and finalizations the write posted, as nginx's own
 * event handlers do for a request; the subscriber may be freed by then.
 */

static void
ngx_http_sse_sub_write_run(ngx_http_sse_sub_t *sub, ngx_int_t rc)
{
    ngx_uint_t         taken_over;
    ngx_connection_t  *c;

    c = sub->c;
    taken_over = sub->taken_over;

    if (rc == NGX_OK) {
        ngx_http_sse_sub_write(sub);

    } else {
        ngx_http_sse_sub_close(sub);
    }

    if (!taken_over) {
        ngx_http_run_posted_requests(c);
    }
}


/*
 * Called by the worker side with what it read from the log: the events
 * are queued on the streams of their channels; the writer sends them.
 * A stream of one channel gets its channel's new events as one buf, or as
 * more of the buf it already has queued; a stream of several channels gets
 * each event in id order.
 */

static void
ngx_http_sse_dispatch(ngx_http_sse_delivery_t *d, ngx_uint_t n,
    ngx_http_sse_lchan_t *touched)
{
    ngx_uint_t             i, count;
    ngx_queue_t           *q;
    ngx_http_sse_sub_t    *sub;
    ngx_http_sse_link_t   *link;
    ngx_http_sse_block_t  *block;
    ngx_http_sse_lchan_t  *lc, *next;

    count = 0;

    /*
     * a stream still replaying gets these from the history, in order: it
     * is only told when its channel ends
     */

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

            if (d[i].block == NULL) {
                /* nothing later may go out before this stream's end */
                sub->ending = 1;

            } else if (sub->replaying) {
                if (!sub->replay_wait) {
                    continue;
                }

                /* waiting: the writer tries its replay again */

            } else if (ngx_http_sse_sub_append(sub, d[i].pos, d[i].len,
                                               d[i].block, 0)
                       != NGX_OK)
            {
                sub->ending = 1;

            } else {
                count++;
                sub->events++;
            }

            ngx_http_sse_sub_dirty(sub);
        }
    }

    for (lc = touched; lc; lc = next) {
        next = lc->round_next;
        block = lc->round;

        for (q = ngx_queue_head(&lc->links);
             q != ngx_queue_sentinel(&lc->links);
             q = ngx_queue_next(q))
        {
            link = ngx_queue_data(q, ngx_http_sse_link_t, queue);
            sub = link->sub;

            if (sub->ending) {
                continue;
            }

            if (block && lc->round_size && !sub->replaying) {
                if (ngx_http_sse_sub_append(sub, lc->round_pos,
                                            lc->round_size, block, 0)
                    != NGX_OK)
                {
                    sub->ending = 1;

                } else {
                    count += lc->round_events;
                    sub->events += lc->round_events;
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
    ngx_uint_t           n, cost;
    ngx_queue_t         *q;
    ngx_http_sse_sub_t  *sub;

    ngx_http_sse_worker_read();

    if (!ngx_queue_empty(&ngx_http_sse_later)) {
        ngx_queue_add(&ngx_http_sse_dirty, &ngx_http_sse_later);
        ngx_queue_init(&ngx_http_sse_later);
    }

    for (n = 0;
         n < NGX_HTTP_SSE_WRITE_SLICE * NGX_HTTP_SSE_H2_SHARE
         && !ngx_queue_empty(&ngx_http_sse_dirty);
         n += cost)
    {
        q = ngx_queue_head(&ngx_http_sse_dirty);
        ngx_queue_remove(q);

        sub = ngx_queue_data(q, ngx_http_sse_sub_t, dirty);
        sub->is_dirty = 0;

#if (NGX_HTTP_V2)
        cost = ngx_http_sse_h2_hold(sub) ? 1 : NGX_HTTP_SSE_H2_SHARE;
#else
        cost = NGX_HTTP_SSE_H2_SHARE;
#endif

        ngx_http_sse_sub_write_run(sub, NGX_OK);
    }

#if (NGX_HTTP_V2)
    ngx_http_sse_h2_flush();
#endif

    if (!ngx_queue_empty(&ngx_http_sse_dirty)
        || !ngx_queue_empty(&ngx_http_sse_later))
    {
        ngx_http_sse_writer_post(ev);
    }
}


#if (NGX_HTTP_V2)

/*
 * The stream's HTTP/2 connection is held back for the rest of the pass:
 * with its write event not ready, nginx queues the stream's DATA frames
 * (ngx_http_v2_send_output_queue() waits for a ready connection) instead of
 * writing them, one write and one TLS record per stream.  1: the
 * connection was held already in this slice, the stream adds no write.
 */

static ngx_uint_t
ngx_http_sse_h2_hold(ngx_http_sse_sub_t *sub)
{
    ngx_uint_t                 i;
    ngx_connection_t          *c;
    ngx_http_sse_held_t       *h;

    if (sub->taken_over || sub->r == NULL || sub->r->stream == NULL) {
        return 0;
    }

    c = sub->r->stream->connection->connection;

    for (i = 0; i < ngx_http_sse_h2_nheld; i++) {
        if (ngx_http_sse_h2_held[i].c == c) {
            /* its frames join those already queued: no write of its own */
            ngx_http_sse_h2_held[i].opening |= sub->h2_opening;
            sub->h2_opening = 0;
            return 1;
        }
    }

    if (!c->write->ready || c->error
        || ngx_http_sse_h2_nheld == NGX_HTTP_SSE_WRITE_SLICE)
    {
        return 0;
    }

    h = &ngx_http_sse_h2_held[ngx_http_sse_h2_nheld++];
    h->c = c;
    h->number = c->number;
    h->opening = sub->h2_opening;
    sub->h2_opening = 0;

    c->write->ready = 0;

    return 0;
}


/*
 * After the pass: each held connection is written once, all its streams'
 * frames in one send_chain, as its own write handler does when the socket
 * becomes writable; the streams then hear that their frames went out.
 */

static void
ngx_http_sse_h2_flush(void)
{
    ngx_uint_t         i;
    ngx_connection_t  *c;

    for (i = 0; i < ngx_http_sse_h2_nheld; i++) {
        c = ngx_http_sse_h2_held[i].c;

        if (c->fd == (ngx_socket_t) -1
            || c->number != ngx_http_sse_h2_held[i].number)
        {
            /* closed during the pass */
            continue;
        }

        c->write->ready = 1;
        c->write->handler(c->write);

#if (NGX_SSL)
        /*
         * nginx gives an HTTP/2 connection's TLS buffer back only when it
         * has no stream left, never while an event stream is open: ours
         * is given back once a stream has opened, so that a connection
         * that gets no event holds none.  Not after every write: taking
         * and freeing 16 KB per event cost 10% more CPU per delivery.
         */
        if (ngx_http_sse_h2_held[i].opening
            && c->fd != (ngx_socket_t) -1
            && c->number == ngx_http_sse_h2_held[i].number)
        {
            ngx_http_sse_ssl_buf_free(c);
        }
#endif
    }

    ngx_http_sse_h2_nheld = 0;
}

#endif


/* the writer runs again after the network has been looked at */

static void
ngx_http_sse_writer_post(ngx_event_t *ev)
{
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


/* a stream whose turn is over: the writer's next pass, not this one */

static void
ngx_http_sse_sub_later(ngx_http_sse_sub_t *sub)
{
    if (sub->is_dirty) {
        ngx_queue_remove(&sub->dirty);
    }

    sub->is_dirty = 1;
    ngx_queue_insert_tail(&ngx_http_sse_later, &sub->dirty);

    ngx_http_sse_writer_post(&ngx_http_sse_writer);
}


/* the worker is exiting: every stream ends now, clients resume elsewhere */

static void
ngx_http_sse_end_all(void)
{
    ngx_queue_t         *q;
    ngx_http_sse_sub_t  *sub;

    while (!ngx_queue_empty(&ngx_http_sse_subs)) {
        q = ngx_queue_head(&ngx_http_sse_subs);
        sub = ngx_queue_data(q, ngx_http_sse_sub_t, queue);

        if (sub->closing) {
            ngx_http_sse_sub_close(sub);
            continue;
        }

        sub->ending = 1;
        ngx_http_sse_sub_write_run(sub, NGX_OK);
    }
}

