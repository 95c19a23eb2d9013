
/*
 * ngx_http_sse_module: the sse_publish location.  POST and PUT publish the
 * body (a text/event-stream batch, or one event of any other type), GET
 * tells a channel's state and DELETE forgets it; every answer is JSON.
 * With sse_redis, a publish or a delete goes to the Redis log, and is
 * answered once Redis has it (the node delivers it when it reads it back).
 *
 * Calls: ngx_http_sse_request.c, ngx_http_sse_event.c, the hub's one
 * publish entry point and channel calls, ngx_http_sse_redis.c's append.
 */


#include "ngx_http_sse.h"


/* a publish or delete waiting for Redis */

typedef struct {
    ngx_http_request_t             *r;
    ngx_http_sse_redis_op_t        *op;
    ngx_event_t                     timer;
    ngx_http_sse_target_t          *targets;
    ngx_uint_t                      ntargets;
    ngx_uint_t                      nevents;    /* 0: a delete */
} ngx_http_sse_pending_t;


static void ngx_http_sse_publish_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_publish_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_sse_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_sse_body_events(ngx_http_request_t *r,
    ngx_str_t *body, ngx_array_t *events, const char **err);
static ngx_int_t ngx_http_sse_type_arg(ngx_http_request_t *r,
    ngx_str_t *type);
static ngx_int_t ngx_http_sse_check_events(ngx_http_request_t *r,
    ngx_array_t *events, size_t max, const char **err);
static ngx_int_t ngx_http_sse_publish_prepare(ngx_http_request_t *r,
    ngx_array_t *events, ngx_str_t *names, ngx_uint_t n,
    ngx_http_sse_publish_t *pub);
static ngx_int_t ngx_http_sse_publish_redis(ngx_http_request_t *r,
    ngx_array_t *events, ngx_str_t *names, ngx_uint_t n);
static ngx_int_t ngx_http_sse_delete_redis(ngx_http_request_t *r,
    ngx_http_sse_target_t *t, ngx_uint_t n);
static ngx_int_t ngx_http_sse_redis_wait(ngx_http_request_t *r,
    ngx_http_sse_redis_entry_t *e, ngx_uint_t ne,
    ngx_http_sse_target_t *t, ngx_uint_t n, ngx_uint_t nevents);
static void ngx_http_sse_redis_done(void *data, ngx_int_t rc,
    ngx_http_sse_id_t *ids, ngx_uint_t n);
static void ngx_http_sse_redis_timeout(ngx_event_t *ev);
static void ngx_http_sse_pending_cleanup(void *data);
static ngx_int_t ngx_http_sse_channel_handler(ngx_http_request_t *r);

static ngx_int_t ngx_http_sse_send_targets(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_sse_target_t *t, ngx_uint_t n);


/* POSTs Redis did not answer in time, logged once a second at most */
static ngx_http_sse_log_limit_t  ngx_http_sse_timeout_log;


ngx_int_t
ngx_http_sse_publish_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    switch (r->method) {

    case NGX_HTTP_GET:
    case NGX_HTTP_DELETE:
        return ngx_http_sse_channel_handler(r);

    case NGX_HTTP_POST:
    case NGX_HTTP_PUT:
        break;

    default:
        return ngx_http_sse_not_allowed(r, "GET, POST, PUT, DELETE");
    }

    /*
     * nginx itself holds the body to client_max_body_size, as it arrives;
     * its 413 gets a JSON body from the error filter (ngx_http_sse_request.c)
     */

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_sse_publish_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_sse_publish_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_sse_publish_request(r));
}


/* the body is read: checked, framed, published, answered */

static ngx_int_t
ngx_http_sse_publish_request(ngx_http_request_t *r)
{
    const char               *err;
    ngx_int_t                 rc;
    ngx_str_t                 body, names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_uint_t                n;
    ngx_array_t               events;
    ngx_http_sse_publish_t    pub;
    ngx_http_sse_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    rc = ngx_http_sse_request_channels(r, slcf->publish, names, &n, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    if (ngx_http_sse_read_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sse_body_events(r, &body, &events, &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    if (rc == NGX_BUSY) {
        /* no publish holds the zone's lock for long */
        return ngx_http_sse_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, err);
    }

    rc = ngx_http_sse_check_events(r, &events, slcf->max_message_size, &err);
    if (rc != NGX_OK) {
        return ngx_http_sse_error(r, rc, err);
    }

    if (ngx_http_sse_redis_on(r)) {
        return ngx_http_sse_publish_redis(r, &events, names, n);
    }

    if (ngx_http_sse_publish_prepare(r, &events, names, n, &pub) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sse_hub_publish(&pub, r->connection->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_sse_error(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                  "no room in the sse zone");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sse_send_targets(r, NGX_HTTP_CREATED, pub.targets, n);
}


/* the body in one piece, from memory or temp file */

static ngx_int_t
ngx_http_sse_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         size;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
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
 * The events of the body: a text/event-stream body is parsed; any other
 * is the data of one event, of the type "?event=" says (default message).
 */

static ngx_int_t
ngx_http_sse_body_events(ngx_http_request_t *r, ngx_str_t *body,
    ngx_array_t *events, const char **err)
{
    ngx_http_sse_fields_t    *e;
    ngx_http_sse_loc_conf_t  *slcf;

    if (ngx_array_init(events, r->pool, 4, sizeof(ngx_http_sse_fields_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (r->headers_in.content_type
        && ngx_http_sse_is_event_stream(&r->headers_in.content_type->value))
    {
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

        return ngx_http_sse_parse_body(r->pool, body, slcf->max_events,
                                       events, err);
    }

    e = ngx_array_push(events);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->data = *body;

    return ngx_http_sse_type_arg(r, &e->type);
}


static ngx_int_t
ngx_http_sse_type_arg(ngx_http_request_t *r, ngx_str_t *type)
{
    u_char  *dst, *src;

    if (ngx_http_arg(r, (u_char *) "event", sizeof("event") - 1, type)
        != NGX_OK)
    {
        *type = ngx_http_sse_message;
        return NGX_OK;
    }

    dst = ngx_pnalloc(r->pool, type->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    src = type->data;
    type->data = dst;

    ngx_unescape_uri(&dst, &src, type->len, 0);
    type->len = dst - type->data;

    return NGX_OK;
}


/* NGX_OK, or the status to answer with: nothing is published half-way */

static ngx_int_t
ngx_http_sse_check_events(ngx_http_request_t *r, ngx_array_t *events,
    size_t max, const char **err)
{
    ngx_int_t               rc;
    ngx_uint_t              i;
    ngx_http_sse_fields_t  *e;

    e = events->elts;

    for (i = 0; i < events->nelts; i++) {
        rc = ngx_http_sse_check_event(&e[i], max, err);

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "sse: publish refused: %s", *err);
            return rc;
        }
    }

    return NGX_OK;
}


/* the events framed, the channels named, the location's retention */

static ngx_int_t
ngx_http_sse_publish_prepare(ngx_http_request_t *r, ngx_array_t *events,
    ngx_str_t *names, ngx_uint_t n, ngx_http_sse_publish_t *pub)
{
    ngx_uint_t                i;
    ngx_http_sse_fields_t    *e;
    ngx_http_sse_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    ngx_memzero(pub, sizeof(ngx_http_sse_publish_t));

    pub->nevents = events->nelts;
    pub->ntargets = n;
    pub->policy.history = slcf->history;
    pub->policy.history_ttl = slcf->history_ttl;

    pub->events = ngx_palloc(r->pool, pub->nevents * sizeof(ngx_str_t));
    pub->targets = ngx_pcalloc(r->pool, n * sizeof(ngx_http_sse_target_t));

    if (pub->events == NULL || pub->targets == NULL) {
        return NGX_ERROR;
    }

    e = events->elts;

    for (i = 0; i < pub->nevents; i++) {
        if (ngx_http_sse_frame(r->pool, &e[i], &pub->events[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        pub->targets[i].name = names[i];
    }

    return NGX_OK;
}


/*
 * With Redis, each event goes to each channel as one entry of the log, in
 * the order a local publish would give them ids.
 */

static ngx_int_t
ngx_http_sse_publish_redis(ngx_http_request_t *r, ngx_array_t *events,
    ngx_str_t *names, ngx_uint_t n)
{
    ngx_uint_t                   i, k;
    ngx_http_sse_fields_t       *ev;
    ngx_http_sse_target_t       *t;
    ngx_http_sse_loc_conf_t     *slcf;
    ngx_http_sse_redis_entry_t  *e, *entry;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sse_module);

    e = ngx_pcalloc(r->pool,
                    events->nelts * n * sizeof(ngx_http_sse_redis_entry_t));
    t = ngx_pcalloc(r->pool, n * sizeof(ngx_http_sse_target_t));

    if (e == NULL || t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ev = events->elts;
    entry = e;

    for (i = 0; i < events->nelts; i++) {
        for (k = 0; k < n; k++) {
            entry->channel = names[k];
            entry->data = ev[i].data;
            entry->history = slcf->history;
            entry->ttl = slcf->history_ttl;

            if (!(ev[i].type.len == ngx_http_sse_message.len
                  && ngx_strncmp(ev[i].type.data, "message", 7) == 0))
            {
                entry->type = ev[i].type;
            }

            entry++;
        }
    }

    for (k = 0; k < n; k++) {
        t[k].name = names[k];
    }

    return ngx_http_sse_redis_wait(r, e, events->nelts * n, t, n,
                                   events->nelts);
}


/* a delete entry per channel; the answer tells what this node had */

static ngx_int_t
ngx_http_sse_delete_redis(ngx_http_request_t *r, ngx_http_sse_target_t *t,
    ngx_uint_t n)
{
    ngx_uint_t                   k;
    ngx_http_sse_redis_entry_t  *e;

    e = ngx_pcalloc(r->pool, n * sizeof(ngx_http_sse_redis_entry_t));
    if (e == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (k = 0; k < n; k++) {
        ngx_str_set(&e[k].op, "delete");
        e[k].channel = t[k].name;
        e[k].history = -1;
        e[k].ttl = NGX_CONF_UNSET_MSEC;
    }

    return ngx_http_sse_redis_wait(r, e, n, t, n, 0);
}


/*
 * The entries go to Redis; the request waits for its answer at most
 * sse_redis_timeout.  The timer is not cancelable: an exiting worker
 * answers its publishers before it goes.
 */

static ngx_int_t
ngx_http_sse_redis_wait(ngx_http_request_t *r, ngx_http_sse_redis_entry_t *e,
    ngx_uint_t ne, ngx_http_sse_target_t *t, ngx_uint_t n,
    ngx_uint_t nevents)
{
    ngx_int_t                   rc;
    ngx_pool_cleanup_t         *cln;
    ngx_http_sse_pending_t     *p;
    ngx_http_sse_main_conf_t   *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sse_module);

    p = ngx_pcalloc(r->pool, sizeof(ngx_http_sse_pending_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (p == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p->r = r;
    p->targets = t;
    p->ntargets = n;
    p->nevents = nevents;

    rc = ngx_http_sse_redis_append(e, ne, ngx_http_sse_redis_done, p, &p->op);

    if (rc == NGX_DECLINED) {
        /* the link's own log line said why, once: not one per request */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sse: publish refused: redis unavailable");
        return ngx_http_sse_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis unavailable");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_sse_pending_cleanup;
    cln->data = p;

    p->timer.handler = ngx_http_sse_redis_timeout;
    p->timer.data = p;
    p->timer.log = r->connection->log;

    ngx_add_timer(&p->timer, smcf->redis.timeout);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_sse_redis_done(void *data, ngx_int_t rc, ngx_http_sse_id_t *ids,
    ngx_uint_t n)
{
    ngx_http_sse_pending_t *p = data;

    ngx_uint_t              k;
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_http_sse_target_t   info, *t;

    r = p->r;
    c = r->connection;
    p->op = NULL;

    if (p->timer.timer_set) {
        ngx_del_timer(&p->timer);
    }

    if (rc != NGX_OK) {
        rc = ngx_http_sse_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "redis unavailable");
        goto done;
    }

    if (p->nevents == 0) {
        /* a delete: what this node had before it, as without Redis */
        rc = ngx_http_sse_send_targets(r, NGX_HTTP_OK, p->targets,
                                       p->ntargets);
        goto done;
    }

    for (k = 0; k < p->ntargets; k++) {
        t = &p->targets[k];

        ngx_memzero(&info, sizeof(ngx_http_sse_target_t));
        info.name = t->name;
        (void) ngx_http_sse_hub_channel_info(&info);

        t->last_id = ids[(p->nevents - 1) * p->ntargets + k];
        t->nevents = p->nevents;
        t->nsubs = info.nsubs;
    }

    rc = ngx_http_sse_send_targets(r, NGX_HTTP_CREATED, p->targets,
                                   p->ntargets);

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_sse_redis_timeout(ngx_event_t *ev)
{
    ngx_http_sse_pending_t *p = ev->data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = p->r;
    c = r->connection;

    ngx_http_sse_redis_cancel(p->op);
    p->op = NULL;

    if (ngx_http_sse_log_due(&ngx_http_sse_timeout_log)) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "sse: redis did not answer a publish within "
                      "sse_redis_timeout (%ui since the last such line)",
                      ngx_http_sse_timeout_log.seen);
        ngx_http_sse_timeout_log.seen = 0;
    }

    rc = ngx_http_sse_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "redis unavailable");

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_sse_pending_cleanup(void *data)
{
    ngx_http_sse_pending_t *p = data;

    if (p->op) {
        ngx_http_sse_redis_cancel(p->op);
        p->op = NULL;
    }

    if (p->timer.timer_set) {
        ngx_del_timer(&p->timer);
    }
}


/* GET: a channel's state; DELETE: its history forgotten, its streams ended */

static ngx_int_t
ngx_http_sse_channel_handler(ngx_http_request_t *r)
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

    rc = ngx_http_sse_request_channels(r, slcf->publish, names, &n, &err);
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

        if (r->method == NGX_HTTP_DELETE && !ngx_http_sse_redis_on(r)) {
            rc = ngx_http_sse_hub_channel_delete(&t[i], NULL,
                                                 r->connection->log);

        } else {
            rc = ngx_http_sse_hub_channel_info(&t[i]);
        }

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

    if (r->method == NGX_HTTP_DELETE && ngx_http_sse_redis_on(r)) {
        return ngx_http_sse_delete_redis(r, t, n);
    }

    return ngx_http_sse_send_targets(r, NGX_HTTP_OK, t, n);
}


/*
 * {"channel":..,"id":..,"events":..,"subscribers":..}, or an array of them
 * for several channels
 */

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

        if (t[i].last_id.ms || t[i].last_id.seq) {
            p = ngx_http_sse_id_format(p, &t[i].last_id);
        }

        p = ngx_sprintf(p, "\",\"events\":%ui,\"subscribers\":%ui}",
                        t[i].nevents, t[i].nsubs);
    }

    if (n > 1) {
        *p++ = ']';
    }

    *p++ = '\n';

    return ngx_http_sse_send_json(r, status, buf, p - buf);
}
