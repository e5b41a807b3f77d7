/* The GPU backend for CUDA and ROCm: devices, device memory and copies on one non-blocking stream
 * per device, the kernel table (the shared kernel text compiled by nvcc or hipcc, launched by index
 * through the runtime's launch call) and MATMUL through the vendor BLAS or the tiled kernel.
 * Every runtime call and every launch is checked; a failure names file:line, the call and the
 * runtime's error name and string. Plain C against the runtime's C API: the vendor is chosen by
 * backends/gpu/gpu_vendor.h alone. */
#include "backends/gpu/gpu_backend.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/attn_shape.h"
#include "backends/cpu/id_errors.h"
#include "backends/gpu/gpu_blas.h"
#include "backends/gpu/gpu_kernel_list.h"
#include "backends/gpu/gpu_vendor.h"
#include "core/device.h"
#include "core/log.h"

/* gpu_kernels.cu: the host-side handle of every kernel of gpu_kernel_list.h, in list order */
extern const void *const spin_gpu_kernel_fns[GK_COUNT];
/* ... and its parameter sizes in bytes, 0-terminated (from the kernel's signature) */
extern const unsigned char *const spin_gpu_kernel_arg_sizes[GK_COUNT];

static const char *const gk_names[] = {
#define GK_NAME_(n) #n,
    SPIN_GPU_KERNELS(GK_NAME_)
#undef GK_NAME_
};

/* ---- errors ---- */

#define GPU_FAIL_(e, what)                                                                               \
    spin_fail(SPIN_ERR_DEVICE, "%s:%d: %s failed: %s: %s", __FILE__, __LINE__, what, gpuGetErrorName(e), \
              gpuGetErrorString(e))
/* Evaluates a runtime call; on failure returns a spin_status from the enclosing function. */
#define GPU_CHECK(call)                  \
    do {                                 \
        gpuError_t e_ = (call);          \
        if (e_ != gpuSuccess)            \
            return GPU_FAIL_(e_, #call); \
    } while (0)

/* ---- devices ---- */

static int n_devices = -1;
static char why_none[256]; /* why there are no devices, for device_open's message */

static int gpu_device_count(void) {
    if (n_devices >= 0)
        return n_devices;
    int n = 0;
    gpuError_t e = gpuGetDeviceCount(&n);
    if (e != gpuSuccess) {
        snprintf(why_none, sizeof why_none, "%s device count: %s: %s", GPU_RUNTIME, gpuGetErrorName(e),
                 gpuGetErrorString(e));
        (void)gpuGetLastError(); /* the runtime keeps the error sticky otherwise */
        n = 0;
    } else if (n == 0) {
        snprintf(why_none, sizeof why_none, "the %s runtime reports 0 devices", GPU_RUNTIME);
    }
    if (n == 0) /* once: every later "0 devices" message then has its reason beside it */
        spin_log_msg(SPIN_LOG_WARN, "%s backend: no device (%s)", GPU_VENDOR, why_none);
    n_devices = n;
    return n;
}

typedef struct {
    int ordinal;
    gpuStream_t stream;
    gpu_blas *blas;      /* NULL: MATMUL through the tiled kernel */
    char gemm_note[256]; /* why the tiled kernel is used, when it is */
    gpuDeviceProp prop;
    char arch[72];
    void *scratch;     /* GRAD_SUMSQ's block partials; reused (the stream is in order) */
    void *ids_scratch; /* EMBEDDING_BACK's chains (ids.cl); reused */
    size_t ids_scratch_bytes;
    /* the id checks' error record (ids.cl), made at the first check, and its copy on the host */
    void *ids_err;
    int ids_err_host[SPIN_IDS_ERR_INTS];
    size_t scratch_bytes;
} gpu_ctx;

static gpu_ctx *ctx_of(spin_device *dev) {
    return dev->ctx;
}

/* Closing cannot fail the caller: a runtime error on the way is logged with its call. */
static void log_if_failed(gpuError_t e, const char *what, const spin_device *dev) {
    if (e != gpuSuccess)
        spin_log_msg(SPIN_LOG_ERROR, "%s:%d: closing %s: %s failed: %s: %s", __FILE__, __LINE__, dev->name,
                     what, gpuGetErrorName(e), gpuGetErrorString(e));
}

static void gpu_device_close(spin_device *dev) {
    gpu_ctx *c = ctx_of(dev);
    if (!c)
        return;
    gpuError_t e = gpuSetDevice(c->ordinal);
    log_if_failed(e, "gpuSetDevice", dev);
    if (e == gpuSuccess && c->stream)
        log_if_failed(gpuStreamSynchronize(c->stream), "gpuStreamSynchronize", dev);
    if (c->blas)
        gpu_blas_close(c->blas);
    if (c->scratch)
        log_if_failed(gpuFree(c->scratch), "gpuFree", dev);
    if (c->ids_scratch)
        log_if_failed(gpuFree(c->ids_scratch), "gpuFree", dev);
    if (c->ids_err)
        log_if_failed(gpuFree(c->ids_err), "gpuFree", dev);
    if (c->stream)
        log_if_failed(gpuStreamDestroy(c->stream), "gpuStreamDestroy", dev);
    free(c);
    dev->ctx = NULL;
}

/* SPIN_GEMM: "blas" (the vendor library, an error when absent), "tiled" (the shared tiled kernel),
 * unset or empty: the vendor library when present, else the tiled kernel. */
static spin_status gemm_choice(int *choice) {
    const char *s = getenv("SPIN_GEMM");
    *choice = 0;
    if (!s || !*s)
        return SPIN_OK;
    if (!strcmp(s, "blas"))
        *choice = 1;
    else if (!strcmp(s, "tiled"))
        *choice = 2;
    else
        return spin_fail(SPIN_ERR_INVALID, "SPIN_GEMM='%s': expected 'blas' or 'tiled'", s);
    return SPIN_OK;
}

static spin_status open_ctx(gpu_ctx *c) {
    GPU_CHECK(gpuSetDevice(c->ordinal));
    GPU_CHECK(gpuGetDeviceProperties(&c->prop, c->ordinal));
    GPU_ARCH_FORMAT(c->arch, sizeof c->arch, &c->prop);
    /* The build's architectures must include this device's: say so now, not at the first launch. */
    gpuFuncAttributes fa;
    gpuError_t e = gpuFuncGetAttributes(&fa, spin_gpu_kernel_fns[0]);
    if (e != gpuSuccess) {
        (void)gpuGetLastError();
        return spin_fail(SPIN_ERR_DEVICE,
                         "%s:%d: the kernels have no image for device %d (%s, %s): %s: %s; rebuild with %s "
                         "including its architecture",
                         __FILE__, __LINE__, c->ordinal, c->prop.name, c->arch, gpuGetErrorName(e),
                         gpuGetErrorString(e), GPU_ARCH_OPTION);
    }
    GPU_CHECK(gpuStreamCreateWithFlags(&c->stream, gpuStreamNonBlocking));
    int choice;
    SPIN_TRY(gemm_choice(&choice));
    if (choice == 2) {
        snprintf(c->gemm_note, sizeof c->gemm_note, "tiled kernel (SPIN_GEMM=tiled)");
        return SPIN_OK;
    }
    char why[200] = "";
    SPIN_TRY(gpu_blas_open(&c->blas, c->stream, why, sizeof why));
    if (!c->blas) {
        if (choice == 1)
            return spin_fail(SPIN_ERR_UNSUPPORTED, "SPIN_GEMM=blas: %s", why);
        snprintf(c->gemm_note, sizeof c->gemm_note, "tiled kernel (%s)", why);
    }
    return SPIN_OK;
}

static spin_status gpu_device_open(spin_device *dev, int index) {
    int n = gpu_device_count();
    if (n == 0)
        return spin_fail(SPIN_ERR_DEVICE, "no %s device: %s", GPU_VENDOR, why_none);
    if (index < 0 || index >= n)
        return spin_fail(SPIN_ERR_INVALID, "no device %s:%d; this machine has %s:0 to %s:%d", GPU_VENDOR,
                         index, GPU_VENDOR, GPU_VENDOR, n - 1);
    gpu_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return spin_fail(SPIN_ERR_OOM, "out of host memory");
    dev->ctx = c;
    c->ordinal = index;
    spin_status s = open_ctx(c);
    if (s != SPIN_OK) {
        gpu_device_close(dev);
        return s;
    }
    snprintf(dev->name, sizeof dev->name, "%s:%d (%.80s)", GPU_VENDOR, index, c->prop.name);
    return SPIN_OK;
}

/* ---- memory and copies (device memory only: the core's caching allocator sits on top) ---- */

static void *gpu_alloc(spin_device *dev, size_t bytes) {
    void *p = NULL;
    gpuError_t e = gpuSetDevice(ctx_of(dev)->ordinal);
    if (e == gpuSuccess)
        e = gpuMalloc(&p, bytes ? bytes : 4);
    if (e != gpuSuccess) {
        (void)gpuGetLastError();
        spin_fail(SPIN_ERR_OOM, "%s:%d: gpuMalloc(%zu bytes) on %s failed: %s: %s", __FILE__, __LINE__, bytes,
                  dev->name, gpuGetErrorName(e), gpuGetErrorString(e));
        return NULL;
    }
    return p;
}

static void gpu_free(spin_device *dev, void *buf) {
    if (!buf)
        return;
    gpuError_t e = gpuSetDevice(ctx_of(dev)->ordinal);
    if (e == gpuSuccess)
        e = gpuFree(buf);
    if (e != gpuSuccess)
        spin_log_msg(SPIN_LOG_ERROR, "%s:%d: gpuFree on %s failed: %s: %s", __FILE__, __LINE__, dev->name,
                     gpuGetErrorName(e), gpuGetErrorString(e));
}

/* Queues the copy of the id checks' error record (ids.cl) ahead of a stream synchronisation, so
 * the check costs no wait of its own. */
static spin_status ids_err_read(gpu_ctx *c) {
    if (c->ids_err)
        GPU_CHECK(gpuMemcpyAsync(c->ids_err_host, c->ids_err, sizeof c->ids_err_host, gpuMemcpyDeviceToHost,
                                 c->stream));
    return SPIN_OK;
}

/* After the synchronisation: a recorded bad id fails the call with the CPU's message, and the
 * record is cleared so that the device works on after the report. */
static spin_status ids_err_verdict(gpu_ctx *c) {
    if (!c->ids_err || c->ids_err_host[SPIN_IDS_ERR_KERNEL] == 0)
        return SPIN_OK;
    int32_t rec[SPIN_IDS_ERR_INTS];
    for (int i = 0; i < SPIN_IDS_ERR_INTS; i++)
        rec[i] = c->ids_err_host[i];
    spin_ids_record_clear(c->ids_err_host);
    GPU_CHECK(gpuMemcpyAsync(c->ids_err, c->ids_err_host, sizeof c->ids_err_host, gpuMemcpyHostToDevice,
                             c->stream));
    GPU_CHECK(gpuStreamSynchronize(c->stream));
    return spin_ids_record_error(rec);
}

static spin_status gpu_to_host(spin_device *dev, void *dst, const void *buf, size_t off, size_t bytes) {
    if (!bytes)
        return SPIN_OK;
    gpu_ctx *c = ctx_of(dev);
    GPU_CHECK(gpuSetDevice(c->ordinal));
    SPIN_TRY(ids_err_read(c));
    GPU_CHECK(gpuMemcpyAsync(dst, (const char *)buf + off, bytes, gpuMemcpyDeviceToHost, c->stream));
    GPU_CHECK(gpuStreamSynchronize(c->stream));
    return ids_err_verdict(c);
}

static spin_status gpu_from_host(spin_device *dev, void *buf, size_t off, const void *src, size_t bytes) {
    if (!bytes)
        return SPIN_OK;
    gpu_ctx *c = ctx_of(dev);
    GPU_CHECK(gpuSetDevice(c->ordinal));
    GPU_CHECK(gpuMemcpyAsync((char *)buf + off, src, bytes, gpuMemcpyHostToDevice, c->stream));
    /* The caller may reuse src as soon as this returns. */
    GPU_CHECK(gpuStreamSynchronize(c->stream));
    return SPIN_OK;
}

static spin_status gpu_copy(spin_device *dev, void *dst, size_t doff, const void *src, size_t soff,
                            size_t bytes) {
    if (!bytes)
        return SPIN_OK;
    if (dst == src && doff < soff + bytes && soff < doff + bytes) {
        /* Overlapping ranges: memcpy semantics do not cover them, so go through the host. */
        void *tmp = malloc(bytes);
        if (!tmp)
            return spin_fail(SPIN_ERR_OOM, "out of host memory");
        spin_status s = gpu_to_host(dev, tmp, src, soff, bytes);
        if (s == SPIN_OK)
            s = gpu_from_host(dev, dst, doff, tmp, bytes);
        free(tmp);
        return s;
    }
    gpu_ctx *c = ctx_of(dev);
    GPU_CHECK(gpuSetDevice(c->ordinal));
    GPU_CHECK(gpuMemcpyAsync((char *)dst + doff, (const char *)src + soff, bytes, gpuMemcpyDeviceToDevice,
                             c->stream));
    return SPIN_OK;
}

static spin_status gpu_synchronize(spin_device *dev) {
    gpu_ctx *c = ctx_of(dev);
    GPU_CHECK(gpuSetDevice(c->ordinal));
    SPIN_TRY(ids_err_read(c));
    GPU_CHECK(gpuStreamSynchronize(c->stream));
    return ids_err_verdict(c);
}

/* ---- launches: arguments collected in kernel order, then one checked launch ---- */

#define GPU_MAX_ARGS 40

typedef union {
    int64_t i;
    double d;
    void *p;
    unsigned char b[8];
} arg_slot;

typedef struct {
    spin_gpu_kid kid;
    int n;
    arg_slot slot[GPU_MAX_ARGS];
    unsigned char size[GPU_MAX_ARGS];
} launch;

static void arg_(launch *l, size_t size, const void *v) {
    SPIN_ASSERT(l->n < GPU_MAX_ARGS && size <= sizeof(arg_slot), "kernel %s: argument %d", gk_names[l->kid],
                l->n);
    memset(&l->slot[l->n], 0, sizeof l->slot[l->n]);
    memcpy(&l->slot[l->n], v, size);
    l->size[l->n] = (unsigned char)size;
    l->n++;
}

/* The kernel's parameter types: i64 = int64_t, int, float and device pointers. */
static void arg_i64(launch *l, int64_t v) {
    arg_(l, sizeof v, &v);
}

static void arg_int(launch *l, int v) {
    arg_(l, sizeof v, &v);
}

static void arg_f32(launch *l, float v) {
    arg_(l, sizeof v, &v);
}

static void arg_ptr(launch *l, const void *p) {
    arg_(l, sizeof p, &p);
}

/* A view padded on the left to 4 dims: buffer, element offset, 4 strides. */
static void arg_view(launch *l, const spin_view *v) {
    arg_ptr(l, v->buf);
    arg_i64(l, (int64_t)v->offset);
    int pad = 4 - v->ndim;
    for (int i = 0; i < 4; i++)
        arg_i64(l, i < pad ? 0 : v->stride[i - pad]);
}

/* Buffer and element offset of a contiguous view. */
static void arg_buf(launch *l, const spin_view *v) {
    arg_ptr(l, v->buf);
    arg_i64(l, (int64_t)v->offset);
}

static int64_t numel(const spin_view *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        n *= v->shape[i];
    return n;
}

static launch launch_of(spin_gpu_kid kid) {
    launch l;
    l.kid = kid;
    l.n = 0;
    return l;
}

/* Starts a launch shaped like `out`: the shape arguments come first in every elementwise kernel. */
static launch launch_begin(spin_gpu_kid kid, const spin_view *out) {
    launch l = launch_of(kid);
    int64_t n[4];
    int pad = 4 - out->ndim;
    for (int i = 0; i < 4; i++)
        n[i] = i < pad ? 1 : out->shape[i - pad];
    arg_i64(&l, n[1]);
    arg_i64(&l, n[2]);
    arg_i64(&l, n[3]);
    arg_i64(&l, numel(out));
    return l;
}

/* The launch's arguments against the kernel's parameters (count and sizes). */
static spin_status check_args(const launch *l) {
    const unsigned char *want = spin_gpu_kernel_arg_sizes[l->kid];
    int n = 0;
    while (want[n])
        n++;
    if (n != l->n)
        return spin_fail(SPIN_ERR_INVALID, "%s:%d: kernel %s takes %d arguments, the launch passes %d",
                         __FILE__, __LINE__, gk_names[l->kid], n, l->n);
    for (int i = 0; i < n; i++)
        if (want[i] != l->size[i])
            return spin_fail(SPIN_ERR_INVALID,
                             "%s:%d: argument %d of kernel %s has %d bytes, the launch passes %d", __FILE__,
                             __LINE__, i, gk_names[l->kid], want[i], l->size[i]);
    return SPIN_OK;
}

static spin_status launch_grid(spin_device *dev, const launch *l, int64_t blocks, int threads) {
    SPIN_TRY(check_args(l));
    if (blocks <= 0)
        return SPIN_OK;
    if (blocks > INT_MAX)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "kernel %s: %lld blocks exceed the grid limit",
                         gk_names[l->kid], (long long)blocks);
    gpu_ctx *c = ctx_of(dev);
    void *args[GPU_MAX_ARGS];
    for (int i = 0; i < l->n; i++)
        args[i] = (void *)&l->slot[i];
    dim3 grid = {(unsigned)blocks, 1, 1}, block = {(unsigned)threads, 1, 1};
    GPU_CHECK(gpuSetDevice(c->ordinal));
    gpuError_t e = gpuLaunchKernel(spin_gpu_kernel_fns[l->kid], grid, block, args, 0, c->stream);
    if (e != gpuSuccess)
        return spin_fail(SPIN_ERR_DEVICE, "%s:%d: launching kernel %s (%lld x %d) on %s failed: %s: %s",
                         __FILE__, __LINE__, gk_names[l->kid], (long long)blocks, threads, dev->name,
                         gpuGetErrorName(e), gpuGetErrorString(e));
    return SPIN_OK;
}

#define GPU_THREADS 256

/* One thread per element. */
static spin_status launch_run(spin_device *dev, const launch *l, int64_t total) {
    return launch_grid(dev, l, (total + GPU_THREADS - 1) / GPU_THREADS, GPU_THREADS);
}

/* ---- elementwise kernels ---- */

/* The copy kernel for a dtype pair (supports() admits only these): f32/i32 among themselves,
 * f32 <-> bf16/f16 (backends/kernels/cast.cl), bf16 -> bf16 and f16 -> f16. */
static spin_gpu_kid copy_kid(spin_dtype x, spin_dtype y) {
    if (x == y)
        return x == SPIN_I32 ? GK_copy_i32 : x == SPIN_F32 ? GK_copy_f32 : GK_copy_b16;
    if (x == SPIN_F32)
        return y == SPIN_I32 ? GK_copy_f32_i32 : y == SPIN_BF16 ? GK_copy_f32_bf16 : GK_copy_f32_f16;
    if (y == SPIN_F32)
        return x == SPIN_I32 ? GK_copy_i32_f32 : x == SPIN_BF16 ? GK_copy_bf16_f32 : GK_copy_f16_f32;
    return GK_COUNT;
}

static spin_status gpu_COPY(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *x = &c->in[0], *y = &c->out[0];
    spin_gpu_kid kid = copy_kid(x->dtype, y->dtype);
    if (kid == GK_COUNT)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "COPY %s -> %s has no %s kernel", spin_dtype_name(x->dtype),
                         spin_dtype_name(y->dtype), GPU_VENDOR);
    launch l = launch_begin(kid, y);
    arg_view(&l, x);
    arg_view(&l, y);
    return launch_run(dev, &l, numel(y));
}

static spin_status fill(spin_device *dev, const spin_view *y, float v) {
    launch l = launch_begin(y->dtype == SPIN_I32 ? GK_fill_i32 : GK_fill_f32, y);
    arg_view(&l, y);
    arg_f32(&l, v);
    return launch_run(dev, &l, numel(y));
}

static spin_status gpu_FILL(struct spin_device *dev, const spin_kcall *c) {
    return fill(dev, &c->out[0], c->p.f[0]);
}

static spin_status gpu_ARANGE(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *y = &c->out[0];
    int64_t n = numel(y);
    launch l = launch_of(y->dtype == SPIN_I32 ? GK_arange_i32 : GK_arange_f32);
    arg_i64(&l, n);
    arg_buf(&l, y);
    arg_i64(&l, y->ndim ? y->stride[0] : 1);
    arg_f32(&l, c->p.f[0]);
    arg_f32(&l, c->p.f[1]);
    return launch_run(dev, &l, n);
}

static spin_status gpu_WHERE(struct spin_device *dev, const spin_kcall *c) {
    launch l = launch_begin(c->in[0].dtype == SPIN_I32 ? GK_where_i32 : GK_where_f32, &c->out[0]);
    for (int i = 0; i < 3; i++)
        arg_view(&l, &c->in[i]);
    arg_view(&l, &c->out[0]);
    return launch_run(dev, &l, numel(&c->out[0]));
}

static spin_status reduce_axis(spin_device *dev, const spin_kcall *c, int square) {
    const spin_view *x = &c->in[0], *y = &c->out[0];
    int axis = (int)c->p.i[0];
    if (axis < 0 || axis >= x->ndim)
        return spin_fail(SPIN_ERR_INVALID, "SUM_AXIS: axis %d of a %d-D view", axis, x->ndim);
    launch l = launch_begin(GK_reduce_axis_f32, y);
    arg_view(&l, x);
    arg_view(&l, y);
    arg_i64(&l, x->shape[axis]);
    arg_i64(&l, x->stride[axis]);
    arg_int(&l, square);
    return launch_run(dev, &l, numel(y));
}

static spin_status gpu_SUM_AXIS(struct spin_device *dev, const spin_kcall *c) {
    return reduce_axis(dev, c, 0);
}

static spin_status gpu_SUMSQ_AXIS(struct spin_device *dev, const spin_kcall *c) {
    return reduce_axis(dev, c, 1);
}

static spin_status binary(spin_device *dev, const spin_kcall *c, spin_gpu_kid kid) {
    launch l = launch_begin(kid, &c->out[0]);
    arg_view(&l, &c->in[0]);
    arg_view(&l, &c->in[1]);
    arg_view(&l, &c->out[0]);
    return launch_run(dev, &l, numel(&c->out[0]));
}

static spin_status unary_p(spin_device *dev, const spin_view *x, const spin_view *y, spin_gpu_kid kid,
                           float p0, float p1) {
    launch l = launch_begin(kid, y);
    arg_view(&l, x);
    arg_view(&l, y);
    arg_f32(&l, p0);
    arg_f32(&l, p1);
    return launch_run(dev, &l, numel(y));
}

static spin_status unary(spin_device *dev, const spin_kcall *c, spin_gpu_kid kid) {
    return unary_p(dev, &c->in[0], &c->out[0], kid, c->p.f[0], c->p.f[1]);
}

/* Backward kernels have the binary signature plus p0, p1. */
static spin_status backward(spin_device *dev, const spin_kcall *c, spin_gpu_kid kid) {
    launch l = launch_begin(kid, &c->out[0]);
    arg_view(&l, &c->in[0]);
    arg_view(&l, &c->in[1]);
    arg_view(&l, &c->out[0]);
    arg_f32(&l, c->p.f[0]);
    arg_f32(&l, c->p.f[1]);
    return launch_run(dev, &l, numel(&c->out[0]));
}

#define GPU_WRAP_(NAME, how, kid)                                                 \
    static spin_status gpu_##NAME(struct spin_device *dev, const spin_kcall *c) { \
        return how(dev, c, kid);                                                  \
    }
GPU_WRAP_(ADD, binary, GK_add_f32)
GPU_WRAP_(SUB, binary, GK_sub_f32)
GPU_WRAP_(MUL, binary, GK_mul_f32)
GPU_WRAP_(DIV, binary, GK_div_f32)
GPU_WRAP_(SCALE, unary, GK_scale_f32)
GPU_WRAP_(EXP, unary, GK_exp_f32)
GPU_WRAP_(LOG, unary, GK_log_f32)
GPU_WRAP_(SQRT, unary, GK_sqrt_f32)
GPU_WRAP_(RSQRT, unary, GK_rsqrt_f32)
GPU_WRAP_(NEG, unary, GK_neg_f32)
GPU_WRAP_(SILU, unary, GK_silu_f32)
GPU_WRAP_(GELU, unary, GK_gelu_f32)
GPU_WRAP_(RELU, unary, GK_relu_f32)
GPU_WRAP_(LOGSIGMOID, unary, GK_logsigmoid_f32)
GPU_WRAP_(CLAMP, unary, GK_clamp_f32)
GPU_WRAP_(SILU_BACK, backward, GK_silu_back_f32)
GPU_WRAP_(GELU_BACK, backward, GK_gelu_back_f32)
GPU_WRAP_(RELU_BACK, backward, GK_relu_back_f32)
GPU_WRAP_(LOGSIGMOID_BACK, backward, GK_logsigmoid_back_f32)
GPU_WRAP_(CLAMP_BACK, backward, GK_clamp_back_f32)

/* ---- row kernels: contiguous [rows, cols] views, one block of ROW_GROUP threads per row ---- */

#define ROW_GROUP 64 /* as backends/kernels/spin_kernel.h */

static void rows_cols(const spin_view *v, int64_t *rows, int64_t *cols) {
    *cols = v->ndim ? v->shape[v->ndim - 1] : 1;
    *rows = *cols ? numel(v) / *cols : 0;
}

static launch rows_begin(spin_gpu_kid kid, int64_t cols) {
    launch l = launch_of(kid);
    arg_i64(&l, cols);
    return l;
}

static spin_status rows_run(spin_device *dev, const launch *l, int64_t rows) {
    return launch_grid(dev, l, rows, ROW_GROUP);
}

static spin_status softmax_fwd(spin_device *dev, const spin_kcall *c, int mode) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_softmax_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    arg_int(&l, mode);
    return rows_run(dev, &l, rows);
}

static spin_status softmax_bwd(spin_device *dev, const spin_kcall *c, int mode) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_softmax_back_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->out[0]);
    arg_int(&l, mode);
    return rows_run(dev, &l, rows);
}

GPU_WRAP_(SOFTMAX, softmax_fwd, 0)
GPU_WRAP_(LOG_SOFTMAX, softmax_fwd, 1)
GPU_WRAP_(SOFTMAX_BACK, softmax_bwd, 0)
GPU_WRAP_(LOG_SOFTMAX_BACK, softmax_bwd, 1)
#undef GPU_WRAP_

static spin_status gpu_RMSNORM(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_rmsnorm_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    arg_f32(&l, c->p.f[0]);
    return rows_run(dev, &l, rows);
}

static spin_status gpu_RMSNORM_BACK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_rmsnorm_back_rows_f32, cols);
    for (int i = 0; i < 4; i++)
        arg_buf(&l, &c->in[i]);
    arg_buf(&l, &c->out[0]);
    SPIN_TRY(rows_run(dev, &l, rows));
    launch d = launch_of(GK_rmsnorm_dw_f32);
    arg_i64(&d, rows);
    arg_i64(&d, cols);
    arg_buf(&d, &c->in[0]);
    arg_buf(&d, &c->in[2]);
    arg_buf(&d, &c->in[3]);
    arg_buf(&d, &c->out[1]);
    return launch_run(dev, &d, cols);
}

static spin_status gpu_LAYERNORM(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_layernorm_rows_f32, cols);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->in[i]);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->out[i]);
    arg_f32(&l, c->p.f[0]);
    return rows_run(dev, &l, rows);
}

static spin_status gpu_LAYERNORM_BACK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_layernorm_back_rows_f32, cols);
    for (int i = 0; i < 5; i++)
        arg_buf(&l, &c->in[i]);
    arg_buf(&l, &c->out[0]);
    SPIN_TRY(rows_run(dev, &l, rows));
    launch d = launch_of(GK_layernorm_dwdb_f32);
    arg_i64(&d, rows);
    arg_i64(&d, cols);
    arg_buf(&d, &c->in[0]); /* x */
    arg_buf(&d, &c->in[2]); /* mean */
    arg_buf(&d, &c->in[3]); /* rstd */
    arg_buf(&d, &c->in[4]); /* dy */
    arg_buf(&d, &c->out[1]);
    arg_buf(&d, &c->out[2]);
    return launch_run(dev, &d, cols);
}

static spin_status gpu_ROPE(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *x = &c->in[0];
    if (x->ndim != 4)
        return spin_fail(SPIN_ERR_INVALID, "ROPE: x must be [B, H, T, D] (got %d dims)", x->ndim);
    const int64_t H = x->shape[1], T = x->shape[2], D = x->shape[3];
    const int64_t total = x->shape[0] * H * T * (D / 2 + (D & 1));
    launch l = launch_of(GK_rope_f32);
    arg_i64(&l, H);
    arg_i64(&l, T);
    arg_i64(&l, D);
    arg_i64(&l, total);
    arg_buf(&l, x);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->in[2]);
    arg_buf(&l, &c->out[0]);
    arg_int(&l, c->p.i[0] == SPIN_ROPE_INTERLEAVED);
    arg_int(&l, c->p.i[1] != 0);
    return launch_run(dev, &l, total);
}

static spin_status gpu_ARGMAX(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_argmax_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    return rows_run(dev, &l, rows);
}

/* ---- attention (backends/kernels/attention.cl): one block per output row ---- */

#define ATTN_GROUP 64 /* as backends/kernels/attention.cl */

/* The shape arguments (Hq, Hkv, Tq, Tk, D) after the checks of backends/cpu/cpu_attention.c; *rows
 * gets the block count: query rows, or key rows with `by_key`. */
static spin_status attn_begin(spin_gpu_kid kid, const spin_kcall *c, int qpos_slot, const char *name,
                              bool by_key, launch *l, int64_t *rows) {
    spin_attn_shape sh;
    spin_status st = spin_attn_shape_check(c, qpos_slot, name, &sh);
    if (st != SPIN_OK)
        return st;
    const int64_t B = sh.B, Hq = sh.Hq, Tq = sh.Tq, D = sh.D, Hkv = sh.Hkv, Tk = sh.Tk;
    *l = launch_of(kid);
    arg_i64(l, Hq);
    arg_i64(l, Hkv);
    arg_i64(l, Tq);
    arg_i64(l, Tk);
    arg_i64(l, D);
    *rows = by_key ? B * Hkv * Tk : B * Hq * Tq;
    return SPIN_OK;
}

/* qpos (input `slot`), then the optional kmask after it and whether it is there. */
static void attn_mask_args(launch *l, const spin_kcall *c, int slot) {
    bool has = c->n_in > slot + 1;
    arg_buf(l, &c->in[slot]);
    arg_buf(l, &c->in[has ? slot + 1 : slot]); /* not read without a mask */
    arg_int(l, has);
}

/* The scale and the window, the last arguments of every attention kernel. */
static void attn_params(launch *l, const spin_kcall *c) {
    arg_f32(l, c->p.f[0]);
    arg_i64(l, c->p.i[0]);
}

static spin_status gpu_ATTENTION(struct spin_device *dev, const spin_kcall *c) {
    launch l;
    int64_t rows;
    SPIN_TRY(attn_begin(GK_attention_fwd_f32, c, 3, "ATTENTION", false, &l, &rows));
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->in[i]);
    attn_mask_args(&l, c, 3);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    attn_params(&l, c);
    return launch_grid(dev, &l, rows, ATTN_GROUP);
}

/* dq over query rows, then dk and dv over key rows: each launch owns its output rows whole. Both
 * launches are built and checked before the first runs (test_gpu_launch_args then covers both). */
static spin_status gpu_ATTENTION_BACK(struct spin_device *dev, const spin_kcall *c) {
    launch dq, dkdv;
    int64_t qrows, krows;
    SPIN_TRY(attn_begin(GK_attention_back_dq_f32, c, 6, "ATTENTION_BACK", false, &dq, &qrows));
    SPIN_TRY(attn_begin(GK_attention_back_dkdv_f32, c, 6, "ATTENTION_BACK", true, &dkdv, &krows));
    for (int i = 0; i < 6; i++) {
        arg_buf(&dq, &c->in[i]);
        arg_buf(&dkdv, &c->in[i]);
    }
    attn_mask_args(&dq, c, 6);
    attn_mask_args(&dkdv, c, 6);
    arg_buf(&dq, &c->out[0]);
    arg_buf(&dkdv, &c->out[1]);
    arg_buf(&dkdv, &c->out[2]);
    attn_params(&dq, c);
    attn_params(&dkdv, c);
    SPIN_TRY(check_args(&dkdv));
    SPIN_TRY(launch_grid(dev, &dq, qrows, ATTN_GROUP));
    return launch_grid(dev, &dkdv, krows, ATTN_GROUP);
}

/* ---- optimizer kernels (backends/kernels/optim.cl) ---- */

#define OPTIM_BLOCK 4096 /* as optim.cl and backends/cpu/cpu_optim.c */

static spin_status gpu_GRAD_SUMSQ(struct spin_device *dev, const spin_kcall *c) {
    gpu_ctx *cx = ctx_of(dev);
    const spin_view *g = &c->in[0], *acc = &c->out[0];
    int64_t n = numel(g), nb = (n + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
    size_t need = (size_t)(nb > 0 ? nb : 1) * sizeof(double); /* acc_t is double in CUDA/HIP */
    if (cx->scratch_bytes < need) {
        if (cx->scratch) {
            /* launches queued on the stream may still read it */
            GPU_CHECK(gpuStreamSynchronize(cx->stream));
            GPU_CHECK(gpuFree(cx->scratch));
        }
        cx->scratch = gpu_alloc(dev, need);
        cx->scratch_bytes = cx->scratch ? need : 0;
        if (!cx->scratch)
            return SPIN_ERR_OOM;
    }
    launch l = rows_begin(GK_grad_sumsq_blocks_f32, n);
    arg_buf(&l, g);
    arg_ptr(&l, cx->scratch);
    SPIN_TRY(rows_run(dev, &l, nb));
    launch m = launch_of(GK_grad_sumsq_combine_f32);
    arg_i64(&m, nb);
    arg_ptr(&m, cx->scratch);
    arg_buf(&m, acc);
    return launch_run(dev, &m, 1);
}

static spin_status gpu_GRAD_CLIP_STAT(struct spin_device *dev, const spin_kcall *c) {
    launch l = launch_of(GK_grad_clip_stat_f32);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    arg_f32(&l, c->p.f[0]);
    return launch_run(dev, &l, 1);
}

/* The optional model copy (output slot `slot`): its buffer and kind 1 f32, 2 bf16, 3 f16, or the
 * master's buffer with kind 0. */
static void arg_copy(launch *l, const spin_kcall *c, int slot) {
    bool has = c->n_out > slot;
    const spin_view *v = has ? &c->out[slot] : &c->out[0];
    arg_buf(l, v);
    arg_int(l, !has ? 0 : v->dtype == SPIN_BF16 ? 2 : v->dtype == SPIN_F16 ? 3 : 1);
}

static spin_status gpu_RMSPROP_STEP(struct spin_device *dev, const spin_kcall *c) {
    int64_t n = numel(&c->out[0]);
    launch l = launch_of(GK_rmsprop_step_f32);
    arg_i64(&l, n);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    arg_copy(&l, c, 2);
    for (int i = 0; i < 5; i++)
        arg_f32(&l, c->p.f[i]);
    return launch_run(dev, &l, n);
}

static spin_status gpu_ADAMW_STEP(struct spin_device *dev, const spin_kcall *c) {
    int64_t n = numel(&c->out[0]);
    launch l = launch_of(GK_adamw_step_f32);
    arg_i64(&l, n);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->out[i]);
    arg_copy(&l, c, 3);
    for (int i = 0; i < 7; i++)
        arg_f32(&l, c->p.f[i]);
    return launch_run(dev, &l, n);
}

/* ---- RNG (backends/kernels/rng.cl): core/rng.c's counter-based Philox, element by element ---- */

static spin_status rng(spin_device *dev, const spin_kcall *c, spin_gpu_kid kid) {
    const spin_view *y = &c->out[0];
    int64_t n = numel(y);
    launch l = launch_of(kid);
    arg_i64(&l, n);
    arg_buf(&l, y);
    arg_i64(&l, c->p.i[0]);
    arg_i64(&l, c->p.i[1]);
    return launch_run(dev, &l, n);
}

static spin_status gpu_RNG_UNIFORM(struct spin_device *dev, const spin_kcall *c) {
    return rng(dev, c, GK_rng_uniform_f32);
}

static spin_status gpu_RNG_NORMAL(struct spin_device *dev, const spin_kcall *c) {
    return rng(dev, c, GK_rng_normal_f32);
}

/* ---- kernels that index with ids (embedding.cl, cross_entropy.cl): ids checked first (ids.cl) ---- */

/* ids_scratch with room for `ints` 32-bit integers (EMBEDDING_BACK's chains). */
static spin_status ids_scratch(spin_device *dev, size_t ints) {
    gpu_ctx *cx = ctx_of(dev);
    size_t need = ints * sizeof(int);
    if (cx->ids_scratch_bytes >= need)
        return SPIN_OK;
    if (cx->ids_scratch) { /* launches queued on the stream may still use it */
        GPU_CHECK(gpuStreamSynchronize(cx->stream));
        GPU_CHECK(gpuFree(cx->ids_scratch));
    }
    cx->ids_scratch = gpu_alloc(dev, need);
    cx->ids_scratch_bytes = cx->ids_scratch ? need : 0;
    return cx->ids_scratch ? SPIN_OK : SPIN_ERR_OOM;
}

/* check_ids_i32 or check_ids_note (the same arguments, the note's kernel code last) over `err`. */
static launch check_ids_launch(spin_gpu_kid kid, const spin_view *ids, int64_t n, int64_t v, int64_t ignore,
                               void *err, spin_ids_kernel kernel) {
    launch l = launch_of(kid);
    arg_i64(&l, n);
    arg_buf(&l, ids);
    arg_i64(&l, v);
    arg_i64(&l, ignore);
    arg_ptr(&l, err);
    arg_i64(&l, 0);
    if (kid == GK_check_ids_note)
        arg_int(&l, (int)kernel);
    return l;
}

/* Checks ids (n, contiguous) against [0, v) (`ignore` allowed) on the device, reading nothing back:
 * check_ids_i32 finds the lowest bad position and check_ids_note records it with its id unless an
 * earlier check failed. The kernels that follow skip what a bad id would index; the error reaches
 * the host at the next to_host or synchronize (ids_err_verdict). */
static spin_status check_ids(spin_device *dev, const spin_view *ids, int64_t n, int64_t v, int64_t ignore,
                             spin_ids_kernel kernel) {
    if (n <= 0)
        return SPIN_OK;
    if (n > INT_MAX)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%lld ids: the device id check counts positions in 32 bits",
                         (long long)n);
    launch l = check_ids_launch(GK_check_ids_i32, ids, n, v, ignore, NULL, kernel);
    launch note = check_ids_launch(GK_check_ids_note, ids, n, v, ignore, NULL, kernel);
    SPIN_TRY(check_args(&l)); /* before the allocation (test_gpu_launch_args) */
    SPIN_TRY(check_args(&note));
    gpu_ctx *cx = ctx_of(dev);
    if (!cx->ids_err) { /* once per device: one small blocking copy */
        void *m = gpu_alloc(dev, sizeof cx->ids_err_host);
        if (!m)
            return SPIN_ERR_OOM;
        spin_ids_record_clear(cx->ids_err_host);
        spin_status s = gpu_from_host(dev, m, 0, cx->ids_err_host, sizeof cx->ids_err_host);
        if (s != SPIN_OK) {
            gpu_free(dev, m);
            return s;
        }
        cx->ids_err = m;
    }
    l = check_ids_launch(GK_check_ids_i32, ids, n, v, ignore, cx->ids_err, kernel);
    note = check_ids_launch(GK_check_ids_note, ids, n, v, ignore, cx->ids_err, kernel);
    SPIN_TRY(launch_run(dev, &l, n));
    return launch_run(dev, &note, 1);
}

#define NO_IGNORE INT64_MIN /* no i32 id equals it */

static spin_status gpu_EMBEDDING(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *w = &c->in[0], *ids = &c->in[1], *y = &c->out[0];
    const int64_t v = w->shape[0], cols = w->shape[1], n = numel(ids);
    launch l = rows_begin(spin_dtype_size(w->dtype) == 4 ? GK_embedding_b32 : GK_embedding_b16, cols);
    arg_i64(&l, n * cols);
    arg_buf(&l, w);
    arg_i64(&l, v);
    arg_buf(&l, ids);
    arg_buf(&l, y);
    SPIN_TRY(check_args(&l)); /* before the id check's device work (test_gpu_launch_args) */
    SPIN_TRY(check_ids(dev, ids, n, v, NO_IGNORE, SPIN_IDS_EMBEDDING));
    return launch_run(dev, &l, n * cols);
}

static spin_status embedding_back_launches(spin_device *dev, const spin_kcall *c, int64_t v, int64_t cols,
                                           int64_t n, void *s, bool run);

/* dw by chains of positions per id (ids.cl, embedding.cl): heads [V] then next [N] in ids_scratch. */
static spin_status gpu_EMBEDDING_BACK(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *ids = &c->in[0], *dw = &c->out[0];
    const int64_t v = c->p.i[0], cols = dw->shape[1], n = numel(ids);
    if (v != dw->shape[0])
        return spin_fail(SPIN_ERR_INVALID, "embedding backward: V = %lld but dw has %lld rows", (long long)v,
                         (long long)dw->shape[0]);
    SPIN_TRY(embedding_back_launches(dev, c, v, cols, n, NULL, false)); /* test_gpu_launch_args */
    SPIN_TRY(check_ids(dev, ids, n, v, NO_IGNORE, SPIN_IDS_EMBEDDING_BACK));
    SPIN_TRY(ids_scratch(dev, (size_t)(v + n > 0 ? v + n : 1)));
    return embedding_back_launches(dev, c, v, cols, n, ctx_of(dev)->ids_scratch, true);
}

/* EMBEDDING_BACK's three launches over the scratch s; with run false only their arguments are
 * checked against the kernels' signatures. */
static spin_status embedding_back_launches(spin_device *dev, const spin_kcall *c, int64_t v, int64_t cols,
                                           int64_t n, void *s, bool run) {
    const spin_view *ids = &c->in[0], *dy = &c->in[1], *dw = &c->out[0];
    launch h = launch_of(GK_fill_heads_i32);
    arg_i64(&h, v);
    arg_ptr(&h, s);
    arg_i64(&h, 0);
    arg_int(&h, (int)n);
    SPIN_TRY(run ? launch_run(dev, &h, v) : check_args(&h));
    launch ch = launch_of(GK_embedding_heads_i32);
    arg_i64(&ch, n);
    arg_buf(&ch, ids);
    arg_i64(&ch, v);
    arg_ptr(&ch, s);
    arg_i64(&ch, 0);
    arg_ptr(&ch, s);
    arg_i64(&ch, v);
    SPIN_TRY(run ? launch_run(dev, &ch, n) : check_args(&ch));
    launch l = rows_begin(GK_embedding_back_f32, cols);
    arg_i64(&l, v * cols);
    arg_buf(&l, dy);
    arg_ptr(&l, s);
    arg_i64(&l, 0);
    arg_ptr(&l, s);
    arg_i64(&l, v);
    arg_buf(&l, dw);
    arg_int(&l, (int)n);
    return run ? launch_run(dev, &l, v * cols) : check_args(&l);
}

static spin_status gpu_CE_ROWS(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_ce_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->out[i]);
    arg_i64(&l, c->p.i[0]);
    SPIN_TRY(check_args(&l)); /* before the id check's device work (test_gpu_launch_args) */
    SPIN_TRY(check_ids(dev, &c->in[1], numel(&c->in[1]), cols, c->p.i[0], SPIN_IDS_CE_ROWS));
    return rows_run(dev, &l, rows);
}

static spin_status gpu_CE_ROWS_BACK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(GK_ce_rows_back_f32, cols);
    arg_i64(&l, rows * cols);
    for (int i = 0; i < 4; i++)
        arg_buf(&l, &c->in[i]);
    arg_buf(&l, &c->out[0]);
    arg_i64(&l, c->p.i[0]);
    SPIN_TRY(check_args(&l)); /* before the id check's device work (test_gpu_launch_args) */
    SPIN_TRY(check_ids(dev, &c->in[1], numel(&c->in[1]), cols, c->p.i[0], SPIN_IDS_CE_ROWS_BACK));
    return launch_run(dev, &l, rows * cols);
}

/* ---- TOPK (backends/kernels/topk.cl) ---- */

#define TOPK_ROUNDS_MAX 64 /* up to this k, k rounds of a group reduction per row; else ranks */

static spin_status gpu_TOPK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    const int64_t k = c->p.i[0];
    if (k < 0 || k > cols)
        return spin_fail(SPIN_ERR_INVALID, "TOPK: k = %lld outside [0, %lld]", (long long)k, (long long)cols);
    if (k == 0 || rows == 0)
        return SPIN_OK;
    const bool rounds = k <= TOPK_ROUNDS_MAX;
    launch l = rows_begin(rounds ? GK_topk_rounds_f32 : GK_topk_rank_f32, cols);
    if (!rounds)
        arg_i64(&l, rows * cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    arg_i64(&l, k);
    return rounds ? rows_run(dev, &l, rows) : launch_run(dev, &l, rows * cols);
}

/* ---- MATMUL: the vendor BLAS where the operands' layout allows, else the tiled kernel ---- */

/* The last two dims of v as a row-major BLAS operand: transposed or not, leading dimension. */
static int blas_layout(const spin_view *v, bool *trans, int64_t *ld) {
    int nd = v->ndim;
    int64_t r = v->shape[nd - 2], k = v->shape[nd - 1], sr = v->stride[nd - 2], sk = v->stride[nd - 1];
    if ((k == 1 || sk == 1) && (r == 1 || sr >= k)) {
        *trans = false;
        *ld = r == 1 ? (k > 1 ? k : 1) : sr;
        if (*ld < k)
            *ld = k;
        return 0;
    }
    if ((r == 1 || sr == 1) && (k == 1 || sk >= r)) {
        *trans = true;
        *ld = k == 1 ? (r > 1 ? r : 1) : sk;
        if (*ld < r)
            *ld = r;
        return 0;
    }
    return -1;
}

static int64_t bstride(const spin_view *v, int d) { /* stride of padded batch dim d (0 or 1) */
    int pad = 4 - v->ndim;
    return d < pad ? 0 : v->stride[d - pad];
}

static const void *elem_ptr(const spin_view *v, int64_t extra) {
    return (const char *)v->buf + ((int64_t)v->offset + extra) * (int64_t)spin_dtype_size(v->dtype);
}

#define GEMM_TILE 64 /* as backends/kernels/gemm.cl */
#define GEMM_THREADS 256

static spin_status gemm_tiled(spin_device *dev, const spin_kcall *c) {
    const spin_view *a = &c->in[0], *b = &c->in[1], *y = &c->out[0];
    int64_t m = y->shape[y->ndim - 2], n = y->shape[y->ndim - 1], k = a->shape[a->ndim - 1];
    int64_t nb0 = y->ndim == 4 ? y->shape[0] : 1, nb1 = y->ndim >= 3 ? y->shape[y->ndim - 3] : 1;
    int64_t tiles_n = (n + GEMM_TILE - 1) / GEMM_TILE, tiles_mn = tiles_n * ((m + GEMM_TILE - 1) / GEMM_TILE);
    launch l = launch_of(GK_gemm_tiled_f32);
    arg_i64(&l, m);
    arg_i64(&l, n);
    arg_i64(&l, k);
    arg_i64(&l, nb1);
    arg_i64(&l, tiles_n);
    arg_i64(&l, tiles_mn);
    const spin_view *v[3] = {a, b, y};
    for (int i = 0; i < 3; i++) {
        arg_buf(&l, v[i]);
        arg_i64(&l, bstride(v[i], 0));
        arg_i64(&l, bstride(v[i], 1));
        arg_i64(&l, v[i]->stride[v[i]->ndim - 2]);
        arg_i64(&l, v[i]->stride[v[i]->ndim - 1]);
    }
    arg_f32(&l, c->p.f[0]);
    arg_f32(&l, c->p.f[1]);
    return launch_grid(dev, &l, nb0 * nb1 * tiles_mn, GEMM_THREADS);
}

/* Elements [0, extent) of v's buffer cover every element of the view. */
static size_t view_extent(const spin_view *v) {
    size_t hi = v->offset;
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] == 0)
            return 0;
        hi += (size_t)((v->shape[i] - 1) * (v->stride[i] < 0 ? 0 : v->stride[i]));
    }
    return hi + 1;
}

/* The CPU backend runs this MATMUL on host copies of the views' buffers: for call shapes (not dtypes)
 * this backend cannot express, i.e. a bf16 GEMM in a layout no BLAS takes. Logged once, counted. */
static spin_status host_fallback(spin_device *dev, spin_kernel k, const spin_kcall *c) {
    if (dev->fallbacks[k]++ == 0)
        spin_log_msg(SPIN_LOG_WARN, "%s cannot run kernel %s for this layout; running it on the CPU",
                     dev->name, spin_kernel_name(k));
    spin_device *cpu = spin_cpu_device();
    spin_kcall h = *c;
    int n = c->n_in + c->n_out;
    void *bufs[SPIN_KMAX_IN + SPIN_KMAX_OUT] = {0};
    size_t bytes[SPIN_KMAX_IN + SPIN_KMAX_OUT] = {0};
    spin_dtype din[SPIN_KMAX_IN], dout[SPIN_KMAX_OUT];
    for (int i = 0; i < c->n_in; i++)
        din[i] = c->in[i].dtype;
    for (int i = 0; i < c->n_out; i++)
        dout[i] = c->out[i].dtype;
    if (!cpu->backend->supports(cpu, k, din, c->n_in, dout, c->n_out))
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "kernel %s: these dtypes run neither on %s in this layout nor on the CPU",
                         spin_kernel_name(k), dev->name);
    spin_status s = SPIN_OK;
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        spin_view *v = i < c->n_in ? &h.in[i] : &h.out[i - c->n_in];
        bytes[i] = view_extent(v) * spin_dtype_size(v->dtype);
        bufs[i] = spin_device_alloc(cpu, bytes[i]);
        if (!bufs[i]) {
            s = spin_fail(SPIN_ERR_OOM, "CPU fallback: cannot allocate %zu bytes", bytes[i]);
            break;
        }
        s = gpu_to_host(dev, bufs[i], v->buf, 0, bytes[i]);
        v->buf = bufs[i];
    }
    if (s == SPIN_OK)
        s = cpu->backend->kernels[k](cpu, &h);
    for (int i = c->n_in; i < n && s == SPIN_OK; i++)
        s = gpu_from_host(dev, c->out[i - c->n_in].buf, 0, bufs[i], bytes[i]);
    for (int i = 0; i < n; i++)
        if (bufs[i])
            spin_device_free(cpu, bufs[i], bytes[i]);
    return s;
}

static bool fits_int(int64_t v) {
    return v >= 0 && v <= INT_MAX;
}

static spin_status gpu_MATMUL(struct spin_device *dev, const spin_kcall *c) {
    gpu_ctx *cx = ctx_of(dev);
    const spin_view *a = &c->in[0], *b = &c->in[1], *y = &c->out[0];
    if (a->ndim < 2 || b->ndim < 2 || y->ndim < 2)
        return spin_fail(SPIN_ERR_INVALID, "MATMUL: operands need 2 dims (got %d, %d -> %d)", a->ndim,
                         b->ndim, y->ndim);
    int64_t m = y->shape[y->ndim - 2], n = y->shape[y->ndim - 1], k = a->shape[a->ndim - 1];
    if (m == 0 || n == 0 || numel(y) == 0)
        return SPIN_OK;
    gpu_blas_operand oa = {0}, ob = {0};
    bool ty = true;
    int64_t ldy = 0;
    bool use_blas = cx->blas && k > 0 && !blas_layout(a, &oa.trans, &oa.ld) &&
                    !blas_layout(b, &ob.trans, &ob.ld) && !blas_layout(y, &ty, &ldy) && !ty && fits_int(m) &&
                    fits_int(n) && fits_int(k) && fits_int(oa.ld) && fits_int(ob.ld) && fits_int(ldy) &&
                    gpu_blas_supports(cx->blas, a->dtype, b->dtype, y->dtype);
    if (!use_blas) /* the tiled kernel is f32 only */
        return a->dtype == SPIN_F32 && b->dtype == SPIN_F32 && y->dtype == SPIN_F32
                   ? gemm_tiled(dev, c)
                   : host_fallback(dev, SPIN_K_MATMUL, c);
    float alpha = c->p.f[0], beta = c->p.f[1];
    if (beta == 0.0f && gpu_blas_needs_zeroed_c(cx->blas) && y->dtype == SPIN_F32)
        SPIN_TRY(fill(dev, y, 0.0f));
    int64_t nb0 = y->ndim == 4 ? y->shape[0] : 1, nb1 = y->ndim >= 3 ? y->shape[y->ndim - 3] : 1;
    oa.dtype = a->dtype;
    ob.dtype = b->dtype;
    oa.stride = bstride(a, 1);
    ob.stride = bstride(b, 1);
    for (int64_t i0 = 0; i0 < nb0; i0++) {
        oa.ptr = elem_ptr(a, i0 * bstride(a, 0));
        ob.ptr = elem_ptr(b, i0 * bstride(b, 0));
        void *yp = (void *)elem_ptr(y, i0 * bstride(y, 0));
        GPU_CHECK(gpuSetDevice(cx->ordinal));
        SPIN_TRY(
            gpu_blas_gemm(cx->blas, m, n, k, alpha, &oa, &ob, beta, yp, y->dtype, ldy, bstride(y, 1), nb1));
    }
    return SPIN_OK;
}

/* ---- capabilities ---- */

static bool gpu_supports(spin_device *dev, spin_kernel k, const spin_dtype *in, int n_in,
                         const spin_dtype *out, int n_out) {
    bool f32_or_i32 = true;
    for (int i = 0; i < n_in; i++)
        f32_or_i32 &= in[i] == SPIN_F32 || in[i] == SPIN_I32;
    for (int i = 0; i < n_out; i++)
        f32_or_i32 &= out[i] == SPIN_F32 || out[i] == SPIN_I32;
    if (k == SPIN_K_COPY)
        return copy_kid(in[0], out[0]) != GK_COUNT;
    if (k == SPIN_K_FILL || k == SPIN_K_ARANGE)
        return f32_or_i32;
    if (k == SPIN_K_EMBEDDING) /* a row copy of any float table */
        return in[1] == SPIN_I32 && in[0] != SPIN_I32 && out[0] == in[0];
    if (k == SPIN_K_EMBEDDING_BACK)
        return in[0] == SPIN_I32 && in[1] == SPIN_F32 && out[0] == SPIN_F32;
    if (k == SPIN_K_CE_ROWS || k == SPIN_K_CE_ROWS_BACK) { /* f32 but the targets (slot 1, i32) */
        for (int i = 0; i < n_in; i++)
            if (in[i] != (i == 1 ? SPIN_I32 : SPIN_F32))
                return false;
        for (int i = 0; i < n_out; i++)
            if (out[i] != SPIN_F32)
                return false;
        return true;
    }
    if (k == SPIN_K_TOPK)
        return in[0] == SPIN_F32 && out[0] == SPIN_F32 && out[1] == SPIN_I32;
    if (k == SPIN_K_ROPE)
        return in[0] == SPIN_F32 && in[1] == SPIN_I32 && in[2] == SPIN_F32 && out[0] == SPIN_F32;
    if (k == SPIN_K_ARGMAX)
        return in[0] == SPIN_F32 && out[0] == SPIN_I32;
    if (k == SPIN_K_WHERE)
        return f32_or_i32 && in[1] == SPIN_F32 && in[2] == SPIN_F32 && out[0] == SPIN_F32;
    if (k == SPIN_K_ATTENTION || k == SPIN_K_ATTENTION_BACK) { /* f32 but qpos (i32) */
        const int qpos_slot = k == SPIN_K_ATTENTION ? 3 : 6;
        for (int i = 0; i < n_in; i++)
            if (in[i] != (i == qpos_slot ? SPIN_I32 : SPIN_F32))
                return false;
        for (int i = 0; i < n_out; i++)
            if (out[i] != SPIN_F32)
                return false;
        return n_in > qpos_slot;
    }
    if (k == SPIN_K_MATMUL && n_in == 2 && n_out == 1 &&
        !(in[0] == SPIN_F32 && in[1] == SPIN_F32 &&
          out[0] == SPIN_F32)) /* bf16 GEMMs: the vendor BLAS only */
        return ctx_of(dev)->blas && gpu_blas_supports(ctx_of(dev)->blas, in[0], in[1], out[0]);
    /* the optimizer steps' model copy (last slot) may be bf16 or f16 */
    int copy_slot = k == SPIN_K_RMSPROP_STEP ? 2 : k == SPIN_K_ADAMW_STEP ? 3 : -1;
    if (copy_slot >= 0 && n_out == copy_slot + 1 &&
        (out[copy_slot] == SPIN_BF16 || out[copy_slot] == SPIN_F16))
        n_out--;
    for (int i = 0; i < n_in; i++)
        if (in[i] != SPIN_F32)
            return false;
    for (int i = 0; i < n_out; i++)
        if (out[i] != SPIN_F32)
            return false;
    return true;
}

static void gpu_describe(spin_device *dev, char *buf, size_t size) {
    gpu_ctx *c = ctx_of(dev);
    int rt = 0, drv = 0;
    if (gpuRuntimeGetVersion(&rt) != gpuSuccess || gpuDriverGetVersion(&drv) != gpuSuccess)
        rt = drv = -1; /* printed as -1: the version queries failed */
    char gemm[320];
    if (c->blas)
        gpu_blas_describe(c->blas, gemm, sizeof gemm);
    else
        snprintf(gemm, sizeof gemm, "%s", c->gemm_note);
    int native = 0;
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
        native += dev->backend->kernels[k] != NULL;
    snprintf(
        buf, size,
        "%s runtime %d, driver %d; %s, %s, %.1f GiB, wave size %d, %d multiprocessors; GEMM: %s; %d of %d "
        "kernels native, others on the CPU",
        GPU_RUNTIME, rt, drv, c->prop.name, c->arch, (double)c->prop.totalGlobalMem / (1024.0 * 1024 * 1024),
        c->prop.warpSize, c->prop.multiProcessorCount, gemm, native, (int)SPIN_KERNEL_COUNT);
}

/* Kernels without an entry stay NULL: the dispatcher runs them on the CPU (logged, counted). */
static const spin_backend gpu_backend = {
    .api_version = SPIN_BACKEND_API_VERSION,
    .name = GPU_VENDOR,
    .device_count = gpu_device_count,
    .device_open = gpu_device_open,
    .device_close = gpu_device_close,
    .alloc = gpu_alloc,
    .free = gpu_free,
    .to_host = gpu_to_host,
    .from_host = gpu_from_host,
    .copy = gpu_copy,
    .synchronize = gpu_synchronize,
    .supports = gpu_supports,
    .describe = gpu_describe,
#define E_(name) [SPIN_K_##name] = gpu_##name,
    /* clang-format off */
    .kernels = {E_(COPY) E_(FILL) E_(ARANGE) E_(WHERE) E_(SUM_AXIS) E_(SUMSQ_AXIS) E_(ADD) E_(SUB) E_(MUL)
                E_(DIV) E_(SCALE) E_(EXP) E_(LOG) E_(SQRT) E_(RSQRT) E_(NEG) E_(SILU) E_(GELU) E_(RELU)
                E_(LOGSIGMOID) E_(CLAMP) E_(SILU_BACK) E_(GELU_BACK) E_(RELU_BACK) E_(LOGSIGMOID_BACK)
                E_(CLAMP_BACK) E_(MATMUL) E_(SOFTMAX) E_(LOG_SOFTMAX) E_(SOFTMAX_BACK) E_(LOG_SOFTMAX_BACK)
                E_(RMSNORM) E_(RMSNORM_BACK) E_(LAYERNORM) E_(LAYERNORM_BACK) E_(ROPE) E_(ARGMAX)
                E_(RNG_UNIFORM) E_(RNG_NORMAL) E_(EMBEDDING) E_(EMBEDDING_BACK) E_(CE_ROWS) E_(CE_ROWS_BACK)
                E_(TOPK)
                E_(GRAD_SUMSQ) E_(GRAD_CLIP_STAT) E_(RMSPROP_STEP) E_(ADAMW_STEP)
                E_(ATTENTION) E_(ATTENTION_BACK)},
/* clang-format on */
#undef E_
};

const spin_backend *spin_gpu_backend(void) {
    return &gpu_backend;
}
