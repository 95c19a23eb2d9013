/*
 * With NGINX_SRC=<an nginx tree> (mk/fuzz.mk), the fuzzers link the tree's
 * own ngx_palloc.c, ngx_array.c, ngx_string.c and ngx_alloc.c, not the
 * stand-ins of ngx_core_stubs.c.  Those files refer to two symbols that
 * live in files that would pull in the rest of nginx (ngx_log.c wants the
 * cycle, ngx_cycle.c everything): here they are, and nothing else.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>


/*
 * ngx_log.c: ngx_palloc.c and ngx_alloc.c log through ngx_log_error() and
 * ngx_log_debug() (an allocation that failed, what a pool frees).  The
 * fuzzers' log level is NGX_LOG_ERR, so only failures get here: they are
 * printed to stderr, the rest as nginx would leave it to the log.
 */

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   buf[NGX_MAX_ERROR_STR], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf) - 1, fmt, args);
    va_end(args);

    *p = '\0';

    fprintf(stderr, "nginx log [%lu]: %s (errno %d)\n", (unsigned long) level,
            buf, (int) err);
}


/*
 * ngx_cycle.c: ngx_string.c's ngx_sort() allocates from ngx_cycle->log.
 * The parsers never sort; NULL, so a use would fail at once.
 */

volatile ngx_cycle_t  *ngx_cycle;
