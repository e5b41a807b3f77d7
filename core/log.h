/* The one logging function. Level from SPIN_LOG_LEVEL (debug|info|warn|error) or spin_log_set_level. */
#ifndef SPIN_CORE_LOG_H
#define SPIN_CORE_LOG_H

typedef enum { SPIN_LOG_DEBUG = 0, SPIN_LOG_INFO, SPIN_LOG_WARN, SPIN_LOG_ERROR } spin_log_level;

typedef void (*spin_log_sink)(spin_log_level level, const char *msg, void *user);

void spin_log_msg(spin_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void spin_log_set_level(spin_log_level level);
spin_log_level spin_log_get_level(void);
/* Replaces the default sink (stderr); NULL restores it. */
void spin_log_set_sink(spin_log_sink sink, void *user);

#endif
