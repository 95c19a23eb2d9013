
/*
 * ngx_http_sse_module: the sse_status location: the hub's figures, all
 * workers together, as JSON or in Prometheus's text format, or, for a GET
 * with Accept: text/event-stream, as a stream of one "stats" event a second
 * with the rates of the last second, for a dashboard to draw.
 *
 * Calls: ngx_http_sse_request.c, ngx_http_sse_stream.c (the stream a
 * worker feeds itself) and the hub's counters.
 */


#include "ngx_http_sse.h"


#define NGX_HTTP_SSE_STATUS_SIZE  (4096 + 24 * NGX_INT64_LEN)


static ngx_uint_t ngx_http_sse_status_prometheus(ngx_http_request_t *r);
static ngx_uint_t ngx_http_sse_status_streamed(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_status_stream(ngx_http_request_t *r);
static void ngx_http_sse_stats_handler(ngx_event_t *ev);
static u_char *ngx_http_sse_status_fields(u_char *p, ngx_http_sse_stats_t *st,
    ngx_uint_t redis);
static u_char *ngx_http_sse_status_text(u_char *p, ngx_http_sse_stats_t *st);


static ngx_str_t  ngx_http_sse_prometheus =
    ngx_string("text/plain; version=0.0.4");


/* this worker's stats streams, and what the last stats event counted */

typedef struct {
    ngx_http_sse_feed_t             feed;
    ngx_event_t                     timer;
    ngx_uint_t                      redis;      /* sse_redis is set */
    uint64_t                        delivered;
    uint64_t                        published;
    ngx_msec_t                      at;
} ngx_http_sse_stats_stream_t;


/* allocated for the first one: event handlers take ev->data for a connection */
static ngx_http_sse_stats_stream_t  *ngx_http_sse_stats;


ngx_int_t
ngx_http_sse_status_handler(ngx_http_request_t *r)
{
    u_char                *p, *buf;
    ngx_int_t              rc;
    ngx_http_sse_stats_t   st;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_sse_not_allowed(r, "GET, HEAD");
    }

    if (ngx_http_sse_status_streamed(r)) {
        return ngx_http_sse_status_stream(r);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_sse_hub_stats(&st);

    buf = ngx_pnalloc(r->pool, NGX_HTTP_SSE_STATUS_SIZE);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_sse_status_prometheus(r)) {
        p = ngx_http_sse_status_text(buf, &st);

        return ngx_http_sse_send(r, NGX_HTTP_OK, &ngx_http_sse_prometheus,
                                 buf, p - buf);
    }

    p = buf;
    *p++ = '{';
    p = ngx_http_sse_status_fields(p, &st, ngx_http_sse_redis_on(r));
    *p++ = '}';
    *p++ = '\n';

    return ngx_http_sse_send_json(r, NGX_HTTP_OK, buf, p - buf);
}


/* ?format=prometheus */

static ngx_uint_t
ngx_http_sse_status_prometheus(ngx_http_request_t *r)
{
    ngx_str_t  format;

    return ngx_http_arg(r, (u_char *) "format", sizeof("format") - 1, &format)
               == NGX_OK
           && format.len == sizeof("prometheus") - 1
           && ngx_strncmp(format.data, "prometheus", format.len) == 0;
}


/* what new EventSource('/status') sends */

static ngx_uint_t
ngx_http_sse_status_streamed(ngx_http_request_t *r)
{
    ngx_str_t  accept;

    if (ngx_http_sse_request_header(r, "Accept", &accept) != NGX_OK) {
        return 0;
    }

    return ngx_strlcasestrn(accept.data, accept.data + accept.len,
                            (u_char *) "text/event-stream",
                            sizeof("text/event-stream") - 2)
           != NULL;
}


static ngx_int_t
ngx_http_sse_status_stream(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_sse_stats_t          st;
    ngx_http_sse_stats_stream_t  *ss;

    ss = ngx_http_sse_stats;

    if (ss == NULL) {
        ss = ngx_calloc(sizeof(ngx_http_sse_stats_stream_t), ngx_cycle->log);
        if (ss == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_sse_stats = ss;
    }

    rc = ngx_http_sse_stream_feed(r, &ss->feed);

    if (rc != NGX_DONE || ss->timer.timer_set) {
        return rc;
    }

    /* the first stream of this worker: the rates start from now */

    ngx_http_sse_hub_stats(&st);

    ss->redis = ngx_http_sse_redis_on(r);
    ss->delivered = st.delivered;
    ss->published = st.published;
    ss->at = ngx_current_msec;

    ss->timer.handler = ngx_http_sse_stats_handler;
    ss->timer.log = ngx_cycle->log;
    ss->timer.data = ss;
    ss->timer.cancelable = 1;

    ngx_add_timer(&ss->timer, 1000);

    return rc;
}


/* once a second while this worker has stats streams */

static void
ngx_http_sse_stats_handler(ngx_event_t *ev)
{
    u_char                       *p;
    uint64_t                      dps, pps;
    ngx_msec_t                    elapsed;
    ngx_http_sse_stats_t          st;
    ngx_http_sse_stats_stream_t  *ss;
    u_char                        buf[NGX_HTTP_SSE_STATUS_SIZE];

    ss = ev->data;

    if (ss->feed.n == 0) {
        return;
    }

    ngx_http_sse_hub_stats(&st);

    elapsed = ngx_current_msec - ss->at;
    if (elapsed == 0) {
        elapsed = 1;
    }

    dps = (st.delivered - ss->delivered) * 1000 / elapsed;
    pps = (st.published - ss->published) * 1000 / elapsed;

    ss->delivered = st.delivered;
    ss->published = st.published;
    ss->at = ngx_current_msec;

    p = ngx_cpymem(buf, "event: stats\ndata: {",
                   sizeof("event: stats\ndata: {") - 1);
    p = ngx_http_sse_status_fields(p, &st, ss->redis);
    p = ngx_sprintf(p, ",\"deliveries_per_s\":%uL,\"publishes_per_s\":%uL}"
                    "\n\n", dps, pps);

    ngx_http_sse_feed_send(&ss->feed, buf, p - buf);

    ngx_add_timer(ev, 1000);
}


/* the JSON object's members, without its braces */

static u_char *
ngx_http_sse_status_fields(u_char *p, ngx_http_sse_stats_t *st,
    ngx_uint_t redis)
{
    const char  *state;

    state = !redis ? "off" : st->redis_up ? "up" : "down";

    return ngx_sprintf(p,
        "\"subscribers\":%ui,\"channels\":%ui,\"events_published\":%uL,"
        "\"events_delivered\":%uL,\"events_kept\":%ui,\"slow_closed\":%uL,"
        "\"history_evicted\":%uL,\"zone_bytes_used\":%uz,"
        "\"zone_bytes_total\":%uz,\"workers\":%ui,\"redis\":\"%s\","
        "\"redis_logged\":%uL,\"redis_read\":%uL,"
        "\"redis_reconnects\":%uL,\"redis_ingress\":%s",
        st->subscribers, st->channels, st->published, st->delivered,
        st->kept, st->slow_closed, st->evicted, st->bytes_used,
        st->bytes_total, st->workers, state, st->redis_logged,
        st->redis_read, st->redis_reconnects,
        st->redis_ingress ? "true" : "false");
}


/* each metric with its # HELP and # TYPE lines */

#define ngx_http_sse_metric(name, type, help)                                 \
    "# HELP nginx_sse_" name " " help "\n"                                    \
    "# TYPE nginx_sse_" name " " type "\n"                                    \
    "nginx_sse_" name " "


static u_char *
ngx_http_sse_status_text(u_char *p, ngx_http_sse_stats_t *st)
{
    return ngx_sprintf(p,
        ngx_http_sse_metric("subscribers", "gauge",
                            "Open event streams, all workers.") "%ui\n"
        ngx_http_sse_metric("channels", "gauge",
                            "Channels with kept events or subscribers.")
        "%ui\n"
        ngx_http_sse_metric("events_published_total", "counter",
                            "Events accepted into the hub.") "%uL\n"
        ngx_http_sse_metric("events_delivered_total", "counter",
                            "Events handed to subscribers, one per "
                            "subscriber.") "%uL\n"
        ngx_http_sse_metric("events_kept", "gauge",
                            "Events kept for replay.") "%ui\n"
        ngx_http_sse_metric("slow_closed_total", "counter",
                            "Subscribers closed for owing more than "
                            "sse_max_pending.") "%uL\n"
        ngx_http_sse_metric("history_evicted_total", "counter",
                            "Kept events dropped by count, age or room.")
        "%uL\n"
        ngx_http_sse_metric("zone_bytes_used", "gauge",
                            "Bytes of the shared zone in use.") "%uz\n"
        ngx_http_sse_metric("zone_bytes_total", "gauge",
                            "Size of the shared zone.") "%uz\n"
        ngx_http_sse_metric("workers", "gauge",
                            "Workers attached to the hub.") "%ui\n"
        ngx_http_sse_metric("redis_connected", "gauge",
                            "1 when the link to Redis is up.") "%ui\n"
        ngx_http_sse_metric("redis_logged_total", "counter",
                            "Entries this node appended to the Redis log.")
        "%uL\n"
        ngx_http_sse_metric("redis_read_total", "counter",
                            "Entries this node read from the Redis log.")
        "%uL\n"
        ngx_http_sse_metric("redis_reconnects_total", "counter",
                            "Links to Redis made again after a loss.")
        "%uL\n"
        ngx_http_sse_metric("redis_ingress", "gauge",
                            "1 when this node converts Redis PUBLISH "
                            "messages.") "%ui\n",
        st->subscribers, st->channels, st->published, st->delivered,
        st->kept, st->slow_closed, st->evicted, st->bytes_used,
        st->bytes_total, st->workers, st->redis_up, st->redis_logged,
        st->redis_read, st->redis_reconnects, st->redis_ingress);
}
