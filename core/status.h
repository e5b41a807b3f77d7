/* Status codes, the thread-local error message, and the abort path for programmer errors. */
#ifndef SPIN_CORE_STATUS_H
#define SPIN_CORE_STATUS_H

#include <stdnoreturn.h>

typedef enum {
    SPIN_OK = 0,
    SPIN_ERR_INVALID,     /* bad argument or bad input data */
    SPIN_ERR_UNSUPPORTED, /* no backend can run this kernel with these dtypes */
    SPIN_ERR_OOM,         /* a device allocation failed */
    SPIN_ERR_IO,          /* a file could not be read or written */
    SPIN_ERR_DEVICE,      /* the device or its driver reported an error */
} spin_status;

const char *spin_status_name(spin_status s);

/* Records a message for the calling thread and returns `code`, so a failing function can
 * `return spin_fail(SPIN_ERR_INVALID, "shape %d ...", ...)`. */
spin_status spin_fail(spin_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message recorded by the last spin_fail on this thread ("" if none). */
const char *spin_last_error(void);
void spin_clear_error(void);

/* Programmer errors: broken invariants, not bad input. Prints file:line and aborts. */
noreturn void spin_abort_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SPIN_ABORT(...) spin_abort_at(__FILE__, __LINE__, __VA_ARGS__)
#define SPIN_ASSERT(cond, ...)                                                               \
    do {                                                                                     \
        if (!(cond))                                                                         \
            spin_abort_at(__FILE__, __LINE__, "assertion `" #cond "` failed: " __VA_ARGS__); \
    } while (0)

/* Propagates a non-OK status to the caller. */
#define SPIN_TRY(expr)                    \
    do {                                  \
        spin_status spin_try_s_ = (expr); \
        if (spin_try_s_ != SPIN_OK)       \
            return spin_try_s_;           \
    } while (0)

#endif
