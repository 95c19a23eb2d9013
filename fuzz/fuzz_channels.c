/*
 * Target "channels": ngx_http_sse_parse_channels(), the channel list of
 * sse_stream / sse_publish after its variables are evaluated.  The names
 * array has room for exactly 16 (AddressSanitizer sees a 17th).
 *
 * Properties (SPEC.md: 1-16 names of 1-128 bytes of A-Z a-z 0-9 _ - . : @ /,
 * comma-separated, duplicates collapsed):
 *  - the list is accepted exactly when every comma-separated piece is a
 *    valid name and there are at most 16 different ones;
 *  - then the names are those pieces, each once, in order of first
 *    appearance: each points into the input, between the start or a comma
 *    and a comma or the end, is 1-128 allowed bytes, none twice;
 *  - a refusal comes with a reason.
 */

#include "fuzz.h"


static int
allowed(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'
           || c == ':' || c == '@' || c == '/';
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           ok;
    u_char       *in, *start, *last, *p;
    size_t        i, k, npieces, ndistinct;
    ngx_int_t     rc;
    ngx_str_t     value, *names, pieces[17];
    ngx_uint_t    n;
    const char   *err;

    /* exactly the input, so a read past it is seen */
    in = fuzz_copy(data, size);
    last = in + size;

    names = malloc(NGX_HTTP_SSE_MAX_CHANNELS * sizeof(ngx_str_t));

    /* the reference: split on commas, check each piece, count distinct */

    ok = 1;
    npieces = 0;
    ndistinct = 0;
    start = in;

    for (p = in; ; p++) {
        if (p < last && *p != ',') {
            if (!allowed(*p)) {
                ok = 0;
            }

            continue;
        }

        if (p - start < 1 || p - start > 128) {
            ok = 0;
        }

        npieces++;

        if (ok) {
            for (k = 0; k < ndistinct; k++) {
                if (pieces[k].len == (size_t) (p - start)
                    && memcmp(pieces[k].data, start, p - start) == 0)
                {
                    break;
                }
            }

            if (k == ndistinct) {
                if (ndistinct == 16) {
                    ok = 0;

                } else {
                    pieces[ndistinct].data = start;
                    pieces[ndistinct].len = p - start;
                    ndistinct++;
                }
            }
        }

        if (p == last) {
            break;
        }

        start = p + 1;
    }

    value.data = in;
    value.len = size;
    err = NULL;
    n = 99;

    rc = ngx_http_sse_parse_channels(&value, names, &n, &err);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED,
               "parse_channels returned %d", (int) rc);

    FUZZ_CHECK((rc == NGX_OK) == ok,
               "parse_channels %s (%s) %s (%zu pieces, %zu different)",
               rc == NGX_OK ? "accepts" : "refuses", err ? err : "",
               fuzz_show(in, size), npieces, ndistinct);

    if (rc != NGX_OK) {
        FUZZ_CHECK(err != NULL && err[0] != '\0',
                   "refused without a reason: %s", fuzz_show(in, size));
        goto done;
    }

    FUZZ_CHECK(n >= 1 && n <= NGX_HTTP_SSE_MAX_CHANNELS && n == ndistinct,
               "%zu names, %zu different pieces in %s", (size_t) n,
               ndistinct, fuzz_show(in, size));

    for (i = 0; i < n; i++) {
        p = names[i].data;

        FUZZ_CHECK(p >= in && names[i].len >= 1 && names[i].len <= 128
                   && names[i].len <= (size_t) (last - p),
                   "name %zu (%zu bytes) is not 1-128 bytes of the input %s",
                   i, (size_t) names[i].len, fuzz_show(in, size));

        FUZZ_CHECK((p == in || p[-1] == ',')
                   && (p + names[i].len == last || p[names[i].len] == ','),
                   "name %zu %s is not between commas in %s", i,
                   fuzz_show(p, names[i].len), fuzz_show(in, size));

        for (k = 0; k < names[i].len; k++) {
            FUZZ_CHECK(allowed(p[k]), "name %zu %s has a byte not allowed",
                       i, fuzz_show(p, names[i].len));
        }

        for (k = 0; k < i; k++) {
            FUZZ_CHECK(names[k].len != names[i].len
                       || memcmp(names[k].data, p, names[i].len) != 0,
                       "names %zu and %zu are both %s", k, i,
                       fuzz_show(p, names[i].len));
        }

        FUZZ_CHECK(names[i].len == pieces[i].len
                   && memcmp(p, pieces[i].data, pieces[i].len) == 0,
                   "name %zu is %s, the %zuth different piece is %s", i,
                   fuzz_show(p, names[i].len), i,
                   fuzz_show(pieces[i].data, pieces[i].len));
    }

done:

    free(names);
    free(in);

    return 0;
}
