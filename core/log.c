#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int level = -1; /* -1: not yet read from the environment */
static spin_log_sink sink;
static void *sink_user;

static spin_log_level level_from_env(void) {
    const char *e = getenv("SPIN_LOG_LEVEL");
    if (!e)
        return SPIN_LOG_WARN;
    if (!strcmp(e, "debug"))
        return SPIN_LOG_DEBUG;
    if (!strcmp(e, "info"))
        return SPIN_LOG_INFO;
    if (!strcmp(e, "error"))
        return SPIN_LOG_ERROR;
    return SPIN_LOG_WARN;
}

spin_log_level spin_log_get_level(void) {
    if (level < 0)
        level = (int)level_from_env();
    return (spin_log_level)level;
}

void spin_log_set_level(spin_log_level l) {
    level = (int)l;
}

void spin_log_set_sink(spin_log_sink s, void *user) {
    sink = s;
    sink_user = user;
}

void spin_log_msg(spin_log_level l, const char *fmt, ...) {
    if (l < spin_log_get_level())
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sink) {
        sink(l, msg, sink_user);
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "spin: %s: %s\n", names[l], msg);
}
