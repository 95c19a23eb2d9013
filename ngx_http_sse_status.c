
/*
 * ngx_http_sse_module: the sse_status location: the hub's figures, all
 * workers together, as JSON or in Prometheus's text format.
 *
 * Calls: ngx_http_sse_request.c and the hub's counters.
 */


#include "ngx_http_sse.h"


static ngx_uint_t ngx_http_sse_status_prometheus(ngx_http_request_t *r);
static u_char *ngx_http_sse_status_json(u_char *p, ngx_http_sse_stats_t *st,
    ngx_str_t *redis);
static u_char *ngx_http_sse_status_text(u_char *p, ngx_http_sse_stats_t *st);


static ngx_str_t  ngx_http_sse_prometheus =
    ngx_string("text/plain; version=0.0.4");


ngx_int_t
ngx_http_sse_status_handler(ngx_http_request_t *r)
{
    u_char                *p, *buf;
    ngx_int_t              rc;
    ngx_str_t              redis;
    ngx_http_sse_stats_t   st;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_sse_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_sse_hub_stats(&st);

    if (ngx_http_sse_redis_on(r)) {
        if (st.redis_up) {
            ngx_str_set(&redis, "up");

        } else {
            ngx_str_set(&redis, "down");
        }

    } else {
        ngx_str_set(&redis, "off");
    }

    buf = ngx_pnalloc(r->pool, 4096 + 16 * NGX_INT64_LEN);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_sse_status_prometheus(r)) {
        p = ngx_http_sse_status_text(buf, &st);

        return ngx_http_sse_send(r, NGX_HTTP_OK, &ngx_http_sse_prometheus,
                                 buf, p - buf);
    }

    p = ngx_http_sse_status_json(buf, &st, &redis);

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


static u_char *
ngx_http_sse_status_json(u_char *p, ngx_http_sse_stats_t *st,
    ngx_str_t *redis)
{
    return ngx_sprintf(p,
        "{\"subscribers\":%ui,\"channels\":%ui,\"events_published\":%uL,"
        "\"events_delivered\":%uL,\"events_kept\":%ui,\"slow_closed\":%uL,"
        "\"history_evicted\":%uL,\"zone_bytes_used\":%uz,"
        "\"zone_bytes_total\":%uz,\"workers\":%ui,\"redis\":\"%V\","
        "\"redis_logged\":%uL,\"redis_read\":%uL,"
        "\"redis_reconnects\":%uL,\"redis_ingress\":%s}\n",
        st->subscribers, st->channels, st->published, st->delivered,
        st->kept, st->slow_closed, st->evicted, st->bytes_used,
        st->bytes_total, st->workers, redis, st->redis_logged,
        st->redis_read, st->redis_reconnects,
        st->redis_ingress ? "true" : "false");
}


/* each metric with its # HELP and # TYPE lines */

#define ngx_http_sse_metric(name, type, help)                                 \
    "# HELP nginx_sse_" name " " help "\n"                                   \
    "# TYPE nginx_sse_" name " " type "\n"                                   \
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
