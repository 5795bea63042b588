/* log: the process-wide logger (the only global mutable state in cairn) and CHECK macros.
 *
 * LOG_ERR/LOG_WARN/LOG_INFO/LOG_DEBUG print one line to stderr with level, time and file:line.
 * The level is set once at start-up (log_set_level) or from CAIRN_LOG=debug|info|warn|error.
 * Thread-safe: each line is written with a single fprintf under a lock.
 *
 * CHECK(cond, fmt, ...) aborts with file:line when an invariant is broken; it is always on.
 * DCHECK is the same in debug builds (NDEBUG unset) and nothing otherwise.
 *
 *     LOG_ERR("%s: tensor %s: offset %zu past end of file", path, name, off);
 *     CHECK(n_tok <= cap, "batch overflow: %d > %d", n_tok, cap);
 */
#ifndef CAIRN_BASE_LOG_H
#define CAIRN_BASE_LOG_H

#include <stdlib.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_init_from_env(void);
void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void check_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#define LOG_DEBUG(...) do { if (log_get_level() <= LOG_LEVEL_DEBUG) log_write(LOG_LEVEL_DEBUG, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define LOG_INFO(...)  log_write(LOG_LEVEL_INFO,  __FILE__, __LINE__, __VA_ARGS__)
#define LOG_WARN(...)  log_write(LOG_LEVEL_WARN,  __FILE__, __LINE__, __VA_ARGS__)
#define LOG_ERR(...)   log_write(LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond, ...) do { if (!(cond)) check_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)
#ifdef NDEBUG
#define DCHECK(cond, ...) do { (void)sizeof(cond); } while (0)
#else
#define DCHECK(cond, ...) CHECK(cond, __VA_ARGS__)
#endif

#endif
