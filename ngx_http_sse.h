
/*
 * ngx_http_sse_module: a Server-Sent Events hub inside nginx.
 *
 * The types and prototypes the module's files share.  The files are layers;
 * each calls only those below it:
 *
 *   ngx_http_sse_module.c     directives, configuration, worker start/exit
 *   ngx_http_sse_stream.c     the subscriber: stream handler, takeover,
 *                             writing, heartbeat, what a worker delivers
 *   ngx_http_sse_publish.c    the publish and channel-info handlers
 *   ngx_http_sse_status.c     sse_status
 *   ngx_http_sse_request.c    what every handler does with its request:
 *                             its channels, its JSON answers
 *   ngx_http_sse_redis.c      the Redis client: the log, its reader, the
 *                             PUBLISH ingress, on nginx's event loop
 *   ngx_http_sse_event.c      pure parts, no request: body parser, checks,
 *                             UTF-8, framing, channel lists, ids
 *   ngx_http_sse_worker.c     a worker's side of the hub: wake-ups, reading
 *                             the log into its blocks, its channels
 *   ngx_http_sse_hub.c        the shared zone: channels, kept events, the
 *                             log, ids, counters, the one publish entry point
 *
 * The hub never calls up by name: the worker side registers what the hub
 * calls when the zone changes, and the stream side registers what a worker
 * calls with the events it read (as upstream takes u->process_header).
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

/* <ms> "-" <seq> */
#define NGX_HTTP_SSE_ID_LEN         (NGX_INT64_LEN * 2 + 1)
/* "id: " <id> "\n" */
#define NGX_HTTP_SSE_ID_LINE_LEN    (sizeof("id: \n") - 1 + NGX_HTTP_SSE_ID_LEN)

/* "sse_retry 0" is sent ("reconnect at once"), "off" is not */
#define NGX_HTTP_SSE_RETRY_OFF      ((ngx_msec_t) -2)


/* configuration */

/* what the hub keeps of a channel's events */

typedef struct {
    ngx_uint_t                      history;    /* events */
    ngx_msec_t                      history_ttl;
} ngx_http_sse_policy_t;


#define NGX_HTTP_SSE_REDIS_PAYLOAD_DATA          0
#define NGX_HTTP_SSE_REDIS_PAYLOAD_EVENT_STREAM  1

typedef struct {
    ngx_str_t                       url;        /* empty: no Redis */
    ngx_str_t                       host;       /* numeric, NUL-ended */
    in_port_t                       port;
    ngx_str_t                       user;
    ngx_str_t                       password;
    ngx_int_t                       db;
    ngx_str_t                       prefix;
    ngx_str_t                       log_key;    /* <prefix>log */
    ngx_str_t                       lease_key;  /* <prefix>ingress */
    ngx_str_t                       pattern;    /* <prefix>*, escaped */
    ngx_str_t                       probe;      /* <prefix>#probe */
    ngx_uint_t                      payload;
    ngx_int_t                       log_max;
    ngx_msec_t                      timeout;

    /* for entries that name none: the http level's sse_history... */
    ngx_http_sse_policy_t           policy;
    size_t                          max_message_size;
    ngx_uint_t                      max_events;
} ngx_http_sse_redis_conf_t;


typedef struct {
    ngx_shm_zone_t                 *shm_zone;
    ngx_flag_t                      used;
    ngx_http_sse_redis_conf_t       redis;
} ngx_http_sse_main_conf_t;


typedef struct {
    ngx_http_complex_value_t       *stream;
    ngx_http_complex_value_t       *publish;
    ngx_flag_t                      status;

    ngx_int_t                       history;
    ngx_msec_t                      history_ttl;
    ngx_msec_t                      retry;
    ngx_msec_t                      heartbeat;
    size_t                          max_pending;
    ngx_int_t                       max_subscribers;
    size_t                          max_message_size;
    ngx_int_t                       max_events;

    ngx_str_t                       retry_line;
} ngx_http_sse_loc_conf_t;


/* the zone */

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
    uint64_t                        pos;        /* in the log, from 1 */
    uint32_t                        len;
    uint32_t                        cost;       /* bytes the slab gave it */
    unsigned                        in_log:1;
    unsigned                        in_history:1;
    unsigned                        control:1;  /* ends channel streams */
    u_char                          data[1];
} ngx_http_sse_event_t;


struct ngx_http_sse_channel_s {
    ngx_str_node_t                  sn;
    ngx_queue_t                     history;
    ngx_uint_t                      nevents;    /* kept for replay */
    ngx_uint_t                      refs;       /* events, wchans, pins */
    ngx_uint_t                      nsubs;      /* all workers */
    ngx_msec_t                      history_ttl;
    ngx_http_sse_id_t               last_id;
    ngx_http_sse_id_t               evicted;    /* newest gone from history */
    u_char                          name[1];
};


/* the subscribers one worker has on one channel */

typedef struct {
    ngx_queue_t                     slot_q;
    ngx_http_sse_channel_t         *channel;
    ngx_uint_t                      nsubs;
} ngx_http_sse_wchan_t;


/* a worker's place in the hub */

typedef struct {
    ngx_pid_t                       pid;
    ngx_atomic_t                    wake;       /* a wake-up is on its way */
    uint64_t                        cursor;     /* last log pos read */
    ngx_uint_t                      nsubs;
    ngx_queue_t                     wchans;
} ngx_http_sse_slot_t;


/* a node's link to Redis, as its workers share it */

typedef struct {
    ngx_pid_t                       reader;     /* reads the Redis log */
    ngx_msec_t                      reader_beat; /* its last tick */
    ngx_uint_t                      up;         /* its link is up */
    ngx_uint_t                      ingress;    /* converts PUBLISH */
    ngx_http_sse_id_t               read_id;    /* the last entry read */
    ngx_atomic_t                    logged;
    ngx_atomic_t                    read;
    ngx_atomic_t                    reconnects;
} ngx_http_sse_redis_shm_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     log;
    ngx_queue_t                     history;
    ngx_http_sse_id_t               last_id;
    uint64_t                        log_pos;    /* of the newest entry */
    ngx_uint_t                      nslots;
    uint32_t                        nonce;      /* in wake-up addresses */
    ngx_msec_t                      min_ttl;    /* shortest ttl seen */
    size_t                          hist_bytes; /* the kept events' cost */

    ngx_uint_t                      channels;
    ngx_uint_t                      subscribers;
    ngx_uint_t                      kept;
    uint64_t                        published;
    uint64_t                        evicted;
    ngx_atomic_t                    delivered;
    ngx_atomic_t                    slow_closed;

    ngx_http_sse_redis_shm_t        redis;

    ngx_http_sse_slot_t             slots[NGX_HTTP_SSE_MAX_SLOTS];
} ngx_http_sse_shctx_t;


typedef struct {
    ngx_http_sse_shctx_t           *sh;
    ngx_slab_pool_t                *shpool;
    ngx_shm_zone_t                 *shm_zone;
} ngx_http_sse_hub_t;


/* one channel of a publish, or of a channel's info or deletion */

typedef struct {
    ngx_str_t                       name;
    ngx_http_sse_id_t               last_id;
    ngx_uint_t                      nevents;
    ngx_uint_t                      nsubs;
    ngx_uint_t                      found;
} ngx_http_sse_target_t;


/* a publish: every event to every target, in order, or nothing */

typedef struct {
    ngx_str_t                      *events;     /* framed, without "id:" */
    ngx_uint_t                      nevents;
    ngx_http_sse_target_t          *targets;    /* at most 16 */
    ngx_uint_t                      ntargets;
    ngx_http_sse_policy_t           policy;

    /*
     * NULL: the hub numbers the events; else the id of the one event on
     * its one channel, from the Redis log
     */
    ngx_http_sse_id_t              *id;
} ngx_http_sse_publish_t;


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
    ngx_uint_t                      redis_up;
    ngx_uint_t                      redis_ingress;
    uint64_t                        redis_logged;
    uint64_t                        redis_read;
    uint64_t                        redis_reconnects;
} ngx_http_sse_stats_t;


/* an entry for the Redis log */

typedef struct {
    ngx_str_t                       op;         /* "" or "delete" */
    ngx_str_t                       channel;
    ngx_str_t                       type;       /* "": message */
    ngx_str_t                       data;
    ngx_int_t                       history;    /* -1: not given */
    ngx_msec_t                      ttl;        /* unset: not given */
} ngx_http_sse_redis_entry_t;

typedef struct ngx_http_sse_redis_op_s  ngx_http_sse_redis_op_t;

/* rc NGX_OK: the entries are in the log with these ids */
typedef void (*ngx_http_sse_redis_done_pt)(void *data, ngx_int_t rc,
    ngx_http_sse_id_t *ids, ngx_uint_t n);


/* a worker's side: its copy of events, shared by its subscribers' bufs */

typedef struct ngx_http_sse_lchan_s  ngx_http_sse_lchan_t;

typedef struct {
    ngx_uint_t                      refs;
    ngx_http_sse_lchan_t           *lchan;      /* whose block it is */
    u_char                         *pos;        /* the events */
    size_t                          len;
    size_t                          size;       /* room after pos */
    u_char                          data[1];
} ngx_http_sse_block_t;


/* a worker's view of a channel it has subscribers on */

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
    ngx_http_sse_block_t           *block;

    /* what one read of the hub log brought for this channel */
    ngx_http_sse_lchan_t           *round_next;
    ngx_http_sse_block_t           *round;      /* the block they are in */
    u_char                         *round_pos;
    size_t                          round_size;
    ngx_uint_t                      round_events;
    unsigned                        round_touched:1;
    unsigned                        round_end:1;  /* then end the streams */
};


typedef struct ngx_http_sse_sub_s  ngx_http_sse_sub_t;

/* a stream's place among a channel's streams in its worker */

typedef struct {
    ngx_queue_t                     queue;      /* in lchan->(m)links */
    ngx_http_sse_sub_t             *sub;
    ngx_http_sse_lchan_t           *lchan;
} ngx_http_sse_link_t;


/* one event of a read of the hub log, in id order */

typedef struct {
    ngx_http_sse_lchan_t           *lchan;
    ngx_http_sse_block_t           *block;      /* NULL: its streams end */
    u_char                         *pos;        /* the event in the block */
    size_t                          len;
} ngx_http_sse_delivery_t;


typedef struct {
    ngx_str_t                      *names;
    ngx_uint_t                      n;
    ngx_uint_t                      max_subscribers;
    ngx_http_sse_lchan_t          **lchans;     /* out, n of them */
} ngx_http_sse_subscribe_t;


/* a piece of a stream's replay */

typedef struct {
    ngx_http_sse_id_t               last;       /* in: after; out: sent */
    ngx_uint_t                      first;      /* the first piece */
    ngx_uint_t                      hold;       /* in: ids are global */
    size_t                          max;        /* bytes, one event at least */
    ngx_http_sse_block_t           *block;      /* out, or NULL */
    ngx_uint_t                      events;     /* out: in the block */
} ngx_http_sse_replay_t;


/* what a worker calls with what it read: the stream side registers it */

typedef struct {
    void                          (*deliver)(ngx_http_sse_delivery_t *d,
                                       ngx_uint_t n,
                                       ngx_http_sse_lchan_t *touched);
    void                          (*end_all)(void);
} ngx_http_sse_streams_t;


/* streams a worker feeds itself, with no channel: the stats stream */

typedef struct {
    ngx_queue_t                     subs;
    ngx_uint_t                      n;
} ngx_http_sse_feed_t;


/* an event as published, before it is framed */

typedef struct {
    ngx_str_t                       type;
    ngx_str_t                       data;
} ngx_http_sse_fields_t;


extern ngx_module_t  ngx_http_sse_module;


/* ngx_http_sse_hub.c: the zone */

ngx_int_t ngx_http_sse_hub_init_zone(ngx_shm_zone_t *shm_zone, void *data);
void ngx_http_sse_hub_set(ngx_http_sse_hub_t *hub, void (*changed)(void));
ngx_http_sse_hub_t *ngx_http_sse_hub_get(void);
void ngx_http_sse_hub_lock(void);
void ngx_http_sse_hub_unlock(void);
uint64_t ngx_http_sse_hub_now(void);
uint64_t ngx_http_sse_hub_wall(void);
void ngx_http_sse_hub_set_clock(uint64_t (*clock)(void));

ngx_http_sse_slot_t *ngx_http_sse_hub_attach(ngx_log_t *log);
void ngx_http_sse_hub_detach(ngx_http_sse_slot_t *slot);
void ngx_http_sse_hub_reap_slots_locked(ngx_log_t *log);
void ngx_http_sse_hub_expire(ngx_log_t *log);

ngx_int_t ngx_http_sse_hub_publish(ngx_http_sse_publish_t *pub,
    ngx_log_t *log);
ngx_int_t ngx_http_sse_hub_channel_info(ngx_http_sse_target_t *t);
ngx_int_t ngx_http_sse_hub_channel_delete(ngx_http_sse_target_t *t,
    ngx_http_sse_id_t *id, ngx_log_t *log);

ngx_int_t ngx_http_sse_hub_channels_get_locked(ngx_str_t *names,
    ngx_uint_t n, ngx_uint_t max_subscribers, ngx_http_sse_channel_t **chans);
void ngx_http_sse_hub_channels_put_locked(ngx_http_sse_channel_t **chans,
    ngx_uint_t n);
void ngx_http_sse_hub_channel_put_locked(ngx_http_sse_channel_t *ch);
ngx_http_sse_wchan_t *ngx_http_sse_hub_wchan_add_locked(
    ngx_http_sse_slot_t *slot, ngx_http_sse_channel_t *ch);
void ngx_http_sse_hub_wchan_free_locked(ngx_http_sse_wchan_t *wc);
void ngx_http_sse_hub_join_locked(ngx_http_sse_slot_t *slot,
    ngx_http_sse_wchan_t **wchans, ngx_uint_t n);
void ngx_http_sse_hub_leave_locked(ngx_http_sse_slot_t *slot,
    ngx_http_sse_wchan_t **wchans, ngx_uint_t n);
void ngx_http_sse_hub_trim_log_locked(void);
ngx_int_t ngx_http_sse_hub_replay_locked(ngx_http_sse_channel_t **chans,
    ngx_uint_t n, uint64_t upto, ngx_http_sse_replay_t *rp, ngx_log_t *log);

void ngx_http_sse_hub_stats(ngx_http_sse_stats_t *st);
void ngx_http_sse_hub_count_slow(void);
void ngx_http_sse_hub_count_delivered(ngx_uint_t n);


/* ngx_http_sse_worker.c: this worker's side of the hub */

ngx_int_t ngx_http_sse_worker_init(ngx_cycle_t *cycle,
    ngx_http_sse_hub_t *hub, ngx_http_sse_streams_t *streams);
void ngx_http_sse_worker_exit(ngx_cycle_t *cycle);
void ngx_http_sse_worker_read(void);
ngx_int_t ngx_http_sse_worker_subscribe(ngx_http_sse_subscribe_t *s,
    ngx_log_t *log);
void ngx_http_sse_worker_unsubscribe(ngx_http_sse_lchan_t **lchans,
    ngx_uint_t n);
ngx_int_t ngx_http_sse_worker_replay(ngx_http_sse_lchan_t **lchans,
    ngx_uint_t n, ngx_http_sse_replay_t *rp, ngx_log_t *log);
void ngx_http_sse_block_release(ngx_http_sse_block_t *block);


/* ngx_http_sse_redis.c */

char *ngx_http_sse_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_sse_redis_conf_t *rcf);
char *ngx_http_sse_redis_init_conf(ngx_conf_t *cf,
    ngx_http_sse_redis_conf_t *rcf);
ngx_int_t ngx_http_sse_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_sse_redis_conf_t *rcf);
void ngx_http_sse_redis_exit_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_sse_redis_append(ngx_http_sse_redis_entry_t *e,
    ngx_uint_t n, ngx_http_sse_redis_done_pt done, void *data,
    ngx_http_sse_redis_op_t **opp);
void ngx_http_sse_redis_cancel(ngx_http_sse_redis_op_t *op);


/* ngx_http_sse_event.c: no request */

ngx_int_t ngx_http_sse_parse_body(ngx_pool_t *pool, ngx_str_t *body,
    ngx_uint_t max, ngx_array_t *events, const char **err);
ngx_int_t ngx_http_sse_check_event(ngx_http_sse_fields_t *e, size_t max,
    const char **err);
ngx_int_t ngx_http_sse_valid_utf8(u_char *p, size_t len);
ngx_int_t ngx_http_sse_frame(ngx_pool_t *pool, ngx_http_sse_fields_t *e,
    ngx_str_t *out);
ngx_int_t ngx_http_sse_parse_channels(ngx_str_t *value, ngx_str_t *names,
    ngx_uint_t *n, const char **err);
ngx_uint_t ngx_http_sse_is_event_stream(ngx_str_t *content_type);
u_char *ngx_http_sse_id_format(u_char *p, ngx_http_sse_id_t *id);
ngx_int_t ngx_http_sse_id_parse(u_char *p, size_t len, ngx_http_sse_id_t *id);

#define ngx_http_sse_id_gt(a, b)                                              \
    ((a)->ms > (b)->ms || ((a)->ms == (b)->ms && (a)->seq > (b)->seq))

extern ngx_str_t  ngx_http_sse_message;


/*
 * A log line that a client or a slow Redis could repeat at will is said at
 * most once a second per worker, with how many times it happened since the
 * last time it was said ("seen", this one included).
 */

typedef struct {
    ngx_msec_t                      at;
    ngx_uint_t                      seen;
    ngx_uint_t                      said;   /* "at" is set */
} ngx_http_sse_log_limit_t;

static ngx_inline ngx_uint_t
ngx_http_sse_log_due(ngx_http_sse_log_limit_t *l)
{
    l->seen++;

    if (l->said && ngx_current_msec - l->at < 1000) {
        return 0;
    }

    l->said = 1;
    l->at = ngx_current_msec;

    return 1;
}


/* ngx_http_sse_request.c: a handler's request */

#define ngx_http_sse_redis_on(r)                                              \
    (((ngx_http_sse_main_conf_t *)                                            \
      ngx_http_get_module_main_conf(r, ngx_http_sse_module))->redis.url.len)

ngx_int_t ngx_http_sse_request_channels(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *names, ngx_uint_t *n,
    const char **err);
ngx_int_t ngx_http_sse_request_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_sse_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len);
ngx_int_t ngx_http_sse_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len);
ngx_int_t ngx_http_sse_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *msg);
ngx_int_t ngx_http_sse_not_allowed(ngx_http_request_t *r,
    const char *allow);
ngx_table_elt_t *ngx_http_sse_add_header(ngx_http_request_t *r,
    const char *key, const char *value);
ngx_int_t ngx_http_sse_error_filter_init(ngx_conf_t *cf);


/* the handlers, set by the directives */

ngx_int_t ngx_http_sse_stream_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sse_publish_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sse_status_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_sse_stream_feed(ngx_http_request_t *r,
    ngx_http_sse_feed_t *feed);
void ngx_http_sse_feed_send(ngx_http_sse_feed_t *feed, u_char *data,
    size_t len);

ngx_int_t ngx_http_sse_stream_init_worker(ngx_cycle_t *cycle,
    ngx_http_sse_hub_t *hub);
void ngx_http_sse_stream_exit_worker(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_SSE_H_INCLUDED_ */
