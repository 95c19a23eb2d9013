
/*
 * ngx_http_sse_module: the Redis client, hiredis's async API on nginx's own
 * event loop (no thread, no blocking call).  With sse_redis, Redis holds the
 * hub's log, the stream <prefix>log, and each node is a reader of it:
 *
 *   - every worker has a command link: publishes (POST, DELETE) are
 *     appended to the log by one script call, which refuses to append once
 *     sse_redis_timeout has passed on Redis's clock, so a publish answered
 *     503 is delivered nowhere;
 *   - one worker per node, chosen in the zone, reads the log (XREAD BLOCK
 *     on a link of its own) and puts each entry into the zone with its
 *     Redis id, through the hub's one publish entry point: every node, the
 *     one that took the POST included, delivers what it reads, once;
 *   - one worker of all nodes at a time, the holder of a lease in Redis,
 *     subscribes to <prefix>* and appends each PUBLISH message to the log
 *     (the script checks the lease, so a message is logged once).
 *
 * Calls: hiredis, ngx_http_sse_event.c (checks, framing, ids) and
 * ngx_http_sse_hub.c (the publish entry point, the zone's Redis state).
 */


#include "ngx_http_sse.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/* entries one XREAD brings at most, and how long it waits for one */
#define NGX_HTTP_SSE_REDIS_READ_COUNT   "1000"
#define NGX_HTTP_SSE_REDIS_READ_BLOCK   2000

#define NGX_HTTP_SSE_REDIS_TICK         200

/*
 * a reader whose tick has not run for this long (ms, on the host's
 * monotonic clock, which all workers share) is taken over: its pid may be
 * alive, but be another process's now
 */
#define NGX_HTTP_SSE_REDIS_READER_STALE 10000

/* entries one script call appends at most: a group is sent when it is full */
#define NGX_HTTP_SSE_REDIS_GROUP        1000
#define NGX_HTTP_SSE_REDIS_LEASE_TTL    3000
#define NGX_HTTP_SSE_REDIS_LEASE_RENEW  1000
#define NGX_HTTP_SSE_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_SSE_REDIS_BACKOFF_MAX  2000

/*
 * the PUBLISH subscriber proves itself with a probe message this often,
 * and is made again when one does not come back within the next period
 */
#define NGX_HTTP_SSE_REDIS_PROBE        2000

/* what a closed link's log line says at most of why */
#define NGX_HTTP_SSE_REDIS_REASON_LEN   128

/* the clock offset to Redis is measured again this often */
#define NGX_HTTP_SSE_REDIS_CLOCK_EVERY  60000

/* seconds of a TIME answer beyond which it is no time (year 5138) */
#define NGX_HTTP_SSE_REDIS_TIME_MAX     100000000000LL


typedef enum {
    NGX_HTTP_SSE_REDIS_DOWN = 0,
    NGX_HTTP_SSE_REDIS_CONNECTING,
    NGX_HTTP_SSE_REDIS_READY
} ngx_http_sse_redis_state_e;


typedef struct ngx_http_sse_redis_link_s  ngx_http_sse_redis_link_t;

struct ngx_http_sse_redis_link_s {
    const char                     *name;
    redisAsyncContext              *ac;
    ngx_connection_t               *c;
    ngx_event_t                     retry;      /* reconnect, after backoff */
    ngx_event_t                     watchdog;   /* a reply that is late */
    ngx_msec_t                      backoff;
    ngx_http_sse_redis_state_e      state;
    ngx_uint_t                      handshake;  /* replies still due */
    ngx_uint_t                      lost;       /* failed since ready */
    /*
     * why we close it, copied: a reason may be a reply's error string,
     * which hiredis frees before the cleanup that logs it runs
     */
    u_char                          reason[NGX_HTTP_SSE_REDIS_REASON_LEN];
    void                          (*ready)(ngx_http_sse_redis_link_t *l);
    unsigned                        wanted:1;
    unsigned                        silent:1;   /* not ready yet: no log */
    unsigned                        writing:1;  /* in the write handler */
};


struct ngx_http_sse_redis_op_s {
    ngx_http_sse_redis_done_pt      done;       /* NULL: cancelled */
    void                           *data;
    ngx_uint_t                      n;
    ngx_http_sse_id_t               ids[1];
};


/* the publishes of one turn of the event loop, in one script call */

typedef struct {
    ngx_uint_t                      nops;
    ngx_uint_t                      nentries;
    ngx_http_sse_redis_op_t        *ops[1];
} ngx_http_sse_redis_group_t;


typedef struct {
    ngx_http_sse_redis_conf_t      *conf;
    ngx_log_t                      *log;
    ngx_http_sse_redis_link_t       cmd;
    ngx_http_sse_redis_link_t       reader;
    ngx_http_sse_redis_link_t       sub;
    ngx_event_t                     tick;
    ngx_msec_t                      lease_at;   /* next lease try/renew */
    ngx_msec_t                      clock_at;   /* next clock measure */
    ngx_msec_t                      clock_sent;
    ngx_msec_t                      probe_at;   /* the last probe sent */
    ngx_uint_t                      probe_seen;
    int64_t                         offset;     /* Redis's clock - ours */
    ngx_http_sse_id_t               read_id;    /* last entry read */
    ngx_str_t                       token;      /* this worker's lease */
    u_char                          token_data[48];
    u_char                          append_sha[41];
    u_char                          lease_sha[41];
    u_char                          release_sha[41];
    ngx_pool_t                     *group_pool; /* this turn's publishes */
    ngx_array_t                     group_entries;
    ngx_array_t                     group_ops;
    ngx_msec_t                      group_start; /* its first publish */
    ngx_event_t                     group_send;
    ngx_http_sse_log_limit_t        refused_log;
    ngx_http_sse_log_limit_t        late_log;
    ngx_http_sse_log_limit_t        dropped_log;
    unsigned                        is_reader:1;
    unsigned                        is_ingress:1;
    unsigned                        lease_pending:1;
    unsigned                        down_logged:1;
    unsigned                        exiting:1;
    unsigned                        clock_known:1; /* TIME answered */
} ngx_http_sse_redis_t;


static void ngx_http_sse_redis_link_init(ngx_http_sse_redis_link_t *link,
    const char *name, void (*ready)(ngx_http_sse_redis_link_t *l));
static void ngx_http_sse_redis_connect(ngx_http_sse_redis_link_t *link);
static ngx_int_t ngx_http_sse_redis_attach(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_add_read(void *data);
static void ngx_http_sse_redis_del_read(void *data);
static void ngx_http_sse_redis_add_write(void *data);
static void ngx_http_sse_redis_del_write(void *data);
static void ngx_http_sse_redis_cleanup(void *data);
static void ngx_http_sse_redis_watch(ngx_http_sse_redis_link_t *link,
    ngx_event_t *ev, ngx_int_t event);
static void ngx_http_sse_redis_unwatch(ngx_event_t *ev, ngx_int_t event);
static void ngx_http_sse_redis_read_handler(ngx_event_t *rev);
static void ngx_http_sse_redis_write_handler(ngx_event_t *wev);
static void ngx_http_sse_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_sse_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_sse_redis_handshake(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_handshake_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_int_t ngx_http_sse_redis_command(ngx_http_sse_redis_link_t *link,
    redisCallbackFn *fn, void *privdata, ngx_uint_t argc, ngx_str_t *argv);
static void ngx_http_sse_redis_close(ngx_http_sse_redis_link_t *link,
    const char *reason);
static void ngx_http_sse_redis_reason(ngx_http_sse_redis_link_t *link,
    const char *reason);
static void ngx_http_sse_redis_sent(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_any_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_sse_redis_replied(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_link_lost(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_retry_handler(ngx_event_t *ev);
static void ngx_http_sse_redis_watchdog_handler(ngx_event_t *ev);
static void ngx_http_sse_redis_log_down(ngx_http_sse_redis_link_t *link,
    const char *err);
static void ngx_http_sse_redis_log_up(ngx_http_sse_redis_link_t *link);

static void ngx_http_sse_redis_cmd_ready(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_clock(void);
static void ngx_http_sse_redis_clock_reply(redisAsyncContext *ac, void *r,
    void *privdata);

static uint64_t ngx_http_sse_redis_now(void);
static void ngx_http_sse_redis_clock_set(int64_t redis_ms);
static void ngx_http_sse_redis_tick_handler(ngx_event_t *ev);
static void ngx_http_sse_redis_elect(void);
static void ngx_http_sse_redis_beat(void);
static void ngx_http_sse_redis_set_status(ngx_int_t up, ngx_int_t ingress);
static void ngx_http_sse_redis_reader_ready(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_xread(void);
static void ngx_http_sse_redis_xread_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_http_sse_redis_entry(redisReply *id, redisReply *fields,
    ngx_pool_t *pool);
static ngx_int_t ngx_http_sse_redis_entry_apply(ngx_http_sse_id_t *id,
    redisReply *fields, ngx_pool_t *pool, const char **err);

static void ngx_http_sse_redis_lease(void);
static void ngx_http_sse_redis_lease_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_sse_redis_lease_lost(void);
static void ngx_http_sse_redis_sub_ready(ngx_http_sse_redis_link_t *link);
static void ngx_http_sse_redis_message(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_http_sse_redis_convert(ngx_str_t *channel,
    ngx_str_t *payload, ngx_pool_t *pool, const char **err);
static ngx_int_t ngx_http_sse_redis_send_append(
    ngx_http_sse_redis_entry_t *e, ngx_uint_t n, uint64_t deadline,
    ngx_str_t *token, redisCallbackFn *fn, void *privdata, ngx_pool_t *pool);
static ngx_int_t ngx_http_sse_redis_group_add(ngx_http_sse_redis_entry_t *e,
    ngx_uint_t n, ngx_http_sse_redis_op_t *op);
static void ngx_http_sse_redis_group_send(ngx_event_t *ev);
static void ngx_http_sse_redis_group_fail(ngx_http_sse_redis_op_t **ops,
    ngx_uint_t n);
static void ngx_http_sse_redis_group_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_http_sse_redis_ids(redisReply *reply, ngx_uint_t from,
    ngx_http_sse_redis_op_t *op);
static void ngx_http_sse_redis_release(void);
static void ngx_http_sse_redis_probe(void);


/*
 * The append script.  KEYS: the log, the lease.  ARGV: MAXLEN, a deadline
 * on Redis's clock in ms (0: none), the lease token ("": not checked), then
 * six values per entry: op, channel, event, data, history, ttl ("": left
 * out).  Returns the entries' ids, or an error and appends nothing.
 */

static ngx_str_t  ngx_http_sse_redis_append_lua = ngx_string(
    "local dl = tonumber(ARGV[2])\n"
    "if dl > 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > dl\n"
    "  then return redis.error_reply('SSETIMEOUT publish too late') end\n"
    "end\n"
    "if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then\n"
    "  return redis.error_reply('SSENOLEASE not the ingress')\n"
    "end\n"
    "local names = {'op', 'channel', 'event', 'data', 'history', 'ttl'}\n"
    "local ids = {}\n"
    "for i = 4, #ARGV, 6 do\n"
    "  local f = {}\n"
    "  for k = 0, 5 do\n"
    "    if ARGV[i + k] ~= '' or k == 3 then\n"
    "      f[#f + 1] = names[k + 1]\n"
    "      f[#f + 1] = ARGV[i + k]\n"
    "    end\n"
    "  end\n"
    "  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1],"
    " '*', unpack(f))\n"
    "end\n"
    "return ids\n");

/*
 * KEYS: the lease; ARGV: token, ttl in ms.  Takes the lease when it is
 * free, renews it when it is ours: 1 when it is ours now.
 */

static ngx_str_t  ngx_http_sse_redis_lease_lua = ngx_string(
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "if not v then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n");

static ngx_str_t  ngx_http_sse_redis_release_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n");


static ngx_http_sse_redis_t  ngx_http_sse_redis;


/* configuration: redis://[[user]:password@]host[:port][/db] */

char *
ngx_http_sse_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_sse_redis_conf_t *rcf)
{
    u_char     *p, *last, *at, *colon, *slash, *dst;
    ngx_int_t   db;
    ngx_str_t   user, password;
    ngx_url_t   u;

    p = url->data;
    last = p + url->len;

    if (url->len < sizeof("redis://") - 1
        || ngx_strncasecmp(p, (u_char *) "redis://", sizeof("redis://") - 1)
           != 0)
    {
        return "must be a redis:// URL";
    }

    p += sizeof("redis://") - 1;

    /* the password may hold '@' and '/': the host starts after the last '@' */

    at = NULL;

    for (dst = p; dst < last; dst++) {
        if (*dst == '@') {
            at = dst;
        }
    }

    ngx_str_null(&user);
    ngx_str_null(&password);

    if (at) {
        colon = ngx_strlchr(p, at, ':');

        if (colon == NULL) {
            return "has no password: use redis://:password@host "
                   "or redis://user:password@host";
        }

        user.data = p;
        user.len = colon - p;
        password.data = colon + 1;
        password.len = at - colon - 1;

        p = at + 1;
    }

    slash = ngx_strlchr(p, last, '/');

    db = 0;

    if (slash) {
        if (slash + 1 < last) {
            db = ngx_atoi(slash + 1, last - slash - 1);

            if (db == NGX_ERROR) {
                return "has a database that is not a number";
            }
        }

        last = slash;
    }

    if (p == last) {
        return "has no host";
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = p;
    u.url.len = last - p;
    u.default_port = 6379;

    /* resolved now: hiredis would resolve with a blocking call */

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sse_redis: %s in \"%V\"", u.err, url);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0 || u.family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sse_redis: no address for \"%V\"", &u.host);
        return NGX_CONF_ERROR;
    }

    rcf->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (rcf->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->host.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                  rcf->host.data, NGX_SOCKADDR_STRLEN, 0);
    rcf->host.data[rcf->host.len] = '\0';

    rcf->port = u.port;
    rcf->db = db;
    rcf->url = *url;

    /* percent-encoded, as in any URL */

    if (user.len) {
        dst = ngx_pnalloc(cf->pool, user.len);
        if (dst == NULL) {
            return NGX_CONF_ERROR;
        }

        rcf->user.data = dst;
        p = user.data;
        ngx_unescape_uri(&dst, &p, user.len, 0);
        rcf->user.len = dst - rcf->user.data;
    }

    if (password.len) {
        dst = ngx_pnalloc(cf->pool, password.len);
        if (dst == NULL) {
            return NGX_CONF_ERROR;
        }

        rcf->password.data = dst;
        p = password.data;
        ngx_unescape_uri(&dst, &p, password.len, 0);
        rcf->password.len = dst - rcf->password.data;
    }

    return NGX_CONF_OK;
}


/* the keys and the pattern that follow from the prefix */

char *
ngx_http_sse_redis_init_conf(ngx_conf_t *cf, ngx_http_sse_redis_conf_t *rcf)
{
    u_char      *p;
    ngx_uint_t   i;

    if (rcf->prefix.len > 64) {
        return "sse_redis_prefix: at most 64 bytes";
    }

    for (i = 0; i < rcf->prefix.len; i++) {
        if (rcf->prefix.data[i] <= 0x20 || rcf->prefix.data[i] >= 0x7f) {
            return "sse_redis_prefix: printable bytes, no spaces";
        }
    }

    rcf->log_key.len = rcf->prefix.len + sizeof("log") - 1;
    rcf->log_key.data = ngx_pnalloc(cf->pool, rcf->log_key.len);

    rcf->lease_key.len = rcf->prefix.len + sizeof("ingress") - 1;
    rcf->lease_key.data = ngx_pnalloc(cf->pool, rcf->lease_key.len);

    /* '#' is in no channel name: the probe is never taken for an event */
    rcf->probe.len = rcf->prefix.len + sizeof("#probe") - 1;
    rcf->probe.data = ngx_pnalloc(cf->pool, rcf->probe.len);

    /* the prefix's own glob characters are escaped in the pattern */
    rcf->pattern.data = ngx_pnalloc(cf->pool, 2 * rcf->prefix.len + 1);

    if (rcf->log_key.data == NULL || rcf->lease_key.data == NULL
        || rcf->pattern.data == NULL || rcf->probe.data == NULL)
    {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(rcf->log_key.data, "%Vlog", &rcf->prefix);
    ngx_sprintf(rcf->lease_key.data, "%Vingress", &rcf->prefix);
    ngx_sprintf(rcf->probe.data, "%V#probe", &rcf->prefix);

    p = rcf->pattern.data;

    for (i = 0; i < rcf->prefix.len; i++) {
        if (ngx_strchr("*?[]\\", rcf->prefix.data[i])) {
            *p++ = '\\';
        }

        *p++ = rcf->prefix.data[i];
    }

    *p++ = '*';
    rcf->pattern.len = p - rcf->pattern.data;

    return NGX_CONF_OK;
}


/* worker start and exit */

ngx_int_t
ngx_http_sse_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_sse_redis_conf_t *rcf)
{
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    rd->conf = rcf;
    rd->log = cycle->log;

    /*
     * until Redis's TIME is read, its clock is taken to be this host's
     * (publishes wait for it; the history's ages are near right)
     */
    rd->offset = (int64_t) ngx_http_sse_hub_wall() - (int64_t) ngx_current_msec;

    /* ids are Redis's: the history's ages are on its clock */
    ngx_http_sse_hub_set_clock(ngx_http_sse_redis_now);

    ngx_http_sse_redis_link_init(&rd->cmd, "command",
                                 ngx_http_sse_redis_cmd_ready);
    ngx_http_sse_redis_link_init(&rd->reader, "log reader",
                                 ngx_http_sse_redis_reader_ready);
    ngx_http_sse_redis_link_init(&rd->sub, "ingress",
                                 ngx_http_sse_redis_sub_ready);

    rd->token.data = rd->token_data;
    rd->token.len = ngx_sprintf(rd->token_data, "%P-%08xD%08xD-%T", ngx_pid,
                                (uint32_t) ngx_random(),
                                (uint32_t) ngx_random(), ngx_time())
                    - rd->token_data;

    rd->group_send.handler = ngx_http_sse_redis_group_send;
    rd->group_send.log = cycle->log;
    rd->group_send.data = rd;

    rd->tick.handler = ngx_http_sse_redis_tick_handler;
    rd->tick.log = cycle->log;
    rd->tick.data = rd;
    rd->tick.cancelable = 1;

    rd->cmd.wanted = 1;
    ngx_http_sse_redis_connect(&rd->cmd);

    ngx_http_sse_redis_elect();

    ngx_add_timer(&rd->tick, NGX_HTTP_SSE_REDIS_TICK);

    return NGX_OK;
}


void
ngx_http_sse_redis_exit_worker(ngx_cycle_t *cycle)
{
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (rd->conf == NULL) {
        return;
    }

    if (rd->group_send.posted) {
        ngx_delete_posted_event(&rd->group_send);
    }

    if (rd->group_pool) {
        ngx_http_sse_redis_group_fail(rd->group_ops.elts,
                                      rd->group_ops.nelts);
        ngx_destroy_pool(rd->group_pool);
        rd->group_pool = NULL;
    }

    ngx_http_sse_redis_release();

    /* a write that fails below must not have the link connected again */
    rd->cmd.wanted = 0;

    if (rd->cmd.ac && (rd->cmd.ac->c.flags & REDIS_CONNECTED)) {
        /*
         * what is queued, the lease's release above all, is written now:
         * the link is freed next, and hiredis frees it unsent; without it
         * the other nodes wait for the lease to expire
         */
        rd->cmd.writing = 1;
        redisAsyncHandleWrite(rd->cmd.ac);
        rd->cmd.writing = 0;
    }

    ngx_http_sse_redis_close(&rd->cmd, NULL);

    rd->conf = NULL;
}


/*
 * The worker lets go of what it does for the node: the log reader and the
 * lease, so that another worker (a new one, on reload) takes them over.
 */

static void
ngx_http_sse_redis_release(void)
{
    ngx_http_sse_hub_t    *hub;
    ngx_http_sse_redis_t  *rd;
    ngx_str_t              argv[5];

    rd = &ngx_http_sse_redis;
    hub = ngx_http_sse_hub_get();

    if (rd->is_ingress || rd->lease_pending) {
        rd->sub.wanted = 0;
        ngx_http_sse_redis_close(&rd->sub, NULL);

        /*
         * a lease asked for and not yet answered may be granted: the
         * release goes after it on the link, and frees it if it was
         */

        if (rd->cmd.state == NGX_HTTP_SSE_REDIS_READY) {
            ngx_str_set(&argv[0], "EVALSHA");
            argv[1].data = rd->release_sha;
            argv[1].len = 40;
            ngx_str_set(&argv[2], "1");
            argv[3] = rd->conf->lease_key;
            argv[4] = rd->token;

            (void) ngx_http_sse_redis_command(&rd->cmd,
                                              ngx_http_sse_redis_any_reply,
                                              NULL, 5, argv);
        }

        rd->is_ingress = 0;

        ngx_http_sse_redis_set_status(-1, 0);
    }

    if (rd->is_reader) {
        rd->reader.wanted = 0;
        ngx_http_sse_redis_close(&rd->reader, NULL);

        rd->is_reader = 0;

        if (hub) {
            ngx_http_sse_hub_lock();

            if (hub->sh->redis.reader == ngx_pid) {
                hub->sh->redis.reader = 0;
                hub->sh->redis.up = 0;
            }

            ngx_http_sse_hub_unlock();
        }
    }
}


/* links: one hiredis context each, with an nginx connection for its fd */

static void
ngx_http_sse_redis_link_init(ngx_http_sse_redis_link_t *link,
    const char *name, void (*ready)(ngx_http_sse_redis_link_t *l))
{
    ngx_memzero(link, sizeof(ngx_http_sse_redis_link_t));

    link->name = name;
    link->ready = ready;
    link->backoff = NGX_HTTP_SSE_REDIS_BACKOFF_MIN;

    link->retry.handler = ngx_http_sse_redis_retry_handler;
    link->retry.data = link;
    link->retry.log = ngx_http_sse_redis.log;
    link->retry.cancelable = 1;

    link->watchdog.handler = ngx_http_sse_redis_watchdog_handler;
    link->watchdog.data = link;
    link->watchdog.log = ngx_http_sse_redis.log;
    link->watchdog.cancelable = 1;
}


static void
ngx_http_sse_redis_connect(ngx_http_sse_redis_link_t *link)
{
    redisAsyncContext          *ac;
    ngx_http_sse_redis_conf_t  *rcf;

    if (link->ac || ngx_exiting || !link->wanted) {
        return;
    }

    rcf = ngx_http_sse_redis.conf;

    /* a numeric address: hiredis resolves nothing */
    ac = redisAsyncConnect((char *) rcf->host.data, (int) rcf->port);

    if (ac == NULL) {
        ngx_http_sse_redis_log_down(link, "out of memory");
        ngx_http_sse_redis_link_lost(link);
        return;
    }

    if (ac->err) {
        ngx_http_sse_redis_log_down(link, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_sse_redis_link_lost(link);
        return;
    }

    link->ac = ac;
    link->state = NGX_HTTP_SSE_REDIS_CONNECTING;
    link->reason[0] = '\0';

    /* the hooks first, then the callbacks: connecting may call them */

    if (ngx_http_sse_redis_attach(link) != NGX_OK) {
        /* no hook was set: hiredis frees it without calling cleanup */
        link->ac = NULL;
        redisAsyncFree(ac);
        ngx_http_sse_redis_log_down(link, "no free connection");
        ngx_http_sse_redis_link_lost(link);
        return;
    }

    redisAsyncSetConnectCallback(ac, ngx_http_sse_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_sse_redis_disconnected);

    /* connect and handshake must end within sse_redis_timeout, or retry */
    ngx_add_timer(&link->watchdog, rcf->timeout);
}


static ngx_int_t
ngx_http_sse_redis_attach(ngx_http_sse_redis_link_t *link)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    ac = link->ac;

    c = ngx_get_connection(ac->c.fd, ngx_http_sse_redis.log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = link;

    /* on quit, ngx_close_idle_connections() tells us: see the read handler */
    c->idle = 1;

    c->read->handler = ngx_http_sse_redis_read_handler;
    c->write->handler = ngx_http_sse_redis_write_handler;
    c->read->log = ngx_http_sse_redis.log;
    c->write->log = ngx_http_sse_redis.log;

    link->c = c;

    ac->ev.data = link;
    ac->ev.addRead = ngx_http_sse_redis_add_read;
    ac->ev.delRead = ngx_http_sse_redis_del_read;
    ac->ev.addWrite = ngx_http_sse_redis_add_write;
    ac->ev.delWrite = ngx_http_sse_redis_del_write;
    ac->ev.cleanup = ngx_http_sse_redis_cleanup;

    /* the connect completes when the socket becomes writable */
    ngx_http_sse_redis_add_write(link);

    return NGX_OK;
}


/*
 * hiredis's hooks.  The events are level-triggered: hiredis reads at most
 * 16 KB per call and asks for writes only while it has something to send,
 * so each readiness is worth exactly one call, on any event method.
 */

static void
ngx_http_sse_redis_add_read(void *data)
{
    ngx_http_sse_redis_link_t  *link = data;

    if (link->c) {
        ngx_http_sse_redis_watch(link, link->c->read, NGX_READ_EVENT);
    }
}


static void
ngx_http_sse_redis_del_read(void *data)
{
    ngx_http_sse_redis_link_t  *link = data;

    if (link->c) {
        ngx_http_sse_redis_unwatch(link->c->read, NGX_READ_EVENT);
    }
}


static void
ngx_http_sse_redis_add_write(void *data)
{
    ngx_http_sse_redis_link_t  *link = data;

    ngx_event_t  *wev;

    if (link->c == NULL) {
        return;
    }

    wev = link->c->write;

    ngx_http_sse_redis_watch(link, wev, NGX_WRITE_EVENT);

    /*
     * a command goes out at the end of this turn of the event loop, with
     * whatever else this turn queued, not a turn (and a writer's slice of
     * streams) later, when epoll reports the socket writable
     */

    if (!link->writing && !wev->posted && link->ac
        && (link->ac->c.flags & REDIS_CONNECTED))
    {
        ngx_post_event(wev, &ngx_posted_events);
    }
}


static void
ngx_http_sse_redis_del_write(void *data)
{
    ngx_http_sse_redis_link_t  *link = data;

    if (link->c) {
        ngx_http_sse_redis_unwatch(link->c->write, NGX_WRITE_EVENT);
    }
}


static void
ngx_http_sse_redis_watch(ngx_http_sse_redis_link_t *link, ngx_event_t *ev,
    ngx_int_t event)
{
    if (!ev->active && ngx_add_event(ev, event, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_http_sse_redis_reason(link, "cannot watch the socket");
    }
}


static void
ngx_http_sse_redis_unwatch(ngx_event_t *ev, ngx_int_t event)
{
    if (ev->active) {
        (void) ngx_del_event(ev, event, 0);
    }
}


/*
 * hiredis frees the context (and closes the fd) right after this: the
 * nginx connection goes, never the fd, and the link is down.
 */

static void
ngx_http_sse_redis_cleanup(void *data)
{
    ngx_http_sse_redis_link_t  *link = data;

    ngx_connection_t  *c;

    c = link->c;

    if (c) {
        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        link->c = NULL;
    }

    if (link->ac && link->reason[0] == '\0' && link->ac->errstr[0]) {
        ngx_http_sse_redis_log_down(link, link->ac->errstr);

    } else if (link->reason[0]) {
        ngx_http_sse_redis_log_down(link, (char *) link->reason);
    }

    link->ac = NULL;

    ngx_http_sse_redis_link_lost(link);
}


static void
ngx_http_sse_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t           *c;
    ngx_http_sse_redis_link_t  *link;

    c = rev->data;
    link = c->data;

    if (c->close) {
        /*
         * the worker quits: it hands the log reader and the lease over at
         * once, and keeps its command link for the publishes it still owes
         */
        c->close = 0;

        if (!ngx_http_sse_redis.exiting) {
            ngx_http_sse_redis.exiting = 1;
            ngx_http_sse_redis_release();
        }

        return;
    }

    /* this may free the context: nothing of it is touched after */
    redisAsyncHandleRead(link->ac);
}


static void
ngx_http_sse_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t           *c;
    ngx_http_sse_redis_link_t  *link;

    c = wev->data;
    link = c->data;

    if (link->ac == NULL) {
        return;
    }

    /* hiredis asks for writes again while it has more: epoll tells when */
    link->writing = 1;

    redisAsyncHandleWrite(link->ac);

    /* the link may be gone: cleanup ran, the link itself stays */
    link->writing = 0;
}


static void
ngx_http_sse_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_sse_redis_link_t  *link;

    link = ac->ev.data;

    if (status != REDIS_OK) {
        /* hiredis frees the context now, and calls cleanup */
        return;
    }

    ngx_http_sse_redis_handshake(link);
}


static void
ngx_http_sse_redis_disconnected(const redisAsyncContext *ac, int status)
{
    /* cleanup, called just before, has said why and scheduled a retry */
}


/*
 * AUTH and SELECT as the URL says, then PING: a Redis that is still
 * loading its data answers it with -LOADING, and is tried again later.
 */

static void
ngx_http_sse_redis_handshake(ngx_http_sse_redis_link_t *link)
{
    ngx_str_t                   argv[3];
    ngx_uint_t                  n;
    ngx_http_sse_redis_conf_t  *rcf;
    u_char                      db[NGX_INT_T_LEN];

    rcf = ngx_http_sse_redis.conf;
    link->handshake = 0;

    if (rcf->password.len) {
        ngx_str_set(&argv[0], "AUTH");
        n = 1;

        if (rcf->user.len) {
            argv[n++] = rcf->user;
        }

        argv[n++] = rcf->password;

        if (ngx_http_sse_redis_command(link,
                                       ngx_http_sse_redis_handshake_reply,
                                       link, n, argv)
            != NGX_OK)
        {
            return;
        }
    }

    if (rcf->db) {
        ngx_str_set(&argv[0], "SELECT");
        argv[1].data = db;
        argv[1].len = ngx_sprintf(db, "%i", rcf->db) - db;

        if (ngx_http_sse_redis_command(link,
                                       ngx_http_sse_redis_handshake_reply,
                                       link, 2, argv)
            != NGX_OK)
        {
            return;
        }
    }

    if (link == &ngx_http_sse_redis.cmd) {
        ngx_str_set(&argv[0], "SCRIPT");
        ngx_str_set(&argv[1], "LOAD");

        argv[2] = ngx_http_sse_redis_append_lua;
        if (ngx_http_sse_redis_command(link,
                                       ngx_http_sse_redis_handshake_reply,
                                       ngx_http_sse_redis.append_sha, 3, argv)
            != NGX_OK)
        {
            return;
        }

        argv[2] = ngx_http_sse_redis_lease_lua;
        if (ngx_http_sse_redis_command(link,
                                       ngx_http_sse_redis_handshake_reply,
                                       ngx_http_sse_redis.lease_sha, 3, argv)
            != NGX_OK)
        {
            return;
        }

        argv[2] = ngx_http_sse_redis_release_lua;
        if (ngx_http_sse_redis_command(link,
                                       ngx_http_sse_redis_handshake_reply,
                                       ngx_http_sse_redis.release_sha, 3,
                                       argv)
            != NGX_OK)
        {
            return;
        }
    }

    ngx_str_set(&argv[0], "PING");

    (void) ngx_http_sse_redis_command(link, ngx_http_sse_redis_handshake_reply,
                                      link, 1, argv);
}


static void
ngx_http_sse_redis_handshake_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                 *reply = r;
    ngx_http_sse_redis_link_t  *link;

    link = ac->ev.data;

    if (reply == NULL || link->state != NGX_HTTP_SSE_REDIS_CONNECTING) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_strncmp(reply->str, "LOADING", 7) == 0) {
            /* not ready yet: tried again, and said once */
            link->silent = 1;
        }

        ngx_http_sse_redis_log_down(link, reply->str);
        ngx_http_sse_redis_close(link, NULL);
        return;
    }

    if (privdata != link) {
        /* SCRIPT LOAD: the script's sha */

        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            ngx_http_sse_redis_close(link, "unexpected SCRIPT LOAD reply");
            return;
        }

        ngx_memcpy(privdata, reply->str, 40);
        ((u_char *) privdata)[40] = '\0';
    }

    if (--link->handshake) {
        return;
    }

    /* PING answered: the link is ready */

    if (link->watchdog.timer_set) {
        ngx_del_timer(&link->watchdog);
    }

    link->state = NGX_HTTP_SSE_REDIS_READY;
    link->backoff = NGX_HTTP_SSE_REDIS_BACKOFF_MIN;
    link->silent = 0;

    ngx_http_sse_redis_log_up(link);

    link->ready(link);
}


/* a command with binary-safe arguments; the handshake counts its own */

static ngx_int_t
ngx_http_sse_redis_command(ngx_http_sse_redis_link_t *link,
    redisCallbackFn *fn, void *privdata, ngx_uint_t argc, ngx_str_t *argv)
{
    ngx_uint_t   i;
    const char  *args[8];
    size_t       lens[8];

    if (link->ac == NULL || argc > 8) {
        return NGX_ERROR;
    }

    for (i = 0; i < argc; i++) {
        args[i] = (const char *) argv[i].data;
        lens[i] = argv[i].len;
    }

    if (redisAsyncCommandArgv(link->ac, fn, privdata, (int) argc, args, lens)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    if (fn == ngx_http_sse_redis_handshake_reply) {
        link->handshake++;

    } else {
        ngx_http_sse_redis_sent(link);
    }

    return NGX_OK;
}


/*
 * A ready command link whose oldest command has no answer for longer than
 * sse_redis_timeout and a second is taken for dead: a Redis that never
 * answers must not pile up what waits for it.  The reader has a watchdog of
 * its own, around each XREAD.
 */

static void
ngx_http_sse_redis_sent(ngx_http_sse_redis_link_t *link)
{
    if (link == &ngx_http_sse_redis.cmd
        && link->state == NGX_HTTP_SSE_REDIS_READY
        && !link->watchdog.timer_set)
    {
        ngx_add_timer(&link->watchdog, ngx_http_sse_redis.conf->timeout + 1000);
    }
}


/* a reply nothing waits for */

static void
ngx_http_sse_redis_any_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    if (r) {
        ngx_http_sse_redis_replied(&ngx_http_sse_redis.cmd);
    }
}


static void
ngx_http_sse_redis_replied(ngx_http_sse_redis_link_t *link)
{
    if (link->ac == NULL || link->state != NGX_HTTP_SSE_REDIS_READY) {
        return;
    }

    if (link->ac->replies.head == NULL) {
        if (link->watchdog.timer_set) {
            ngx_del_timer(&link->watchdog);
        }

        return;
    }

    ngx_add_timer(&link->watchdog, ngx_http_sse_redis.conf->timeout + 1000);
}


/*
 * Closes the link: pending callbacks run with no reply, cleanup marks it
 * down, and it is connected again after backoff if still wanted.
 */

static void
ngx_http_sse_redis_close(ngx_http_sse_redis_link_t *link, const char *reason)
{
    if (link->ac == NULL) {
        if (link->retry.timer_set && !link->wanted) {
            ngx_del_timer(&link->retry);
        }

        return;
    }

    ngx_http_sse_redis_reason(link, reason);

    redisAsyncFree(link->ac);
}


static void
ngx_http_sse_redis_reason(ngx_http_sse_redis_link_t *link, const char *reason)
{
    if (reason == NULL) {
        link->reason[0] = '\0';
        return;
    }

    (void) ngx_cpystrn(link->reason, (u_char *) reason,
                       NGX_HTTP_SSE_REDIS_REASON_LEN);
}


static void
ngx_http_sse_redis_link_lost(ngx_http_sse_redis_link_t *link)
{
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (link->watchdog.timer_set) {
        ngx_del_timer(&link->watchdog);
    }

    if (link->state == NGX_HTTP_SSE_REDIS_READY
        && link == &rd->reader && rd->is_reader)
    {
        ngx_http_sse_redis_set_status(0, -1);
    }

    if (link->state == NGX_HTTP_SSE_REDIS_READY && link == &rd->sub
        && rd->is_ingress)
    {
        /* no longer subscribed: another worker or node may take it */
        ngx_http_sse_redis_lease_lost();
    }

    link->state = NGX_HTTP_SSE_REDIS_DOWN;
    link->lost = 1;
    link->reason[0] = '\0';

    if (link == &rd->cmd) {
        /*
         * the Redis of the next link may not be this one (a failover):
         * publishes wait for its clock, as at the start; those that
         * waited for this link hear at once that it is down
         */
        rd->clock_known = 0;

        if (rd->group_pool && !rd->group_send.posted) {
            ngx_post_event(&rd->group_send, &ngx_posted_events);
        }
    }

    if (!link->wanted || ngx_exiting || link->retry.timer_set) {
        return;
    }

    ngx_add_timer(&link->retry, link->backoff);

    link->backoff = ngx_min(link->backoff * 2, NGX_HTTP_SSE_REDIS_BACKOFF_MAX);
}


static void
ngx_http_sse_redis_retry_handler(ngx_event_t *ev)
{
    ngx_http_sse_redis_connect(ev->data);
}


/* a link whose connect, handshake or reply is late is closed and retried */

static void
ngx_http_sse_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_http_sse_redis_link_t  *link = ev->data;

    ngx_http_sse_redis_close(link, "Redis did not answer in time");
}


/*
 * Logs: the first failure of a worker's links is an error, what follows
 * until they are all up again is said at debug level only, so that a Redis
 * down for hours logs one line per worker, and one when it is back.
 */

static void
ngx_http_sse_redis_log_down(ngx_http_sse_redis_link_t *link, const char *err)
{
    ngx_uint_t             level;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (rd->down_logged || ngx_exiting) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "sse: redis %s link: %s", link->name, err);
        return;
    }

    rd->down_logged = 1;

    /* a Redis still loading its data is expected to come up soon */
    level = link->silent ? NGX_LOG_WARN : NGX_LOG_ERR;

    ngx_log_error(level, rd->log, 0,
                  "sse: redis at %V:%d unavailable (%s link: %s), "
                  "retrying", &rd->conf->host, (int) rd->conf->port,
                  link->name, err);
}


static void
ngx_http_sse_redis_log_up(ngx_http_sse_redis_link_t *link)
{
    ngx_http_sse_hub_t    *hub;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (link->lost) {
        link->lost = 0;

        hub = ngx_http_sse_hub_get();

        if (hub) {
            (void) ngx_atomic_fetch_add(&hub->sh->redis.reconnects, 1);
        }
    }

    if (rd->down_logged
        && rd->cmd.state != NGX_HTTP_SSE_REDIS_DOWN
        && (!rd->is_reader || rd->reader.state == NGX_HTTP_SSE_REDIS_READY))
    {
        rd->down_logged = 0;

        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "sse: redis link up, %V:%d", &rd->conf->host,
                      (int) rd->conf->port);
    }
}


/* the command link: appends, the lease, the clock */

static void
ngx_http_sse_redis_cmd_ready(ngx_http_sse_redis_link_t *link)
{
    ngx_http_sse_redis.clock_at = 0;
    ngx_http_sse_redis_clock();
}


/*
 * Deadlines are checked on Redis's clock: the offset between the clocks is
 * measured as Redis's time against the middle of the round trip, on this
 * worker's monotonic clock (ngx_current_msec), so that a step of this
 * host's wall clock moves no deadline.  It is measured again every minute,
 * and at once after Redis refused a group as too late (its own clock may
 * have stepped).
 */

static void
ngx_http_sse_redis_clock(void)
{
    ngx_str_t              argv[1];
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (rd->cmd.state != NGX_HTTP_SSE_REDIS_READY
        || ngx_current_msec < rd->clock_at)
    {
        return;
    }

    rd->clock_at = ngx_current_msec + NGX_HTTP_SSE_REDIS_CLOCK_EVERY;
    rd->clock_sent = ngx_current_msec;

    ngx_str_set(&argv[0], "TIME");

    if (ngx_http_sse_redis_command(&rd->cmd, ngx_http_sse_redis_clock_reply,
                                   NULL, 1, argv)
        != NGX_OK)
    {
        /* no answer will come: publishes go on this host's clock */
        ngx_http_sse_redis_clock_set(NGX_ERROR);
    }
}


static void
ngx_http_sse_redis_clock_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply            *reply = r;
    ngx_int_t              sec, usec;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (reply == NULL) {
        /* the link went (link_lost() tells the publishes that waited) */
        return;
    }

    ngx_http_sse_redis_replied(&rd->cmd);

    sec = NGX_ERROR;
    usec = NGX_ERROR;

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[1]->type == REDIS_REPLY_STRING)
    {
        sec = ngx_atoi((u_char *) reply->element[0]->str,
                       reply->element[0]->len);
        usec = ngx_atoi((u_char *) reply->element[1]->str,
                        reply->element[1]->len);
    }

    if (sec == NGX_ERROR || usec == NGX_ERROR || usec > 999999
        || sec > NGX_HTTP_SSE_REDIS_TIME_MAX)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sse: redis answered TIME with no time, "
                      "its clock is taken to be this host's");

        ngx_http_sse_redis_clock_set(NGX_ERROR);
        return;
    }

    ngx_time_update();

    ngx_http_sse_redis_clock_set((int64_t) sec * 1000 + usec / 1000);
}


/*
 * Redis's clock is known (redis_ms: its time, read in the middle of the
 * round trip), or will not be (NGX_ERROR: the offset stays as it was);
 * either way the publishes that waited for it go.
 */

static void
ngx_http_sse_redis_clock_set(int64_t redis_ms)
{
    int64_t                our_ms;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (redis_ms != NGX_ERROR) {
        our_ms = (int64_t) ngx_current_msec
                 - (int64_t) (ngx_current_msec - rd->clock_sent) / 2;

        rd->offset = redis_ms - our_ms;
    }

    rd->clock_known = 1;

    if (rd->group_pool && !rd->group_send.posted) {
        ngx_post_event(&rd->group_send, &ngx_posted_events);
    }
}


/* Redis's time now, as this worker knows it: the clock of the ids */

static uint64_t
ngx_http_sse_redis_now(void)
{
    return (uint64_t) ((int64_t) ngx_current_msec
                       + ngx_http_sse_redis.offset);
}


/*
 * Appends entries to the log in one script call.  NGX_DECLINED when the
 * command link is down (or not yet past its first TIME, with a full group
 * waiting); else *opp is the operation, whose done handler is called once,
 * unless it is cancelled first.
 */

ngx_int_t
ngx_http_sse_redis_append(ngx_http_sse_redis_entry_t *e, ngx_uint_t n,
    ngx_http_sse_redis_done_pt done, void *data,
    ngx_http_sse_redis_op_t **opp)
{
    ngx_http_sse_redis_t       *rd;
    ngx_http_sse_redis_op_t    *op;

    rd = &ngx_http_sse_redis;

    /*
     * a link being made (a worker just started, as in a reload, or a
     * retry) is waited for, up to sse_redis_timeout: only one that is
     * down refuses at once
     */

    if (rd->conf == NULL || rd->cmd.state == NGX_HTTP_SSE_REDIS_DOWN) {
        return NGX_DECLINED;
    }

    if (!rd->clock_known && rd->group_pool
        && rd->group_entries.nelts >= NGX_HTTP_SSE_REDIS_GROUP)
    {
        /* a full group waits for Redis's clock: no more may join it */
        return NGX_DECLINED;
    }

    op = ngx_alloc(sizeof(ngx_http_sse_redis_op_t)
                   + n * sizeof(ngx_http_sse_id_t), rd->log);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->done = done;
    op->data = data;
    op->n = n;

    if (rd->group_pool && rd->group_entries.nelts >= NGX_HTTP_SSE_REDIS_GROUP)
    {
        /*
         * a full group goes now, before this publish starts the next one:
         * only publishes that already wait can hear from it at once
         */
        ngx_http_sse_redis_group_send(&rd->group_send);
    }

    if (rd->group_pool == NULL) {
        /* the group's deadline counts from its first publish */
        rd->group_start = ngx_current_msec;
    }

    if (ngx_http_sse_redis_group_add(e, n, op) != NGX_OK) {
        ngx_free(op);
        return NGX_ERROR;
    }

    *opp = op;

    return NGX_OK;
}


/*
 * The publishes of one turn of the event loop go to Redis together, at the
 * end of the turn, in one script call: a Lua run and a round trip for all
 * of them, and readers get them as one batch.  The entries are copied, as
 * a publisher's request may go before they are sent.
 */

static ngx_int_t
ngx_http_sse_redis_group_add(ngx_http_sse_redis_entry_t *e, ngx_uint_t n,
    ngx_http_sse_redis_op_t *op)
{
    ngx_uint_t                   i, nentries;
    ngx_pool_t                  *pool;
    ngx_http_sse_redis_t        *rd;
    ngx_http_sse_redis_op_t    **pop;
    ngx_http_sse_redis_entry_t  *ge;

    rd = &ngx_http_sse_redis;

    if (rd->group_pool == NULL) {
        pool = ngx_create_pool(16384, rd->log);
        if (pool == NULL) {
            return NGX_ERROR;
        }

        if (ngx_array_init(&rd->group_entries, pool, 16,
                           sizeof(ngx_http_sse_redis_entry_t))
            != NGX_OK
            || ngx_array_init(&rd->group_ops, pool, 8,
                              sizeof(ngx_http_sse_redis_op_t *))
               != NGX_OK)
        {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        rd->group_pool = pool;

        ngx_post_event(&rd->group_send, &ngx_posted_events);
    }

    pool = rd->group_pool;
    nentries = rd->group_entries.nelts;

    pop = ngx_array_push(&rd->group_ops);
    if (pop == NULL) {
        return NGX_ERROR;
    }

    *pop = op;

    for (i = 0; i < n; i++) {
        ge = ngx_array_push(&rd->group_entries);
        if (ge == NULL) {
            goto failed;
        }

        *ge = e[i];

#define ngx_http_sse_redis_copy(s)                                            \
        if ((s).len) {                                                        \
            (s).data = ngx_pstrdup(pool, &(s));                               \
            if ((s).data == NULL) {                                           \
                goto failed;                                                  \
            }                                                                 \
        }

        ngx_http_sse_redis_copy(ge->op);
        ngx_http_sse_redis_copy(ge->channel);
        ngx_http_sse_redis_copy(ge->type);
        ngx_http_sse_redis_copy(ge->data);

#undef ngx_http_sse_redis_copy
    }

    return NGX_OK;

failed:

    /* none of this publish's entries may go with the group: all or none */

    rd->group_ops.nelts--;
    rd->group_entries.nelts = nentries;

    return NGX_ERROR;
}


static void
ngx_http_sse_redis_group_send(ngx_event_t *ev)
{
    uint64_t                     deadline;
    ngx_uint_t                   nops;
    ngx_pool_t                  *pool;
    ngx_http_sse_redis_t        *rd;
    ngx_http_sse_redis_group_t  *g;

    rd = &ngx_http_sse_redis;
    pool = rd->group_pool;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (pool == NULL) {
        return;
    }

    if (!rd->clock_known && rd->cmd.state != NGX_HTTP_SSE_REDIS_DOWN) {
        /*
         * a deadline on Redis's clock needs it: the group goes once the
         * link is up and TIME is answered (a round trip after the
         * handshake), or fails when the link does
         */
        return;
    }

    /*
     * the script must run a quarter of the timeout before the first
     * publish of the group ends here, so that its answer is back before
     * that publisher is told 503
     */

    deadline = (uint64_t) ((int64_t) rd->group_start + rd->offset)
               + rd->conf->timeout - rd->conf->timeout / 4;

    rd->group_pool = NULL;
    nops = rd->group_ops.nelts;

    g = ngx_alloc(offsetof(ngx_http_sse_redis_group_t, ops)
                  + nops * sizeof(ngx_http_sse_redis_op_t *), rd->log);

    if (g == NULL) {
        ngx_http_sse_redis_group_fail(rd->group_ops.elts, nops);
        ngx_destroy_pool(pool);
        return;
    }

    g->nops = nops;
    g->nentries = rd->group_entries.nelts;
    ngx_memcpy(g->ops, rd->group_ops.elts,
               nops * sizeof(ngx_http_sse_redis_op_t *));

    if (rd->cmd.state != NGX_HTTP_SSE_REDIS_READY
        || ngx_http_sse_redis_send_append(rd->group_entries.elts,
                                          g->nentries, deadline,
                                          NULL,
                                          ngx_http_sse_redis_group_reply, g,
                                          pool)
           != NGX_OK)
    {
        /* the link went since: these publishers hear it at once */
        ngx_http_sse_redis_group_fail(g->ops, nops);
        ngx_free(g);
    }

    /* hiredis has the command in its own buffer now */
    ngx_destroy_pool(pool);
}


static void
ngx_http_sse_redis_group_fail(ngx_http_sse_redis_op_t **ops, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (ops[i]->done) {
            ops[i]->done(ops[i]->data, NGX_ERROR, NULL, 0);
        }

        ngx_free(ops[i]);
    }
}


static void
ngx_http_sse_redis_group_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                  *reply = r;
    ngx_int_t                    rc;
    ngx_uint_t                   i, from;
    ngx_http_sse_hub_t          *hub;
    ngx_http_sse_redis_op_t     *op;
    ngx_http_sse_redis_group_t  *g = privdata;

    rc = NGX_ERROR;

    if (reply) {
        ngx_http_sse_redis_replied(&ngx_http_sse_redis.cmd);
    }

    if (reply == NULL) {
        /* the link went: cleanup has logged why */

    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_http_sse_log_due(&ngx_http_sse_redis.refused_log)) {
            ngx_log_error(NGX_LOG_ERR, ngx_http_sse_redis.log, 0,
                          "sse: redis refused %ui publish(es): %s "
                          "(%ui time(s) since the last such line)", g->nops,
                          reply->str, ngx_http_sse_redis.refused_log.seen);
            ngx_http_sse_redis.refused_log.seen = 0;
        }

        if (ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* scripts flushed: the handshake loads them again */
            ngx_http_sse_redis_close(&ngx_http_sse_redis.cmd, NULL);

        } else if (ngx_strncmp(reply->str, "SSETIMEOUT", 10) == 0) {
            /* too late on Redis's clock: is the offset still right? */
            ngx_http_sse_redis.clock_at = 0;
            ngx_http_sse_redis_clock();
        }

    } else if (reply->type == REDIS_REPLY_ARRAY
               && reply->elements == g->nentries)
    {
        rc = NGX_OK;

        hub = ngx_http_sse_hub_get();

        if (hub) {
            (void) ngx_atomic_fetch_add(&hub->sh->redis.logged, g->nentries);
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, ngx_http_sse_redis.log, 0,
                      "sse: unexpected reply to a publish, type %d",
                      reply->type);
    }

    from = 0;

    for (i = 0; i < g->nops; i++) {
        op = g->ops[i];

        if (op->done) {
            op->done(op->data,
                     (rc == NGX_OK) ? ngx_http_sse_redis_ids(reply, from, op)
                                    : NGX_ERROR,
                     op->ids, op->n);

        } else if (rc == NGX_OK && op->data
                   && ngx_http_sse_log_due(&ngx_http_sse_redis.late_log))
        {
            ngx_log_error(NGX_LOG_WARN, ngx_http_sse_redis.log, 0,
                          "sse: redis took a publish after "
                          "sse_redis_timeout, answered 503 (%ui since the "
                          "last such line)", ngx_http_sse_redis.late_log.seen);
            ngx_http_sse_redis.late_log.seen = 0;
        }

        if (rc == NGX_OK && op->done == NULL && op->data) {
            /* Redis took it within its deadline: is its clock behind ours? */
            ngx_http_sse_redis.clock_at = 0;
        }

        from += op->n;
        ngx_free(op);
    }

    ngx_free(g);
}


/* the ids of one publish, from its place in the group's reply */

static ngx_int_t
ngx_http_sse_redis_ids(redisReply *reply, ngx_uint_t from,
    ngx_http_sse_redis_op_t *op)
{
    ngx_uint_t   i;
    redisReply  *id;

    for (i = 0; i < op->n; i++) {
        id = reply->element[from + i];

        if (id->type != REDIS_REPLY_STRING
            || ngx_http_sse_id_parse((u_char *) id->str, id->len, &op->ids[i])
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_http_sse_redis_cancel(ngx_http_sse_redis_op_t *op)
{
    op->done = NULL;
}


static ngx_int_t
ngx_http_sse_redis_send_append(ngx_http_sse_redis_entry_t *e, ngx_uint_t n,
    uint64_t deadline, ngx_str_t *token, redisCallbackFn *fn, void *privdata,
    ngx_pool_t *pool)
{
    u_char                *p;
    size_t                *lens;
    ngx_uint_t             i, k, argc;
    const char           **args;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    argc = 8 + 6 * n;

    args = ngx_palloc(pool, argc * (sizeof(char *) + sizeof(size_t)));
    p = ngx_pnalloc(pool, 3 * NGX_INT64_LEN + 6 * n * NGX_INT64_LEN);

    if (args == NULL || p == NULL) {
        return NGX_ERROR;
    }

    lens = (size_t *) (args + argc);

#define ngx_http_sse_redis_arg(s, l)                                          \
    args[k] = (const char *) (s); lens[k] = (l); k++

#define ngx_http_sse_redis_num(v)                                             \
    args[k] = (const char *) p;                                               \
    lens[k] = ngx_sprintf(p, "%uL", (uint64_t) (v)) - p;                      \
    p += lens[k]; k++

    k = 0;

    ngx_http_sse_redis_arg("EVALSHA", 7);
    ngx_http_sse_redis_arg(rd->append_sha, 40);
    ngx_http_sse_redis_arg("2", 1);
    ngx_http_sse_redis_arg(rd->conf->log_key.data, rd->conf->log_key.len);
    ngx_http_sse_redis_arg(rd->conf->lease_key.data, rd->conf->lease_key.len);
    ngx_http_sse_redis_num(rd->conf->log_max);
    ngx_http_sse_redis_num(deadline);

    if (token) {
        ngx_http_sse_redis_arg(token->data, token->len);

    } else {
        ngx_http_sse_redis_arg("", 0);
    }

    for (i = 0; i < n; i++) {
        ngx_http_sse_redis_arg(e[i].op.data, e[i].op.len);
        ngx_http_sse_redis_arg(e[i].channel.data, e[i].channel.len);
        ngx_http_sse_redis_arg(e[i].type.data, e[i].type.len);
        ngx_http_sse_redis_arg(e[i].data.data, e[i].data.len);

        if (e[i].history >= 0) {
            ngx_http_sse_redis_num(e[i].history);

        } else {
            ngx_http_sse_redis_arg("", 0);
        }

        if (e[i].ttl != NGX_CONF_UNSET_MSEC) {
            ngx_http_sse_redis_num(e[i].ttl);

        } else {
            ngx_http_sse_redis_arg("", 0);
        }
    }

#undef ngx_http_sse_redis_arg
#undef ngx_http_sse_redis_num

    if (redisAsyncCommandArgv(rd->cmd.ac, fn, privdata, (int) k, args, lens)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_sse_redis_sent(&rd->cmd);

    return NGX_OK;
}


/* the tick: the node's reader, the lease, the clock, and exiting */

static void
ngx_http_sse_redis_tick_handler(ngx_event_t *ev)
{
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        if (!rd->exiting) {
            rd->exiting = 1;
            ngx_http_sse_redis_release();
        }

        return;
    }

    ngx_http_sse_redis_elect();

    if (rd->is_reader) {
        ngx_http_sse_redis_beat();
    }

    if (rd->is_reader) {
        ngx_http_sse_redis_lease();
    }

    ngx_http_sse_redis_probe();

    ngx_http_sse_redis_clock();

    ngx_add_timer(ev, NGX_HTTP_SSE_REDIS_TICK);
}


/*
 * The reader says it is alive each tick; a reader that finds another in
 * its place (it was taken for dead: its loop stood still for seconds)
 * hands over what it had.  Two readers for a while put nothing in twice:
 * an entry whose id is not above the zone's last is skipped.
 */

static void
ngx_http_sse_redis_beat(void)
{
    ngx_pid_t              pid;
    ngx_http_sse_hub_t    *hub;

    hub = ngx_http_sse_hub_get();

    if (hub == NULL) {
        return;
    }

    ngx_http_sse_hub_lock();

    pid = hub->sh->redis.reader;

    if (pid == ngx_pid) {
        hub->sh->redis.reader_beat = ngx_current_msec;
    }

    ngx_http_sse_hub_unlock();

    if (pid != ngx_pid) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_sse_redis.log, 0,
                      "sse: worker %P reads the redis log now", pid);
        ngx_http_sse_redis_release();
    }
}


/*
 * One worker per node reads the log: the first that finds the place free,
 * or held by a worker that is gone, takes it.
 */

static void
ngx_http_sse_redis_elect(void)
{
    ngx_pid_t              pid;
    ngx_http_sse_hub_t    *hub;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;
    hub = ngx_http_sse_hub_get();

    if (rd->is_reader || hub == NULL || ngx_exiting) {
        return;
    }

    ngx_http_sse_hub_lock();

    pid = hub->sh->redis.reader;

    /*
     * free, or left by a dead worker: gone, its pid now another user's, or
     * ours (we are not the reader, so a dead worker had our pid), or its
     * tick stopped (its pid another process's of the same user)
     */

    if (pid == 0 || pid == ngx_pid
        || (kill(pid, 0) == -1
            && (ngx_errno == NGX_ESRCH || ngx_errno == NGX_EPERM))
        || (ngx_msec_int_t) (ngx_current_msec - hub->sh->redis.reader_beat)
           > NGX_HTTP_SSE_REDIS_READER_STALE)
    {
        if (pid && pid != ngx_pid) {
            ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                          "sse: the redis log reader %P is gone", pid);
        }

        hub->sh->redis.reader = ngx_pid;
        hub->sh->redis.reader_beat = ngx_current_msec;
        hub->sh->redis.up = 0;
        hub->sh->redis.ingress = 0;
        rd->read_id = hub->sh->redis.read_id;
        rd->is_reader = 1;
    }

    ngx_http_sse_hub_unlock();

    if (!rd->is_reader) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                  "sse: this worker reads the redis log from %uL-%uL",
                  rd->read_id.ms, rd->read_id.seq);

    rd->lease_at = 0;
    rd->reader.wanted = 1;
    ngx_http_sse_redis_connect(&rd->reader);
}


/*
 * What the status says of the node's link and of the lease (-1: left as
 * it is).  Only the node's reader speaks for them: one replaced meanwhile
 * must not overwrite what the one now says.
 */

static void
ngx_http_sse_redis_set_status(ngx_int_t up, ngx_int_t ingress)
{
    ngx_http_sse_hub_t  *hub;

    hub = ngx_http_sse_hub_get();

    if (hub == NULL) {
        return;
    }

    ngx_http_sse_hub_lock();

    if (hub->sh->redis.reader == ngx_pid) {
        if (up >= 0) {
            hub->sh->redis.up = up;
        }

        if (ingress >= 0) {
            hub->sh->redis.ingress = ingress;
        }
    }

    ngx_http_sse_hub_unlock();
}


/* the log reader */

static void
ngx_http_sse_redis_reader_ready(ngx_http_sse_redis_link_t *link)
{
    ngx_http_sse_redis_set_status(1, -1);
    ngx_http_sse_redis_xread();
}


static void
ngx_http_sse_redis_xread(void)
{
    ngx_str_t              argv[8];
    ngx_http_sse_redis_t  *rd;
    u_char                 block[NGX_INT_T_LEN], id[NGX_HTTP_SSE_ID_LEN];

    rd = &ngx_http_sse_redis;

    if (rd->reader.state != NGX_HTTP_SSE_REDIS_READY) {
        return;
    }

    ngx_str_set(&argv[0], "XREAD");
    ngx_str_set(&argv[1], "COUNT");
    ngx_str_set(&argv[2], NGX_HTTP_SSE_REDIS_READ_COUNT);
    ngx_str_set(&argv[3], "BLOCK");
    argv[4].data = block;
    argv[4].len = ngx_sprintf(block, "%M", (ngx_msec_t)
                              NGX_HTTP_SSE_REDIS_READ_BLOCK) - block;
    ngx_str_set(&argv[5], "STREAMS");
    argv[6] = rd->conf->log_key;
    argv[7].data = id;
    argv[7].len = ngx_http_sse_id_format(id, &rd->read_id) - id;

    if (ngx_http_sse_redis_command(&rd->reader, ngx_http_sse_redis_xread_reply,
                                   NULL, 8, argv)
        != NGX_OK)
    {
        ngx_http_sse_redis_close(&rd->reader, "cannot send XREAD");
        return;
    }

    /* a reply must come within the block time and the timeout */
    ngx_add_timer(&rd->reader.watchdog,
                  NGX_HTTP_SSE_REDIS_READ_BLOCK + rd->conf->timeout);
}


static void
ngx_http_sse_redis_xread_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply            *reply = r;
    size_t                 i;
    ngx_pool_t            *pool;
    redisReply            *entries, *entry;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (reply == NULL) {
        return;
    }

    if (rd->reader.watchdog.timer_set) {
        ngx_del_timer(&rd->reader.watchdog);
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_strncmp(reply->str, "LOADING", 7) == 0) {
            rd->reader.silent = 1;
        }

        ngx_http_sse_redis_close(&rd->reader, reply->str);
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1
        && reply->element[0]->type == REDIS_REPLY_ARRAY
        && reply->element[0]->elements == 2
        && reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
    {
        entries = reply->element[0]->element[1];

        pool = ngx_create_pool(16384, rd->log);
        if (pool == NULL) {
            ngx_http_sse_redis_close(&rd->reader, "out of memory");
            return;
        }

        for (i = 0; i < entries->elements; i++) {
            entry = entries->element[i];

            /*
             * Redis gives every entry an id of two 64-bit numbers; one we
             * cannot read is not from Redis, and the cursor cannot move
             * past it: the link is closed, retried after a backoff
             */

            if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
                || entry->element[0]->type != REDIS_REPLY_STRING
                || ngx_http_sse_redis_entry(entry->element[0],
                                            entry->element[1], pool)
                   != NGX_OK)
            {
                ngx_destroy_pool(pool);
                ngx_http_sse_redis_close(&rd->reader,
                                         "XREAD reply with a bad entry");
                return;
            }

            ngx_reset_pool(pool);
        }

        ngx_destroy_pool(pool);

    } else if (reply->type != REDIS_REPLY_NIL) {
        ngx_http_sse_redis_close(&rd->reader, "unexpected XREAD reply");
        return;
    }

    ngx_http_sse_redis_xread();
}


/*
 * one entry of the log: into the zone, or logged and skipped; NGX_ERROR:
 * its id is not one, the cursor cannot pass it
 */

static ngx_int_t
ngx_http_sse_redis_entry(redisReply *id, redisReply *fields, ngx_pool_t *pool)
{
    ngx_int_t              rc;
    const char            *err;
    ngx_http_sse_id_t      eid;
    ngx_http_sse_hub_t    *hub;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;
    hub = ngx_http_sse_hub_get();

    if (ngx_http_sse_id_parse((u_char *) id->str, id->len, &eid) != NGX_OK) {
        return NGX_ERROR;
    }

    err = NULL;

    rc = ngx_http_sse_redis_entry_apply(&eid, fields, pool, &err);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "sse: redis log entry %*s skipped: %s",
                      id->len, id->str, err);

    } else if (rc == NGX_OK) {
        (void) ngx_atomic_fetch_add(&hub->sh->redis.read, 1);

    } else if (rc == NGX_ERROR) {
        /* out of memory: this node's history lacks it from now on */
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sse: redis log entry %*s could not be kept",
                      id->len, id->str);
    }

    rd->read_id = eid;

    ngx_http_sse_hub_lock();

    if (ngx_http_sse_id_gt(&eid, &hub->sh->redis.read_id)) {
        hub->sh->redis.read_id = eid;
    }

    ngx_http_sse_hub_unlock();

    return NGX_OK;
}


/*
 * NGX_OK: in the zone; NGX_DONE: the zone had it already; NGX_DECLINED:
 * a bad entry, *err says why; NGX_ERROR: it could not be kept.
 */

static ngx_int_t
ngx_http_sse_redis_entry_apply(ngx_http_sse_id_t *id, redisReply *fields,
    ngx_pool_t *pool, const char **err)
{
    size_t                      i;
    ngx_int_t                   rc, v;
    ngx_str_t                   key, val, op, name, framed;
    ngx_str_t                   names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_uint_t                  n, has_data;
    redisReply                 *f;
    ngx_http_sse_fields_t       ev;
    ngx_http_sse_target_t       target;
    ngx_http_sse_publish_t      pub;
    ngx_http_sse_redis_conf_t  *rcf;

    rcf = ngx_http_sse_redis.conf;

    if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2) {
        *err = "not field/value pairs";
        return NGX_DECLINED;
    }

    ngx_str_null(&op);
    ngx_str_null(&name);
    ev.type = ngx_http_sse_message;
    ngx_str_null(&ev.data);
    has_data = 0;

    ngx_memzero(&pub, sizeof(ngx_http_sse_publish_t));
    pub.policy = rcf->policy;

    for (i = 0; i < fields->elements; i += 2) {
        f = fields->element[i];

        if (f->type != REDIS_REPLY_STRING
            || fields->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            *err = "a field that is not a string";
            return NGX_DECLINED;
        }

        key.data = (u_char *) f->str;
        key.len = f->len;
        val.data = (u_char *) fields->element[i + 1]->str;
        val.len = fields->element[i + 1]->len;

        if (key.len == 7 && ngx_strncmp(key.data, "channel", 7) == 0) {
            name = val;

        } else if (key.len == 5 && ngx_strncmp(key.data, "event", 5) == 0) {
            ev.type = val;

        } else if (key.len == 4 && ngx_strncmp(key.data, "data", 4) == 0) {
            ev.data = val;
            has_data = 1;

        } else if (key.len == 2 && ngx_strncmp(key.data, "op", 2) == 0) {
            op = val;

        } else if (key.len == 7 && ngx_strncmp(key.data, "history", 7) == 0) {
            v = ngx_atoi(val.data, val.len);
            if (v == NGX_ERROR) {
                *err = "history is not a number";
                return NGX_DECLINED;
            }

            pub.policy.history = v;

        } else if (key.len == 3 && ngx_strncmp(key.data, "ttl", 3) == 0) {
            v = ngx_atoi(val.data, val.len);
            if (v == NGX_ERROR) {
                *err = "ttl is not a number";
                return NGX_DECLINED;
            }

            pub.policy.history_ttl = (ngx_msec_t) v;
        }
    }

    if (ngx_http_sse_parse_channels(&name, names, &n, err) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (n != 1 || names[0].len != name.len) {
        *err = "one channel per entry";
        return NGX_DECLINED;
    }

    ngx_memzero(&target, sizeof(ngx_http_sse_target_t));
    target.name = name;

    if (op.len) {
        if (op.len != 6 || ngx_strncmp(op.data, "delete", 6) != 0) {
            *err = "unknown op";
            return NGX_DECLINED;
        }

        return ngx_http_sse_hub_channel_delete(&target, id,
                                               ngx_http_sse_redis.log);
    }

    if (!has_data) {
        *err = "no data field";
        return NGX_DECLINED;
    }

    if (ngx_http_sse_check_event(&ev, rcf->max_message_size, err) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_http_sse_frame(pool, &ev, &framed) != NGX_OK) {
        return NGX_ERROR;
    }

    pub.events = &framed;
    pub.nevents = 1;
    pub.targets = &target;
    pub.ntargets = 1;
    pub.id = id;

    rc = ngx_http_sse_hub_publish(&pub, ngx_http_sse_redis.log);

    if (rc == NGX_DECLINED) {
        *err = "no room in the sse zone";
    }

    return rc;
}


/*
 * The PUBLISH ingress: the node's reader takes the lease when it is free
 * and renews it while it holds it; only the holder is subscribed.
 */

static void
ngx_http_sse_redis_lease(void)
{
    ngx_str_t              argv[6];
    ngx_http_sse_redis_t  *rd;
    u_char                 ttl[NGX_INT_T_LEN];

    rd = &ngx_http_sse_redis;

    if (rd->cmd.state != NGX_HTTP_SSE_REDIS_READY || rd->lease_pending
        || ngx_current_msec < rd->lease_at)
    {
        return;
    }

    ngx_str_set(&argv[0], "EVALSHA");
    argv[1].data = rd->lease_sha;
    argv[1].len = 40;
    ngx_str_set(&argv[2], "1");
    argv[3] = rd->conf->lease_key;
    argv[4] = rd->token;
    argv[5].data = ttl;
    argv[5].len = ngx_sprintf(ttl, "%d", NGX_HTTP_SSE_REDIS_LEASE_TTL) - ttl;

    if (ngx_http_sse_redis_command(&rd->cmd, ngx_http_sse_redis_lease_reply,
                                   NULL, 6, argv)
        != NGX_OK)
    {
        return;
    }

    /* held, it is renewed each second; free, it is taken within a tick */

    rd->lease_at = ngx_current_msec
                   + (rd->is_ingress ? NGX_HTTP_SSE_REDIS_LEASE_RENEW
                                     : NGX_HTTP_SSE_REDIS_TICK);
    rd->lease_pending = 1;
}


static void
ngx_http_sse_redis_lease_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply            *reply = r;
    ngx_uint_t             held;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;
    rd->lease_pending = 0;

    if (reply == NULL) {
        return;
    }

    ngx_http_sse_redis_replied(&rd->cmd);

    if (!rd->is_reader || rd->exiting) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /*
         * not an answer about the lease: -NOSCRIPT after SCRIPT FLUSH or
         * a restart, -NOPERM, -OOM...  Whether this node still holds it
         * is unknown, so it stops converting, and the link is made again:
         * its handshake loads the scripts, and the next tick asks again
         */
        if (rd->is_ingress) {
            ngx_http_sse_redis_lease_lost();
        }

        ngx_http_sse_redis_close(&rd->cmd, reply->str);
        return;
    }

    held = (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1);

    if (held && !rd->is_ingress) {
        rd->is_ingress = 1;
        rd->lease_at = ngx_current_msec + NGX_HTTP_SSE_REDIS_LEASE_RENEW;

        ngx_http_sse_redis_set_status(-1, 1);

        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "sse: this worker converts PUBLISH on \"%V\"",
                      &rd->conf->pattern);

        rd->sub.wanted = 1;
        ngx_http_sse_redis_connect(&rd->sub);

    } else if (!held && rd->is_ingress) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "sse: the PUBLISH lease went to another node");
        ngx_http_sse_redis_lease_lost();
    }
}


static void
ngx_http_sse_redis_lease_lost(void)
{
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    rd->is_ingress = 0;
    rd->lease_at = 0;

    ngx_http_sse_redis_set_status(-1, 0);

    rd->sub.wanted = 0;
    ngx_http_sse_redis_close(&rd->sub, NULL);
}


/*
 * A subscription can die silently (a failover, a proxy in between) while
 * the link looks up: the holder publishes a probe on the command link and
 * expects it back on the subscriber's; when it does not come back, the
 * subscriber is made again.
 */

static void
ngx_http_sse_redis_probe(void)
{
    ngx_str_t              argv[3];
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (!rd->is_ingress || rd->sub.state != NGX_HTTP_SSE_REDIS_READY
        || rd->cmd.state != NGX_HTTP_SSE_REDIS_READY
        || ngx_current_msec - rd->probe_at < NGX_HTTP_SSE_REDIS_PROBE)
    {
        return;
    }

    if (rd->probe_at && !rd->probe_seen) {
        ngx_http_sse_redis_close(&rd->sub,
                                 "the PUBLISH probe did not come back");
        return;
    }

    ngx_str_set(&argv[0], "PUBLISH");
    argv[1] = rd->conf->probe;
    argv[2] = rd->token;

    if (ngx_http_sse_redis_command(&rd->cmd, ngx_http_sse_redis_any_reply,
                                   NULL, 3, argv)
        == NGX_OK)
    {
        rd->probe_at = ngx_current_msec;
        rd->probe_seen = 0;
    }
}


static void
ngx_http_sse_redis_sub_ready(ngx_http_sse_redis_link_t *link)
{
    ngx_str_t  argv[2];

    /* the first probe goes a period from now */
    ngx_http_sse_redis.probe_at = ngx_current_msec;
    ngx_http_sse_redis.probe_seen = 1;

    ngx_str_set(&argv[0], "PSUBSCRIBE");
    argv[1] = ngx_http_sse_redis.conf->pattern;

    if (ngx_http_sse_redis_command(link, ngx_http_sse_redis_message, NULL, 2,
                                   argv)
        != NGX_OK)
    {
        ngx_http_sse_redis_close(link, "cannot subscribe");
    }
}


/* a PUBLISH message: ["pmessage", pattern, channel, payload] */

static void
ngx_http_sse_redis_message(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply            *reply = r;
    const char            *err;
    ngx_str_t              channel, payload;
    ngx_pool_t            *pool;
    ngx_http_sse_redis_t  *rd;

    rd = &ngx_http_sse_redis;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 8
        || ngx_strncmp(reply->element[0]->str, "pmessage", 8) != 0
        || reply->element[2]->type != REDIS_REPLY_STRING
        || reply->element[3]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (reply->element[2]->len == rd->conf->probe.len
        && ngx_strncmp(reply->element[2]->str, rd->conf->probe.data,
                       rd->conf->probe.len) == 0)
    {
        rd->probe_seen = 1;
        return;
    }

    if (!rd->is_ingress) {
        return;
    }

    /* the pattern is "<prefix>*": a message on another channel is not ours */

    if (reply->element[2]->len < rd->conf->prefix.len
        || ngx_strncmp(reply->element[2]->str, rd->conf->prefix.data,
                       rd->conf->prefix.len) != 0)
    {
        return;
    }

    channel.data = (u_char *) reply->element[2]->str
                   + rd->conf->prefix.len;
    channel.len = reply->element[2]->len - rd->conf->prefix.len;
    payload.data = (u_char *) reply->element[3]->str;
    payload.len = reply->element[3]->len;

    pool = ngx_create_pool(4096, rd->log);
    if (pool == NULL) {
        return;
    }

    err = NULL;

    if (ngx_http_sse_redis_convert(&channel, &payload, pool, &err) != NGX_OK
        && err && ngx_http_sse_log_due(&rd->dropped_log))
    {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "sse: PUBLISH on \"%*s\" dropped: %s (%ui dropped "
                      "since the last such line)",
                      ngx_min(reply->element[2]->len, 256),
                      reply->element[2]->str, err, rd->dropped_log.seen);
        rd->dropped_log.seen = 0;
    }

    ngx_destroy_pool(pool);
}


/* checked as a POST body would be, then appended under the lease */

static ngx_int_t
ngx_http_sse_redis_convert(ngx_str_t *channel, ngx_str_t *payload,
    ngx_pool_t *pool, const char **err)
{
    ngx_str_t                    names[NGX_HTTP_SSE_MAX_CHANNELS];
    ngx_uint_t                   i, n;
    ngx_array_t                  events;
    ngx_http_sse_fields_t       *ev;
    ngx_http_sse_redis_t        *rd;
    ngx_http_sse_redis_op_t     *op;
    ngx_http_sse_redis_group_t  *g;
    ngx_http_sse_redis_entry_t  *e;

    rd = &ngx_http_sse_redis;

    if (ngx_http_sse_parse_channels(channel, names, &n, err) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (n != 1 || names[0].len != channel->len) {
        *err = "bad channel name";
        return NGX_DECLINED;
    }

    if (ngx_array_init(&events, pool, 4, sizeof(ngx_http_sse_fields_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rd->conf->payload == NGX_HTTP_SSE_REDIS_PAYLOAD_EVENT_STREAM) {
        if (ngx_http_sse_parse_body(pool, payload, rd->conf->max_events,
                                    &events, err)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

    } else {
        ev = ngx_array_push(&events);
        if (ev == NULL) {
            return NGX_ERROR;
        }

        ev->type = ngx_http_sse_message;
        ev->data = *payload;
    }

    ev = events.elts;

    e = ngx_pcalloc(pool, events.nelts * sizeof(ngx_http_sse_redis_entry_t));
    if (e == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < events.nelts; i++) {
        if (ngx_http_sse_check_event(&ev[i], rd->conf->max_message_size, err)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

        e[i].channel = *channel;
        e[i].data = ev[i].data;
        e[i].history = -1;
        e[i].ttl = NGX_CONF_UNSET_MSEC;

        if (ev[i].type.data != ngx_http_sse_message.data) {
            e[i].type = ev[i].type;
        }
    }

    if (rd->cmd.state != NGX_HTTP_SSE_REDIS_READY) {
        *err = "redis unavailable";
        return NGX_DECLINED;
    }

    /* a group of one, sent at once, that appends only under the lease */

    g = ngx_alloc(offsetof(ngx_http_sse_redis_group_t, ops)
                  + sizeof(ngx_http_sse_redis_op_t *), rd->log);
    op = ngx_alloc(sizeof(ngx_http_sse_redis_op_t)
                   + events.nelts * sizeof(ngx_http_sse_id_t), rd->log);

    if (g == NULL || op == NULL) {
        ngx_free(g);
        ngx_free(op);
        return NGX_ERROR;
    }

    op->done = NULL;
    op->data = NULL;
    op->n = events.nelts;

    g->nops = 1;
    g->nentries = events.nelts;
    g->ops[0] = op;

    if (ngx_http_sse_redis_send_append(e, events.nelts, 0, &rd->token,
                                       ngx_http_sse_redis_group_reply, g,
                                       pool)
        != NGX_OK)
    {
        ngx_free(g);
        ngx_free(op);
        *err = "redis unavailable";
        return NGX_DECLINED;
    }

    return NGX_OK;
}
