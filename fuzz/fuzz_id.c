/*
 * Target "id": ngx_http_sse_id_parse() (Last-Event-ID, ?last_event_id=)
 * and ngx_http_sse_id_format() (the "id:" lines and the publish answers).
 *
 * The whole input is parsed as an id; when it has 16 bytes or more, its
 * first 16 are also an id's two numbers (little endian) to format.
 *
 * Properties (SPEC.md: "<milliseconds>-<sequence>", decimal, each part 1
 * to 20 digits, each at most 2^64 - 1, as Redis's ids):
 *  - parse accepts exactly the strings of 1-20 digits, "-", 1-20 digits
 *    whose numbers strtoull() reads without ERANGE, with those numbers;
 *  - format writes "%llu-%llu" as snprintf() does, within
 *    NGX_HTTP_SSE_ID_LEN bytes (the buffer is exactly that long);
 *  - format(parse(x)) == x when x is canonical (no leading zero but in
 *    "0"), and parse(format(id)) == id for every id.
 */

#include "fuzz.h"

#include <errno.h>
#include <stdio.h>


/* 1: in is <1-20 digits>-<1-20 digits>, each under 2^64; v, by strtoull */
static int
ref_id(const u_char *in, size_t len, uint64_t v[2], int *canonical)
{
    char    part[21];
    size_t  i, k, start;

    *canonical = 1;
    start = 0;

    for (k = 0; k < 2; k++) {
        for (i = start; i < len && in[i] >= '0' && in[i] <= '9'; i++) {
            /* void */
        }

        if (i == start || i - start > 20) {
            return 0;
        }

        if (k == 0 ? (i == len || in[i] != '-') : i != len) {
            return 0;
        }

        if (in[start] == '0' && i - start > 1) {
            *canonical = 0;
        }

        memcpy(part, in + start, i - start);
        part[i - start] = '\0';
        errno = 0;
        v[k] = strtoull(part, NULL, 10);

        if (errno == ERANGE) {
            return 0;
        }

        start = i + 1;
    }

    return 1;
}


static void
check_parse(const u_char *in, size_t len)
{
    int                 ok, canonical;
    u_char             *copy, *buf, *end;
    uint64_t            v[2];
    ngx_int_t           rc;
    ngx_http_sse_id_t   id, again;

    copy = fuzz_copy(in, len);

    ok = ref_id(copy, len, v, &canonical);
    id.ms = 12345;
    id.seq = 67890;

    rc = ngx_http_sse_id_parse(copy, len, &id);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_ERROR, "id_parse returned %d",
               (int) rc);

    FUZZ_CHECK((rc == NGX_OK) == ok, "id_parse %s %s",
               rc == NGX_OK ? "accepts" : "refuses", fuzz_show(in, len));

    if (rc != NGX_OK) {
        free(copy);
        return;
    }

    FUZZ_CHECK(id.ms == v[0] && id.seq == v[1],
               "id_parse reads %s as %llu-%llu", fuzz_show(in, len),
               (unsigned long long) id.ms, (unsigned long long) id.seq);

    buf = malloc(NGX_HTTP_SSE_ID_LEN);
    end = ngx_http_sse_id_format(buf, &id);

    if (canonical) {
        FUZZ_CHECK((size_t) (end - buf) == len && memcmp(buf, in, len) == 0,
                   "format(parse(%s)) is %s", fuzz_show(in, len),
                   fuzz_show(buf, end - buf));
    }

    FUZZ_CHECK(ngx_http_sse_id_parse(buf, end - buf, &again) == NGX_OK
               && again.ms == id.ms && again.seq == id.seq,
               "parse(format(parse(%s))) differs", fuzz_show(in, len));

    free(buf);
    free(copy);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char               want[64];
    u_char            *buf, *end;
    size_t             i, n;
    ngx_http_sse_id_t  id;

    check_parse(data, size);

    if (size < 16) {
        return 0;
    }

    id.ms = 0;
    id.seq = 0;

    for (i = 0; i < 8; i++) {
        id.ms |= (uint64_t) data[i] << (8 * i);
        id.seq |= (uint64_t) data[8 + i] << (8 * i);
    }

    buf = malloc(NGX_HTTP_SSE_ID_LEN);
    end = ngx_http_sse_id_format(buf, &id);

    n = snprintf(want, sizeof(want), "%llu-%llu",
                 (unsigned long long) id.ms, (unsigned long long) id.seq);

    FUZZ_CHECK((size_t) (end - buf) == n && memcmp(buf, want, n) == 0,
               "id_format(%s) wrote %s", want, fuzz_show(buf, end - buf));

    /* the parse properties again, on what format wrote */
    check_parse(buf, end - buf);

    free(buf);

    return 0;
}
