
/*
 * ngx_http_sse_module: the hub, in shared memory.
 *
 * The zone holds the channels (an rbtree), the events each channel keeps
 * for replay, one hub-wide log of events in id order, every worker's slot
 * (its cursor in the log, its subscribers per channel) and the counters.
 * This file is the only one that changes the zone's structure; it calls
 * nothing of the module above it but the "changed" callback the worker side
 * registers (ngx_http_sse_hub_set), after a change other workers must see.
 *
 * Everything in the zone is guarded by the slab pool's own mutex, which the
 * master unlocks if a worker dies holding it.  Updates are ordered so that
 * the queues stay walkable at each step: an event is initialised before it
 * is linked, and a batch is linked by splicing queues built aside.  A
 * worker killed inside the lock may still leave a count or an allocation
 * behind; it never leaves a dangling link.
 *
 * An event is in the hub log until every worker with subscribers has read
 * past it, and in its channel's history until count, ttl or room evicts it;
 * it is freed when it is in neither.  A channel is freed when nothing refers
 * to it: no event, no worker's subscribers, no operation holding it.
 */


#include "ngx_http_sse.h"


static ngx_http_sse_channel_t *ngx_http_sse_channel_get_locked(ngx_str_t *name,
    ngx_uint_t create);
static void *ngx_http_sse_alloc_locked(size_t size);
static ngx_uint_t ngx_http_sse_evict_oldest_locked(void);
static void ngx_http_sse_history_remove_locked(ngx_http_sse_event_t *ev);
static ngx_uint_t ngx_http_sse_history_trim_locked(ngx_http_sse_channel_t *ch,
    ngx_uint_t keep, uint64_t now);
static void ngx_http_sse_event_free_locked(ngx_http_sse_event_t *ev);
static void ngx_http_sse_slot_release_locked(ngx_http_sse_slot_t *slot);
static ngx_uint_t ngx_http_sse_slot_dead(ngx_http_sse_slot_t *slot);
static ngx_int_t ngx_http_sse_publish_fits_locked(ngx_http_sse_publish_t *pub);
static ngx_int_t ngx_http_sse_publish_alloc_locked(ngx_http_sse_publish_t *pub,
    ngx_queue_t *batch);
static void ngx_http_sse_publish_link_locked(ngx_http_sse_publish_t *pub,
    ngx_http_sse_channel_t **chans, ngx_queue_t *batch, uint64_t now);
static void ngx_http_sse_publish_keep_locked(ngx_http_sse_publish_t *pub,
    ngx_http_sse_channel_t **chans, uint64_t now);
static void ngx_http_sse_target_fill(ngx_http_sse_target_t *t,
    ngx_http_sse_channel_t *ch);
static ngx_http_sse_channel_t *ngx_http_sse_channel_find_locked(
    ngx_http_sse_target_t *t, uint64_t now);
static ngx_int_t ngx_http_sse_end_streams_locked(ngx_http_sse_channel_t *ch);
static size_t ngx_http_sse_slab_cost(size_t size);
static void ngx_http_sse_hub_changed(void);


/* an event of len framed bytes, with room for its id line at its longest */

#define ngx_http_sse_event_size(len)                                          \
    (offsetof(ngx_http_sse_event_t, data) + NGX_HTTP_SSE_ID_LINE_LEN + (len))

/* no limit on the count of events kept, only the ttl */
#define NGX_HTTP_SSE_KEEP_ALL  ((ngx_uint_t) -1)

/*
 * counts of subscribers only ever drop to 0: a release run again after a
 * worker died inside it must not wrap them (sse_max_subscribers would then
 * refuse everyone)
 */
#define ngx_http_sse_count_drop(count, n)                                     \
    (count) = ((count) > (n)) ? (count) - (n) : 0

/* history entries housekeeping looks at per second and worker, at most */
#define NGX_HTTP_SSE_EXPIRE_STEPS  10000


static ngx_http_sse_hub_t  *ngx_http_sse_hub;
static void               (*ngx_http_sse_hub_changed_handler)(void);
static uint64_t           (*ngx_http_sse_hub_clock)(void);


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


/* the zone this worker uses, and who hears of changes other workers see */

void
ngx_http_sse_hub_set(ngx_http_sse_hub_t *hub, void (*changed)(void))
{
    ngx_http_sse_hub = hub;
    ngx_http_sse_hub_changed_handler = changed;
}


ngx_http_sse_hub_t *
ngx_http_sse_hub_get(void)
{
    return ngx_http_sse_hub;
}


static void
ngx_http_sse_hub_changed(void)
{
    if (ngx_http_sse_hub_changed_handler) {
        ngx_http_sse_hub_changed_handler();
    }
}


void
ngx_http_sse_hub_lock(void)
{
    ngx_shmtx_lock(&ngx_http_sse_hub->shpool->mutex);
}


void
ngx_http_sse_hub_unlock(void)
{
    ngx_shmtx_unlock(&ngx_http_sse_hub->shpool->mutex);
}


/*
 * The clock of the ids, in ms: history ages are an id's ms against it.
 * This host's, unless another clock makes the ids (Redis's, in Redis
 * mode: ngx_http_sse_hub_set_clock() in each worker), or an event kept
 * for an hour would be kept for an hour plus the clocks' difference, or
 * not at all.
 */

void
ngx_http_sse_hub_set_clock(uint64_t (*clock)(void))
{
    ngx_http_sse_hub_clock = clock;
}


uint64_t
ngx_http_sse_hub_now(void)
{
    if (ngx_http_sse_hub_clock) {
        return ngx_http_sse_hub_clock();
    }

    return ngx_http_sse_hub_wall();
}


uint64_t
ngx_http_sse_hub_wall(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* slots: a worker's place in the hub */

ngx_http_sse_slot_t *
ngx_http_sse_hub_attach(ngx_log_t *log)
{
    ngx_uint_t             i;
    ngx_http_sse_slot_t   *slot;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_hub->sh;
    slot = NULL;

    ngx_http_sse_hub_lock();

    /* a worker that died had this pid before us: its slot is stale */

    for (i = 0; i < sh->nslots; i++) {
        if (sh->slots[i].pid == ngx_pid) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "sse: releasing the hub slot a dead worker left "
                          "with this worker's pid %P", ngx_pid);
            ngx_http_sse_slot_release_locked(&sh->slots[i]);
        }
    }

    ngx_http_sse_hub_reap_slots_locked(log);

    for (i = 0; i < sh->nslots; i++) {
        if (sh->slots[i].pid == 0) {
            slot = &sh->slots[i];
            break;
        }
    }

    if (slot == NULL && sh->nslots < NGX_HTTP_SSE_MAX_SLOTS) {
        slot = &sh->slots[sh->nslots++];
    }

    if (slot) {
        slot->wake = 0;
        slot->cursor = sh->log_pos;
        slot->nsubs = 0;
        ngx_queue_init(&slot->wchans);
        slot->pid = ngx_pid;
    }

    ngx_http_sse_hub_unlock();

    if (slot == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "sse: no free hub slot for worker %P, "
                      "streams in this worker will be refused", ngx_pid);
    }

    return slot;
}


void
ngx_http_sse_hub_detach(ngx_http_sse_slot_t *slot)
{
    ngx_http_sse_hub_lock();
    ngx_http_sse_slot_release_locked(slot);
    ngx_http_sse_hub_unlock();
}


/*
 * A worker that died without exit_process (killed, crashed) leaves its slot
 * behind: its cursor would hold the log, and so the zone, forever.  The
 * master respawns a crashed worker (whose attach reaps), but not an old one
 * that died during a reload: housekeeping reaps those.
 */

void
ngx_http_sse_hub_reap_slots_locked(ngx_log_t *log)
{
    ngx_uint_t             i;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_hub->sh;

    for (i = 0; i < sh->nslots; i++) {

        if (ngx_http_sse_slot_dead(&sh->slots[i])) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "sse: releasing the hub slot of exited worker %P",
                          sh->slots[i].pid);
            ngx_http_sse_slot_release_locked(&sh->slots[i]);
        }
    }
}


/*
 * The worker is gone, or its pid now belongs to a process of another user
 * (all our workers run as one user): not a worker of ours either way.
 */

static ngx_uint_t
ngx_http_sse_slot_dead(ngx_http_sse_slot_t *slot)
{
    if (slot->pid == 0 || slot->pid == ngx_pid) {
        return 0;
    }

    if (kill(slot->pid, 0) == 0) {
        return 0;
    }

    return ngx_errno == NGX_ESRCH || ngx_errno == NGX_EPERM;
}


static void
ngx_http_sse_slot_release_locked(ngx_http_sse_slot_t *slot)
{
    ngx_queue_t           *q;
    ngx_http_sse_wchan_t  *wc;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_hub->sh;

    while (!ngx_queue_empty(&slot->wchans)) {
        q = ngx_queue_head(&slot->wchans);
        wc = ngx_queue_data(q, ngx_http_sse_wchan_t, slot_q);

        ngx_http_sse_count_drop(wc->channel->nsubs, wc->nsubs);
        wc->nsubs = 0;

        ngx_http_sse_hub_wchan_free_locked(wc);
    }

    /* a stream of several channels is one subscriber, in several wchans */
    ngx_http_sse_count_drop(sh->subscribers, slot->nsubs);
    slot->nsubs = 0;
    slot->pid = 0;

    ngx_http_sse_hub_trim_log_locked();
}


/* the subscribers a worker has on a channel */

ngx_http_sse_wchan_t *
ngx_http_sse_hub_wchan_add_locked(ngx_http_sse_slot_t *slot,
    ngx_http_sse_channel_t *ch)
{
    ngx_http_sse_wchan_t  *wc;

    wc = ngx_http_sse_alloc_locked(sizeof(ngx_http_sse_wchan_t));
    if (wc == NULL) {
        return NULL;
    }

    wc->channel = ch;
    wc->nsubs = 0;
    ch->refs++;

    ngx_queue_insert_tail(&slot->wchans, &wc->slot_q);

    return wc;
}


void
ngx_http_sse_hub_wchan_free_locked(ngx_http_sse_wchan_t *wc)
{
    ngx_queue_remove(&wc->slot_q);
    ngx_http_sse_hub_channel_put_locked(wc->channel);
    ngx_slab_free_locked(ngx_http_sse_hub->shpool, wc);
}


/* a subscriber of n channels joins, or leaves, a worker's channels */

void
ngx_http_sse_hub_join_locked(ngx_http_sse_slot_t *slot,
    ngx_http_sse_wchan_t **wchans, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        wchans[i]->nsubs++;
        wchans[i]->channel->nsubs++;
    }

    slot->nsubs++;
    ngx_http_sse_hub->sh->subscribers++;
}


void
ngx_http_sse_hub_leave_locked(ngx_http_sse_slot_t *slot,
    ngx_http_sse_wchan_t **wchans, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        ngx_http_sse_count_drop(wchans[i]->nsubs, 1);
        ngx_http_sse_count_drop(wchans[i]->channel->nsubs, 1);
    }

    ngx_http_sse_count_drop(slot->nsubs, 1);
    ngx_http_sse_count_drop(ngx_http_sse_hub->sh->subscribers, 1);

    if (slot->nsubs == 0) {
        /* its cursor no longer holds the log */
        ngx_http_sse_hub_trim_log_locked();
    }
}


/* channels */

static ngx_http_sse_channel_t *
ngx_http_sse_channel_get_locked(ngx_str_t *name, ngx_uint_t create)
{
    uint32_t                 hash;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_channel_t  *ch;

    sh = ngx_http_sse_hub->sh;

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

    ch->refs = 1;

    ngx_rbtree_insert(&sh->rbtree, &ch->sn.node);
    sh->channels++;

    return ch;
}


/*
 * Pins n channels, made if new: NGX_DECLINED when the zone has no room,
 * NGX_BUSY when one has max_subscribers already (0: no limit); on failure
 * none stays pinned.
 */

ngx_int_t
ngx_http_sse_hub_channels_get_locked(ngx_str_t *names, ngx_uint_t n,
    ngx_uint_t max_subscribers, ngx_http_sse_channel_t **chans)
{
    ngx_int_t   rc;
    ngx_uint_t  k;

    for (k = 0; k < n; k++) {
        chans[k] = ngx_http_sse_channel_get_locked(&names[k], 1);

        if (chans[k] == NULL) {
            rc = NGX_DECLINED;
            goto failed;
        }

        if (max_subscribers && chans[k]->nsubs >= max_subscribers) {
            k++;
            rc = NGX_BUSY;
            goto failed;
        }
    }

    return NGX_OK;

failed:

    ngx_http_sse_hub_channels_put_locked(chans, k);

    return rc;
}


void
ngx_http_sse_hub_channels_put_locked(ngx_http_sse_channel_t **chans,
    ngx_uint_t n)
{
    while (n) {
        ngx_http_sse_hub_channel_put_locked(chans[--n]);
    }
}


void
ngx_http_sse_hub_channel_put_locked(ngx_http_sse_channel_t *ch)
{
    ngx_http_sse_hub_t  *hub;

    if (--ch->refs) {
        return;
    }

    hub = ngx_http_sse_hub;

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
        p = ngx_slab_alloc_locked(ngx_http_sse_hub->shpool, size);

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

    sh = ngx_http_sse_hub->sh;

    if (ngx_queue_empty(&sh->history)) {
        return 0;
    }

    q = ngx_queue_head(&sh->history);
    ev = ngx_queue_data(q, ngx_http_sse_event_t, all);

    ngx_http_sse_history_remove_locked(ev);
    sh->evicted++;

    return 1;
}


/* history */

static void
ngx_http_sse_history_remove_locked(ngx_http_sse_event_t *ev)
{
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_hub->sh;

    ngx_queue_remove(&ev->chan);
    ngx_queue_remove(&ev->all);
    ev->in_history = 0;

    /* a stream still replaying up to here has lost what it was owed */
    ev->channel->evicted = ev->id;

    ev->channel->nevents--;
    sh->kept--;

    sh->hist_bytes -= ev->cost;

    if (!ev->in_log) {
        ngx_http_sse_event_free_locked(ev);
    }
}


/*
 * The one loop that shortens a channel's history: the oldest events go
 * while more than "keep" are kept or while they are older than the
 * channel's ttl (0: no age limit).  Returns how many went.
 */

static ngx_uint_t
ngx_http_sse_history_trim_locked(ngx_http_sse_channel_t *ch, ngx_uint_t keep,
    uint64_t now)
{
    ngx_uint_t             n;
    ngx_http_sse_event_t  *ev;

    n = 0;

    while (!ngx_queue_empty(&ch->history)) {
        ev = ngx_queue_data(ngx_queue_head(&ch->history),
                            ngx_http_sse_event_t, chan);

        if (ch->nevents <= keep
            && (ch->history_ttl == 0 || ev->id.ms + ch->history_ttl > now))
        {
            break;
        }

        ngx_http_sse_history_remove_locked(ev);
        n++;
    }

    return n;
}


static void
ngx_http_sse_event_free_locked(ngx_http_sse_event_t *ev)
{
    ngx_http_sse_channel_t  *ch;

    ch = ev->channel;

    ngx_slab_free_locked(ngx_http_sse_hub->shpool, ev);
    ngx_http_sse_hub_channel_put_locked(ch);
}


/*
 * Once a second, from each worker: the slots of dead workers go, and so
 * does expired history.  The history is in id order, and channels may have
 * different ttls: an event kept for an hour must not hold back the expiry
 * of those behind it kept for a second.  Nothing younger than the shortest
 * ttl can have expired; the walk is bounded.
 */

void
ngx_http_sse_hub_expire(ngx_log_t *log)
{
    uint64_t                 now;
    ngx_uint_t               n;
    ngx_queue_t             *q, *next;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_event_t    *ev;
    ngx_http_sse_channel_t  *ch;

    sh = ngx_http_sse_hub->sh;
    now = ngx_http_sse_hub_now();

    ngx_http_sse_hub_lock();

    ngx_http_sse_hub_reap_slots_locked(log);

    n = 0;

    for (q = ngx_queue_head(&sh->history);
         q != ngx_queue_sentinel(&sh->history)
         && n++ < NGX_HTTP_SSE_EXPIRE_STEPS;
         q = next)
    {
        next = ngx_queue_next(q);
        ev = ngx_queue_data(q, ngx_http_sse_event_t, all);
        ch = ev->channel;

        if (sh->min_ttl == 0 || ev->id.ms + sh->min_ttl > now) {
            break;
        }

        if (ch->history_ttl && ev->id.ms + ch->history_ttl <= now) {
            ngx_http_sse_history_remove_locked(ev);
            sh->evicted++;
        }
    }

    ngx_http_sse_hub_unlock();
}


/* the hub log is kept until every worker with subscribers has read it */

void
ngx_http_sse_hub_trim_log_locked(void)
{
    uint64_t               min;
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_http_sse_shctx_t  *sh;
    ngx_http_sse_event_t  *ev;

    sh = ngx_http_sse_hub->sh;

    min = sh->log_pos;

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

        if (ev->pos > min) {
            break;
        }

        ngx_queue_remove(&ev->log);
        ev->in_log = 0;

        if (!ev->in_history) {
            ngx_http_sse_event_free_locked(ev);
        }
    }
}


/*
 * The one publish entry point, for HTTP and Redis ingress alike: all of
 * pub->events go to all of pub->targets, in order, or nothing does.
 * NGX_DECLINED: the zone has no room; NGX_DONE: an event of the Redis log
 * the zone has already (another reader of this node put it there).
 */

ngx_int_t
ngx_http_sse_hub_publish(ngx_http_sse_publish_t *pub, ngx_log_t *log)
{
    uint64_t                 now;
    ngx_int_t                rc;
    ngx_str_t                names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_uint_t               k;
    ngx_queue_t              batch;
    ngx_http_sse_channel_t  *chans[NGX_HTTP_SSE_MAX_CHANNELS];

    if (ngx_http_sse_hub == NULL) {
        return NGX_ERROR;
    }

    if (pub->ntargets == 0 || pub->ntargets > NGX_HTTP_SSE_MAX_CHANNELS
        || pub->nevents == 0
        || (pub->id && (pub->nevents != 1 || pub->ntargets != 1)))
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "sse: a publish of %ui event(s) to %ui channel(s)%s, "
                      "at least one event to 1 to %d channels is allowed, "
                      "one to one with an id",
                      pub->nevents, pub->ntargets,
                      pub->id ? " with an id" : "",
                      NGX_HTTP_SSE_MAX_CHANNELS);
        return NGX_ERROR;
    }

    for (k = 0; k < pub->ntargets; k++) {
        names[k] = pub->targets[k].name;
    }

    now = ngx_http_sse_hub_now();

    ngx_http_sse_hub_lock();

    if (pub->id && !ngx_http_sse_id_gt(pub->id, &ngx_http_sse_hub->sh->last_id))
    {
        ngx_http_sse_hub_unlock();
        return NGX_DONE;
    }

    rc = ngx_http_sse_hub_channels_get_locked(names, pub->ntargets, 0, chans);

    if (rc == NGX_OK) {
        rc = ngx_http_sse_publish_fits_locked(pub);

        if (rc == NGX_OK) {
            rc = ngx_http_sse_publish_alloc_locked(pub, &batch);
        }

        if (rc != NGX_OK) {
            ngx_http_sse_hub_channels_put_locked(chans, pub->ntargets);
        }
    }

    if (rc != NGX_OK) {
        ngx_http_sse_hub_unlock();

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "sse: zone \"%V\" has no room for %ui event(s)",
                      &ngx_http_sse_hub->shm_zone->shm.name,
                      pub->nevents * pub->ntargets);

        return NGX_DECLINED;
    }

    ngx_http_sse_publish_link_locked(pub, chans, &batch, now);
    ngx_http_sse_publish_keep_locked(pub, chans, now);

    for (k = 0; k < pub->ntargets; k++) {
        ngx_http_sse_target_fill(&pub->targets[k], chans[k]);

        /* a publish answers the events it published */
        pub->targets[k].nevents = pub->nevents;
    }

    ngx_http_sse_hub_channels_put_locked(chans, pub->ntargets);
    ngx_http_sse_hub_trim_log_locked();

    ngx_http_sse_hub_unlock();

    ngx_http_sse_hub_changed();

    return NGX_OK;
}


/*
 * What can never fit must not evict every channel's history first: what
 * its events take in the slab (a whole slot or whole pages each) is
 * compared with the free pages plus all that the history takes.
 */

static ngx_int_t
ngx_http_sse_publish_fits_locked(ngx_http_sse_publish_t *pub)
{
    size_t                 need;
    ngx_uint_t             i;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_hub->sh;
    need = 0;

    for (i = 0; i < pub->nevents; i++) {
        need += ngx_http_sse_slab_cost(
                               ngx_http_sse_event_size(pub->events[i].len));
    }

    if (need * pub->ntargets > ngx_http_sse_hub->shpool->pfree * ngx_pagesize
                               + sh->hist_bytes)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* what ngx_slab_alloc() takes for size bytes: a slot of 2^n, or pages */

static size_t
ngx_http_sse_slab_cost(size_t size)
{
    size_t  slot;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (slot = 8; slot < size; slot <<= 1) { /* void */ }

    return slot;
}


/* every event of the publish, in order, in a queue of its own (ev->log) */

static ngx_int_t
ngx_http_sse_publish_alloc_locked(ngx_http_sse_publish_t *pub,
    ngx_queue_t *batch)
{
    ngx_uint_t             n, total;
    ngx_queue_t           *q;
    ngx_http_sse_event_t  *ev;

    ngx_queue_init(batch);

    total = pub->nevents * pub->ntargets;

    for (n = 0; n < total; n++) {
        ev = ngx_http_sse_alloc_locked(
                        ngx_http_sse_event_size(pub->events[n / pub->ntargets].len));

        if (ev == NULL) {
            while (!ngx_queue_empty(batch)) {
                q = ngx_queue_head(batch);
                ngx_queue_remove(q);
                ev = ngx_queue_data(q, ngx_http_sse_event_t, log);
                ngx_slab_free_locked(ngx_http_sse_hub->shpool, ev);
            }

            return NGX_DECLINED;
        }

        ngx_queue_insert_tail(batch, &ev->log);
    }

    return NGX_OK;
}


/*
 * Ids, framing, then the links: each event is complete before any queue of
 * the zone can reach it, and the batch joins the log, the hub history and
 * each channel's history by one splice each.  The ids and log positions
 * are taken first: should this worker die in here (the master then frees
 * the lock), none is given twice.  Without Redis an id is the time and a
 * hub-wide sequence; with Redis, the log entry's own id.
 */

static void
ngx_http_sse_publish_link_locked(ngx_http_sse_publish_t *pub,
    ngx_http_sse_channel_t **chans, ngx_queue_t *batch, uint64_t now)
{
    u_char                *p;
    uint64_t               pos;
    ngx_uint_t             i, k, n, total;
    ngx_queue_t           *q, all, chan[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_http_sse_id_t      id;
    ngx_http_sse_shctx_t  *sh;
    ngx_http_sse_event_t  *ev;

    sh = ngx_http_sse_hub->sh;
    total = pub->nevents * pub->ntargets;

    id.ms = ngx_max(now, sh->last_id.ms);
    id.seq = sh->last_id.seq;

    if (pub->id) {
        sh->last_id = *pub->id;

    } else {
        sh->last_id.ms = id.ms;
        sh->last_id.seq = id.seq + total;
    }

    pos = sh->log_pos;
    sh->log_pos += total;

    ngx_queue_init(&all);

    for (k = 0; k < pub->ntargets; k++) {
        ngx_queue_init(&chan[k]);
    }

    n = 0;

    for (q = ngx_queue_head(batch);
         q != ngx_queue_sentinel(batch);
         q = ngx_queue_next(q))
    {
        i = n / pub->ntargets;
        k = n % pub->ntargets;
        n++;

        if (pub->id) {
            id = *pub->id;

        } else {
            id.seq++;
        }

        ev = ngx_queue_data(q, ngx_http_sse_event_t, log);
        ev->channel = chans[k];
        ev->id = id;
        ev->pos = ++pos;
        ev->control = 0;
        ev->in_log = 1;
        ev->in_history = 1;
        ev->cost = ngx_http_sse_slab_cost(
                               ngx_http_sse_event_size(pub->events[i].len));

        p = ngx_cpymem(ev->data, "id: ", sizeof("id: ") - 1);
        p = ngx_http_sse_id_format(p, &id);
        *p++ = '\n';
        p = ngx_cpymem(p, pub->events[i].data, pub->events[i].len);
        ev->len = p - ev->data;

        ngx_queue_insert_tail(&chan[k], &ev->chan);
        ngx_queue_insert_tail(&all, &ev->all);

        chans[k]->refs++;
        chans[k]->last_id = id;
        chans[k]->nevents++;
        sh->kept++;
        sh->hist_bytes += ev->cost;
    }

    ngx_queue_add(&sh->log, batch);
    ngx_queue_add(&sh->history, &all);

    for (k = 0; k < pub->ntargets; k++) {
        ngx_queue_add(&chans[k]->history, &chan[k]);
    }

    sh->published += total;
}


/* the publish's retention applies to its channels */

static void
ngx_http_sse_publish_keep_locked(ngx_http_sse_publish_t *pub,
    ngx_http_sse_channel_t **chans, uint64_t now)
{
    ngx_uint_t             k;
    ngx_http_sse_shctx_t  *sh;

    sh = ngx_http_sse_hub->sh;

    if (pub->policy.history_ttl
        && (sh->min_ttl == 0 || pub->policy.history_ttl < sh->min_ttl))
    {
        sh->min_ttl = pub->policy.history_ttl;
    }

    for (k = 0; k < pub->ntargets; k++) {
        chans[k]->history_ttl = pub->policy.history_ttl;

        sh->evicted += ngx_http_sse_history_trim_locked(chans[k],
                                                        pub->policy.history,
                                                        now);
    }
}


static void
ngx_http_sse_target_fill(ngx_http_sse_target_t *t, ngx_http_sse_channel_t *ch)
{
    t->found = (ch->nevents || ch->nsubs);
    t->last_id = ch->last_id;
    t->nevents = ch->nevents;
    t->nsubs = ch->nsubs;
}


/* GET of a channel on the publish endpoint: what it keeps, who listens */

ngx_int_t
ngx_http_sse_hub_channel_info(ngx_http_sse_target_t *t)
{
    ngx_http_sse_channel_t  *ch;

    if (ngx_http_sse_hub == NULL) {
        return NGX_ERROR;
    }

    ngx_http_sse_hub_lock();

    ch = ngx_http_sse_channel_find_locked(t, ngx_http_sse_hub_now());

    if (ch) {
        ngx_http_sse_hub_channel_put_locked(ch);
    }

    ngx_http_sse_hub_unlock();

    return NGX_OK;
}


/*
 * DELETE of a channel: its history is forgotten and its streams end, in
 * every worker.  NGX_DECLINED: no room for the entry that ends them.  With
 * an id (a delete entry of the Redis log), NGX_DONE when the zone has it.
 */

ngx_int_t
ngx_http_sse_hub_channel_delete(ngx_http_sse_target_t *t,
    ngx_http_sse_id_t *id, ngx_log_t *log)
{
    ngx_int_t                rc;
    ngx_http_sse_shctx_t    *sh;
    ngx_http_sse_channel_t  *ch;

    if (ngx_http_sse_hub == NULL) {
        return NGX_ERROR;
    }

    sh = ngx_http_sse_hub->sh;

    ngx_http_sse_hub_lock();

    if (id) {
        if (!ngx_http_sse_id_gt(id, &sh->last_id)) {
            ngx_http_sse_hub_unlock();
            return NGX_DONE;
        }

        sh->last_id = *id;
    }

    ch = ngx_http_sse_channel_find_locked(t, ngx_http_sse_hub_now());

    if (ch == NULL || !t->found) {
        if (ch) {
            ngx_http_sse_hub_channel_put_locked(ch);
        }

        ngx_http_sse_hub_unlock();
        return NGX_OK;
    }

    (void) ngx_http_sse_history_trim_locked(ch, 0, 0);

    rc = NGX_OK;

    if (ch->nsubs) {
        rc = ngx_http_sse_end_streams_locked(ch);
    }

    ngx_http_sse_hub_channel_put_locked(ch);
    ngx_http_sse_hub_trim_log_locked();

    ngx_http_sse_hub_unlock();

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "sse: no room to end the streams of \"%V\"", &t->name);
        return NGX_DECLINED;
    }

    ngx_http_sse_hub_changed();

    return NGX_OK;
}


/* a pinned channel, its expired history gone, and the target filled */

static ngx_http_sse_channel_t *
ngx_http_sse_channel_find_locked(ngx_http_sse_target_t *t, uint64_t now)
{
    ngx_http_sse_channel_t  *ch;

    ch = ngx_http_sse_channel_get_locked(&t->name, 0);

    if (ch == NULL) {
        t->found = 0;
        return NULL;
    }

    ngx_http_sse_hub->sh->evicted +=
        ngx_http_sse_history_trim_locked(ch, NGX_HTTP_SSE_KEEP_ALL, now);

    ngx_http_sse_target_fill(t, ch);

    return ch;
}


/* a control entry in the log: each worker ends the channel's streams */

static ngx_int_t
ngx_http_sse_end_streams_locked(ngx_http_sse_channel_t *ch)
{
    ngx_http_sse_shctx_t  *sh;
    ngx_http_sse_event_t  *ev;

    sh = ngx_http_sse_hub->sh;

    ev = ngx_http_sse_alloc_locked(offsetof(ngx_http_sse_event_t, data));
    if (ev == NULL) {
        return NGX_DECLINED;
    }

    ev->channel = ch;
    ev->control = 1;
    ev->len = 0;
    ev->cost = 0;
    ev->id = sh->last_id;
    ev->pos = ++sh->log_pos;
    ev->in_history = 0;
    ev->in_log = 1;
    ch->refs++;

    ngx_queue_insert_tail(&sh->log, &ev->log);

    return NGX_OK;
}


/*
 * A piece of a replay: the kept events of up to 16 channels with ids after
 * rp->last, merged in log order, up to rp->max bytes (one event at least)
 * and up to the log position "upto" (what the worker has read: later
 * events reach the stream live), copied into one block.  NGX_DONE when
 * nothing more is left to replay; NGX_DECLINED when events the stream was
 * still owed have left the history (the first piece may start after an id
 * older than everything kept).
 */

ngx_int_t
ngx_http_sse_hub_replay_locked(ngx_http_sse_channel_t **chans, ngx_uint_t n,
    uint64_t upto, ngx_http_sse_replay_t *rp, ngx_log_t *log)
{
    u_char                *p;
    size_t                 size;
    uint64_t               now;
    ngx_uint_t             i, best, pass, more;
    ngx_queue_t           *q, *start[NGX_HTTP_SSE_MAX_CHANNELS],
                          *cur[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_http_sse_block_t  *block;
    ngx_http_sse_event_t  *ev, *bev;

    rp->block = NULL;
    rp->events = 0;
    now = ngx_http_sse_hub_now();

    for (i = 0; i < n; i++) {

        ngx_http_sse_hub->sh->evicted +=
            ngx_http_sse_history_trim_locked(chans[i], NGX_HTTP_SSE_KEEP_ALL,
                                             now);

        if (!rp->first && ngx_http_sse_id_gt(&chans[i]->evicted, &rp->last)) {
            return NGX_DECLINED;
        }

        /* walk back from the newest to the first one after rp->last */

        for (q = ngx_queue_last(&chans[i]->history);
             q != ngx_queue_sentinel(&chans[i]->history);
             q = ngx_queue_prev(q))
        {
            ev = ngx_queue_data(q, ngx_http_sse_event_t, chan);

            if (!ngx_http_sse_id_gt(&ev->id, &rp->last)) {
                break;
            }
        }

        start[i] = ngx_queue_next(q);
    }

    block = NULL;
    size = 0;
    p = NULL;
    more = 0;

    /* the first pass sizes, the second copies the same events */

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

                if (ev->pos > upto) {
                    continue;
                }

                if (bev == NULL || ev->pos < bev->pos) {
                    bev = ev;
                    best = i;
                }
            }

            if (bev == NULL) {
                more = 0;
                break;
            }

            if (pass == 0) {
                if (size && size + bev->len > rp->max) {
                    more = 1;
                    break;
                }

                size += bev->len;

            } else {
                if (p == block->data + size) {
                    break;
                }

                p = ngx_cpymem(p, bev->data, bev->len);
                rp->last = bev->id;
                rp->events++;
            }

            cur[best] = ngx_queue_next(cur[best]);
        }

        if (pass == 0) {
            if (size == 0) {
                return NGX_DONE;
            }

            block = ngx_alloc(offsetof(ngx_http_sse_block_t, data) + size,
                              log);
            if (block == NULL) {
                return NGX_ERROR;
            }

            block->refs = 1;
            block->lchan = NULL;
            block->pos = block->data;
            block->len = size;
            block->size = size;
            p = block->data;
        }
    }

    rp->block = block;
    rp->first = 0;

    return more ? NGX_OK : NGX_DONE;
}


void
ngx_http_sse_hub_stats(ngx_http_sse_stats_t *st)
{
    ngx_uint_t             i;
    ngx_slab_pool_t       *shpool;
    ngx_http_sse_shctx_t  *sh;

    ngx_memzero(st, sizeof(ngx_http_sse_stats_t));

    if (ngx_http_sse_hub == NULL) {
        return;
    }

    sh = ngx_http_sse_hub->sh;
    shpool = ngx_http_sse_hub->shpool;

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

    st->redis_up = (sh->redis.reader && sh->redis.up);
    st->redis_ingress = sh->redis.ingress;
    st->redis_logged = sh->redis.logged;
    st->redis_read = sh->redis.read;
    st->redis_reconnects = sh->redis.reconnects;
}


void
ngx_http_sse_hub_count_slow(void)
{
    if (ngx_http_sse_hub) {
        (void) ngx_atomic_fetch_add(&ngx_http_sse_hub->sh->slow_closed, 1);
    }
}


void
ngx_http_sse_hub_count_delivered(ngx_uint_t n)
{
    if (ngx_http_sse_hub && n) {
        (void) ngx_atomic_fetch_add(&ngx_http_sse_hub->sh->delivered, n);
    }
}
