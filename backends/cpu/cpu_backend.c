/* The CPU backend: host memory, the kernel table, and the dtype rules of its kernels. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "core/device.h"

#define ALIGNMENT 64

static int cpu_device_count(void) {
    return 1;
}

static spin_status cpu_device_open(spin_device *dev, int index) {
    (void)index;
    snprintf(dev->name, sizeof dev->name, "cpu");
    cpu_blas_sgemm(); /* load the BLAS now, before any thread exists */
    return SPIN_OK;
}

static void *cpu_alloc(spin_device *dev, size_t bytes) {
    (void)dev;
    size_t rounded = (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    return aligned_alloc(ALIGNMENT, rounded ? rounded : ALIGNMENT);
}

static void cpu_free(spin_device *dev, void *buf) {
    (void)dev;
    free(buf);
}

static spin_status cpu_to_host(spin_device *dev, void *dst, const void *buf, size_t off, size_t bytes) {
    (void)dev;
    memcpy(dst, (const char *)buf + off, bytes);
    return SPIN_OK;
}

static spin_status cpu_from_host(spin_device *dev, void *buf, size_t off, const void *src, size_t bytes) {
    (void)dev;
    memcpy((char *)buf + off, src, bytes);
    return SPIN_OK;
}

static spin_status cpu_copy(spin_device *dev, void *dst, size_t doff, const void *src, size_t soff,
                            size_t bytes) {
    (void)dev;
    memmove((char *)dst + doff, (const char *)src + soff, bytes);
    return SPIN_OK;
}

static spin_status cpu_synchronize(spin_device *dev) {
    (void)dev;
    return SPIN_OK;
}

/* Which input / output slots of a kernel hold i32 (ids, positions, indices); every other slot is
 * f32 (bf16 / f16 tensors reach these kernels as f32 copies, core/dispatch.c). COPY and FILL take
 * any dtype. */
typedef struct {
    unsigned in_i32, out_i32;
} i32_slots;

static i32_slots slots_of(spin_kernel k) {
    switch (k) {
    case SPIN_K_WHERE: return (i32_slots){0, 0}; /* cond may be either: checked below */
    case SPIN_K_EMBEDDING: return (i32_slots){1u << 1, 0};
    case SPIN_K_EMBEDDING_BACK: return (i32_slots){1u << 0, 0};
    case SPIN_K_ROPE: return (i32_slots){1u << 1, 0};
    case SPIN_K_ATTENTION: return (i32_slots){1u << 3, 0};
    case SPIN_K_ATTENTION_BACK: return (i32_slots){1u << 6, 0};
    case SPIN_K_CE_ROWS: return (i32_slots){1u << 1, 0};
    case SPIN_K_CE_ROWS_BACK: return (i32_slots){1u << 1, 0};
    case SPIN_K_ARGMAX: return (i32_slots){0, 1u << 0};
    case SPIN_K_TOPK: return (i32_slots){0, 1u << 1};
    default: return (i32_slots){0, 0};
    }
}

static bool cpu_supports(spin_device *dev, spin_kernel k, const spin_dtype *in, int n_in,
                         const spin_dtype *out, int n_out) {
    (void)dev;
    if (k == SPIN_K_COPY || k == SPIN_K_FILL)
        return true;
    if (k == SPIN_K_ARANGE)
        return out[0] == SPIN_F32 || out[0] == SPIN_I32;
    /* a row gather: bf16 tables are copied as they are (the bf16 kernels are this and MATMUL; the
     * dispatcher widens bf16 to f32 for every other kernel) */
    if (k == SPIN_K_EMBEDDING && n_in == 2 && in[0] == SPIN_BF16)
        return in[1] == SPIN_I32 && out[0] == SPIN_BF16;
    /* bf16 x bf16 products accumulate in f32 in the AVX-512 BF16 GEMM, into an f32 or bf16 y */
    if (k == SPIN_K_MATMUL && n_in == 2 && (in[0] == SPIN_BF16 || in[1] == SPIN_BF16))
        return in[0] == SPIN_BF16 && in[1] == SPIN_BF16 && (out[0] == SPIN_F32 || out[0] == SPIN_BF16) &&
               cpu_gemm_bf16_available();
    /* the optimizer steps may also write the updated master weight into a model copy of another
     * float type (bf16 / f16 model weights over an f32 master) */
    int copy_slot = k == SPIN_K_RMSPROP_STEP ? 2 : k == SPIN_K_ADAMW_STEP ? 3 : -1;
    if (copy_slot >= 0 && n_out == copy_slot + 1) {
        if (out[copy_slot] != SPIN_F32 && out[copy_slot] != SPIN_BF16 && out[copy_slot] != SPIN_F16)
            return false;
        n_out--;
    }
    i32_slots s = slots_of(k);
    for (int i = 0; i < n_in; i++) {
        if (k == SPIN_K_WHERE && i == 0) {
            if (in[0] != SPIN_F32 && in[0] != SPIN_I32)
                return false;
            continue;
        }
        if (in[i] != ((s.in_i32 >> i) & 1u ? SPIN_I32 : SPIN_F32))
            return false;
    }
    for (int i = 0; i < n_out; i++)
        if (out[i] != ((s.out_i32 >> i) & 1u ? SPIN_I32 : SPIN_F32))
            return false;
    return true;
}

static void cpu_describe(spin_device *dev, char *buf, size_t size) {
    (void)dev;
    snprintf(buf, size, "OpenMP threads %d; BLAS %s; bf16 matmul %s", omp_get_max_threads(),
             cpu_blas_describe(),
             cpu_gemm_bf16_available() ? "AVX-512 BF16 GEMM"
                                       : "widened to f32 sgemm (no AVX-512 BF16, or SPIN_BF16_GEMM=0)");
}

/* The CPU table covers the whole kernel list: one entry per X-macro item, each naming a
 * cpu_<NAME> function that must exist (a missing one fails the link). */
#define SPIN_CPU_COUNT_(name) +1
_Static_assert(0 SPIN_KERNELS(SPIN_CPU_COUNT_) == SPIN_KERNEL_COUNT,
               "CPU kernel table does not cover the kernel list");
#undef SPIN_CPU_COUNT_

static const spin_backend cpu_backend = {
    .api_version = SPIN_BACKEND_API_VERSION,
    .name = "cpu",
    .device_count = cpu_device_count,
    .device_open = cpu_device_open,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_to_host,
    .from_host = cpu_from_host,
    .copy = cpu_copy,
    .synchronize = cpu_synchronize,
    .supports = cpu_supports,
    .describe = cpu_describe,
#define SPIN_CPU_ENTRY_(name) SPIN_BACKEND_KERNEL_ENTRY_(cpu, name)
    .kernels = {SPIN_KERNELS(SPIN_CPU_ENTRY_)},
#undef SPIN_CPU_ENTRY_
};

const spin_backend *spin_cpu_backend(void) {
    return &cpu_backend;
}
