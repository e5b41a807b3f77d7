/* Caching allocator over a backend's raw alloc/free: freed blocks go to per-size-class free lists
 * and are reused, so steady-state training makes no raw allocations. Optional guard bytes catch
 * out-of-bounds writes by any backend's kernels. */
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/log.h"

#define GUARD_BYTES 256
#define GUARD_BYTE 0xA7
#define N_CLASSES (64 * 4)

typedef struct block {
    void *buf; /* raw buffer from the backend (guard included) */
    size_t cls_bytes;
    struct block *next;
} block;

typedef struct spin_alloc_cache {
    block *free_lists[N_CLASSES];
    block *live;  /* guard mode only: blocks handed out */
    block *spare; /* recycled bookkeeping nodes */
    spin_alloc_stats stats;
} spin_alloc_cache;

static int guard_mode = -1;

bool spin_alloc_guard_enabled(void) {
    if (guard_mode < 0) {
        const char *e = getenv("SPIN_ALLOC_GUARD");
        guard_mode = e && e[0] && e[0] != '0';
    }
    return guard_mode;
}

/* Size classes: 256 bytes minimum, then four steps per power of two (at most 25% waste). */
static int size_class(size_t bytes, size_t *cls_bytes) {
    if (bytes <= 256) {
        *cls_bytes = 256;
        return 0;
    }
    int p = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); /* 2^p < bytes <= 2^(p+1) */
    size_t step = (size_t)1 << (p - 1);                            /* quarter of 2^(p+1) */
    size_t k = (bytes + step - 1) / step;                          /* 3..4 */
    *cls_bytes = k * step;
    return p * 4 + (int)(k & 3);
}

static spin_alloc_cache *cache_of(spin_device *dev) {
    if (!dev->cache) {
        dev->cache = calloc(1, sizeof(spin_alloc_cache));
        SPIN_ASSERT(dev->cache, "out of host memory");
    }
    return dev->cache;
}

static block *node_new(spin_alloc_cache *c) {
    block *b = c->spare;
    if (b) {
        c->spare = b->next;
        return b;
    }
    b = malloc(sizeof *b);
    SPIN_ASSERT(b, "out of host memory");
    return b;
}

static void node_recycle(spin_alloc_cache *c, block *b) {
    b->next = c->spare;
    c->spare = b;
}

static void guard_fill(spin_device *dev, void *raw, size_t cls_bytes) {
    unsigned char pat[GUARD_BYTES];
    memset(pat, GUARD_BYTE, sizeof pat);
    dev->backend->from_host(dev, raw, 0, pat, GUARD_BYTES);
    dev->backend->from_host(dev, raw, GUARD_BYTES + cls_bytes, pat, GUARD_BYTES);
}

static bool guard_ok(spin_device *dev, const block *b) {
    unsigned char got[GUARD_BYTES];
    for (int side = 0; side < 2; side++) {
        size_t off = side ? GUARD_BYTES + b->cls_bytes : 0;
        dev->backend->to_host(dev, got, b->buf, off, GUARD_BYTES);
        for (int i = 0; i < GUARD_BYTES; i++)
            if (got[i] != GUARD_BYTE) {
                spin_log_msg(SPIN_LOG_ERROR, "%s: write %s a %zu-byte block detected (guard byte %d)",
                             dev->name, side ? "past the end of" : "before the start of", b->cls_bytes, i);
                return false;
            }
    }
    return true;
}

/* In guard mode the handle given out is raw + GUARD_BYTES; that is only meaningful for backends
 * whose handles are addresses. Others report guard mode unsupported by refusing offset handles,
 * so guard mode stays a CPU-backend tool until a backend opts in. */
void *spin_device_alloc(spin_device *dev, size_t bytes) {
    spin_alloc_cache *c = cache_of(dev);
    size_t cls_bytes;
    int cls = size_class(bytes ? bytes : 1, &cls_bytes);
    c->stats.requests++;
    bool guard = spin_alloc_guard_enabled() && dev->backend == spin_cpu_device()->backend;
    void *raw = NULL;
    block *b = c->free_lists[cls];
    if (b) {
        c->free_lists[cls] = b->next;
        raw = b->buf;
        c->stats.cache_hits++;
        c->stats.bytes_cached -= cls_bytes;
    } else {
        raw = dev->backend->alloc(dev, cls_bytes + (guard ? 2 * GUARD_BYTES : 0));
        if (!raw) {
            /* Return cached memory to the device and try once more before giving up. */
            spin_device_empty_cache(dev);
            raw = dev->backend->alloc(dev, cls_bytes + (guard ? 2 * GUARD_BYTES : 0));
            if (!raw)
                return NULL;
        }
        c->stats.raw_allocs++;
        b = node_new(c);
        b->buf = raw;
        b->cls_bytes = cls_bytes;
    }
    c->stats.bytes_in_use += cls_bytes;
    if (c->stats.bytes_in_use > c->stats.peak_in_use)
        c->stats.peak_in_use = c->stats.bytes_in_use;
    if (guard) {
        guard_fill(dev, raw, cls_bytes);
        b->next = c->live;
        c->live = b;
        return (char *)raw + GUARD_BYTES;
    }
    node_recycle(c, b);
    return raw;
}

void spin_device_free(spin_device *dev, void *buf, size_t bytes) {
    if (!buf)
        return;
    spin_alloc_cache *c = cache_of(dev);
    size_t cls_bytes;
    int cls = size_class(bytes ? bytes : 1, &cls_bytes);
    bool guard = spin_alloc_guard_enabled() && dev->backend == spin_cpu_device()->backend;
    block *b = NULL;
    if (guard) {
        void *raw = (char *)buf - GUARD_BYTES;
        for (block **pp = &c->live; *pp; pp = &(*pp)->next)
            if ((*pp)->buf == raw) {
                b = *pp;
                *pp = b->next;
                break;
            }
        SPIN_ASSERT(b, "freeing a block this allocator did not hand out");
        if (!guard_ok(dev, b))
            SPIN_ABORT("guard bytes overwritten on %s", dev->name);
    } else {
        b = node_new(c);
        b->buf = buf;
        b->cls_bytes = cls_bytes;
    }
    c->stats.bytes_in_use -= cls_bytes;
    c->stats.bytes_cached += cls_bytes;
    b->next = c->free_lists[cls];
    c->free_lists[cls] = b;
}

void spin_device_empty_cache(spin_device *dev) {
    spin_alloc_cache *c = cache_of(dev);
    for (int i = 0; i < N_CLASSES; i++) {
        while (c->free_lists[i]) {
            block *b = c->free_lists[i];
            c->free_lists[i] = b->next;
            dev->backend->free(dev, b->buf);
            c->stats.raw_frees++;
            c->stats.bytes_cached -= b->cls_bytes;
            node_recycle(c, b);
        }
    }
}

spin_alloc_stats spin_device_alloc_stats(const spin_device *dev) {
    spin_alloc_stats s = {0};
    if (dev->cache)
        s = dev->cache->stats;
    return s;
}

int spin_device_check_guards(spin_device *dev) {
    spin_alloc_cache *c = cache_of(dev);
    int bad = 0;
    for (block *b = c->live; b; b = b->next)
        bad += !guard_ok(dev, b);
    return bad;
}
