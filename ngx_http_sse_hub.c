
/*
 * ngx_http_sse_module: the hub in shared memory.
 *
 * Everything in the zone is guarded by the slab pool's own mutex, which the
 * master unlocks if a worker dies holding it; every update below leaves the
 * queues walkable at each step.
 *
 * An event is in the hub log until every worker with subscribers has read
 * past it, and in its channel's history until count, ttl or room evicts it;
 * it is freed when it is in neither.  A channel is freed when nothing refers
 * to it: no event, no worker's subscribers, no operation holding it.
 */


#include "ngx_http_sse.h"

#include <sys/un.h>


typedef struct {
    ngx_http_sse_hub_t             *hub;
    ngx_http_sse_slot_t            *slot;
    ngx_connection_t               *wake;
    ngx_rbtree_t                    lchans;
    ngx_rbtree_node_t               sentinel;
    ngx_http_sse_delivery_t        *deliveries;
    ngx_uint_t                      ndeliveries;
    ngx_uint_t                      deliveries_size;
    ngx_http_sse_lchan_t           *touched;
    ngx_event_t                     housekeeping;
    ngx_event_t                     deliver;
    ngx_log_t                      *log;
} ngx_http_sse_worker_t;


static void ngx_http_sse_hub_lock(void);
static void ngx_http_sse_hub_unlock(void);
static ngx_http_sse_channel_t *ngx_http_sse_channel_get_locked(ngx_str_t *name,
    ngx_uint_t create);
static void ngx_http_sse_channel_put_locked(ngx_http_sse_channel_t *ch);
static void *ngx_http_sse_alloc_locked(size_t size);
static ngx_uint_t ngx_http_sse_evict_oldest_locked(void);
static void ngx_http_sse_history_remove_locked(ngx_http_sse_event_t *ev);
static void ngx_http_sse_event_free_locked(ngx_http_sse_event_t *ev);
static void ngx_http_sse_expire_locked(ngx_http_sse_channel_t *ch,
    uint64_t now);
static void ngx_http_sse_trim_log_locked(void);
static void ngx_http_sse_collect_locked(void);
static void ngx_http_sse_deliver(void);
static void ngx_http_sse_deliver_later(void);
static void ngx_http_sse_deliver_handler(ngx_event_t *ev);
static void ngx_http_sse_slot_release_locked(ngx_http_sse_slot_t *slot);
static void ngx_http_sse_wake_workers(void);
static ngx_int_t ngx_http_sse_wake_open(ngx_cycle_t *cycle);
static void ngx_http_sse_wake_handler(ngx_event_t *rev);
static void ngx_http_sse_housekeeping_handler(ngx_event_t *ev);
static void ngx_http_sse_reap_slots_locked(ngx_log_t *log);
static ngx_http_sse_lchan_t *ngx_http_sse_lchan_lookup(
    ngx_http_sse_channel_t *ch);
static void ngx_http_sse_lchan_put_locked(ngx_http_sse_lchan_t *lc);
static void ngx_http_sse_block_drop(ngx_http_sse_lchan_t *lc);
static ngx_http_sse_msg_t *ngx_http_sse_replay_locked(
    ngx_http_sse_channel_t **chans, ngx_uint_t n, ngx_http_sse_id_t *after,
    uint64_t now);
static uint64_t ngx_http_sse_now(void);


/*
 * The pages of the zone an event of len bytes (id line aside) takes when
 * it is larger than the slab allocator's largest slot; 0 when it is not.
 * The id line is counted at its longest, here and in the allocation.
 */

#define ngx_http_sse_event_pages(len)                                         \
    ((offsetof(ngx_http_sse_event_t, data) + NGX_HTTP_SSE_ID_LINE_LEN + (len) \
      > ngx_pagesize / 2)                                                     \
     ? (offsetof(ngx_http_sse_event_t, data) + NGX_HTTP_SSE_ID_LINE_LEN      \
        + (len) + ngx_pagesize - 1) / ngx_pagesize                            \
     : 0)


/* history entries housekeeping looks at per second and worker, at most */
#define NGX_HTTP_SSE_EXPIRE_STEPS  10000


static ngx_http_sse_worker_t  ngx_http_sse_worker;


#define ngx_http_sse_id_gt(a, b)                                              \
    ((a)->ms > (b)->ms || ((a)->ms == (b)->ms && (a)->seq > (b)->seq))


ngx_int_t
ngx_http_sse_hub_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sse_hub_t  *ohub = data;

    size_t                 len;
    ngx_http_sse_hub_t    *hub;
    ngx_http_sse_shctx_t  *sh;

    hub = shm_zone->data;

    if (ohub) {
        /* a reload: keep the channels, history, ids and counters */
        hub->sh = ohub->sh;
        hub->shpool = ohub->shpool;
        return NGX_OK;
    }

    hub->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        hub->sh = hub->shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(hub->shpool, sizeof(ngx_http_sse_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    hub->sh = sh;
    hub->shpool->data = sh;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->log);
    ngx_queue_init(&sh->history);

    /*
     * wake-up sockets are named in the network namespace, which nginx
     * instances in other pid namespaces (containers on the host network)
     * may share with the same worker pids: the name carries this zone's
     * nonce (the mapping's address differs per instance under ASLR)
     */

    sh->nonce = (uint32_t) (ngx_random() ^ ngx_time() ^ ngx_pid
                            ^ (uintptr_t) shm_zone->shm.addr
                            ^ ((uint64_t) (uintptr_t) shm_zone->shm.addr
                               >> 32));

    len = sizeof(" in sse zone \"\"") + shm_zone->shm.name.len;

    hub->shpool->log_ctx = ngx_slab_alloc(hub->shpool, len);
    if (hub->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(hub->shpool->log_ctx, " in sse zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is answered by eviction or 507, not by a log line */
    hub->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_sse_hub_lock(void)
{
    ngx_shmtx_lock(&ngx_http_sse_worker.hub->shpool->mutex);
}


static void
ngx_http_sse_hub_unlock(void)
{
    ngx_shmtx_unlock(&ngx_http_sse_worker.hub->shpool->mutex);
}


static uint64_t
ngx_http_sse_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * A worker that died without exit_process (killed, crashed) leaves its slot
 * behind: its cursor would hold the log, and so the zone, forever.  The
 * master respawns a crashed worker (whose init_worker reaps), but not an
 * old one that died during a reload: housekeeping reaps those.
 */

static void
ngx_http_sse_reap_slots_locked(ngx_log_t *log)
{
    ngx_uint_t             i;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_worker.hub->sh;

    for (i = 0; i < sh->nslots; i++) {

        if (sh->slots[i].pid
            && sh->slots[i].pid != ngx_pid
            && kill(sh->slots[i].pid, 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "sse: releasing the hub slot of exited worker %P",
                          sh->slots[i].pid);
            ngx_http_sse_slot_release_locked(&sh->slots[i]);
        }
    }
}


ngx_int_t
ngx_http_sse_hub_init_worker(ngx_cycle_t *cycle, ngx_http_sse_hub_t *hub)
{
    ngx_uint_t              i;
    ngx_http_sse_slot_t    *slot;
    ngx_http_sse_shctx_t   *sh;
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    w->hub = hub;
    w->log = cycle->log;

    ngx_rbtree_init(&w->lchans, &w->sentinel, ngx_rbtree_insert_value);

    sh = hub->sh;
    slot = NULL;

    ngx_http_sse_hub_lock();

    ngx_http_sse_reap_slots_locked(cycle->log);

    for (i = 0; i < sh->nslots; i++) {
        if (slot == NULL && sh->slots[i].pid == 0) {
            slot = &sh->slots[i];
        }
    }

    if (slot == NULL && sh->nslots < NGX_HTTP_SSE_MAX_SLOTS) {
        slot = &sh->slots[sh->nslots++];
    }

    if (slot) {
        slot->pid = ngx_pid;
        slot->wake = 0;
        slot->cursor = sh->last_id.seq;
        slot->nsubs = 0;
        ngx_queue_init(&slot->wchans);
    }

    ngx_http_sse_hub_unlock();

    if (slot == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "sse: no free hub slot for worker %P, "
                      "streams in this worker will be refused", ngx_pid);
        return NGX_OK;
    }

    w->slot = slot;

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
ngx_http_sse_hub_exit_worker(ngx_cycle_t *cycle)
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

    ngx_http_sse_hub_lock();
    ngx_http_sse_slot_release_locked(w->slot);
    ngx_http_sse_hub_unlock();

    w->slot = NULL;
}


static void
ngx_http_sse_slot_release_locked(ngx_http_sse_slot_t *slot)
{
    ngx_queue_t           *q;
    ngx_http_sse_wchan_t  *wc;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_worker.hub->sh;

    while (!ngx_queue_empty(&slot->wchans)) {
        q = ngx_queue_head(&slot->wchans);
        wc = ngx_queue_data(q, ngx_http_sse_wchan_t, slot_q);

        wc->channel->nsubs -= wc->nsubs;
        sh->subscribers -= wc->nsubs;

        ngx_queue_remove(&wc->slot_q);
        ngx_queue_remove(&wc->chan_q);

        ngx_http_sse_channel_put_locked(wc->channel);
        ngx_slab_free_locked(ngx_http_sse_worker.hub->shpool, wc);
    }

    slot->nsubs = 0;
    slot->pid = 0;

    ngx_http_sse_trim_log_locked();
}


/* channels */

static ngx_http_sse_channel_t *
ngx_http_sse_channel_get_locked(ngx_str_t *name, ngx_uint_t create)
{
    uint32_t                 hash;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_channel_t  *ch;

    sh = ngx_http_sse_worker.hub->sh;

    hash = ngx_crc32_short(name->data, name->len);

    ch = (ngx_http_sse_channel_t *) ngx_str_rbtree_lookup(&sh->rbtree, name,
                                                           hash);
    if (ch) {
        ch->refs++;
        return ch;
    }

    if (!create) {
        return NULL;
    }

    ch = ngx_http_sse_alloc_locked(offsetof(ngx_http_sse_channel_t, name)
                                   + name->len);
    if (ch == NULL) {
        return NULL;
    }

    ngx_memzero(ch, offsetof(ngx_http_sse_channel_t, name));
    ngx_memcpy(ch->name, name->data, name->len);

    ch->sn.node.key = hash;
    ch->sn.str.len = name->len;
    ch->sn.str.data = ch->name;

    ngx_queue_init(&ch->history);
    ngx_queue_init(&ch->wchans);

    ch->refs = 1;

    ngx_rbtree_insert(&sh->rbtree, &ch->sn.node);
    sh->channels++;

    return ch;
}


static void
ngx_http_sse_channel_put_locked(ngx_http_sse_channel_t *ch)
{
    ngx_http_sse_hub_t  *hub;

    if (--ch->refs) {
        return;
    }

    hub = ngx_http_sse_worker.hub;

    ngx_rbtree_delete(&hub->sh->rbtree, &ch->sn.node);
    hub->sh->channels--;

    ngx_slab_free_locked(hub->shpool, ch);
}


/* memory: on a full zone the oldest history goes first */

static void *
ngx_http_sse_alloc_locked(size_t size)
{
    void  *p;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(ngx_http_sse_worker.hub->shpool, size);

        if (p || !ngx_http_sse_evict_oldest_locked()) {
            return p;
        }
    }
}


static ngx_uint_t
ngx_http_sse_evict_oldest_locked(void)
{
    ngx_queue_t           *q;
    ngx_http_sse_shctx_t  *sh;
    ngx_http_sse_event_t  *ev;

    sh = ngx_http_sse_worker.hub->sh;

    if (ngx_queue_empty(&sh->history)) {
        return 0;
    }

    q = ngx_queue_head(&sh->history);
    ev = ngx_queue_data(q, ngx_http_sse_event_t, all);

    ngx_http_sse_history_remove_locked(ev);
    sh->evicted++;

    return 1;
}


static void
ngx_http_sse_history_remove_locked(ngx_http_sse_event_t *ev)
{
    ngx_uint_t             pages;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_worker.hub->sh;

    ngx_queue_remove(&ev->chan);
    ngx_queue_remove(&ev->all);
    ev->in_history = 0;

    ev->channel->nevents--;
    sh->kept--;

    pages = ngx_http_sse_event_pages(ev->len);

    if (pages) {
        sh->hist_pages -= pages;

    } else {
        sh->hist_small--;
    }

    if (!ev->in_log) {
        ngx_http_sse_event_free_locked(ev);
    }
}


static void
ngx_http_sse_event_free_locked(ngx_http_sse_event_t *ev)
{
    ngx_http_sse_channel_t  *ch;

    ch = ev->channel;

    ngx_slab_free_locked(ngx_http_sse_worker.hub->shpool, ev);
    ngx_http_sse_channel_put_locked(ch);
}


static void
ngx_http_sse_expire_locked(ngx_http_sse_channel_t *ch, uint64_t now)
{
    ngx_queue_t           *q;
    ngx_http_sse_event_t  *ev;

    if (ch->history_ttl == 0) {
        return;
    }

    while (!ngx_queue_empty(&ch->history)) {
        q = ngx_queue_head(&ch->history);
        ev = ngx_queue_data(q, ngx_http_sse_event_t, chan);

        if (ev->id.ms + ch->history_ttl > now) {
            break;
        }

        ngx_http_sse_history_remove_locked(ev);
        ngx_http_sse_worker.hub->sh->evicted++;
    }
}


/* the hub log is kept until every worker with subscribers has read it */

static void
ngx_http_sse_trim_log_locked(void)
{
    uint64_t               min;
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_http_sse_shctx_t  *sh;
    ngx_http_sse_event_t  *ev;

    sh = ngx_http_sse_worker.hub->sh;

    min = sh->last_id.seq;

    for (i = 0; i < sh->nslots; i++) {
        if (sh->slots[i].pid && sh->slots[i].nsubs
            && sh->slots[i].cursor < min)
        {
            min = sh->slots[i].cursor;
        }
    }

    while (!ngx_queue_empty(&sh->log)) {
        q = ngx_queue_head(&sh->log);
        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);

        if (ev->id.seq > min) {
            break;
        }

        ngx_queue_remove(&ev->log);
        ev->in_log = 0;

        if (!ev->in_history) {
            ngx_http_sse_event_free_locked(ev);
        }
    }
}


u_char *
ngx_http_sse_id_format(u_char *p, ngx_http_sse_id_t *id)
{
    return ngx_sprintf(p, "%uL-%uL", id->ms, id->seq);
}


ngx_int_t
ngx_http_sse_id_parse(u_char *p, size_t len, ngx_http_sse_id_t *id)
{
    u_char    *dash, *last;
    uint64_t   v[2];
    ngx_uint_t i;

    last = p + len;

    dash = ngx_strlchr(p, last, '-');
    if (dash == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < 2; i++) {
        /* 19 digits always fit in 64 bits */

        if (p == dash || dash - p > 19) {
            return NGX_ERROR;
        }

        v[i] = 0;

        while (p < dash) {
            if (*p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            v[i] = v[i] * 10 + (*p++ - '0');
        }

        p = dash + 1;
        dash = last;
    }

    id->ms = v[0];
    id->seq = v[1];

    return NGX_OK;
}


/*
 * The one publish entry point, for HTTP and Redis ingress alike: all of
 * pub->events go to all of pub->targets, or nothing does.
 */

ngx_int_t
ngx_http_sse_hub_publish(ngx_http_sse_publish_t *pub, ngx_log_t *log)
{
    u_char                  *p;
    uint64_t                 now;
    ngx_uint_t               i, k, n, failed, need, pages;
    ngx_http_sse_id_t        id;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_event_t    *ev, **evs;
    ngx_http_sse_target_t   *t;
    ngx_http_sse_channel_t  *chans[NGX_HTTP_SSE_MAX_CHANNELS];

    if (ngx_http_sse_worker.hub == NULL) {
        return NGX_ERROR;
    }

    sh = ngx_http_sse_worker.hub->sh;
    evs = pub->scratch;
    now = ngx_http_sse_now();
    failed = 0;
    n = 0;

    ngx_http_sse_hub_lock();

    for (k = 0; k < pub->ntargets; k++) {
        chans[k] = ngx_http_sse_channel_get_locked(&pub->targets[k].name, 1);

        if (chans[k] == NULL) {
            failed = 1;
            break;
        }
    }

    /*
     * what can never fit must not evict every channel's history first:
     * the pages its large events need are compared with the free pages
     * plus all that evicting the whole history could free (a small kept
     * event frees at most the page it is in)
     */

    if (!failed) {
        need = 0;

        for (i = 0; i < pub->nevents; i++) {
            need += ngx_http_sse_event_pages(pub->events[i].len);
        }

        if (need * pub->ntargets > ngx_http_sse_worker.hub->shpool->pfree
                                   + sh->hist_pages + sh->hist_small)
        {
            failed = 1;
        }
    }

    if (!failed) {
        for (n = 0; n < pub->nevents * pub->ntargets; n++) {
            evs[n] = ngx_http_sse_alloc_locked(
                          offsetof(ngx_http_sse_event_t, data)
                          + NGX_HTTP_SSE_ID_LINE_LEN
                          + pub->events[n / pub->ntargets].len);

            if (evs[n] == NULL) {
                failed = 1;
                break;
            }
        }
    }

    if (failed) {
        while (n) {
            ngx_slab_free_locked(ngx_http_sse_worker.hub->shpool, evs[--n]);
        }

        while (k) {
            ngx_http_sse_channel_put_locked(chans[--k]);
        }

        ngx_http_sse_hub_unlock();

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "sse: zone \"%V\" has no room for %ui event(s)",
                      &ngx_http_sse_worker.hub->shm_zone->shm.name,
                      pub->nevents * pub->ntargets);

        return NGX_DECLINED;
    }

    /* room for all of it: now give ids and link, in order */

    id.ms = ngx_max(now, sh->last_id.ms);
    id.seq = sh->last_id.seq;

    /*
     * the ids are taken before anything is linked: should this worker die
     * in the loop below (the master then frees the lock), no id is given
     * twice
     */

    sh->last_id.ms = id.ms;
    sh->last_id.seq = id.seq + pub->nevents * pub->ntargets;

    for (n = 0; n < pub->nevents * pub->ntargets; n++) {
        i = n / pub->ntargets;
        k = n % pub->ntargets;

        id.seq++;

        ev = evs[n];
        ev->channel = chans[k];
        ev->id = id;
        ev->control = 0;

        p = ngx_sprintf(ev->data, "id: %uL-%uL\n", id.ms, id.seq);
        p = ngx_cpymem(p, pub->events[i].data, pub->events[i].len);
        ev->len = p - ev->data;

        chans[k]->refs++;
        chans[k]->last_id = id;

        ngx_queue_insert_tail(&sh->log, &ev->log);
        ev->in_log = 1;

        ngx_queue_insert_tail(&chans[k]->history, &ev->chan);
        ngx_queue_insert_tail(&sh->history, &ev->all);
        ev->in_history = 1;
        chans[k]->nevents++;
        sh->kept++;

        pages = ngx_http_sse_event_pages(ev->len);

        if (pages) {
            sh->hist_pages += pages;

        } else {
            sh->hist_small++;
        }
    }

    sh->published += pub->nevents * pub->ntargets;

    for (k = 0; k < pub->ntargets; k++) {
        t = &pub->targets[k];

        chans[k]->history_max = pub->history;
        chans[k]->history_ttl = pub->history_ttl;

        if (pub->history_ttl
            && (sh->min_ttl == 0 || pub->history_ttl < sh->min_ttl))
        {
            sh->min_ttl = pub->history_ttl;
        }

        while (chans[k]->nevents > pub->history) {
            ev = ngx_queue_data(ngx_queue_head(&chans[k]->history),
                                ngx_http_sse_event_t, chan);
            ngx_http_sse_history_remove_locked(ev);
            sh->evicted++;
        }

        ngx_http_sse_expire_locked(chans[k], now);

        t->last_id = chans[k]->last_id;
        t->nsubs = chans[k]->nsubs;
        t->found = 1;
    }

    for (k = 0; k < pub->ntargets; k++) {
        ngx_http_sse_channel_put_locked(chans[k]);
    }

    ngx_http_sse_trim_log_locked();

    ngx_http_sse_hub_unlock();

    ngx_http_sse_wake_workers();
    ngx_http_sse_deliver_later();

    return NGX_OK;
}


/* GET and DELETE of a channel on the publish endpoint */

ngx_int_t
ngx_http_sse_hub_lookup(ngx_http_sse_target_t *t, ngx_uint_t del)
{
    ngx_queue_t             *q;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_event_t    *ev;
    ngx_http_sse_channel_t  *ch;

    if (ngx_http_sse_worker.hub == NULL) {
        return NGX_ERROR;
    }

    sh = ngx_http_sse_worker.hub->sh;

    ngx_http_sse_hub_lock();

    ch = ngx_http_sse_channel_get_locked(&t->name, 0);

    if (ch == NULL) {
        ngx_http_sse_hub_unlock();
        t->found = 0;
        return NGX_OK;
    }

    ngx_http_sse_expire_locked(ch, ngx_http_sse_now());

    t->found = (ch->nevents || ch->nsubs);
    t->last_id = ch->last_id;
    t->nevents = ch->nevents;
    t->nsubs = ch->nsubs;

    if (!del || !t->found) {
        ngx_http_sse_channel_put_locked(ch);
        ngx_http_sse_hub_unlock();
        return NGX_OK;
    }

    while (!ngx_queue_empty(&ch->history)) {
        q = ngx_queue_head(&ch->history);
        ev = ngx_queue_data(q, ngx_http_sse_event_t, chan);
        ngx_http_sse_history_remove_locked(ev);
    }

    if (ch->nsubs) {

        /* a control entry in the log: each worker ends its streams */

        ev = ngx_http_sse_alloc_locked(offsetof(ngx_http_sse_event_t, data));

        if (ev == NULL) {
            ngx_http_sse_channel_put_locked(ch);
            ngx_http_sse_hub_unlock();

            ngx_log_error(NGX_LOG_ERR, ngx_http_sse_worker.log, 0,
                          "sse: no room to end the streams of \"%V\"",
                          &t->name);
            return NGX_DECLINED;
        }

        ev->channel = ch;
        ev->control = 1;
        ev->len = 0;
        ev->id.ms = sh->last_id.ms;
        ev->id.seq = ++sh->last_id.seq;
        ev->in_history = 0;
        ev->in_log = 1;
        ch->refs++;

        ngx_queue_insert_tail(&sh->log, &ev->log);
    }

    ngx_http_sse_channel_put_locked(ch);
    ngx_http_sse_trim_log_locked();

    ngx_http_sse_hub_unlock();

    ngx_http_sse_wake_workers();
    ngx_http_sse_deliver_later();

    return NGX_OK;
}


/* waking the workers */

static void
ngx_http_sse_wake_workers(void)
{
    u_char                *p, buf[1];
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

        ngx_memzero(&sun, sizeof(struct sockaddr_un));
        sun.sun_family = AF_UNIX;
        p = ngx_sprintf((u_char *) sun.sun_path + 1, "ngx_http_sse/%08xD/%P",
                        sh->nonce, slot->pid);
        len = p - (u_char *) &sun;

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
    u_char              *p;
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

    /* an abstract address: nothing on disk, gone when the worker is */

    ngx_memzero(&sun, sizeof(struct sockaddr_un));
    sun.sun_family = AF_UNIX;
    p = ngx_sprintf((u_char *) sun.sun_path + 1, "ngx_http_sse/%08xD/%P",
                    ngx_http_sse_worker.hub->sh->nonce, ngx_pid);
    len = p - (u_char *) &sun;

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
        ngx_http_sse_end_all();
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

    ngx_http_sse_deliver();

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "sse: cannot watch the wake-up socket");
    }
}


/*
 * Once a second: drop expired history, and read the log in case a wake-up
 * was lost; delivery itself never waits for this.
 */

static void
ngx_http_sse_housekeeping_handler(ngx_event_t *ev)
{
    uint64_t                 now;
    ngx_uint_t               n;
    ngx_queue_t             *q, *next;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_event_t    *e;
    ngx_http_sse_channel_t  *ch;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_http_sse_end_all();
        return;
    }

    sh = ngx_http_sse_worker.hub->sh;
    now = ngx_http_sse_now();

    ngx_http_sse_hub_lock();

    ngx_http_sse_reap_slots_locked(ev->log);

    /*
     * the history is in id order, and channels may have different ttls:
     * an event kept for an hour must not hold back the expiry of those
     * behind it kept for a second.  Nothing younger than the shortest
     * ttl can have expired; the walk is bounded per second.
     */

    n = 0;

    for (q = ngx_queue_head(&sh->history);
         q != ngx_queue_sentinel(&sh->history)
         && n++ < NGX_HTTP_SSE_EXPIRE_STEPS;
         q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_http_sse_event_t, all);
        ch = e->channel;

        if (sh->min_ttl == 0 || e->id.ms + sh->min_ttl > now) {
            break;
        }

        if (ch->history_ttl && e->id.ms + ch->history_ttl <= now) {
            ngx_http_sse_history_remove_locked(e);
            sh->evicted++;
        }
    }

    ngx_http_sse_hub_unlock();

    ngx_http_sse_deliver();

    ngx_add_timer(ev, 1000);
}


/* reading the log: one copy per worker per event */

static void
ngx_http_sse_deliver(void)
{
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    if (w->slot == NULL || w->slot->nsubs == 0
        || w->slot->cursor == w->hub->sh->last_id.seq)
    {
        return;
    }

    ngx_http_sse_hub_lock();
    ngx_http_sse_collect_locked();
    ngx_http_sse_hub_unlock();

    ngx_http_sse_dispatch(w->deliveries, w->ndeliveries, w->touched);
}


void
ngx_http_sse_hub_read(void)
{
    ngx_http_sse_deliver();
}


/*
 * A publish in this worker answers its publisher first and writes to this
 * worker's subscribers after the events of this loop iteration: publishes
 * that arrive together leave together, one writev per subscriber.
 */

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
    ngx_http_sse_deliver();
}


/*
 * Reads the log past this worker's cursor.  Each channel's events are
 * copied once, appended to the channel's block; the streams of several
 * channels also get a list of the events in id order.
 */

static void
ngx_http_sse_collect_locked(void)
{
    u_char                   *p;
    size_t                    n;
    ngx_uint_t                nmulti;
    ngx_queue_t              *q, *first;
    ngx_http_sse_msg_t       *msg;
    ngx_http_sse_slot_t      *slot;
    ngx_http_sse_lchan_t     *lc;
    ngx_http_sse_shctx_t     *sh;
    ngx_http_sse_event_t     *ev;
    ngx_http_sse_worker_t    *w;
    ngx_http_sse_delivery_t  *d;

    w = &ngx_http_sse_worker;
    sh = w->hub->sh;
    slot = w->slot;

    w->ndeliveries = 0;
    w->touched = NULL;

    if (slot->cursor == sh->last_id.seq) {
        return;
    }

    /* the unread part is at the tail */

    for (q = ngx_queue_last(&sh->log);
         q != ngx_queue_sentinel(&sh->log);
         q = ngx_queue_prev(q))
    {
        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);

        if (ev->id.seq <= slot->cursor) {
            break;
        }
    }

    first = ngx_queue_next(q);

    /* sizes; after a control entry (DELETE) a channel's streams end */

    nmulti = 0;

    for (q = first; q != ngx_queue_sentinel(&sh->log); q = ngx_queue_next(q)) {
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

        if (ev->control) {
            lc->round_end = 1;
            continue;
        }

        lc->round_size += ev->len;
        lc->round_events++;

        if (!ngx_queue_empty(&lc->mlinks)) {
            nmulti++;
        }
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
        }
    }

    /* room in each channel's block, or a new block */

    for (lc = w->touched; lc; lc = lc->round_next) {
        lc->round_end = 0;
        lc->round_events = 0;

        if (lc->round_size == 0) {
            continue;
        }

        if (!ngx_queue_empty(&lc->mlinks) && nmulti > w->deliveries_size) {
            /* no list for the streams of several channels: all end */
            continue;
        }

        msg = lc->block;

        if (msg == NULL || msg->size - msg->len < lc->round_size) {
            n = ngx_min(4 * lc->round_size, NGX_HTTP_SSE_BLOCK_MAX);
            n = ngx_max(n, NGX_HTTP_SSE_BLOCK_MIN);
            n = ngx_max(n, lc->round_size);

            msg = ngx_alloc(offsetof(ngx_http_sse_msg_t, data) + n, w->log);
            if (msg == NULL) {
                continue;
            }

            msg->refs = 1;
            msg->lchan = lc;
            msg->pos = msg->data;
            msg->len = 0;
            msg->size = n;

            /* bufs of streams that still owe the old block keep it */
            ngx_http_sse_block_drop(lc);

            lc->block = msg;
        }

        lc->round = msg;
        lc->round_pos = msg->pos + msg->len;
    }

    /* copies: a channel without room ends its streams, they resume */

    for (q = first; q != ngx_queue_sentinel(&sh->log); q = ngx_queue_next(q)) {
        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);

        lc = ngx_http_sse_lchan_lookup(ev->channel);

        if (lc == NULL || lc->round_end) {
            continue;
        }

        msg = lc->round;

        if (ev->control || msg == NULL) {
            lc->round_end = 1;
            continue;
        }

        p = msg->pos + msg->len;
        ngx_memcpy(p, ev->data, ev->len);
        msg->len += ev->len;
        lc->round_events++;

        if (!ngx_queue_empty(&lc->mlinks)) {
            d = &w->deliveries[w->ndeliveries++];
            d->lchan = lc;
            d->msg = msg;
            d->pos = p;
            d->len = ev->len;
        }
    }

    for (lc = w->touched; lc; lc = lc->round_next) {
        if (lc->round) {
            lc->round_size = lc->round->pos + lc->round->len - lc->round_pos;
        }
    }

    slot->cursor = sh->last_id.seq;

    ngx_http_sse_trim_log_locked();
}


void
ngx_http_sse_msg_release(ngx_http_sse_msg_t *msg)
{
    if (--msg->refs == 0) {
        ngx_free(msg);
        return;
    }

    if (msg->refs == 1 && msg->lchan) {
        /* only its channel holds it: no stream owes any of it */
        msg->lchan->block = NULL;
        ngx_free(msg);
    }
}


/* the channel lets go of its block; streams that owe some of it keep it */

static void
ngx_http_sse_block_drop(ngx_http_sse_lchan_t *lc)
{
    ngx_http_sse_msg_t  *msg;

    msg = lc->block;

    if (msg == NULL) {
        return;
    }

    lc->block = NULL;
    msg->lchan = NULL;

    ngx_http_sse_msg_release(msg);
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


static void
ngx_http_sse_lchan_put_locked(ngx_http_sse_lchan_t *lc)
{
    if (lc->n) {
        return;
    }

    ngx_queue_remove(&lc->wchan->chan_q);
    ngx_queue_remove(&lc->wchan->slot_q);
    ngx_slab_free_locked(ngx_http_sse_worker.hub->shpool, lc->wchan);
    ngx_http_sse_channel_put_locked(lc->channel);

    ngx_http_sse_block_drop(lc);

    ngx_rbtree_delete(&ngx_http_sse_worker.lchans, &lc->node);
    ngx_free(lc);
}


/*
 * A new subscriber: the worker first reads the log up to its end, so that
 * what the subscriber is owed splits exactly into the kept events up to
 * that point (its replay) and everything after (live).
 */

ngx_int_t
ngx_http_sse_hub_subscribe(ngx_http_sse_subscribe_t *s, ngx_log_t *log)
{
    uint64_t                 now;
    ngx_int_t                rc;
    ngx_uint_t               i, k;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_lchan_t    *lc;
    ngx_http_sse_wchan_t    *wc;
    ngx_http_sse_worker_t   *w;
    ngx_http_sse_channel_t  *chans[NGX_HTTP_SSE_MAX_CHANNELS];

    w = &ngx_http_sse_worker;

    if (w->slot == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "sse: this worker has no hub slot");
        return NGX_ERROR;
    }

    sh = w->hub->sh;
    now = ngx_http_sse_now();
    rc = NGX_OK;
    s->replay = NULL;

    ngx_memzero(s->lchans, s->n * sizeof(ngx_http_sse_lchan_t *));

    ngx_http_sse_hub_lock();

    ngx_http_sse_collect_locked();

    for (k = 0; k < s->n; k++) {
        chans[k] = ngx_http_sse_channel_get_locked(&s->names[k], 1);

        if (chans[k] == NULL) {
            rc = NGX_DECLINED;
            goto failed;
        }

        if (s->max_subscribers && chans[k]->nsubs >= s->max_subscribers) {
            k++;
            rc = NGX_BUSY;
            goto failed;
        }
    }

    for (i = 0; i < s->n; i++) {
        lc = ngx_http_sse_lchan_lookup(chans[i]);

        if (lc == NULL) {
            lc = ngx_alloc(sizeof(ngx_http_sse_lchan_t), log);
            if (lc == NULL) {
                rc = NGX_ERROR;
                goto failed;
            }

            wc = ngx_http_sse_alloc_locked(sizeof(ngx_http_sse_wchan_t));
            if (wc == NULL) {
                ngx_free(lc);
                rc = NGX_DECLINED;
                goto failed;
            }

            wc->channel = chans[i];
            wc->nsubs = 0;
            chans[i]->refs++;
            ngx_queue_insert_tail(&chans[i]->wchans, &wc->chan_q);
            ngx_queue_insert_tail(&w->slot->wchans, &wc->slot_q);

            lc->node.key = (ngx_rbtree_key_t) chans[i];
            lc->channel = chans[i];
            lc->wchan = wc;
            lc->n = 0;
            ngx_queue_init(&lc->links);
            ngx_queue_init(&lc->mlinks);
            lc->block = NULL;
            lc->round_next = NULL;
            lc->round = NULL;
            lc->round_touched = 0;
            lc->round_end = 0;

            ngx_rbtree_insert(&w->lchans, &lc->node);
        }

        s->lchans[i] = lc;
    }

    if (s->resume) {
        s->replay = ngx_http_sse_replay_locked(chans, s->n, &s->last_id, now);

        if (s->replay == (ngx_http_sse_msg_t *) NGX_ERROR) {
            s->replay = NULL;
            rc = NGX_ERROR;
            goto failed;
        }
    }

    for (i = 0; i < s->n; i++) {
        lc = s->lchans[i];
        lc->n++;
        lc->wchan->nsubs++;
        chans[i]->nsubs++;
        ngx_http_sse_channel_put_locked(chans[i]);
    }

    w->slot->nsubs++;
    sh->subscribers++;

    ngx_http_sse_hub_unlock();

    /* events read above go to the subscribers that were already here */
    ngx_http_sse_dispatch(w->deliveries, w->ndeliveries, w->touched);

    return NGX_OK;

failed:

    for (i = 0; i < s->n; i++) {
        if (s->lchans[i]) {
            ngx_http_sse_lchan_put_locked(s->lchans[i]);
            s->lchans[i] = NULL;
        }
    }

    while (k) {
        ngx_http_sse_channel_put_locked(chans[--k]);
    }

    ngx_http_sse_hub_unlock();

    ngx_http_sse_dispatch(w->deliveries, w->ndeliveries, w->touched);

    return rc;
}


void
ngx_http_sse_hub_unsubscribe(ngx_http_sse_lchan_t **lchans, ngx_uint_t n)
{
    ngx_uint_t              i;
    ngx_http_sse_lchan_t   *lc;
    ngx_http_sse_worker_t  *w;

    w = &ngx_http_sse_worker;

    if (w->slot == NULL) {
        return;
    }

    ngx_http_sse_hub_lock();

    for (i = 0; i < n; i++) {
        lc = lchans[i];

        lc->n--;
        lc->wchan->nsubs--;
        lc->channel->nsubs--;

        ngx_http_sse_lchan_put_locked(lc);
    }

    w->slot->nsubs--;
    w->hub->sh->subscribers--;

    if (w->slot->nsubs == 0) {
        ngx_http_sse_trim_log_locked();
    }

    ngx_http_sse_hub_unlock();
}


/*
 * The kept events of up to 16 channels with ids after "after", merged in id
 * order into one buffer; NULL when there are none.
 */

static ngx_http_sse_msg_t *
ngx_http_sse_replay_locked(ngx_http_sse_channel_t **chans, ngx_uint_t n,
    ngx_http_sse_id_t *after, uint64_t now)
{
    u_char                *p;
    size_t                 size;
    ngx_uint_t             i, best, pass;
    ngx_queue_t           *q, *start[NGX_HTTP_SSE_MAX_CHANNELS],
                          *cur[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_http_sse_msg_t    *msg;
    ngx_http_sse_event_t  *ev, *bev;

    for (i = 0; i < n; i++) {

        ngx_http_sse_expire_locked(chans[i], now);

        /* walk back from the newest to the first one after "after" */

        for (q = ngx_queue_last(&chans[i]->history);
             q != ngx_queue_sentinel(&chans[i]->history);
             q = ngx_queue_prev(q))
        {
            ev = ngx_queue_data(q, ngx_http_sse_event_t, chan);

            if (!ngx_http_sse_id_gt(&ev->id, after)) {
                break;
            }
        }

        start[i] = ngx_queue_next(q);
    }

    msg = NULL;
    size = 0;
    p = NULL;

    /* the first pass sizes, the second copies */

    for (pass = 0; pass < 2; pass++) {

        ngx_memcpy(cur, start, n * sizeof(ngx_queue_t *));

        for ( ;; ) {
            bev = NULL;
            best = 0;

            for (i = 0; i < n; i++) {
                if (cur[i] == ngx_queue_sentinel(&chans[i]->history)) {
                    continue;
                }

                ev = ngx_queue_data(cur[i], ngx_http_sse_event_t, chan);

                if (bev == NULL || ev->id.seq < bev->id.seq) {
                    bev = ev;
                    best = i;
                }
            }

            if (bev == NULL) {
                break;
            }

            cur[best] = ngx_queue_next(cur[best]);

            if (pass == 0) {
                size += bev->len;

            } else {
                p = ngx_cpymem(p, bev->data, bev->len);
            }
        }

        if (pass == 0) {
            if (size == 0) {
                return NULL;
            }

            msg = ngx_alloc(offsetof(ngx_http_sse_msg_t, data) + size,
                            ngx_http_sse_worker.log);
            if (msg == NULL) {
                return (ngx_http_sse_msg_t *) NGX_ERROR;
            }

            msg->refs = 1;
            msg->lchan = NULL;
            msg->pos = msg->data;
            msg->len = size;
            msg->size = size;
            p = msg->data;
        }
    }

    return msg;
}


void
ngx_http_sse_hub_stats(ngx_http_sse_stats_t *st)
{
    ngx_uint_t             i;
    ngx_slab_pool_t       *shpool;
    ngx_http_sse_shctx_t  *sh;

    ngx_memzero(st, sizeof(ngx_http_sse_stats_t));

    if (ngx_http_sse_worker.hub == NULL) {
        return;
    }

    sh = ngx_http_sse_worker.hub->sh;
    shpool = ngx_http_sse_worker.hub->shpool;

    ngx_http_sse_hub_lock();

    st->subscribers = sh->subscribers;
    st->channels = sh->channels;
    st->kept = sh->kept;
    st->published = sh->published;
    st->evicted = sh->evicted;

    for (i = 0; i < sh->nslots; i++) {
        if (sh->slots[i].pid) {
            st->workers++;
        }
    }

    st->bytes_total = shpool->end - (u_char *) shpool;
    st->bytes_used = st->bytes_total - shpool->pfree * ngx_pagesize;

    ngx_http_sse_hub_unlock();

    st->delivered = sh->delivered;
    st->slow_closed = sh->slow_closed;
}


void
ngx_http_sse_hub_count_slow(void)
{
    if (ngx_http_sse_worker.hub) {
        (void) ngx_atomic_fetch_add(&ngx_http_sse_worker.hub->sh->slow_closed,
                                    1);
    }
}


void
ngx_http_sse_hub_count_delivered(ngx_uint_t n)
{
    if (ngx_http_sse_worker.hub && n) {
        (void) ngx_atomic_fetch_add(&ngx_http_sse_worker.hub->sh->delivered,
                                    n);
    }
}
