
/*
 * ngx_http_sse_module: a Server-Sent Events hub inside nginx.
 *
 * The hub lives in one shared zone: channels in an rbtree, the events each
 * channel keeps for replay, and one hub-wide log of events in id order that
 * every worker reads with a cursor of its own.  A worker is woken by a
 * datagram on its own socket; the wake-up carries no data.
 */


#ifndef _NGX_HTTP_SSE_H_INCLUDED_
#define _NGX_HTTP_SSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_SSE_MAX_CHANNELS   16
#define NGX_HTTP_SSE_MAX_NAME       128
#define NGX_HTTP_SSE_MAX_SLOTS      128
#define NGX_HTTP_SSE_MAX_TYPE       64

/*
 * a channel's events are copied into blocks of four times what one read of
 * the hub log brings, within these bounds (or one read's size if larger)
 */
#define NGX_HTTP_SSE_BLOCK_MIN      256
#define NGX_HTTP_SSE_BLOCK_MAX      4000

/* "id: " <ms> "-" <seq> "\n" */
#define NGX_HTTP_SSE_ID_LEN         (NGX_INT64_LEN * 2 + 1)
#define NGX_HTTP_SSE_ID_LINE_LEN    (sizeof("id: \n") - 1 + NGX_HTTP_SSE_ID_LEN)


typedef struct {
    uint64_t                        ms;
    uint64_t                        seq;
} ngx_http_sse_id_t;


typedef struct ngx_http_sse_channel_s  ngx_http_sse_channel_t;


/* an event as kept in the zone, already framed for the wire */

typedef struct {
    ngx_queue_t                     log;        /* hub log, in id order */
    ngx_queue_t                     chan;       /* channel history */
    ngx_queue_t                     all;        /* hub history, oldest first */
    ngx_http_sse_channel_t         *channel;
    ngx_http_sse_id_t               id;
    uint32_t                        len;
    unsigned                        in_log:1;
    unsigned                        in_history:1;
    unsigned                        control:1;  /* ends channel streams */
    u_char                          data[1];
} ngx_http_sse_event_t;


struct ngx_http_sse_channel_s {
    ngx_str_node_t                  sn;
    ngx_queue_t                     history;
    ngx_queue_t                     wchans;
    ngx_uint_t                      nevents;    /* kept for replay */
    ngx_uint_t                      refs;       /* events, wchans, pins */
    ngx_uint_t                      nsubs;      /* all workers */
    ngx_uint_t                      history_max;
    ngx_msec_t                      history_ttl;
    ngx_http_sse_id_t               last_id;
    u_char                          name[1];
};


/* the subscribers one worker has on one channel */

typedef struct {
    ngx_queue_t                     chan_q;
    ngx_queue_t                     slot_q;
    ngx_http_sse_channel_t         *channel;
    ngx_uint_t                      nsubs;
} ngx_http_sse_wchan_t;


typedef struct {
    ngx_pid_t                       pid;
    ngx_atomic_t                    wake;       /* a wake-up is on its way */
    uint64_t                        cursor;     /* last log seq read */
    ngx_uint_t                      nsubs;
    ngx_queue_t                     wchans;
} ngx_http_sse_slot_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     log;
    ngx_queue_t                     history;
    ngx_http_sse_id_t               last_id;
    ngx_uint_t                      nslots;
    uint32_t                        nonce;      /* in wake-up addresses */
    ngx_msec_t                      min_ttl;    /* shortest ttl seen */
    ngx_uint_t                      hist_pages; /* of large kept events */
    ngx_uint_t                      hist_small; /* small kept events */

    ngx_uint_t                      channels;
    ngx_uint_t                      subscribers;
    ngx_uint_t                      kept;
    uint64_t                        published;
    uint64_t                        evicted;
    ngx_atomic_t                    delivered;
    ngx_atomic_t                    slow_closed;

    ngx_http_sse_slot_t             slots[NGX_HTTP_SSE_MAX_SLOTS];
} ngx_http_sse_shctx_t;


typedef struct {
    ngx_http_sse_shctx_t           *sh;
    ngx_slab_pool_t                *shpool;
    ngx_shm_zone_t                 *shm_zone;
} ngx_http_sse_hub_t;


/* one worker's copy of events, shared by its subscribers' bufs */

typedef struct ngx_http_sse_lchan_s  ngx_http_sse_lchan_t;

typedef struct {
    ngx_uint_t                      refs;
    ngx_http_sse_lchan_t           *lchan;      /* whose block it is */
    u_char                         *pos;        /* the events */
    size_t                          len;
    size_t                          size;       /* room after pos */
    u_char                          data[1];
} ngx_http_sse_msg_t;


/* worker-local: one worker's view of a channel it has subscribers on */

struct ngx_http_sse_lchan_s {
    ngx_rbtree_node_t               node;       /* key: channel address */
    ngx_http_sse_channel_t         *channel;
    ngx_http_sse_wchan_t           *wchan;
    ngx_queue_t                     links;      /* streams of this channel */
    ngx_queue_t                     mlinks;     /* streams of several */
    ngx_uint_t                      n;

    /*
     * the channel's events, appended to one block until it is full, so
     * that a stream's pending events stay one buf
     */
    ngx_http_sse_msg_t             *block;

    /* what one read of the hub log brought for this channel */
    ngx_http_sse_lchan_t           *round_next;
    ngx_http_sse_msg_t             *round;      /* the block they are in */
    u_char                         *round_pos;
    size_t                          round_size;
    ngx_uint_t                      round_events;
    unsigned                        round_touched:1;
    unsigned                        round_end:1;  /* then end the streams */
};


typedef struct ngx_http_sse_sub_s  ngx_http_sse_sub_t;

typedef struct {
    ngx_queue_t                     queue;      /* in lchan->(m)links */
    ngx_http_sse_sub_t             *sub;
    ngx_http_sse_lchan_t           *lchan;
} ngx_http_sse_link_t;


/* one event of a read of the hub log, in id order */

typedef struct {
    ngx_http_sse_lchan_t           *lchan;
    ngx_http_sse_msg_t             *msg;        /* NULL: end the streams */
    u_char                         *pos;        /* the event in msg */
    size_t                          len;
} ngx_http_sse_delivery_t;


/* one channel of a publish, get or delete */

typedef struct {
    ngx_str_t                       name;
    ngx_http_sse_id_t               last_id;
    ngx_uint_t                      nevents;
    ngx_uint_t                      nsubs;
    ngx_uint_t                      found;
} ngx_http_sse_target_t;


typedef struct {
    ngx_str_t                      *events;     /* framed, without "id:" */
    ngx_uint_t                      nevents;
    ngx_http_sse_target_t          *targets;
    ngx_uint_t                      ntargets;
    ngx_uint_t                      history;
    ngx_msec_t                      history_ttl;
    ngx_http_sse_event_t          **scratch;    /* nevents * ntargets */
} ngx_http_sse_publish_t;


typedef struct {
    ngx_str_t                      *names;
    ngx_uint_t                      n;
    ngx_uint_t                      max_subscribers;
    ngx_http_sse_id_t               last_id;
    ngx_uint_t                      resume;     /* last_id is set */
    ngx_http_sse_lchan_t          **lchans;     /* out, n of them */
    ngx_http_sse_msg_t             *replay;     /* out, or NULL */
} ngx_http_sse_subscribe_t;


typedef struct {
    ngx_uint_t                      subscribers;
    ngx_uint_t                      channels;
    ngx_uint_t                      kept;
    ngx_uint_t                      workers;
    uint64_t                        published;
    uint64_t                        delivered;
    uint64_t                        evicted;
    uint64_t                        slow_closed;
    size_t                          bytes_used;
    size_t                          bytes_total;
} ngx_http_sse_stats_t;


ngx_int_t ngx_http_sse_hub_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ngx_http_sse_hub_init_worker(ngx_cycle_t *cycle,
    ngx_http_sse_hub_t *hub);
void ngx_http_sse_hub_exit_worker(ngx_cycle_t *cycle);

ngx_int_t ngx_http_sse_hub_publish(ngx_http_sse_publish_t *pub,
    ngx_log_t *log);
ngx_int_t ngx_http_sse_hub_lookup(ngx_http_sse_target_t *t, ngx_uint_t del);
ngx_int_t ngx_http_sse_hub_subscribe(ngx_http_sse_subscribe_t *s,
    ngx_log_t *log);
void ngx_http_sse_hub_unsubscribe(ngx_http_sse_lchan_t **lchans,
    ngx_uint_t n);
void ngx_http_sse_hub_read(void);
void ngx_http_sse_hub_stats(ngx_http_sse_stats_t *st);
void ngx_http_sse_hub_count_slow(void);
void ngx_http_sse_hub_count_delivered(ngx_uint_t n);

void ngx_http_sse_msg_release(ngx_http_sse_msg_t *msg);
u_char *ngx_http_sse_id_format(u_char *p, ngx_http_sse_id_t *id);
ngx_int_t ngx_http_sse_id_parse(u_char *p, size_t len, ngx_http_sse_id_t *id);

/* the module's side, called by the hub */
void ngx_http_sse_dispatch(ngx_http_sse_delivery_t *d, ngx_uint_t n,
    ngx_http_sse_lchan_t *touched);
void ngx_http_sse_end_all(void);


#endif /* _NGX_HTTP_SSE_H_INCLUDED_ */
