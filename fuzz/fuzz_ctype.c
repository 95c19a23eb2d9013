/*
 * Target "ctype": ngx_http_sse_is_event_stream(), whether a publish's
 * Content-Type makes its body a text/event-stream (else the whole body is
 * one event's data).  The input is the header value as nginx hands it over
 * (copied to a buffer of exactly its size).
 *
 * Properties:
 *  - sound: what is accepted begins with "text/event-stream" in any case,
 *    and is not followed by a token character ("text/event-streams",
 *    "text/event-stream-x" are other media types);
 *  - complete: every media type of RFC 9110 (8.3.1, 5.6.6) whose type and
 *    subtype are text and event-stream, in any case, with any parameters,
 *    is accepted:
 *
 *        media-type = type "/" subtype parameters
 *        parameters = *( OWS ";" OWS [ parameter ] )
 *        parameter  = token "=" ( token / quoted-string )
 *        OWS        = *( SP / HTAB )
 */

#include "fuzz.h"


static int
tchar(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}


static size_t
ows(const u_char *p, size_t i, size_t len)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t')) {
        i++;
    }

    return i;
}


static size_t
token(const u_char *p, size_t i, size_t len)
{
    while (i < len && tchar(p[i])) {
        i++;
    }

    return i;
}


/* 1 if p is text/event-stream by RFC 9110's grammar */
static int
rfc_event_stream(const u_char *p, size_t len)
{
    size_t  i, j;

    if (len < 17 || strncasecmp((char *) p, "text/event-stream", 17) != 0) {
        return 0;
    }

    i = 17;

    for ( ;; ) {
        if (i == len) {
            return 1;
        }

        i = ows(p, i, len);

        if (i == len || p[i] != ';') {
            return 0;
        }

        i = ows(p, i + 1, len);

        if (i == len || p[i] == ';') {
            continue;                   /* the parameter is optional */
        }

        j = token(p, i, len);

        if (j == i || j == len || p[j] != '=') {
            return 0;
        }

        i = j + 1;

        if (i < len && p[i] == '"') {
            for (i++; i < len && p[i] != '"'; i++) {
                if (p[i] == '\\') {
                    i++;

                    if (i == len || (p[i] < 0x20 && p[i] != '\t')
                        || p[i] == 0x7f)
                    {
                        return 0;
                    }

                } else if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
                    return 0;
                }
            }

            if (i == len) {
                return 0;
            }

            i++;

        } else {
            j = token(p, i, len);

            if (j == i) {
                return 0;
            }

            i = j;
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *copy;
    ngx_str_t    ct;
    ngx_uint_t   yes;

    copy = fuzz_copy(data, size);

    ct.data = copy;
    ct.len = size;

    yes = ngx_http_sse_is_event_stream(&ct);

    FUZZ_CHECK(yes == 0 || yes == 1, "is_event_stream returned %lu",
               (unsigned long) yes);

    if (yes) {
        FUZZ_CHECK(size >= 17
                   && strncasecmp((char *) copy, "text/event-stream", 17) == 0
                   && (size == 17 || !tchar(copy[17])),
                   "%s is taken for text/event-stream", fuzz_show(copy, size));

    } else {
        FUZZ_CHECK(!rfc_event_stream(copy, size),
                   "%s is text/event-stream (RFC 9110), not taken for it",
                   fuzz_show(copy, size));
    }

    free(copy);

    return 0;
}
