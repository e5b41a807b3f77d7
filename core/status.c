#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[1024];

const char *spin_status_name(spin_status s) {
    switch (s) {
    case SPIN_OK: return "ok";
    case SPIN_ERR_INVALID: return "invalid argument";
    case SPIN_ERR_UNSUPPORTED: return "unsupported";
    case SPIN_ERR_OOM: return "out of memory";
    case SPIN_ERR_IO: return "i/o error";
    case SPIN_ERR_DEVICE: return "device error";
    }
    return "unknown status";
}

spin_status spin_fail(spin_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *spin_last_error(void) {
    return last_error;
}

void spin_clear_error(void) {
    last_error[0] = '\0';
}

void spin_abort_at(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "spin: fatal: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}
