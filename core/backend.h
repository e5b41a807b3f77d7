/* The backend interface. A backend is a table of kernels plus memory management; it never sees
 * tensors or autograd, only strided views of its own buffers (spin_view). */
#ifndef SPIN_CORE_BACKEND_H
#define SPIN_CORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/kernels.h"
#include "core/status.h"

#define SPIN_MAX_DIMS 4
#define SPIN_KMAX_IN 8
#define SPIN_KMAX_OUT 4
#define SPIN_KMAX_PARAMS 8

/* A strided window into a device buffer. offset and strides count elements of dtype. */
typedef struct {
    void *buf; /* backend handle: a host pointer on CPU, a cl_mem or device pointer elsewhere */
    size_t offset;
    spin_dtype dtype;
    int ndim;
    int64_t shape[SPIN_MAX_DIMS];
    int64_t stride[SPIN_MAX_DIMS];
} spin_view;

typedef struct {
    float f[SPIN_KMAX_PARAMS];
    int64_t i[SPIN_KMAX_PARAMS];
} spin_kparams;

typedef struct {
    int n_in, n_out;
    spin_view in[SPIN_KMAX_IN];
    spin_view out[SPIN_KMAX_OUT];
    spin_kparams p;
} spin_kcall;

struct spin_device;
typedef spin_status (*spin_kernel_fn)(struct spin_device *dev, const spin_kcall *call);

#define SPIN_BACKEND_API_VERSION 2

typedef struct spin_backend {
    int api_version; /* SPIN_BACKEND_API_VERSION */
    const char *name;
    int (*device_count)(void);
    /* Fills dev->name and dev->ctx. */
    spin_status (*device_open)(struct spin_device *dev, int index);
    void (*device_close)(struct spin_device *dev);
    /* Raw device memory; the core's caching allocator sits on top. NULL on failure. */
    void *(*alloc)(struct spin_device *dev, size_t bytes);
    void (*free)(struct spin_device *dev, void *buf);
    /* Copies are queued in order with kernels; to_host returns after the data has arrived. */
    spin_status (*to_host)(struct spin_device *dev, void *dst, const void *buf, size_t offset_bytes,
                           size_t bytes);
    spin_status (*from_host)(struct spin_device *dev, void *buf, size_t offset_bytes, const void *src,
                             size_t bytes);
    spin_status (*copy)(struct spin_device *dev, void *dst, size_t dst_offset_bytes, const void *src,
                        size_t src_offset_bytes, size_t bytes);
    /* Waits for the queue. Fails with an error the device recorded on the way (a bad id: the
     * device backends report it here or at the next to_host, not at the launch). */
    spin_status (*synchronize)(struct spin_device *dev);
    /* Whether kernel k runs here for these input and output dtypes. */
    bool (*supports)(struct spin_device *dev, spin_kernel k, const spin_dtype *in, int n_in,
                     const spin_dtype *out, int n_out);
    /* Human-readable facts for `spin info` (library versions, kernel selection). May be NULL. */
    void (*describe)(struct spin_device *dev, char *buf, size_t size);
    spin_kernel_fn kernels[SPIN_KERNEL_COUNT];
} spin_backend;

/* Fills a backend table from its kernel functions: a backend defines <prefix>_<NAME> for every
 * kernel of the list or the build fails. */
#define SPIN_BACKEND_KERNEL_ENTRY_(prefix, name) [SPIN_K_##name] = prefix##_##name,

#endif
