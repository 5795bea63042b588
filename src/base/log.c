#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level g_level = LOG_LEVEL_INFO;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level level) { g_level = level; }
enum log_level log_get_level(void) { return g_level; }

void log_init_from_env(void)
{
    const char *s = getenv("CAIRN_LOG");
    if (!s) return;
    if (!strcmp(s, "debug")) g_level = LOG_LEVEL_DEBUG;
    else if (!strcmp(s, "info")) g_level = LOG_LEVEL_INFO;
    else if (!strcmp(s, "warn")) g_level = LOG_LEVEL_WARN;
    else if (!strcmp(s, "error")) g_level = LOG_LEVEL_ERROR;
    else if (!strcmp(s, "off")) g_level = LOG_LEVEL_OFF;
}

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void vwrite(const char *tag, const char *file, int line, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    pthread_mutex_lock(&g_lock);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s %s:%d: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, tag, basename_of(file), line, msg);
    pthread_mutex_unlock(&g_lock);
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
    static const char *tags[] = { "D", "I", "W", "E" };
    if (level < g_level || level >= LOG_LEVEL_OFF) return;
    va_list ap;
    va_start(ap, fmt);
    vwrite(tags[level], file, line, fmt, ap);
    va_end(ap);
}

void check_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "CHECK failed at %s:%d: %s: %s\n", file, line, cond, msg);
    abort();
}
