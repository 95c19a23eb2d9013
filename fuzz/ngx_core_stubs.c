/*
 * Stand-ins, written for this project, for the few functions of nginx's
 * core that the fuzz targets link: what ngx_http_sse_event.c calls
 * (ngx_pnalloc, ngx_array_push, ngx_sprintf, ngx_strncasecmp) and what the
 * targets call (ngx_create_pool, ngx_destroy_pool, and ngx_palloc through
 * ngx_array_init()).  Nothing else is defined: a new call in the module
 * fails the link until it has its stand-in here.
 *
 * Why: Debian's nginx-dev, which build/nginx-src is copied from, ships
 * nginx's headers and no .c files.  The module's file is compiled against
 * those headers as it is for the real module; only these functions come
 * from here.  With NGINX_SRC=<an nginx tree> mk/fuzz.mk links the tree's
 * own ngx_palloc.c, ngx_array.c, ngx_string.c and ngx_alloc.c instead
 * (with ngx_upstream_stubs.c), not this file.
 *
 * They do what nginx documents its functions do, as simply as possible,
 * and in the way that lets AddressSanitizer see the most:
 *  - every pool allocation is its own malloc() of exactly the size asked
 *    for (a byte past it is an overrun), freed when the pool is destroyed
 *    (LeakSanitizer sees a pool that is never destroyed);
 *  - a full array grows as nginx's does when it cannot grow in place: a
 *    new block of twice the elements from the pool, the elements copied
 *    over; the old block stays allocated until the pool goes;
 *  - ngx_sprintf() knows only the conversions the module uses (%L with its
 *    flags, %%); any other one abort()s, so a new format is noticed.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>


/* ---------------------------------------------------------------- pools */

/*
 * The pool's own fields are all a stand-in needs: its allocations are the
 * list at pool->large, one malloc()ed list node for each; d, max, current
 * and chain are set so that nothing reading them is misled, never used.
 */

ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *pool;

    (void) size;

    pool = calloc(1, sizeof(ngx_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->current = pool;
    pool->log = log;

    return pool;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_large_t  *a, *next;

    /* nothing here registers cleanups (ngx_pool_cleanup_add is not ours) */

    for (a = pool->large; a; a = next) {
        next = a->next;
        free(a->alloc);
        free(a);
    }

    free(pool);
}


static void *
fuzz_pool_alloc(ngx_pool_t *pool, size_t size)
{
    void              *p;
    ngx_pool_large_t  *a;

    a = malloc(sizeof(ngx_pool_large_t));
    if (a == NULL) {
        return NULL;
    }

    /* malloc(0) gives a pointer of its own, none of whose bytes is ours */

    p = malloc(size);
    if (p == NULL && size != 0) {
        free(a);
        return NULL;
    }

    a->alloc = p;
    a->next = pool->large;
    pool->large = a;

    return p;
}


/* nginx aligns what ngx_palloc() gives, not ngx_pnalloc(): malloc() does */

void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    return fuzz_pool_alloc(pool, size);
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return fuzz_pool_alloc(pool, size);
}


/* --------------------------------------------------------------- arrays */

void *
ngx_array_push(ngx_array_t *a)
{
    u_char      *block;
    ngx_uint_t   n;

    if (a->nelts == a->nalloc) {

        /* twice as many elements (one for an array made with none) */

        n = a->nalloc ? 2 * a->nalloc : 1;

        block = ngx_palloc(a->pool, n * a->size);
        if (block == NULL) {
            return NULL;
        }

        if (a->nelts) {
            memcpy(block, a->elts, a->nelts * a->size);
        }

        a->elts = block;
        a->nalloc = n;
    }

    return (u_char *) a->elts + a->size * a->nelts++;
}


/* -------------------------------------------------------------- strings */

/*
 * As C's strncasecmp() with ASCII case only: compares at most n bytes,
 * stops after a NUL both have; the difference of the two lowercase bytes.
 */

ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    size_t      i;
    ngx_uint_t  a, b;

    for (i = 0; i < n; i++) {
        a = (s1[i] >= 'A' && s1[i] <= 'Z') ? s1[i] + ('a' - 'A') : s1[i];
        b = (s2[i] >= 'A' && s2[i] <= 'Z') ? s2[i] + ('a' - 'A') : s2[i];

        if (a != b) {
            return (ngx_int_t) a - (ngx_int_t) b;
        }

        if (a == '\0') {
            break;
        }
    }

    return 0;
}


/*
 * ngx_sprintf(): writes fmt with its arguments at buf, without a closing
 * NUL, and returns the end of what it wrote.  The conversions nginx's
 * ngx_string.c documents that the module uses:
 *
 *   %[0][width][u][x|X]L   an int64_t, or with u (or x, X) a uint64_t:
 *                          decimal, or hexadecimal with x (a-f) or X (A-F);
 *                          a negative number is '-' and its magnitude;
 *                          the digits (after the '-') are padded to width
 *                          with '0' when the width begins with 0, else ' '
 *   %%                     '%'
 *
 * Any other conversion abort()s with the format.
 */

static u_char *
fuzz_sprintf_int(u_char *buf, uint64_t v, int neg, ngx_uint_t base,
    const char *digits, ngx_uint_t width, u_char pad)
{
    u_char      tmp[64], *t;
    ngx_uint_t  n;

    t = tmp + sizeof(tmp);

    do {
        *--t = (u_char) digits[v % base];
        v /= base;
    } while (v);

    if (neg) {
        *buf++ = '-';
    }

    for (n = tmp + sizeof(tmp) - t; n < width; n++) {
        *buf++ = pad;
    }

    n = tmp + sizeof(tmp) - t;
    memcpy(buf, t, n);

    return buf + n;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    int          neg;
    u_char       pad;
    int64_t      s;
    uint64_t     v;
    va_list      args;
    ngx_uint_t   width, is_signed, base;
    const char  *spec, *digits;

    va_start(args, fmt);

    while (*fmt) {

        if (*fmt != '%') {
            *buf++ = (u_char) *fmt++;
            continue;
        }

        spec = fmt++;

        if (*fmt == '%') {
            *buf++ = '%';
            fmt++;
            continue;
        }

        pad = (u_char) ((*fmt == '0') ? '0' : ' ');
        width = 0;

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        is_signed = 1;
        base = 10;
        digits = "0123456789abcdef";

        for ( ;; ) {
            if (*fmt == 'u') {
                is_signed = 0;

            } else if (*fmt == 'x' || *fmt == 'X') {
                is_signed = 0;
                base = 16;
                digits = (*fmt == 'x') ? "0123456789abcdef"
                                       : "0123456789ABCDEF";
            } else {
                break;
            }

            fmt++;
        }

        if (*fmt != 'L') {
            fprintf(stderr, "ngx_sprintf stand-in (fuzz/ngx_core_stubs.c): "
                    "\"%s\" is not supported\n", spec);
            abort();
        }

        fmt++;
        neg = 0;

        if (is_signed) {
            s = va_arg(args, int64_t);

            if (s < 0) {
                neg = 1;
                v = (uint64_t) 0 - (uint64_t) s;

            } else {
                v = (uint64_t) s;
            }

        } else {
            v = va_arg(args, uint64_t);
        }

        buf = fuzz_sprintf_int(buf, v, neg, base, digits, width, pad);
    }

    va_end(args);

    return buf;
}
