/*
 * Target "body": a text/event-stream publish body, as the publish handler
 * takes it: ngx_http_sse_parse_body(), then ngx_http_sse_check_event() and
 * ngx_http_sse_frame() for each event.
 *
 * The input's first byte is the most events the body may carry (the max of
 * parse_body, as sse_max_events; 0: no limit), the rest is the body.
 *
 * Properties:
 *  - parse_body's answer is the reference's (the reference parser in
 *    module mode, fuzz.h, which stops at the first thing it refuses):
 *    NGX_BUSY when a max is set and the reference finds more events than
 *    that before anything refused, else NGX_DECLINED when the reference
 *    refuses the body, else NGX_OK; NGX_BUSY and NGX_DECLINED with a
 *    reason;
 *  - the events parse_body gives (all of them, or the first max for
 *    NGX_BUSY) are the reference's: same number, same types, same data
 *    bytes;
 *  - check_event gives each event the status SPEC.md asks for (ref_check,
 *    with an independent UTF-8 validator);
 *  - each event's frame is read back by EventSource's rules as the same
 *    type and data (fuzz_frame_roundtrip);
 *  - no overrun (AddressSanitizer: every pool allocation is its own
 *    malloc), no undefined behaviour, no leak, the body is not written to.
 */

#include "fuzz.h"


/* as sse_max_message_size's default, 64k; the limit has its own target */
#define FUZZ_BODY_MAX  65536


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                 *type;
    size_t                  tlen, i, n;
    ngx_uint_t              max;
    ngx_int_t               rc, want;
    ngx_str_t               body;
    ngx_pool_t             *pool;
    ngx_array_t             events;
    const char             *err;
    ref_event_t            *rev;
    ref_stream_t            ref;
    ngx_http_sse_fields_t  *e;

    pool = fuzz_pool();

    /* as ngx_http_sse_body_events() */
    if (ngx_array_init(&events, pool, 4, sizeof(ngx_http_sse_fields_t))
        != NGX_OK)
    {
        abort();
    }

    max = 0;

    if (size) {
        max = data[0];
        data++;
        size--;
    }

    /* the body alone, in an allocation of its own: a read past it shows */
    body.data = fuzz_copy(data, size);
    body.len = size;
    err = NULL;

    rc = ngx_http_sse_parse_body(pool, &body, max, &events, &err);

    FUZZ_CHECK(memcmp(body.data, data, size) == 0,
               "parse_body wrote to the body %s", fuzz_show(data, size));

    ref_parse(data, size, REF_MODULE, &ref);

    /* ref.nevents: the events before the first thing refused, if any */

    if (max && ref.nevents > max) {
        want = NGX_BUSY;

    } else if (ref.error) {
        want = NGX_DECLINED;

    } else {
        want = NGX_OK;
    }

    FUZZ_CHECK(rc == want,
               "parse_body returned %d (%s), the reference %d (%zu events%s,"
               " max %lu), for %s",
               (int) rc, err ? err : "", (int) want, ref.nevents,
               ref.error ? ", then refused" : "", (unsigned long) max,
               fuzz_show(data, size));

    if (rc != NGX_OK) {
        FUZZ_CHECK(err != NULL && err[0] != '\0',
                   "parse_body returned %d without a reason: %s", (int) rc,
                   fuzz_show(data, size));
    }

    if (rc == NGX_DECLINED) {
        goto done;
    }

    n = (rc == NGX_BUSY) ? max : ref.nevents;

    FUZZ_CHECK(events.nelts == n,
               "parse_body gave %zu events, the reference %zu (max %lu), in %s",
               (size_t) events.nelts, n, (unsigned long) max,
               fuzz_show(data, size));

    e = events.elts;

    for (i = 0; i < events.nelts; i++) {
        rev = &ref.events[i];

        type = rev->type ? rev->type : (u_char *) "message";
        tlen = rev->type ? rev->type_len : 7;

        FUZZ_CHECK(e[i].type.len == tlen
                   && memcmp(e[i].type.data, type, tlen) == 0,
                   "event %zu: type %s, the reference %s, in %s", i,
                   fuzz_show(e[i].type.data, e[i].type.len),
                   fuzz_show(type, tlen), fuzz_show(data, size));

        FUZZ_CHECK(e[i].data.len == rev->data_len
                   && memcmp(e[i].data.data, rev->data, rev->data_len) == 0,
                   "event %zu: data %s, the reference %s, in %s", i,
                   fuzz_show(e[i].data.data, e[i].data.len),
                   fuzz_show(rev->data, rev->data_len),
                   fuzz_show(data, size));

        err = NULL;
        rc = ngx_http_sse_check_event(&e[i], FUZZ_BODY_MAX, &err);
        want = ref_check(e[i].type.data, e[i].type.len, e[i].data.data,
                         e[i].data.len, FUZZ_BODY_MAX);

        FUZZ_CHECK(rc == want,
                   "event %zu: check_event %d (%s), SPEC.md %d (0: accepted),"
                   " type %s data %s",
                   i, (int) rc, err ? err : "", (int) want,
                   fuzz_show(e[i].type.data, e[i].type.len),
                   fuzz_show(e[i].data.data, e[i].data.len));

        FUZZ_CHECK(rc == NGX_OK || (err != NULL && err[0] != '\0'),
                   "event %zu: check_event %d without a reason", i, (int) rc);

        fuzz_frame_roundtrip(pool, &e[i]);
    }

done:

    free(body.data);
    ref_free(&ref);
    ngx_destroy_pool(pool);

    return 0;
}
