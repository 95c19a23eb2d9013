/*
 * LD_PRELOAD shim for the clock-skew test: gettimeofday(), time() and
 * clock_gettime(CLOCK_REALTIME) of the process run SSE_SKEW_MS ahead (or
 * behind, negative) of the real clock.  Read once at load: nginx workers
 * lose their environment, not the shim.  The monotonic clock is untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long skew_us;

__attribute__((constructor)) static void skew_init(void)
{
    const char *s = getenv("SSE_SKEW_MS");
    skew_us = s ? atoll(s) * 1000 : 0;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    static int (*real)(struct timeval *, void *);
    long long us;
    int rc;

    if (real == NULL) real = dlsym(RTLD_NEXT, "gettimeofday");
    rc = real(tv, tz);
    if (rc == 0 && tv) {
        us = (long long) tv->tv_sec * 1000000 + tv->tv_usec + skew_us;
        tv->tv_sec = us / 1000000;
        tv->tv_usec = us % 1000000;
    }
    return rc;
}

time_t time(time_t *t)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (t) *t = tv.tv_sec;
    return tv.tv_sec;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    long long ns;
    int rc;

    if (real == NULL) real = dlsym(RTLD_NEXT, "clock_gettime");
    rc = real(id, ts);
    if (rc == 0 && ts && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        ns = (long long) ts->tv_sec * 1000000000 + ts->tv_nsec + skew_us * 1000;
        ts->tv_sec = ns / 1000000000;
        ts->tv_nsec = ns % 1000000000;
    }
    return rc;
}
