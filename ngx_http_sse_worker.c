
/*
 * ngx_http_sse_module: one worker's side of the hub.
 *
 * A worker is woken by a datagram on its own socket when the zone changes
 * (the wake-up carries no data), reads the hub log past its cursor, copies
 * each channel's new events once into a block of its own, and hands them
 * to the stream side through the callbacks it registered.  It also keeps
 * its view of the channels it has subscribers on (lchans), and the
 * once-a-second housekeeping.
 *
 * Calls: ngx_http_sse_hub.c, and the stream side only through
 * ngx_http_sse_streams_t.
 */


#include "ngx_http_sse.h"

#include <sys/un.h>


/* how far ahead of this clock a resumed id may be and still be waited for */
#define NGX_HTTP_SSE_AHEAD_MAX  10000


typedef struct {
    ngx_http_sse_hub_t             *hub;
    ngx_http_sse_slot_t            *slot;
    ngx_http_sse_streams_t         *streams;
    ngx_connection_t               *wake;
    ngx_rbtree_t                    lchans;
    ngx_rbtree_node_t               sentinel;
    ngx_http_sse_delivery_t        *deliveries;
    ngx_uint_t                      ndeliveries;
    ngx_uint_t                      deliveries_size;
    ngx_http_sse_lchan_t           *touched;
    ngx_http_sse_id_t               read_id;    /* the last id read */
    ngx_event_t                     housekeeping;
    ngx_event_t                     deliver;
    ngx_log_t                      *log;
} ngx_http_sse_worker_t;


static void ngx_http_sse_worker_changed(void);
static ngx_uint_t ngx_http_sse_replay_ahead(ngx_http_sse_id_t *id);
static socklen_t ngx_http_sse_wake_addr(struct sockaddr_un *sun,
    ngx_pid_t pid);
static void ngx_http_sse_wake_workers(void);
static ngx_int_t ngx_http_sse_wake_open(ngx_cycle_t *cycle);
static void ngx_http_sse_wake_handler(ngx_event_t *rev);
static void ngx_http_sse_housekeeping_handler(ngx_event_t *ev);
static void ngx_http_sse_deliver_later(void);
static void ngx_http_sse_deliver_handler(ngx_event_t *ev);
static void ngx_http_sse_collect_locked(void);
static ngx_queue_t *ngx_http_sse_collect_size_locked(void);
static void ngx_http_sse_collect_reserve(void);
static void ngx_http_sse_collect_copy_locked(ngx_queue_t *first);
static void ngx_http_sse_collect_stop(ngx_http_sse_lchan_t *lc);
static ngx_http_sse_block_t *ngx_http_sse_block_new(ngx_http_sse_lchan_t *lc,
    size_t need);
static void ngx_http_sse_block_drop(ngx_http_sse_lchan_t *lc);
static ngx_http_sse_lchan_t *ngx_http_sse_lchan_lookup(
    ngx_http_sse_channel_t *ch);
static ngx_int_t ngx_http_sse_lchans_get_locked(ngx_http_sse_channel_t **chans,
    ngx_uint_t n, ngx_http_sse_lchan_t **lchans, ngx_log_t *log);
static void ngx_http_sse_lchans_put_locked(ngx_http_sse_lchan_t **lchans,
    ngx_uint_t n);
static void ngx_http_sse_lchan_put_locked(ngx_http_sse_lchan_t *lc);
static void ngx_http_sse_lchans_join_locked(ngx_http_sse_lchan_t **lchans,
    ngx_uint_t n, ngx_int_t delta);


static ngx_http_sse_worker_t  ngx_http_sse_worker;


ngx_int_t
ngx_http_sse_worker_init(ngx_cycle_t *cycle, ngx_http_sse_hub_t *hub,
    ngx_http_sse_streams_t *streams)
{
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    w->hub = hub;
    w->streams = streams;
    w->log = cycle->log;

    ngx_rbtree_init(&w->lchans, &w->sentinel, ngx_rbtree_insert_value);

    ngx_http_sse_hub_set(hub, ngx_http_sse_worker_changed);

    w->slot = ngx_http_sse_hub_attach(cycle->log);

    if (w->slot == NULL) {
        return NGX_OK;
    }

    if (ngx_http_sse_wake_open(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    w->housekeeping.handler = ngx_http_sse_housekeeping_handler;
    w->housekeeping.log = cycle->log;
    w->housekeeping.data = w;
    w->housekeeping.cancelable = 1;

    w->deliver.handler = ngx_http_sse_deliver_handler;
    w->deliver.log = cycle->log;
    w->deliver.data = w;

    ngx_add_timer(&w->housekeeping, 1000);

    return NGX_OK;
}


void
ngx_http_sse_worker_exit(ngx_cycle_t *cycle)
{
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    if (w->deliver.posted) {
        ngx_delete_posted_event(&w->deliver);
    }

    if (w->deliveries) {
        ngx_free(w->deliveries);
        w->deliveries = NULL;
        w->deliveries_size = 0;
    }

    if (w->wake) {
        ngx_close_connection(w->wake);
        w->wake = NULL;
    }

    if (w->slot == NULL) {
        return;
    }

    ngx_http_sse_hub_detach(w->slot);

    w->slot = NULL;
}


/*
 * The zone changed here: other workers are woken; this one writes to its
 * subscribers after the events of this loop iteration, so that it answers
 * its publisher first, and publishes that arrive together leave together,
 * one writev per subscriber.
 */

static void
ngx_http_sse_worker_changed(void)
{
    ngx_http_sse_wake_workers();
    ngx_http_sse_deliver_later();
}


/* waking the workers: an abstract address, nothing on disk */

static socklen_t
ngx_http_sse_wake_addr(struct sockaddr_un *sun, ngx_pid_t pid)
{
    u_char  *p;

    ngx_memzero(sun, sizeof(struct sockaddr_un));
    sun->sun_family = AF_UNIX;

    p = ngx_sprintf((u_char *) sun->sun_path + 1, "ngx_http_sse/%08xD/%P",
                    ngx_http_sse_worker.hub->sh->nonce, pid);

    return p - (u_char *) sun;
}


static void
ngx_http_sse_wake_workers(void)
{
    u_char                 buf[1];
    ngx_uint_t             i;
    socklen_t              len;
    ngx_err_t              err;
    ngx_http_sse_slot_t   *slot;
    ngx_http_sse_shctx_t  *sh;
    struct sockaddr_un     sun;

    if (ngx_http_sse_worker.wake == NULL) {
        return;
    }

    sh = ngx_http_sse_worker.hub->sh;
    buf[0] = 'w';

    for (i = 0; i < sh->nslots; i++) {
        slot = &sh->slots[i];

        if (slot->pid == 0 || slot->pid == ngx_pid || slot->nsubs == 0) {
            continue;
        }

        /* one datagram in flight per worker is enough */

        if (!ngx_atomic_cmp_set(&slot->wake, 0, 1)) {
            continue;
        }

        len = ngx_http_sse_wake_addr(&sun, slot->pid);

        if (sendto(ngx_http_sse_worker.wake->fd, buf, 1, 0,
                   (struct sockaddr *) &sun, len)
            == -1)
        {
            err = ngx_socket_errno;

            if (err == NGX_EAGAIN) {
                /* its queue is full, so it has wake-ups to read */
                continue;
            }

            slot->wake = 0;

            ngx_log_error(NGX_LOG_ERR, ngx_http_sse_worker.log, err,
                          "sse: waking worker %P failed", slot->pid);
        }
    }
}


static ngx_int_t
ngx_http_sse_wake_open(ngx_cycle_t *cycle)
{
    socklen_t            len;
    ngx_socket_t         s;
    ngx_connection_t    *c;
    struct sockaddr_un   sun;

    s = socket(AF_UNIX, SOCK_DGRAM, 0);

    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "sse: socket() for wake-ups failed");
        return NGX_ERROR;
    }

    len = ngx_http_sse_wake_addr(&sun, ngx_pid);

    if (bind(s, (struct sockaddr *) &sun, len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "sse: bind() of the wake-up socket failed");
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    if (ngx_nonblocking(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      ngx_nonblocking_n " failed");
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, cycle->log);
    if (c == NULL) {
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c->read->handler = ngx_http_sse_wake_handler;
    c->read->log = cycle->log;
    c->write->log = cycle->log;
    c->data = &ngx_http_sse_worker;

    /* on quit, ngx_close_idle_connections() calls us with c->close set */
    c->idle = 1;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_http_sse_worker.wake = c;

    return NGX_OK;
}


static void
ngx_http_sse_wake_handler(ngx_event_t *rev)
{
    u_char             buf[64];
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = rev->data;

    if (c->close) {
        ngx_log_error(NGX_LOG_INFO, rev->log, 0,
                      "sse: worker is exiting, ending its streams");
        ngx_http_sse_worker.streams->end_all();
        return;
    }

    for ( ;; ) {
        n = recv(c->fd, buf, sizeof(buf), 0);

        if (n >= 0) {
            continue;
        }

        err = ngx_socket_errno;

        if (err == NGX_EINTR) {
            continue;
        }

        if (err != NGX_EAGAIN) {
            ngx_log_error(NGX_LOG_ALERT, rev->log, err,
                          "sse: recv() on the wake-up socket failed");
        }

        break;
    }

    rev->ready = 0;

    if (ngx_http_sse_worker.slot) {
        /* cleared before the log is read: a later publish wakes us again */
        ngx_http_sse_worker.slot->wake = 0;
        ngx_memory_barrier();
    }

    ngx_http_sse_worker_read();

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "sse: cannot watch the wake-up socket");
    }
}


/*
 * Once a second: dead workers' slots and expired history go, and the log
 * is read in case a wake-up was lost; delivery itself never waits for this.
 */

static void
ngx_http_sse_housekeeping_handler(ngx_event_t *ev)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_http_sse_worker.streams->end_all();
        return;
    }

    ngx_http_sse_hub_expire(ev->log);

    ngx_http_sse_worker_read();

    ngx_add_timer(ev, 1000);
}


/* reads the log past this worker's cursor and delivers what it brought */

void
ngx_http_sse_worker_read(void)
{
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    if (w->slot == NULL || w->slot->nsubs == 0
        || w->slot->cursor == w->hub->sh->log_pos)
    {
        return;
    }

    ngx_http_sse_hub_lock();
    ngx_http_sse_collect_locked();
    ngx_http_sse_hub_unlock();

    w->streams->deliver(w->deliveries, w->ndeliveries, w->touched);
}


static void
ngx_http_sse_deliver_later(void)
{
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    if (w->slot && w->slot->nsubs && !w->deliver.posted) {
        ngx_post_event(&w->deliver, &ngx_posted_events);
    }
}


static void
ngx_http_sse_deliver_handler(ngx_event_t *ev)
{
    ngx_http_sse_worker_read();
}


/*
 * Reads the log past this worker's cursor.  Each channel's events are
 * copied once, appended to the channel's block; the streams of several
 * channels also get a list of the events in id order.  After a control
 * entry (DELETE), or when a channel's events found no room, the channel's
 * streams end (round_end): they resume from history.
 */

static void
ngx_http_sse_collect_locked(void)
{
    ngx_queue_t            *first;
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    w->ndeliveries = 0;
    w->touched = NULL;

    /*
     * the log is read up to here: what Redis entries it skipped (bad ones,
     * ones the zone had) count as read too
     */
    w->read_id = w->hub->sh->last_id;

    if (ngx_http_sse_id_gt(&w->hub->sh->redis.read_id, &w->read_id)) {
        w->read_id = w->hub->sh->redis.read_id;
    }

    if (w->slot->cursor == w->hub->sh->log_pos) {
        return;
    }

    first = ngx_http_sse_collect_size_locked();

    ngx_http_sse_collect_reserve();

    ngx_http_sse_collect_copy_locked(first);

    w->slot->cursor = w->hub->sh->log_pos;

    ngx_http_sse_hub_trim_log_locked();
}


/*
 * The first step: the unread part of the log (at its tail), what it brings
 * each of this worker's channels, and the list the streams of several
 * channels need.  Returns the first unread entry.
 */

static ngx_queue_t *
ngx_http_sse_collect_size_locked(void)
{
    size_t                   n;
    ngx_uint_t               nmulti;
    ngx_queue_t             *q, *first, *log;
    ngx_http_sse_lchan_t    *lc;
    ngx_http_sse_event_t    *ev;
    ngx_http_sse_worker_t   *w;
    ngx_http_sse_delivery_t *d;

    w = &ngx_http_sse_worker;
    log = &w->hub->sh->log;

    for (q = ngx_queue_last(log);
         q != ngx_queue_sentinel(log);
         q = ngx_queue_prev(q))
    {
        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);

        if (ev->pos <= w->slot->cursor) {
            break;
        }
    }

    first = ngx_queue_next(q);

    nmulti = 0;

    for (q = first; q != ngx_queue_sentinel(log); q = ngx_queue_next(q)) {
        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);

        lc = ngx_http_sse_lchan_lookup(ev->channel);

        if (lc == NULL || lc->round_end) {
            continue;
        }

        if (!lc->round_touched) {
            lc->round_touched = 1;
            lc->round_size = 0;
            lc->round_events = 0;
            lc->round = NULL;
            lc->round_next = w->touched;
            w->touched = lc;
        }

        if (!ngx_queue_empty(&lc->mlinks)) {
            /* an event, or where the streams end (ngx_http_sse_stop) */
            nmulti++;
        }

        if (ev->control) {
            lc->round_end = 1;
            continue;
        }

        lc->round_size += ev->len;
        lc->round_events++;
    }

    if (nmulti > w->deliveries_size) {
        for (n = 64; n < nmulti; n *= 2) { /* void */ }

        d = ngx_alloc(n * sizeof(ngx_http_sse_delivery_t), w->log);

        if (d) {
            if (w->deliveries) {
                ngx_free(w->deliveries);
            }

            w->deliveries = d;
            w->deliveries_size = n;

        } else {
            /* no list for the streams of several channels: theirs end */

            for (lc = w->touched; lc; lc = lc->round_next) {
                if (!ngx_queue_empty(&lc->mlinks)) {
                    lc->round_size = 0;
                }
            }
        }
    }

    return first;
}


/* the second step: room in each channel's block, or a new block */

static void
ngx_http_sse_collect_reserve(void)
{
    ngx_http_sse_block_t  *block;
    ngx_http_sse_lchan_t  *lc;

    for (lc = ngx_http_sse_worker.touched; lc; lc = lc->round_next) {
        lc->round_end = 0;
        lc->round_events = 0;

        if (lc->round_size == 0) {
            continue;
        }

        block = lc->block;

        if (block == NULL || block->size - block->len < lc->round_size) {
            block = ngx_http_sse_block_new(lc, lc->round_size);
            if (block == NULL) {
                continue;
            }
        }

        lc->round = block;
        lc->round_pos = block->pos + block->len;
    }
}


/* the third step: the copies; a channel without room ends its streams */

static void
ngx_http_sse_collect_copy_locked(ngx_queue_t *first)
{
    u_char                   *p;
    ngx_queue_t              *q, *log;
    ngx_http_sse_block_t     *block;
    ngx_http_sse_lchan_t     *lc;
    ngx_http_sse_event_t     *ev;
    ngx_http_sse_worker_t    *w;
    ngx_http_sse_delivery_t  *d;

    w = &ngx_http_sse_worker;
    log = &w->hub->sh->log;

    for (q = first; q != ngx_queue_sentinel(log); q = ngx_queue_next(q)) {
        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);

        lc = ngx_http_sse_lchan_lookup(ev->channel);

        if (lc == NULL || lc->round_end) {
            continue;
        }

        block = lc->round;

        if (ev->control || block == NULL) {
            lc->round_end = 1;
            ngx_http_sse_collect_stop(lc);
            continue;
        }

        p = block->pos + block->len;
        ngx_memcpy(p, ev->data, ev->len);
        block->len += ev->len;
        lc->round_events++;

        if (!ngx_queue_empty(&lc->mlinks)) {
            d = &w->deliveries[w->ndeliveries++];
            d->lchan = lc;
            d->block = block;
            d->pos = p;
            d->len = ev->len;
        }
    }

    for (lc = w->touched; lc; lc = lc->round_next) {
        if (lc->round) {
            lc->round_size = lc->round->pos + lc->round->len - lc->round_pos;
        }
    }
}


/*
 * The streams of several channels end where this channel's events stop
 * (a DELETE, or no room for them), before any later event of their other
 * channels: they resume from their last id without a gap.
 */

static void
ngx_http_sse_collect_stop(ngx_http_sse_lchan_t *lc)
{
    ngx_http_sse_worker_t    *w;
    ngx_http_sse_delivery_t  *d;

    w = &ngx_http_sse_worker;

    if (ngx_queue_empty(&lc->mlinks)
        || w->ndeliveries >= w->deliveries_size)
    {
        /* no list: no event of several channels goes out in this read */
        return;
    }

    d = &w->deliveries[w->ndeliveries++];
    d->lchan = lc;
    d->block = NULL;
    d->pos = NULL;
    d->len = 0;
}


/* blocks: the bufs of streams that still owe the old block keep it */

static ngx_http_sse_block_t *
ngx_http_sse_block_new(ngx_http_sse_lchan_t *lc, size_t need)
{
    size_t                 n;
    ngx_http_sse_block_t  *block;

    n = ngx_min(4 * need, NGX_HTTP_SSE_BLOCK_MAX);
    n = ngx_max(n, NGX_HTTP_SSE_BLOCK_MIN);
    n = ngx_max(n, need);

    block = ngx_alloc(offsetof(ngx_http_sse_block_t, data) + n,
                      ngx_http_sse_worker.log);
    if (block == NULL) {
        return NULL;
    }

    block->refs = 1;
    block->lchan = lc;
    block->pos = block->data;
    block->len = 0;
    block->size = n;

    ngx_http_sse_block_drop(lc);

    lc->block = block;

    return block;
}


void
ngx_http_sse_block_release(ngx_http_sse_block_t *block)
{
    if (--block->refs == 0) {
        ngx_free(block);
        return;
    }

    if (block->refs == 1 && block->lchan) {
        /* only its channel holds it: no stream owes any of it */
        block->lchan->block = NULL;
        ngx_free(block);
    }
}


/* the channel lets go of its block; streams that owe some of it keep it */

static void
ngx_http_sse_block_drop(ngx_http_sse_lchan_t *lc)
{
    ngx_http_sse_block_t  *block;

    block = lc->block;

    if (block == NULL) {
        return;
    }

    lc->block = NULL;
    block->lchan = NULL;

    ngx_http_sse_block_release(block);
}


/* the worker's own channels */

static ngx_http_sse_lchan_t *
ngx_http_sse_lchan_lookup(ngx_http_sse_channel_t *ch)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node, *sentinel;

    key = (ngx_rbtree_key_t) ch;
    node = ngx_http_sse_worker.lchans.root;
    sentinel = ngx_http_sse_worker.lchans.sentinel;

    while (node != sentinel) {
        if (key == node->key) {
            return (ngx_http_sse_lchan_t *) node;
        }

        node = (key < node->key) ? node->left : node->right;
    }

    return NULL;
}


/* this worker's view of n pinned channels, made where it has none yet */

static ngx_int_t
ngx_http_sse_lchans_get_locked(ngx_http_sse_channel_t **chans, ngx_uint_t n,
    ngx_http_sse_lchan_t **lchans, ngx_log_t *log)
{
    ngx_uint_t             i;
    ngx_http_sse_lchan_t  *lc;
    ngx_http_sse_wchan_t  *wc;

    ngx_memzero(lchans, n * sizeof(ngx_http_sse_lchan_t *));

    for (i = 0; i < n; i++) {
        lc = ngx_http_sse_lchan_lookup(chans[i]);

        if (lc == NULL) {
            lc = ngx_alloc(sizeof(ngx_http_sse_lchan_t), log);
            if (lc == NULL) {
                ngx_http_sse_lchans_put_locked(lchans, i);
                return NGX_ERROR;
            }

            wc = ngx_http_sse_hub_wchan_add_locked(ngx_http_sse_worker.slot,
                                                   chans[i]);
            if (wc == NULL) {
                ngx_free(lc);
                ngx_http_sse_lchans_put_locked(lchans, i);
                return NGX_DECLINED;
            }

            ngx_memzero(lc, sizeof(ngx_http_sse_lchan_t));

            lc->node.key = (ngx_rbtree_key_t) chans[i];
            lc->channel = chans[i];
            lc->wchan = wc;
            ngx_queue_init(&lc->links);
            ngx_queue_init(&lc->mlinks);

            ngx_rbtree_insert(&ngx_http_sse_worker.lchans, &lc->node);
        }

        lchans[i] = lc;
    }

    return NGX_OK;
}


static void
ngx_http_sse_lchans_put_locked(ngx_http_sse_lchan_t **lchans, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (lchans[i]) {
            ngx_http_sse_lchan_put_locked(lchans[i]);
            lchans[i] = NULL;
        }
    }
}


/* a channel this worker no longer has subscribers on is let go */

static void
ngx_http_sse_lchan_put_locked(ngx_http_sse_lchan_t *lc)
{
    if (lc->n) {
        return;
    }

    ngx_http_sse_hub_wchan_free_locked(lc->wchan);

    ngx_http_sse_block_drop(lc);

    ngx_rbtree_delete(&ngx_http_sse_worker.lchans, &lc->node);
    ngx_free(lc);
}


/* one subscriber more (delta 1) or less (-1) on each of n channels */

static void
ngx_http_sse_lchans_join_locked(ngx_http_sse_lchan_t **lchans, ngx_uint_t n,
    ngx_int_t delta)
{
    ngx_uint_t             i;
    ngx_http_sse_wchan_t  *wchans[NGX_HTTP_SSE_MAX_CHANNELS];

    for (i = 0; i < n; i++) {
        lchans[i]->n += delta;
        wchans[i] = lchans[i]->wchan;
    }

    if (delta > 0) {
        ngx_http_sse_hub_join_locked(ngx_http_sse_worker.slot, wchans, n);

    } else {
        ngx_http_sse_hub_leave_locked(ngx_http_sse_worker.slot, wchans, n);
    }
}


/*
 * A new subscriber: the worker first reads the log up to its end, so that
 * what the subscriber is owed splits exactly into the kept events up to
 * this worker's cursor (its replay, ngx_http_sse_worker_replay) and
 * everything after (live).
 */

ngx_int_t
ngx_http_sse_worker_subscribe(ngx_http_sse_subscribe_t *s, ngx_log_t *log)
{
    ngx_int_t                rc;
    ngx_http_sse_worker_t   *w;
    ngx_http_sse_channel_t  *chans[NGX_HTTP_SSE_MAX_CHANNELS];

    w = &ngx_http_sse_worker;

    if (w->slot == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "sse: this worker has no hub slot");
        return NGX_ERROR;
    }

    if (s->n == 0 || s->n > NGX_HTTP_SSE_MAX_CHANNELS) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "sse: a stream of %ui channels, 1 to %d are allowed",
                      s->n, NGX_HTTP_SSE_MAX_CHANNELS);
        return NGX_ERROR;
    }

    ngx_http_sse_hub_lock();

    ngx_http_sse_collect_locked();

    rc = ngx_http_sse_hub_channels_get_locked(s->names, s->n,
                                              s->max_subscribers, chans);
    if (rc != NGX_OK) {
        goto done;
    }

    rc = ngx_http_sse_lchans_get_locked(chans, s->n, s->lchans, log);

    if (rc == NGX_OK) {
        ngx_http_sse_lchans_join_locked(s->lchans, s->n, 1);
    }

    /* the worker's channels hold them now */
    ngx_http_sse_hub_channels_put_locked(chans, s->n);

done:

    ngx_http_sse_hub_unlock();

    /* events read above go to the subscribers that were already here */
    w->streams->deliver(w->deliveries, w->ndeliveries, w->touched);

    return rc;
}


/*
 * The next piece of a stream's replay, up to what this worker has read of
 * the log: the events after that reach the stream live.  NGX_DONE: the
 * stream is live from now on.  NGX_AGAIN: nothing yet, the stream waits
 * (rp->hold: the ids are Redis's, the same on every node, and the stream
 * resumes after one this node has not read yet: it was sent that far by
 * another node; were it live now, it would get again what it had).
 */

ngx_int_t
ngx_http_sse_worker_replay(ngx_http_sse_lchan_t **lchans, ngx_uint_t n,
    ngx_http_sse_replay_t *rp, ngx_log_t *log)
{
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_http_sse_channel_t  *chans[NGX_HTTP_SSE_MAX_CHANNELS];

    if (ngx_http_sse_worker.slot == NULL || n > NGX_HTTP_SSE_MAX_CHANNELS) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        chans[i] = lchans[i]->channel;
    }

    ngx_http_sse_hub_lock();

    rc = ngx_http_sse_hub_replay_locked(chans, n,
                                        ngx_http_sse_worker.slot->cursor, rp,
                                        log);

    ngx_http_sse_hub_unlock();

    if (rc == NGX_DONE && rp->hold && ngx_http_sse_replay_ahead(&rp->last)) {
        return NGX_AGAIN;
    }

    return rc;
}


/*
 * An id after what this worker has read, but not one from the future: an
 * id over NGX_HTTP_SSE_AHEAD_MAX ahead of the ids' clock (Redis's, as this
 * worker knows it, not this host's, which may be off) is no node's but a
 * client's own, and the stream would wait for it for ever, so it is live
 * at once, as without Redis.
 */

static ngx_uint_t
ngx_http_sse_replay_ahead(ngx_http_sse_id_t *id)
{
    if (!ngx_http_sse_id_gt(id, &ngx_http_sse_worker.read_id)) {
        return 0;
    }

    return id->ms <= ngx_http_sse_hub_now() + NGX_HTTP_SSE_AHEAD_MAX;
}


void
ngx_http_sse_worker_unsubscribe(ngx_http_sse_lchan_t **lchans, ngx_uint_t n)
{
    if (ngx_http_sse_worker.slot == NULL) {
        return;
    }

    ngx_http_sse_hub_lock();

    ngx_http_sse_lchans_join_locked(lchans, n, -1);
    ngx_http_sse_lchans_put_locked(lchans, n);

    ngx_http_sse_hub_unlock();
}
