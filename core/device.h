/* Devices, the backend registry and each device's caching allocator. */
#ifndef SPIN_CORE_DEVICE_H
#define SPIN_CORE_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

typedef struct {
    uint64_t raw_allocs; /* calls to the backend's alloc */
    uint64_t raw_frees;  /* calls to the backend's free */
    uint64_t cache_hits; /* requests served from the cache */
    uint64_t requests;   /* all requests */
    size_t bytes_in_use; /* handed out, by size class */
    size_t bytes_cached; /* held in free lists */
    size_t peak_in_use;
} spin_alloc_stats;

struct spin_alloc_cache;

typedef struct spin_device {
    const spin_backend *backend;
    int index;
    char name[128];
    void *ctx;
    struct spin_alloc_cache *cache;
    uint64_t fallbacks[SPIN_KERNEL_COUNT]; /* kernels this device ran on the CPU instead */
    uint64_t widened[SPIN_KERNEL_COUNT];   /* kernels run in f32 on bf16/f16 tensors (core/dispatch.c) */
} spin_device;

/* Registry. Backends register at start-up (backends/registry.c); the first registered is the CPU. */
spin_status spin_backend_register(const spin_backend *b);
int spin_backend_count(void);
const spin_backend *spin_backend_at(int i);
const spin_backend *spin_backend_find(const char *name);

/* Opens (once) and returns device `index` of backend `name`; NULL with spin_last_error set. */
spin_device *spin_device_get(const char *name, int index);
/* Parses "cpu", "opencl", "opencl:1". */
spin_device *spin_device_from_spec(const char *spec);
spin_device *spin_cpu_device(void);
void spin_devices_close(void);

/* Caching allocator. Sizes are rounded up to a size class; `spin_device_free` must get the
 * same `bytes` that was passed to alloc. With SPIN_ALLOC_GUARD=1 in the environment every block
 * gets guard bytes on both sides, checked when the block is freed (out-of-bounds writes abort). */
void *spin_device_alloc(spin_device *dev, size_t bytes);
void spin_device_free(spin_device *dev, void *buf, size_t bytes);
void spin_device_empty_cache(spin_device *dev);
spin_alloc_stats spin_device_alloc_stats(const spin_device *dev);
bool spin_alloc_guard_enabled(void);
/* Checks every live block's guards now; returns the number of corrupted blocks (and logs them). */
int spin_device_check_guards(spin_device *dev);

#endif
