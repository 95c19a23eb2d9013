/*
 * What the fuzz targets share (fuzz_common.c): a pool whose every
 * allocation is its own malloc, the property check that stops a run, and
 * the independent references the targets compare the module against:
 * a text/event-stream parser written from the WHATWG rules and a UTF-8
 * validator written from the Unicode table of well-formed sequences.
 */

#ifndef _SSE_FUZZ_H_INCLUDED_
#define _SSE_FUZZ_H_INCLUDED_


#include "ngx_http_sse.h"


/*
 * A pool whose every ngx_palloc() and ngx_pnalloc() is one malloc() of
 * exactly the size asked for, so AddressSanitizer sees one byte past any
 * allocation; ngx_destroy_pool() frees them all, so LeakSanitizer sees what
 * is lost.  Our stand-ins (ngx_core_stubs.c) always do that; with an
 * upstream tree's ngx_palloc.c, the pool's size, sizeof(ngx_pool_t), leaves
 * it no room of its own (max 0), so every allocation is a large one.
 */
ngx_pool_t *fuzz_pool(void);


/*
 * A property does not hold: prints what and the bytes involved, then
 * abort()s, which libFuzzer reports as a crash and saves the input of.
 */
#define FUZZ_CHECK(cond, ...)                                                 \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                \
        }                                                                     \
    } while (0)

void fuzz_fail(const char *file, int line, const char *cond,
    const char *fmt, ...) __attribute__((noreturn, format(printf, 4, 5)));

/* "len bytes" as a C string literal with escapes, for the messages */
const char *fuzz_show(const u_char *p, size_t len);

/* a malloc()ed copy of exactly len bytes (at least one byte allocated) */
u_char *fuzz_copy(const u_char *p, size_t len);


/* the reference text/event-stream parser */

typedef struct {
    u_char        *type;        /* NULL: no "event" field */
    size_t         type_len;
    u_char        *data;
    size_t         data_len;
} ref_event_t;

typedef struct {
    ref_event_t   *events;
    size_t         nevents;
    int            error;       /* module mode: the body is refused */
    int            complete;    /* the stream ended at a line end */
    u_char        *buf;         /* the data of all events */
} ref_stream_t;

/*
 * REF_WHATWG: what EventSource dispatches (HTML, "Interpreting an event
 * stream"): a leading BOM is dropped; lines end with CRLF, LF or CR; an
 * empty line dispatches; ":" starts a comment; the field name is up to the
 * first ":", the value after it less one leading space; "data" appends the
 * value and LF; "event" sets the type; at dispatch, nothing happens when
 * no data line was seen, else the last LF is removed and the type is
 * "message" when empty; an incomplete last event is discarded.
 *
 * REF_MODULE: the same, with what SPEC.md and README say a publish body
 * does differently: the end of the body dispatches too, the type of an
 * "event:" field is kept as given (even empty: the check refuses it), an
 * event with an "event" field but no "data" line refuses the body, and so
 * does a body without an event.
 */
#define REF_WHATWG  0
#define REF_MODULE  1

void ref_parse(const u_char *in, size_t len, int mode, ref_stream_t *out);
void ref_free(ref_stream_t *s);

/* data as a browser rebuilds it from the framed lines: CRLF, CR -> LF */
size_t ref_normalize(const u_char *in, size_t len, u_char *out);


/* Unicode 15, table 3-7: well-formed UTF-8 byte sequences; 1 if valid */
int ref_utf8_valid(const u_char *p, size_t len);

/* an event type: 1-64 bytes of 0x21-0x7e other than ':' (SPEC.md) */
int ref_type_valid(const u_char *p, size_t len);

/*
 * check_event's answer by SPEC.md: 400 for empty data, 413 for data over
 * max, 400 for a bad type, a NUL byte or invalid UTF-8, else NGX_OK.  The
 * 413 goes before the other 400s, as the module does it.
 */
ngx_int_t ref_check(const u_char *type, size_t type_len, const u_char *data,
    size_t data_len, size_t max);

/*
 * Frames e with ngx_http_sse_frame() (any e: it must not overrun) and,
 * when the type is one the check accepts, checks the frame: it ends with a
 * blank line, begins with "event: <type>\n" exactly when the type is not
 * "message", and EventSource (REF_WHATWG) reads back one event of the same
 * type and the same data with its line ends as LF.  Any data: NUL bytes and
 * invalid UTF-8 are refused by the check, not by the framing.
 */
void fuzz_frame_roundtrip(ngx_pool_t *pool, ngx_http_sse_fields_t *e);


#endif /* _SSE_FUZZ_H_INCLUDED_ */
