/*
 * Target "event": one event as a publish of any other content type makes
 * it (the whole body is the data, raw CR and LF included; the type comes
 * from ?event=): ngx_http_sse_check_event(), ngx_http_sse_valid_utf8() and
 * ngx_http_sse_frame().
 *
 * Input: byte 0 is the type's length modulo 80 (0xff: the default type,
 * the module's own "message"), bytes 1-2 the size limit (little endian),
 * then the type, then the data.  Type and data are copied to buffers of
 * exactly their size.
 *
 * Properties:
 *  - valid_utf8 agrees with the validator written from the Unicode table
 *    (ref_utf8_valid), on the data and on the whole input;
 *  - check_event answers what SPEC.md asks for (ref_check): 400, 413 or
 *    NGX_OK, and a reason with each refusal;
 *  - the frame of any event whose type is valid reads back by EventSource's
 *    rules as the same type and the data with LF line ends.
 */

#include "fuzz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     valid;
    size_t                  tlen, max;
    ngx_int_t               rc, want;
    ngx_pool_t             *pool;
    const char             *err;
    const uint8_t          *p, *last;
    ngx_http_sse_fields_t   e;

    valid = ref_utf8_valid(data, size);

    FUZZ_CHECK((ngx_http_sse_valid_utf8((u_char *) data, size) == NGX_OK)
               == valid,
               "valid_utf8 says %s, Unicode table 3-7 says %s, for %s",
               valid ? "invalid" : "valid", valid ? "valid" : "invalid",
               fuzz_show(data, size));

    if (size < 3) {
        return 0;
    }

    p = data + 3;
    last = data + size;
    max = data[1] | (data[2] << 8);

    if (data[0] == 0xff) {
        e.type = ngx_http_sse_message;
        tlen = 0;

    } else {
        tlen = data[0] % 80;

        if (tlen > (size_t) (last - p)) {
            tlen = last - p;
        }

        e.type.data = fuzz_copy(p, tlen);
        e.type.len = tlen;
    }

    p += tlen;

    e.data.data = fuzz_copy(p, last - p);
    e.data.len = last - p;

    valid = ref_utf8_valid(e.data.data, e.data.len);

    FUZZ_CHECK((ngx_http_sse_valid_utf8(e.data.data, e.data.len) == NGX_OK)
               == valid,
               "valid_utf8 says %s, Unicode table 3-7 says %s, for %s",
               valid ? "invalid" : "valid", valid ? "valid" : "invalid",
               fuzz_show(e.data.data, e.data.len));

    err = NULL;
    rc = ngx_http_sse_check_event(&e, max, &err);
    want = ref_check(e.type.data, e.type.len, e.data.data, e.data.len, max);

    FUZZ_CHECK(rc == want,
               "check_event %d (%s), SPEC.md %d (0: accepted), max %zu,"
               " type %s, data %s",
               (int) rc, err ? err : "", (int) want, max,
               fuzz_show(e.type.data, e.type.len),
               fuzz_show(e.data.data, e.data.len));

    FUZZ_CHECK(rc == NGX_OK || (err != NULL && err[0] != '\0'),
               "check_event %d without a reason", (int) rc);

    pool = fuzz_pool();

    fuzz_frame_roundtrip(pool, &e);

    ngx_destroy_pool(pool);

    if (e.type.data != ngx_http_sse_message.data) {
        free(e.type.data);
    }

    free(e.data.data);

    return 0;
}
