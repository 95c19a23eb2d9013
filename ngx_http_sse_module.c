
/*
 * ngx_http_sse_module: the module itself: its directives, the
 * configuration of each context (create, merge), the hub's zone, and what
 * each worker does when it starts and exits.
 *
 * Calls: the handlers the directives set (stream, publish, status), the
 * stream side's and the Redis client's worker start and exit, and the
 * hub's zone init.
 */


#include "ngx_http_sse.h"


#define NGX_HTTP_SSE_DEFAULT_ZONE_SIZE  (32 * 1024 * 1024)


static void *ngx_http_sse_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sse_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sse_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sse_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_sse_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_add_zone(ngx_conf_t *cf,
    ngx_http_sse_main_conf_t *smcf, ngx_str_t *name, size_t size);
static char *ngx_http_sse_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_publish(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_set_handler(ngx_conf_t *cf,
    ngx_http_handler_pt handler);
static char *ngx_http_sse_msec_or_off(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_redis_payload(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sse_init_redis_conf(ngx_conf_t *cf,
    ngx_http_sse_main_conf_t *smcf);
static ngx_int_t ngx_http_sse_init_process(ngx_cycle_t *cycle);
static void ngx_http_sse_exit_process(ngx_cycle_t *cycle);


static ngx_msec_t  ngx_http_sse_retry_off = NGX_HTTP_SSE_RETRY_OFF;


static ngx_conf_enum_t  ngx_http_sse_redis_payloads[] = {
    { ngx_string("data"), NGX_HTTP_SSE_REDIS_PAYLOAD_DATA },
    { ngx_string("event-stream"), NGX_HTTP_SSE_REDIS_PAYLOAD_EVENT_STREAM },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_sse_commands[] = {

    { ngx_string("sse_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, stream),
      NULL },

    { ngx_string("sse_publish"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_publish,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, publish),
      NULL },

    { ngx_string("sse_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sse_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_history"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, history),
      NULL },

    { ngx_string("sse_history_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, history_ttl),
      NULL },

    { ngx_string("sse_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_msec_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, retry),
      &ngx_http_sse_retry_off },

    { ngx_string("sse_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_msec_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("sse_max_pending"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_pending),
      NULL },

    { ngx_string("sse_max_subscribers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_subscribers),
      NULL },

    { ngx_string("sse_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("sse_max_events"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sse_loc_conf_t, max_events),
      NULL },

    { ngx_string("sse_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sse_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sse_main_conf_t, redis.prefix),
      NULL },

    { ngx_string("sse_redis_payload"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sse_redis_payload,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sse_main_conf_t, redis.payload),
      &ngx_http_sse_redis_payloads },

    { ngx_string("sse_redis_log"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sse_main_conf_t, redis.log_max),
      NULL },

    { ngx_string("sse_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sse_main_conf_t, redis.timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sse_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_sse_error_filter_init,        /* postconfiguration */

    ngx_http_sse_create_main_conf,         /* create main configuration */
    ngx_http_sse_init_main_conf,           /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sse_create_loc_conf,          /* create location configuration */
    ngx_http_sse_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_sse_module = {
    NGX_MODULE_V1,
    &ngx_http_sse_module_ctx,              /* module context */
    ngx_http_sse_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_sse_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_sse_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* configuration */

static void *
ngx_http_sse_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sse_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sse_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->shm_zone = NULL;
     *     smcf->used = 0;
     *     smcf->redis.url = { 0, NULL };
     *     smcf->redis.prefix = { 0, NULL };
     */

    smcf->redis.payload = NGX_CONF_UNSET_UINT;
    smcf->redis.log_max = NGX_CONF_UNSET;
    smcf->redis.timeout = NGX_CONF_UNSET_MSEC;

    return smcf;
}


static char *
ngx_http_sse_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sse_main_conf_t  *smcf = conf;

    char       *rv;
    ngx_str_t   name = ngx_string("sse");

    if (smcf->redis.url.len) {
        rv = ngx_http_sse_init_redis_conf(cf, smcf);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        /* the Redis log is read into the zone, used or not yet */
        smcf->used = 1;
    }

    if (smcf->used && smcf->shm_zone == NULL) {
        return ngx_http_sse_add_zone(cf, smcf, &name,
                                     NGX_HTTP_SSE_DEFAULT_ZONE_SIZE);
    }

    return NGX_CONF_OK;
}


/*
 * Redis's defaults, and the retention its entries get when they name none
 * (PUBLISH, XADD): the http level's sse_history, sse_history_ttl and
 * sse_max_message_size, or their defaults.
 */

static char *
ngx_http_sse_init_redis_conf(ngx_conf_t *cf, ngx_http_sse_main_conf_t *smcf)
{
    char                       *rv;
    ngx_http_sse_loc_conf_t    *slcf;
    ngx_http_sse_redis_conf_t  *rcf;

    rcf = &smcf->redis;

    if (rcf->prefix.data == NULL) {
        ngx_str_set(&rcf->prefix, "sse:");
    }

    ngx_conf_init_uint_value(rcf->payload, NGX_HTTP_SSE_REDIS_PAYLOAD_DATA);
    ngx_conf_init_value(rcf->log_max, 10000);
    ngx_conf_init_msec_value(rcf->timeout, 1000);

    if (rcf->log_max < 1) {
        return "sse_redis_log: at least 1";
    }

    if (rcf->timeout == 0) {
        return "sse_redis_timeout: more than 0";
    }

    slcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_sse_module);

    rcf->policy.history = (slcf->history == NGX_CONF_UNSET)
                          ? 100 : (ngx_uint_t) slcf->history;
    rcf->policy.history_ttl = (slcf->history_ttl == NGX_CONF_UNSET_MSEC)
                              ? 3600 * 1000 : slcf->history_ttl;
    rcf->max_message_size = (slcf->max_message_size == NGX_CONF_UNSET_SIZE)
                            ? 64 * 1024 : slcf->max_message_size;
    rcf->max_events = (slcf->max_events == NGX_CONF_UNSET)
                      ? 1000 : (ngx_uint_t) slcf->max_events;

    rv = ngx_http_sse_redis_init_conf(cf, rcf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_sse_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sse_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sse_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->stream = NULL;
     *     conf->publish = NULL;
     *     conf->status = 0;
     *     conf->retry_line = { 0, NULL };
     */

    conf->history = NGX_CONF_UNSET;
    conf->history_ttl = NGX_CONF_UNSET_MSEC;
    conf->retry = NGX_CONF_UNSET_MSEC;
    conf->heartbeat = NGX_CONF_UNSET_MSEC;
    conf->max_pending = NGX_CONF_UNSET_SIZE;
    conf->max_subscribers = NGX_CONF_UNSET;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->max_events = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_sse_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_sse_loc_conf_t *prev = parent;
    ngx_http_sse_loc_conf_t *conf = child;

    u_char  *p;

    /*
     * an "if" block in an sse_stream or sse_publish location runs the
     * location's handler with its own configuration: it needs the channels
     */

    if (conf->stream == NULL && conf->publish == NULL && !conf->status) {
        conf->stream = prev->stream;
        conf->publish = prev->publish;
        conf->status = prev->status;
    }

    ngx_conf_merge_value(conf->history, prev->history, 100);
    ngx_conf_merge_msec_value(conf->history_ttl, prev->history_ttl,
                              3600 * 1000);
    ngx_conf_merge_msec_value(conf->retry, prev->retry, 3000);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 25000);
    ngx_conf_merge_size_value(conf->max_pending, prev->max_pending,
                              256 * 1024);
    ngx_conf_merge_value(conf->max_subscribers, prev->max_subscribers, 0);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              64 * 1024);
    ngx_conf_merge_value(conf->max_events, prev->max_events, 1000);

    if (conf->max_events < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sse_max_events\" must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (conf->history < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sse_history\" must not be negative");
        return NGX_CONF_ERROR;
    }

    if (conf->max_subscribers < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sse_max_subscribers\" must not be negative");
        return NGX_CONF_ERROR;
    }

    if (conf->retry != NGX_HTTP_SSE_RETRY_OFF) {
        p = ngx_pnalloc(cf->pool, sizeof("retry: \n\n") - 1 + NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->retry_line.data = p;
        conf->retry_line.len = ngx_sprintf(p, "retry: %M\n\n", conf->retry)
                               - p;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_main_conf_t  *smcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (smcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = ngx_strlchr(value[1].data, value[1].data + value[1].len, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid sse_zone \"%V\", expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid sse_zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sse_zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_sse_add_zone(cf, smcf, &name, size);
}


static char *
ngx_http_sse_add_zone(ngx_conf_t *cf, ngx_http_sse_main_conf_t *smcf,
    ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t      *shm_zone;
    ngx_http_sse_hub_t  *hub;

    hub = ngx_pcalloc(cf->pool, sizeof(ngx_http_sse_hub_t));
    if (hub == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_http_sse_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate sse zone \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    hub->shm_zone = shm_zone;

    shm_zone->init = ngx_http_sse_hub_init_zone;
    shm_zone->data = hub;

    smcf->shm_zone = shm_zone;

    return NGX_CONF_OK;
}


/* sse_stream and sse_publish: the handler, and the channels it serves */

static char *
ngx_http_sse_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *rv;

    rv = ngx_http_sse_set_handler(cf, ngx_http_sse_stream_handler);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_set_complex_value_slot(cf, cmd, conf);
}


static char *
ngx_http_sse_publish(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *rv;

    rv = ngx_http_sse_set_handler(cf, ngx_http_sse_publish_handler);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_set_complex_value_slot(cf, cmd, conf);
}


static char *
ngx_http_sse_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_loc_conf_t *slcf = conf;

    slcf->status = 1;

    return ngx_http_sse_set_handler(cf, ngx_http_sse_status_handler);
}


/* one of sse_stream, sse_publish, sse_status per location */

static char *
ngx_http_sse_set_handler(ngx_conf_t *cf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_sse_main_conf_t  *smcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == handler) {
        return "is duplicate";
    }

    if (clcf->handler == ngx_http_sse_stream_handler
        || clcf->handler == ngx_http_sse_publish_handler
        || clcf->handler == ngx_http_sse_status_handler)
    {
        return "conflicts with another of sse_stream, sse_publish and "
               "sse_status in this location";
    }

    clcf->handler = handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sse_module);
    smcf->used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_msec_or_off(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_msec_t  *msp;

    msp = (ngx_msec_t *) (p + cmd->offset);

    if (*msp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *msp = cmd->post ? *(ngx_msec_t *) cmd->post : 0;
        return NGX_CONF_OK;
    }

    *msp = ngx_parse_time(&value[1], 0);

    if (*msp == (ngx_msec_t) NGX_ERROR) {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sse_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->redis.url.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_sse_redis_parse_url(cf, &value[1], &smcf->redis);
}


/* an enum whose error names the directive and its values */

static char *
ngx_http_sse_redis_payload(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sse_main_conf_t *smcf = conf;

    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    if (smcf->redis.payload != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = cmd->post; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strcasecmp(e->name.data, value[1].data) == 0)
        {
            smcf->redis.payload = e->value;
            return NGX_CONF_OK;
        }
    }

    return "must be \"data\" or \"event-stream\"";
}


static ngx_int_t
ngx_http_sse_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sse_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        /* cache manager and loader never serve streams */
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sse_module);

    if (smcf == NULL || smcf->shm_zone == NULL) {
        return NGX_OK;
    }

    if (ngx_http_sse_stream_init_worker(cycle, smcf->shm_zone->data)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (smcf->redis.url.len) {
        return ngx_http_sse_redis_init_worker(cycle, &smcf->redis);
    }

    return NGX_OK;
}


static void
ngx_http_sse_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sse_redis_exit_worker(cycle);
    ngx_http_sse_stream_exit_worker(cycle);
}
