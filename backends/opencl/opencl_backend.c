/* The OpenCL backend: device discovery across platforms, buffers and copies on one in-order queue,
 * the kernel table (CLBlast GEMM, elementwise kernels from the embedded text of backends/kernels).
 * Every CL call is checked; a failure names the call site and the error. */
#include "backends/opencl/opencl_backend.h"

#include <CL/cl.h>
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/attn_shape.h"
#include "backends/cpu/id_errors.h"
#include "core/device.h"
#include "core/log.h"

extern const char spin_opencl_kernel_source[];

/* ---- errors ---- */

static const char *cl_err_name(cl_int e) {
    switch (e) {
#define E_(x) \
    case x: return #x;
        E_(CL_SUCCESS)
        E_(CL_DEVICE_NOT_FOUND)
        E_(CL_DEVICE_NOT_AVAILABLE)
        E_(CL_COMPILER_NOT_AVAILABLE)
        E_(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E_(CL_OUT_OF_RESOURCES)
        E_(CL_OUT_OF_HOST_MEMORY)
        E_(CL_MEM_COPY_OVERLAP)
        E_(CL_BUILD_PROGRAM_FAILURE)
        E_(CL_INVALID_VALUE)
        E_(CL_INVALID_DEVICE_TYPE)
        E_(CL_INVALID_PLATFORM)
        E_(CL_INVALID_DEVICE)
        E_(CL_INVALID_CONTEXT)
        E_(CL_INVALID_COMMAND_QUEUE)
        E_(CL_INVALID_MEM_OBJECT)
        E_(CL_INVALID_BINARY)
        E_(CL_INVALID_BUILD_OPTIONS)
        E_(CL_INVALID_PROGRAM)
        E_(CL_INVALID_PROGRAM_EXECUTABLE)
        E_(CL_INVALID_KERNEL_NAME)
        E_(CL_INVALID_KERNEL)
        E_(CL_INVALID_ARG_INDEX)
        E_(CL_INVALID_ARG_VALUE)
        E_(CL_INVALID_ARG_SIZE)
        E_(CL_INVALID_KERNEL_ARGS)
        E_(CL_INVALID_WORK_DIMENSION)
        E_(CL_INVALID_WORK_GROUP_SIZE)
        E_(CL_INVALID_WORK_ITEM_SIZE)
        E_(CL_INVALID_GLOBAL_OFFSET)
        E_(CL_INVALID_EVENT_WAIT_LIST)
        E_(CL_INVALID_OPERATION)
        E_(CL_INVALID_BUFFER_SIZE)
        E_(CL_INVALID_GLOBAL_WORK_SIZE)
        E_(CL_PLATFORM_NOT_FOUND_KHR)
#undef E_
    default: return "unknown OpenCL error";
    }
}

#define CL_FAIL_(e, what)                                                                             \
    spin_fail(SPIN_ERR_DEVICE, "%s:%d: %s failed: %s (%d)", __FILE__, __LINE__, what, cl_err_name(e), \
              (int)(e))
/* Evaluates a call returning cl_int; on failure returns a spin_status from the enclosing function. */
#define CL_CHECK(call)                  \
    do {                                \
        cl_int e_ = (call);             \
        if (e_ != CL_SUCCESS)           \
            return CL_FAIL_(e_, #call); \
    } while (0)

/* ---- device discovery: devices of every platform, numbered in order ---- */

#define MAX_CL_DEVICES 16

typedef struct {
    cl_platform_id platform;
    cl_device_id device;
} cl_entry;

static cl_entry entries[MAX_CL_DEVICES];
static int n_entries = -1;

static void discover(void) {
    if (n_entries >= 0)
        return;
    n_entries = 0;
    cl_uint np = 0;
    if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0)
        return;
    cl_platform_id plats[8];
    if (np > 8)
        np = 8;
    if (clGetPlatformIDs(np, plats, NULL) != CL_SUCCESS)
        return;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        cl_device_id devs[MAX_CL_DEVICES];
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_CL_DEVICES, devs, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd && d < MAX_CL_DEVICES && n_entries < MAX_CL_DEVICES; d++)
            entries[n_entries++] = (cl_entry){plats[p], devs[d]};
    }
}

static void platform_str(cl_platform_id p, cl_platform_info what, char *buf, size_t size) {
    buf[0] = '\0';
    if (clGetPlatformInfo(p, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
}

static void device_str(cl_device_id d, cl_device_info what, char *buf, size_t size) {
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
}

void spin_opencl_device_list(char *buf, size_t size) {
    discover();
    buf[0] = '\0';
    if (n_entries == 0) {
        snprintf(buf, size, "no OpenCL devices (no platform/ICD installed? e.g. Debian pocl-opencl-icd)");
        return;
    }
    size_t used = 0;
    for (int i = 0; i < n_entries && used < size; i++) {
        char pn[128], dn[128];
        platform_str(entries[i].platform, CL_PLATFORM_NAME, pn, sizeof pn);
        device_str(entries[i].device, CL_DEVICE_NAME, dn, sizeof dn);
        int w = snprintf(buf + used, size - used, "%sopencl:%d  %s / %s", i ? "\n" : "", i, pn, dn);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int ocl_device_count(void) {
    discover();
    return n_entries;
}

/* ---- the device context: context, queue, program and cached kernels ---- */

#define ROW_GROUP 64      /* as backends/kernels/spin_kernel.h */
#define ROW_GROUP_MAX 256 /* as backends/kernels/spin_kernel.h */

/* clang-format off */
#define OCL_KERNELS(X)                                                                              \
    X(copy_f32) X(copy_i32) X(copy_f32_i32) X(copy_i32_f32) X(fill_f32) X(fill_i32)                 \
    X(copy_f32_bf16) X(copy_bf16_f32) X(copy_f32_f16) X(copy_f16_f32) X(copy_b16)                   \
    X(check_ids_i32) X(check_ids_note) X(fill_heads_i32) X(embedding_heads_i32)                     \
    X(embedding_b32) X(embedding_b16)                                                               \
    X(embedding_back_f32) X(ce_rows_f32) X(ce_rows_back_f32) X(topk_rounds_f32) X(topk_rank_f32)    \
    X(rng_uniform_f32) X(rng_normal_f32)                                                            \
    X(arange_f32) X(arange_i32) X(where_f32) X(where_i32) X(reduce_axis_f32)                        \
    X(add_f32) X(sub_f32) X(mul_f32) X(div_f32)                                                     \
    X(scale_f32) X(exp_f32) X(log_f32) X(sqrt_f32) X(rsqrt_f32) X(neg_f32) X(silu_f32) X(gelu_f32)  \
    X(relu_f32) X(logsigmoid_f32) X(clamp_f32)                                                      \
    X(silu_back_f32) X(gelu_back_f32) X(relu_back_f32) X(logsigmoid_back_f32) X(clamp_back_f32)     \
    X(softmax_rows_f32) X(softmax_back_rows_f32)                                                    \
    X(rmsnorm_rows_f32) X(rmsnorm_back_rows_f32) X(rmsnorm_dw_f32)                                  \
    X(layernorm_rows_f32) X(layernorm_back_rows_f32) X(layernorm_dwdb_f32) X(rope_f32)     \
    X(argmax_rows_f32)                                                                              \
    X(attention_fwd_f32) X(attention_back_dq_f32) X(attention_back_dkdv_f32)                        \
    X(grad_sumsq_blocks_f32) X(grad_sumsq_combine_f32) X(grad_clip_stat_f32) X(rmsprop_step_f32)    \
    X(adamw_step_f32) X(gemm_tiled_f32)
/* clang-format on */

typedef enum {
#define OK_ENUM_(n) OK_##n,
    OCL_KERNELS(OK_ENUM_)
#undef OK_ENUM_
        OK_COUNT
} ocl_kid;

static const char *const ocl_kernel_names[] = {
#define OK_NAME_(n) #n,
    OCL_KERNELS(OK_NAME_)
#undef OK_NAME_
};

typedef struct {
    cl_platform_id platform;
    cl_device_id device;
    cl_context ctx;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernels[OK_COUNT];
    size_t max_group;
    bool fp64;
    cl_mem scratch; /* GRAD_SUMSQ's block partials; reused (the queue is in order) */
    size_t scratch_bytes;
    cl_mem ids_scratch; /* EMBEDDING_BACK's chains (ids.cl); reused */
    size_t ids_scratch_bytes;
    /* the id checks' error record (ids.cl), made at the first check, and its copy on the host */
    cl_mem ids_err;
    cl_int ids_err_host[SPIN_IDS_ERR_INTS];
    size_t row_group; /* work-items per row kernel group: SPIN_ROW_GROUP, default 64 */
    bool gemm_tiled;  /* SPIN_GEMM=tiled: MATMUL through the shared tiled kernel instead of CLBlast */
} ocl_ctx;

static ocl_ctx *ctx_of(spin_device *dev) {
    return dev->ctx;
}

static spin_status build_program(ocl_ctx *c) {
    cl_int e;
    const char *src = spin_opencl_kernel_source;
    c->program = clCreateProgramWithSource(c->ctx, 1, &src, NULL, &e);
    if (e != CL_SUCCESS)
        return CL_FAIL_(e, "clCreateProgramWithSource");
    e = clBuildProgram(c->program, 1, &c->device, "-cl-std=CL1.2", NULL, NULL);
    if (e != CL_SUCCESS) {
        size_t n = 0;
        clGetProgramBuildInfo(c->program, c->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
        char *log = malloc(n + 1);
        if (log) {
            log[0] = '\0';
            clGetProgramBuildInfo(c->program, c->device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
            log[n] = '\0';
            spin_log_msg(SPIN_LOG_ERROR, "OpenCL build log:\n%s", log);
            free(log);
        }
        return CL_FAIL_(e, "clBuildProgram");
    }
    for (int k = 0; k < OK_COUNT; k++) {
        c->kernels[k] = clCreateKernel(c->program, ocl_kernel_names[k], &e);
        if (e != CL_SUCCESS)
            return spin_fail(SPIN_ERR_DEVICE, "%s:%d: clCreateKernel(%s) failed: %s (%d)", __FILE__, __LINE__,
                             ocl_kernel_names[k], cl_err_name(e), (int)e);
    }
    return SPIN_OK;
}

static void ocl_device_close(spin_device *dev) {
    ocl_ctx *c = ctx_of(dev);
    if (!c)
        return;
    if (c->queue)
        clFinish(c->queue);
    for (int k = 0; k < OK_COUNT; k++)
        if (c->kernels[k])
            clReleaseKernel(c->kernels[k]);
    if (c->scratch)
        clReleaseMemObject(c->scratch);
    if (c->ids_scratch)
        clReleaseMemObject(c->ids_scratch);
    if (c->ids_err)
        clReleaseMemObject(c->ids_err);
    if (c->program)
        clReleaseProgram(c->program);
    if (c->queue)
        clReleaseCommandQueue(c->queue);
    if (c->ctx)
        clReleaseContext(c->ctx);
    free(c);
    dev->ctx = NULL;
}

/* SPIN_ROW_GROUP: the work-group width of the row kernels (a power of two, 32 to 256, at most the
 * device's group limit; default 64). test_group_width runs the reductions at 32 and 64 with it. */
static spin_status row_group_choice(ocl_ctx *c) {
    const char *rg = getenv("SPIN_ROW_GROUP");
    c->row_group = ROW_GROUP;
    if (!rg || !*rg)
        return SPIN_OK;
    char *end;
    long w = strtol(rg, &end, 10);
    if (*end || w < 32 || w > ROW_GROUP_MAX || (w & (w - 1)) || (size_t)w > c->max_group)
        return spin_fail(SPIN_ERR_INVALID,
                         "SPIN_ROW_GROUP='%s': expected a power of two from 32 to %d (this device allows "
                         "groups of up to %zu)",
                         rg, ROW_GROUP_MAX, c->max_group);
    c->row_group = (size_t)w;
    return SPIN_OK;
}

static spin_status ocl_device_open(spin_device *dev, int index) {
    discover();
    if (index < 0 || index >= n_entries) {
        char list[1024];
        spin_opencl_device_list(list, sizeof list);
        return spin_fail(SPIN_ERR_INVALID, "no OpenCL device opencl:%d; devices:\n%s", index, list);
    }
    ocl_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return spin_fail(SPIN_ERR_OOM, "out of host memory");
    dev->ctx = c;
    c->platform = entries[index].platform;
    c->device = entries[index].device;
    cl_int e;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)c->platform, 0};
    c->ctx = clCreateContext(props, 1, &c->device, NULL, NULL, &e);
    spin_status s = SPIN_OK;
    if (e != CL_SUCCESS)
        s = CL_FAIL_(e, "clCreateContext");
    if (s == SPIN_OK) {
        c->queue = clCreateCommandQueue(c->ctx, c->device, 0, &e); /* in order */
        if (e != CL_SUCCESS)
            s = CL_FAIL_(e, "clCreateCommandQueue");
    }
    if (s == SPIN_OK) {
        e = clGetDeviceInfo(c->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof c->max_group, &c->max_group,
                            NULL);
        if (e != CL_SUCCESS)
            s = CL_FAIL_(e, "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)");
    }
    if (s == SPIN_OK) {
        cl_device_fp_config fp = 0;
        e = clGetDeviceInfo(c->device, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL);
        c->fp64 = e == CL_SUCCESS && fp != 0;
    }
    const char *gemm = getenv("SPIN_GEMM");
    if (s == SPIN_OK && gemm && *gemm && strcmp(gemm, "tiled") && strcmp(gemm, "blas"))
        s = spin_fail(SPIN_ERR_INVALID, "SPIN_GEMM='%s': expected 'blas' or 'tiled'", gemm);
    c->gemm_tiled = gemm && !strcmp(gemm, "tiled");
    if (s == SPIN_OK)
        s = row_group_choice(c);
    if (s == SPIN_OK)
        s = build_program(c);
    if (s != SPIN_OK) {
        ocl_device_close(dev);
        return s;
    }
    char dn[96];
    device_str(c->device, CL_DEVICE_NAME, dn, sizeof dn);
    snprintf(dev->name, sizeof dev->name, "opencl:%d (%s)", index, dn);
    return SPIN_OK;
}

/* ---- memory and copies ---- */

static void *ocl_alloc(spin_device *dev, size_t bytes) {
    cl_int e;
    cl_mem m = clCreateBuffer(ctx_of(dev)->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &e);
    if (e != CL_SUCCESS) {
        CL_FAIL_(e, "clCreateBuffer");
        return NULL;
    }
    return m;
}

static void ocl_free(spin_device *dev, void *buf) {
    (void)dev;
    if (buf)
        clReleaseMemObject((cl_mem)buf);
}

/* Queues the read of the id checks' error record (ids.cl) ahead of a blocking call: the in-order
 * queue has it by the time that call returns, so the check costs no wait of its own. */
static spin_status ids_err_read(spin_device *dev) {
    ocl_ctx *c = ctx_of(dev);
    if (c->ids_err)
        CL_CHECK(clEnqueueReadBuffer(c->queue, c->ids_err, CL_FALSE, 0, sizeof c->ids_err_host,
                                     c->ids_err_host, 0, NULL, NULL));
    return SPIN_OK;
}

/* After the blocking call: a recorded bad id fails it with the CPU's message, and the record is
 * cleared so that the device works on after the report. */
static spin_status ids_err_verdict(spin_device *dev) {
    ocl_ctx *c = ctx_of(dev);
    if (!c->ids_err || c->ids_err_host[SPIN_IDS_ERR_KERNEL] == 0)
        return SPIN_OK;
    int32_t rec[SPIN_IDS_ERR_INTS];
    for (int i = 0; i < SPIN_IDS_ERR_INTS; i++)
        rec[i] = c->ids_err_host[i];
    spin_ids_record_clear(c->ids_err_host);
    CL_CHECK(clEnqueueWriteBuffer(c->queue, c->ids_err, CL_TRUE, 0, sizeof c->ids_err_host, c->ids_err_host,
                                  0, NULL, NULL));
    return spin_ids_record_error(rec);
}

static spin_status ocl_to_host(spin_device *dev, void *dst, const void *buf, size_t off, size_t bytes) {
    if (!bytes)
        return SPIN_OK;
    SPIN_TRY(ids_err_read(dev));
    CL_CHECK(clEnqueueReadBuffer(ctx_of(dev)->queue, (cl_mem)buf, CL_TRUE, off, bytes, dst, 0, NULL, NULL));
    return ids_err_verdict(dev);
}

static spin_status ocl_from_host(spin_device *dev, void *buf, size_t off, const void *src, size_t bytes) {
    if (!bytes)
        return SPIN_OK;
    /* Blocking: the caller may reuse src as soon as this returns. */
    CL_CHECK(clEnqueueWriteBuffer(ctx_of(dev)->queue, (cl_mem)buf, CL_TRUE, off, bytes, src, 0, NULL, NULL));
    return SPIN_OK;
}

static spin_status ocl_copy(spin_device *dev, void *dst, size_t doff, const void *src, size_t soff,
                            size_t bytes) {
    if (!bytes)
        return SPIN_OK;
    if (dst == src && doff < soff + bytes && soff < doff + bytes) {
        /* Overlapping ranges of one buffer: OpenCL refuses them, so go through the host. */
        void *tmp = malloc(bytes);
        if (!tmp)
            return spin_fail(SPIN_ERR_OOM, "out of host memory");
        spin_status s = ocl_to_host(dev, tmp, src, soff, bytes);
        if (s == SPIN_OK)
            s = ocl_from_host(dev, dst, doff, tmp, bytes);
        free(tmp);
        return s;
    }
    CL_CHECK(
        clEnqueueCopyBuffer(ctx_of(dev)->queue, (cl_mem)src, (cl_mem)dst, soff, doff, bytes, 0, NULL, NULL));
    return SPIN_OK;
}

static spin_status ocl_synchronize(spin_device *dev) {
    SPIN_TRY(ids_err_read(dev));
    CL_CHECK(clFinish(ctx_of(dev)->queue));
    return ids_err_verdict(dev);
}

/* ---- launches ---- */

typedef struct {
    cl_kernel k;
    cl_uint arg;
    cl_int err;
    cl_uint bad_arg; /* the argument whose clSetKernelArg failed */
} launch;

static void arg_(launch *l, size_t size, const void *v) {
    if (l->err == CL_SUCCESS) {
        l->err = clSetKernelArg(l->k, l->arg, size, v);
        if (l->err != CL_SUCCESS)
            l->bad_arg = l->arg;
    }
    l->arg++;
}

static void arg_i64(launch *l, int64_t v) {
    cl_long x = (cl_long)v;
    arg_(l, sizeof x, &x);
}

static void arg_f32(launch *l, float v) {
    cl_float x = v;
    arg_(l, sizeof x, &x);
}

/* A view padded on the left to 4 dims: buffer, element offset, 4 strides. */
static void arg_view(launch *l, const spin_view *v) {
    cl_mem m = (cl_mem)v->buf;
    arg_(l, sizeof m, &m);
    arg_i64(l, (int64_t)v->offset);
    int pad = 4 - v->ndim;
    for (int i = 0; i < 4; i++)
        arg_i64(l, i < pad ? 0 : v->stride[i - pad]);
}

static int64_t numel(const spin_view *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        n *= v->shape[i];
    return n;
}

/* Starts a launch shaped like `out`: the shape arguments come first in every kernel. */
static launch launch_begin(spin_device *dev, ocl_kid kid, const spin_view *out) {
    launch l = {ctx_of(dev)->kernels[kid], 0, CL_SUCCESS, 0};
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

static spin_status args_failed(const launch *l) {
    char name[64] = "?";
    clGetKernelInfo(l->k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    return spin_fail(SPIN_ERR_DEVICE, "%s:%d: clSetKernelArg(%s, argument %u) failed: %s (%d)", __FILE__,
                     __LINE__, name, l->bad_arg, cl_err_name(l->err), (int)l->err);
}

/* Local sizes come from a small fixed set: PoCL compiles one work-group variant per size. */
static spin_status launch_run(spin_device *dev, launch *l, int64_t total) {
    if (l->err != CL_SUCCESS)
        return args_failed(l);
    if (total <= 0)
        return SPIN_OK;
    size_t local = total <= 4096 ? 64 : 256;
    if (local > ctx_of(dev)->max_group)
        local = ctx_of(dev)->max_group >= 64 ? 64 : 1;
    size_t global = ((size_t)total + local - 1) / local * local;
    CL_CHECK(clEnqueueNDRangeKernel(ctx_of(dev)->queue, l->k, 1, NULL, &global, &local, 0, NULL, NULL));
    return SPIN_OK;
}

/* ---- kernels ---- */

/* The copy kernel for a dtype pair (supports() admits only these): f32/i32 among themselves,
 * f32 <-> bf16/f16 (backends/kernels/cast.cl), bf16 -> bf16 and f16 -> f16. */
static ocl_kid copy_kid(spin_dtype x, spin_dtype y) {
    if (x == y)
        return x == SPIN_I32 ? OK_copy_i32 : x == SPIN_F32 ? OK_copy_f32 : OK_copy_b16;
    if (x == SPIN_F32)
        return y == SPIN_I32 ? OK_copy_f32_i32 : y == SPIN_BF16 ? OK_copy_f32_bf16 : OK_copy_f32_f16;
    if (y == SPIN_F32)
        return x == SPIN_I32 ? OK_copy_i32_f32 : x == SPIN_BF16 ? OK_copy_bf16_f32 : OK_copy_f16_f32;
    return OK_COUNT;
}

static spin_status ocl_COPY(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *x = &c->in[0], *y = &c->out[0];
    ocl_kid kid = copy_kid(x->dtype, y->dtype);
    if (kid == OK_COUNT)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "COPY %s -> %s has no OpenCL kernel",
                         spin_dtype_name(x->dtype), spin_dtype_name(y->dtype));
    launch l = launch_begin(dev, kid, y);
    arg_view(&l, x);
    arg_view(&l, y);
    return launch_run(dev, &l, numel(y));
}

static spin_status fill(spin_device *dev, const spin_view *y, float v) {
    launch l = launch_begin(dev, y->dtype == SPIN_I32 ? OK_fill_i32 : OK_fill_f32, y);
    arg_view(&l, y);
    arg_f32(&l, v);
    return launch_run(dev, &l, numel(y));
}

static spin_status ocl_FILL(struct spin_device *dev, const spin_kcall *c) {
    return fill(dev, &c->out[0], c->p.f[0]);
}

static spin_status ocl_ARANGE(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *y = &c->out[0];
    int64_t n = numel(y);
    launch l = {ctx_of(dev)->kernels[y->dtype == SPIN_I32 ? OK_arange_i32 : OK_arange_f32], 0, CL_SUCCESS, 0};
    arg_i64(&l, n);
    cl_mem m = (cl_mem)y->buf;
    arg_(&l, sizeof m, &m);
    arg_i64(&l, (int64_t)y->offset);
    arg_i64(&l, y->ndim ? y->stride[0] : 1);
    arg_f32(&l, c->p.f[0]);
    arg_f32(&l, c->p.f[1]);
    return launch_run(dev, &l, n);
}

static spin_status ocl_WHERE(struct spin_device *dev, const spin_kcall *c) {
    launch l = launch_begin(dev, c->in[0].dtype == SPIN_I32 ? OK_where_i32 : OK_where_f32, &c->out[0]);
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
    launch l = launch_begin(dev, OK_reduce_axis_f32, y);
    arg_view(&l, x);
    arg_view(&l, y);
    arg_i64(&l, x->shape[axis]);
    arg_i64(&l, x->stride[axis]);
    cl_int sq = square;
    arg_(&l, sizeof sq, &sq);
    return launch_run(dev, &l, numel(y));
}

static spin_status ocl_SUM_AXIS(struct spin_device *dev, const spin_kcall *c) {
    return reduce_axis(dev, c, 0);
}

static spin_status ocl_SUMSQ_AXIS(struct spin_device *dev, const spin_kcall *c) {
    return reduce_axis(dev, c, 1);
}

static spin_status binary(spin_device *dev, const spin_kcall *c, ocl_kid kid) {
    launch l = launch_begin(dev, kid, &c->out[0]);
    arg_view(&l, &c->in[0]);
    arg_view(&l, &c->in[1]);
    arg_view(&l, &c->out[0]);
    return launch_run(dev, &l, numel(&c->out[0]));
}

static spin_status unary_p(spin_device *dev, const spin_view *x, const spin_view *y, ocl_kid kid, float p0,
                           float p1) {
    launch l = launch_begin(dev, kid, y);
    arg_view(&l, x);
    arg_view(&l, y);
    arg_f32(&l, p0);
    arg_f32(&l, p1);
    return launch_run(dev, &l, numel(y));
}

static spin_status unary(spin_device *dev, const spin_kcall *c, ocl_kid kid) {
    return unary_p(dev, &c->in[0], &c->out[0], kid, c->p.f[0], c->p.f[1]);
}

/* Backward kernels have the binary signature plus p0, p1. */
static spin_status backward(spin_device *dev, const spin_kcall *c, ocl_kid kid) {
    launch l = launch_begin(dev, kid, &c->out[0]);
    arg_view(&l, &c->in[0]);
    arg_view(&l, &c->in[1]);
    arg_view(&l, &c->out[0]);
    arg_f32(&l, c->p.f[0]);
    arg_f32(&l, c->p.f[1]);
    return launch_run(dev, &l, numel(&c->out[0]));
}

#define OCL_WRAP_(NAME, how, kid)                                                 \
    static spin_status ocl_##NAME(struct spin_device *dev, const spin_kcall *c) { \
        return how(dev, c, kid);                                                  \
    }
OCL_WRAP_(ADD, binary, OK_add_f32)
OCL_WRAP_(SUB, binary, OK_sub_f32)
OCL_WRAP_(MUL, binary, OK_mul_f32)
OCL_WRAP_(DIV, binary, OK_div_f32)
OCL_WRAP_(SCALE, unary, OK_scale_f32)
OCL_WRAP_(EXP, unary, OK_exp_f32)
OCL_WRAP_(LOG, unary, OK_log_f32)
OCL_WRAP_(SQRT, unary, OK_sqrt_f32)
OCL_WRAP_(RSQRT, unary, OK_rsqrt_f32)
OCL_WRAP_(NEG, unary, OK_neg_f32)
OCL_WRAP_(SILU, unary, OK_silu_f32)
OCL_WRAP_(GELU, unary, OK_gelu_f32)
OCL_WRAP_(RELU, unary, OK_relu_f32)
OCL_WRAP_(LOGSIGMOID, unary, OK_logsigmoid_f32)
OCL_WRAP_(CLAMP, unary, OK_clamp_f32)
OCL_WRAP_(SILU_BACK, backward, OK_silu_back_f32)
OCL_WRAP_(GELU_BACK, backward, OK_gelu_back_f32)
OCL_WRAP_(RELU_BACK, backward, OK_relu_back_f32)
OCL_WRAP_(LOGSIGMOID_BACK, backward, OK_logsigmoid_back_f32)
OCL_WRAP_(CLAMP_BACK, backward, OK_clamp_back_f32)

/* ---- row kernels: contiguous [rows, cols] views, one work-group of ROW_GROUP per row ---- */

static void rows_cols(const spin_view *v, int64_t *rows, int64_t *cols) {
    *cols = v->ndim ? v->shape[v->ndim - 1] : 1;
    *rows = *cols ? numel(v) / *cols : 0;
}

/* Buffer and element offset of a contiguous view. */
static void arg_buf(launch *l, const spin_view *v) {
    cl_mem m = (cl_mem)v->buf;
    arg_(l, sizeof m, &m);
    arg_i64(l, (int64_t)v->offset);
}

static launch rows_begin(spin_device *dev, ocl_kid kid, int64_t cols) {
    launch l = {ctx_of(dev)->kernels[kid], 0, CL_SUCCESS, 0};
    arg_i64(&l, cols);
    return l;
}

static spin_status rows_run(spin_device *dev, launch *l, int64_t rows) {
    if (l->err != CL_SUCCESS)
        return args_failed(l);
    if (rows <= 0)
        return SPIN_OK;
    if (ctx_of(dev)->max_group < ctx_of(dev)->row_group)
        return spin_fail(SPIN_ERR_DEVICE, "%s: work-groups of %zu are not supported", dev->name,
                         ctx_of(dev)->row_group);
    size_t local = ctx_of(dev)->row_group, global = (size_t)rows * local;
    CL_CHECK(clEnqueueNDRangeKernel(ctx_of(dev)->queue, l->k, 1, NULL, &global, &local, 0, NULL, NULL));
    return SPIN_OK;
}

static spin_status softmax_fwd(spin_device *dev, const spin_kcall *c, cl_int mode) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_softmax_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    arg_(&l, sizeof mode, &mode);
    return rows_run(dev, &l, rows);
}

static spin_status softmax_bwd(spin_device *dev, const spin_kcall *c, cl_int mode) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_softmax_back_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->out[0]);
    arg_(&l, sizeof mode, &mode);
    return rows_run(dev, &l, rows);
}

OCL_WRAP_(SOFTMAX, softmax_fwd, 0)
OCL_WRAP_(LOG_SOFTMAX, softmax_fwd, 1)
OCL_WRAP_(SOFTMAX_BACK, softmax_bwd, 0)
OCL_WRAP_(LOG_SOFTMAX_BACK, softmax_bwd, 1)
#undef OCL_WRAP_

static spin_status ocl_RMSNORM(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_rmsnorm_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    arg_f32(&l, c->p.f[0]);
    return rows_run(dev, &l, rows);
}

static spin_status ocl_RMSNORM_BACK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_rmsnorm_back_rows_f32, cols);
    for (int i = 0; i < 4; i++)
        arg_buf(&l, &c->in[i]);
    arg_buf(&l, &c->out[0]);
    spin_status s = rows_run(dev, &l, rows);
    if (s != SPIN_OK)
        return s;
    launch d = {ctx_of(dev)->kernels[OK_rmsnorm_dw_f32], 0, CL_SUCCESS, 0};
    arg_i64(&d, rows);
    arg_i64(&d, cols);
    arg_buf(&d, &c->in[0]);
    arg_buf(&d, &c->in[2]);
    arg_buf(&d, &c->in[3]);
    arg_buf(&d, &c->out[1]);
    return launch_run(dev, &d, cols);
}

static spin_status ocl_LAYERNORM(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_layernorm_rows_f32, cols);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->in[i]);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->out[i]);
    arg_f32(&l, c->p.f[0]);
    return rows_run(dev, &l, rows);
}

static spin_status ocl_LAYERNORM_BACK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_layernorm_back_rows_f32, cols);
    for (int i = 0; i < 5; i++)
        arg_buf(&l, &c->in[i]);
    arg_buf(&l, &c->out[0]);
    spin_status s = rows_run(dev, &l, rows);
    if (s != SPIN_OK)
        return s;
    launch d = {ctx_of(dev)->kernels[OK_layernorm_dwdb_f32], 0, CL_SUCCESS, 0};
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

static spin_status ocl_ROPE(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *x = &c->in[0];
    if (x->ndim != 4)
        return spin_fail(SPIN_ERR_INVALID, "ROPE: x must be [B, H, T, D] (got %d dims)", x->ndim);
    const int64_t H = x->shape[1], T = x->shape[2], D = x->shape[3];
    const int64_t total = x->shape[0] * H * T * (D / 2 + (D & 1));
    launch l = {ctx_of(dev)->kernels[OK_rope_f32], 0, CL_SUCCESS, 0};
    arg_i64(&l, H);
    arg_i64(&l, T);
    arg_i64(&l, D);
    arg_i64(&l, total);
    arg_buf(&l, x);
    arg_buf(&l, &c->in[1]);
    arg_buf(&l, &c->in[2]);
    arg_buf(&l, &c->out[0]);
    cl_int inter = c->p.i[0] == SPIN_ROPE_INTERLEAVED, inv = c->p.i[1] != 0;
    arg_(&l, sizeof inter, &inter);
    arg_(&l, sizeof inv, &inv);
    return launch_run(dev, &l, total);
}

static spin_status ocl_ARGMAX(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    launch l = rows_begin(dev, OK_argmax_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    return rows_run(dev, &l, rows);
}

/* ---- attention (backends/kernels/attention.cl): one work-group per output row ---- */

#define ATTN_GROUP 64 /* as backends/kernels/attention.cl */

/* The shape arguments (Hq, Hkv, Tq, Tk, D) after the checks of backends/cpu/cpu_attention.c; *rows
 * gets the group count: query rows, or key rows with `by_key`. */
static spin_status attn_begin(spin_device *dev, ocl_kid kid, const spin_kcall *c, int qpos_slot,
                              const char *name, bool by_key, launch *l, int64_t *rows) {
    spin_attn_shape sh;
    spin_status st = spin_attn_shape_check(c, qpos_slot, name, &sh);
    if (st != SPIN_OK)
        return st;
    const int64_t B = sh.B, Hq = sh.Hq, Tq = sh.Tq, D = sh.D, Hkv = sh.Hkv, Tk = sh.Tk;
    *l = (launch){ctx_of(dev)->kernels[kid], 0, CL_SUCCESS, 0};
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
    cl_int h = has;
    arg_(l, sizeof h, &h);
}

static spin_status attn_run(spin_device *dev, launch *l, const spin_kcall *c, int64_t rows) {
    arg_f32(l, c->p.f[0]);
    arg_i64(l, c->p.i[0]);
    if (l->err != CL_SUCCESS)
        return args_failed(l);
    if (rows <= 0)
        return SPIN_OK;
    if (ctx_of(dev)->max_group < ATTN_GROUP)
        return spin_fail(SPIN_ERR_DEVICE, "%s: work-groups of %d are not supported", dev->name, ATTN_GROUP);
    size_t local = ATTN_GROUP, global = (size_t)rows * ATTN_GROUP;
    CL_CHECK(clEnqueueNDRangeKernel(ctx_of(dev)->queue, l->k, 1, NULL, &global, &local, 0, NULL, NULL));
    return SPIN_OK;
}

static spin_status ocl_ATTENTION(struct spin_device *dev, const spin_kcall *c) {
    launch l;
    int64_t rows;
    SPIN_TRY(attn_begin(dev, OK_attention_fwd_f32, c, 3, "ATTENTION", false, &l, &rows));
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->in[i]);
    attn_mask_args(&l, c, 3);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    return attn_run(dev, &l, c, rows);
}

/* dq over query rows, then dk and dv over key rows: each launch owns its output rows whole. */
static spin_status ocl_ATTENTION_BACK(struct spin_device *dev, const spin_kcall *c) {
    launch l;
    int64_t rows;
    SPIN_TRY(attn_begin(dev, OK_attention_back_dq_f32, c, 6, "ATTENTION_BACK", false, &l, &rows));
    for (int i = 0; i < 6; i++)
        arg_buf(&l, &c->in[i]);
    attn_mask_args(&l, c, 6);
    arg_buf(&l, &c->out[0]);
    SPIN_TRY(attn_run(dev, &l, c, rows));
    SPIN_TRY(attn_begin(dev, OK_attention_back_dkdv_f32, c, 6, "ATTENTION_BACK", true, &l, &rows));
    for (int i = 0; i < 6; i++)
        arg_buf(&l, &c->in[i]);
    attn_mask_args(&l, c, 6);
    arg_buf(&l, &c->out[1]);
    arg_buf(&l, &c->out[2]);
    return attn_run(dev, &l, c, rows);
}

/* ---- optimizer kernels (backends/kernels/optim.cl) ---- */

#define OPTIM_BLOCK 4096 /* as optim.cl and backends/cpu/cpu_optim.c */

static spin_status ocl_GRAD_SUMSQ(struct spin_device *dev, const spin_kcall *c) {
    ocl_ctx *cx = ctx_of(dev);
    const spin_view *g = &c->in[0], *acc = &c->out[0];
    int64_t n = numel(g), nb = (n + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
    /* 8 bytes per partial whatever acc_t is on this device */
    size_t need = (size_t)(nb > 0 ? nb : 1) * 8;
    if (cx->scratch_bytes < need) {
        if (cx->scratch)
            clReleaseMemObject(cx->scratch); /* queued launches keep it alive until they finish */
        cx->scratch = ocl_alloc(dev, need);
        cx->scratch_bytes = cx->scratch ? need : 0;
        if (!cx->scratch)
            return SPIN_ERR_OOM;
    }
    launch l = rows_begin(dev, OK_grad_sumsq_blocks_f32, n);
    arg_buf(&l, g);
    arg_(&l, sizeof cx->scratch, &cx->scratch);
    spin_status s = rows_run(dev, &l, nb);
    if (s != SPIN_OK)
        return s;
    launch m = {cx->kernels[OK_grad_sumsq_combine_f32], 0, CL_SUCCESS, 0};
    arg_i64(&m, nb);
    arg_(&m, sizeof cx->scratch, &cx->scratch);
    arg_buf(&m, acc);
    return launch_run(dev, &m, 1);
}

static spin_status ocl_GRAD_CLIP_STAT(struct spin_device *dev, const spin_kcall *c) {
    launch l = {ctx_of(dev)->kernels[OK_grad_clip_stat_f32], 0, CL_SUCCESS, 0};
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
    cl_int kind = !has ? 0 : v->dtype == SPIN_BF16 ? 2 : v->dtype == SPIN_F16 ? 3 : 1;
    arg_(l, sizeof kind, &kind);
}

static spin_status ocl_RMSPROP_STEP(struct spin_device *dev, const spin_kcall *c) {
    int64_t n = numel(&c->out[0]);
    launch l = {ctx_of(dev)->kernels[OK_rmsprop_step_f32], 0, CL_SUCCESS, 0};
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

static spin_status ocl_ADAMW_STEP(struct spin_device *dev, const spin_kcall *c) {
    int64_t n = numel(&c->out[0]);
    launch l = {ctx_of(dev)->kernels[OK_adamw_step_f32], 0, CL_SUCCESS, 0};
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

static spin_status rng(spin_device *dev, const spin_kcall *c, ocl_kid kid) {
    const spin_view *y = &c->out[0];
    int64_t n = numel(y);
    launch l = {ctx_of(dev)->kernels[kid], 0, CL_SUCCESS, 0};
    arg_i64(&l, n);
    arg_buf(&l, y);
    arg_i64(&l, c->p.i[0]);
    arg_i64(&l, c->p.i[1]);
    return launch_run(dev, &l, n);
}

static spin_status ocl_RNG_UNIFORM(struct spin_device *dev, const spin_kcall *c) {
    return rng(dev, c, OK_rng_uniform_f32);
}

static spin_status ocl_RNG_NORMAL(struct spin_device *dev, const spin_kcall *c) {
    return rng(dev, c, OK_rng_normal_f32);
}

/* ---- kernels that index with ids (embedding.cl, cross_entropy.cl): ids checked first (ids.cl) ---- */

/* ids_scratch with room for `ints` 32-bit integers (EMBEDDING_BACK's chains). Queued launches keep
 * a released buffer alive until they finish. */
static spin_status ids_scratch(spin_device *dev, size_t ints) {
    ocl_ctx *cx = ctx_of(dev);
    size_t need = ints * sizeof(cl_int);
    if (cx->ids_scratch_bytes >= need)
        return SPIN_OK;
    if (cx->ids_scratch)
        clReleaseMemObject(cx->ids_scratch);
    cx->ids_scratch = ocl_alloc(dev, need);
    cx->ids_scratch_bytes = cx->ids_scratch ? need : 0;
    return cx->ids_scratch ? SPIN_OK : SPIN_ERR_OOM;
}

/* Checks ids (n, contiguous) against [0, v) (`ignore` allowed) on the device, reading nothing back:
 * check_ids_i32 finds the lowest bad position and check_ids_note records it with its id unless an
 * earlier check failed. The kernels that follow skip what a bad id would index; the error reaches
 * the host at the next to_host or synchronize (ids_err_verdict). */
static spin_status check_ids(spin_device *dev, const spin_view *ids, int64_t n, int64_t v, int64_t ignore,
                             spin_ids_kernel kernel) {
    if (n <= 0)
        return SPIN_OK;
    if (n > INT32_MAX)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%lld ids: the device id check counts positions in 32 bits",
                         (long long)n);
    ocl_ctx *cx = ctx_of(dev);
    if (!cx->ids_err) { /* once per device: one small blocking write */
        cl_mem m = ocl_alloc(dev, sizeof cx->ids_err_host);
        if (!m)
            return SPIN_ERR_OOM;
        spin_ids_record_clear(cx->ids_err_host);
        spin_status s = ocl_from_host(dev, m, 0, cx->ids_err_host, sizeof cx->ids_err_host);
        if (s != SPIN_OK) {
            clReleaseMemObject(m);
            return s;
        }
        cx->ids_err = m;
    }
    launch l = {cx->kernels[OK_check_ids_i32], 0, CL_SUCCESS, 0};
    launch note = {cx->kernels[OK_check_ids_note], 0, CL_SUCCESS, 0};
    launch *both[2] = {&l, &note};
    for (int i = 0; i < 2; i++) {
        arg_i64(both[i], n);
        arg_buf(both[i], ids);
        arg_i64(both[i], v);
        arg_i64(both[i], ignore);
        arg_(both[i], sizeof cx->ids_err, &cx->ids_err);
        arg_i64(both[i], 0);
    }
    cl_int code = (cl_int)kernel;
    arg_(&note, sizeof code, &code);
    SPIN_TRY(launch_run(dev, &l, n));
    return launch_run(dev, &note, 1);
}

#define NO_IGNORE INT64_MIN /* no i32 id equals it */

static spin_status ocl_EMBEDDING(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *w = &c->in[0], *ids = &c->in[1], *y = &c->out[0];
    const int64_t v = w->shape[0], cols = w->shape[1], n = numel(ids);
    SPIN_TRY(check_ids(dev, ids, n, v, NO_IGNORE, SPIN_IDS_EMBEDDING));
    launch l = rows_begin(dev, spin_dtype_size(w->dtype) == 4 ? OK_embedding_b32 : OK_embedding_b16, cols);
    arg_i64(&l, n * cols);
    arg_buf(&l, w);
    arg_i64(&l, v);
    arg_buf(&l, ids);
    arg_buf(&l, y);
    return launch_run(dev, &l, n * cols);
}

/* dw by chains of positions per id (ids.cl, embedding.cl): heads [V] then next [N] in ids_scratch. */
static spin_status ocl_EMBEDDING_BACK(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *ids = &c->in[0], *dy = &c->in[1], *dw = &c->out[0];
    const int64_t v = c->p.i[0], cols = dw->shape[1], n = numel(ids);
    if (v != dw->shape[0])
        return spin_fail(SPIN_ERR_INVALID, "embedding backward: V = %lld but dw has %lld rows", (long long)v,
                         (long long)dw->shape[0]);
    SPIN_TRY(check_ids(dev, ids, n, v, NO_IGNORE, SPIN_IDS_EMBEDDING_BACK));
    SPIN_TRY(ids_scratch(dev, (size_t)(v + n > 0 ? v + n : 1)));
    ocl_ctx *cx = ctx_of(dev);
    cl_mem s = cx->ids_scratch;
    cl_int nn = (cl_int)n;
    launch h = {cx->kernels[OK_fill_heads_i32], 0, CL_SUCCESS, 0};
    arg_i64(&h, v);
    arg_(&h, sizeof s, &s);
    arg_i64(&h, 0);
    arg_(&h, sizeof nn, &nn);
    SPIN_TRY(launch_run(dev, &h, v));
    launch ch = {cx->kernels[OK_embedding_heads_i32], 0, CL_SUCCESS, 0};
    arg_i64(&ch, n);
    arg_buf(&ch, ids);
    arg_i64(&ch, v);
    arg_(&ch, sizeof s, &s);
    arg_i64(&ch, 0);
    arg_(&ch, sizeof s, &s);
    arg_i64(&ch, v);
    SPIN_TRY(launch_run(dev, &ch, n));
    launch l = rows_begin(dev, OK_embedding_back_f32, cols);
    arg_i64(&l, v * cols);
    arg_buf(&l, dy);
    arg_(&l, sizeof s, &s);
    arg_i64(&l, 0);
    arg_(&l, sizeof s, &s);
    arg_i64(&l, v);
    arg_buf(&l, dw);
    arg_(&l, sizeof nn, &nn);
    return launch_run(dev, &l, v * cols);
}

static spin_status ocl_CE_ROWS(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    SPIN_TRY(check_ids(dev, &c->in[1], numel(&c->in[1]), cols, c->p.i[0], SPIN_IDS_CE_ROWS));
    launch l = rows_begin(dev, OK_ce_rows_f32, cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->in[1]);
    for (int i = 0; i < 3; i++)
        arg_buf(&l, &c->out[i]);
    arg_i64(&l, c->p.i[0]);
    return rows_run(dev, &l, rows);
}

static spin_status ocl_CE_ROWS_BACK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    SPIN_TRY(check_ids(dev, &c->in[1], numel(&c->in[1]), cols, c->p.i[0], SPIN_IDS_CE_ROWS_BACK));
    launch l = rows_begin(dev, OK_ce_rows_back_f32, cols);
    arg_i64(&l, rows * cols);
    for (int i = 0; i < 4; i++)
        arg_buf(&l, &c->in[i]);
    arg_buf(&l, &c->out[0]);
    arg_i64(&l, c->p.i[0]);
    return launch_run(dev, &l, rows * cols);
}

/* ---- TOPK (backends/kernels/topk.cl) ---- */

#define TOPK_ROUNDS_MAX 64 /* up to this k, k rounds of a group reduction per row; else ranks */

static spin_status ocl_TOPK(struct spin_device *dev, const spin_kcall *c) {
    int64_t rows, cols;
    rows_cols(&c->in[0], &rows, &cols);
    const int64_t k = c->p.i[0];
    if (k < 0 || k > cols)
        return spin_fail(SPIN_ERR_INVALID, "TOPK: k = %lld outside [0, %lld]", (long long)k, (long long)cols);
    if (k == 0 || rows == 0)
        return SPIN_OK;
    const bool rounds = k <= TOPK_ROUNDS_MAX;
    launch l = rows_begin(dev, rounds ? OK_topk_rounds_f32 : OK_topk_rank_f32, cols);
    if (!rounds)
        arg_i64(&l, rows * cols);
    arg_buf(&l, &c->in[0]);
    arg_buf(&l, &c->out[0]);
    arg_buf(&l, &c->out[1]);
    arg_i64(&l, k);
    return rounds ? rows_run(dev, &l, rows) : launch_run(dev, &l, rows * cols);
}

/* ---- host fallback inside a kernel: for call shapes (not dtypes) this backend cannot express ---- */

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

static spin_status host_fallback(spin_device *dev, spin_kernel k, const spin_kcall *c) {
    if (dev->fallbacks[k]++ == 0)
        spin_log_msg(SPIN_LOG_WARN, "%s cannot run kernel %s for this layout; running it on the CPU",
                     dev->name, spin_kernel_name(k));
    spin_device *cpu = spin_cpu_device();
    spin_kcall h = *c;
    int n = c->n_in + c->n_out;
    void *bufs[SPIN_KMAX_IN + SPIN_KMAX_OUT] = {0};
    size_t bytes[SPIN_KMAX_IN + SPIN_KMAX_OUT] = {0};
    spin_status s = SPIN_OK;
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        spin_view *v = i < c->n_in ? &h.in[i] : &h.out[i - c->n_in];
        bytes[i] = view_extent(v) * spin_dtype_size(v->dtype);
        bufs[i] = spin_device_alloc(cpu, bytes[i]);
        if (!bufs[i]) {
            s = spin_fail(SPIN_ERR_OOM, "CPU fallback: cannot allocate %zu bytes", bytes[i]);
            break;
        }
        s = ocl_to_host(dev, bufs[i], v->buf, 0, bytes[i]);
        v->buf = bufs[i];
    }
    if (s == SPIN_OK)
        s = cpu->backend->kernels[k](cpu, &h);
    for (int i = c->n_in; i < n && s == SPIN_OK; i++)
        s = ocl_from_host(dev, c->out[i - c->n_in].buf, 0, bufs[i], bytes[i]);
    for (int i = 0; i < n; i++)
        spin_device_free(cpu, bufs[i], bytes[i]);
    return s;
}

/* ---- MATMUL through CLBlast ---- */

/* The last two dims of v as a row-major BLAS operand: transposed or not, leading dimension. */
static int blas_layout(const spin_view *v, CLBlastTranspose *trans, int64_t *ld) {
    int nd = v->ndim;
    int64_t r = v->shape[nd - 2], k = v->shape[nd - 1], sr = v->stride[nd - 2], sk = v->stride[nd - 1];
    if ((k == 1 || sk == 1) && (r == 1 || sr >= k)) {
        *trans = CLBlastTransposeNo;
        *ld = r == 1 ? (k > 1 ? k : 1) : sr;
        if (*ld < k)
            *ld = k;
        return 0;
    }
    if ((r == 1 || sr == 1) && (k == 1 || sk >= r)) {
        *trans = CLBlastTransposeYes;
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

/* backends/kernels/gemm.cl: any strides, one launch for every batch (the kernel ROCm uses without rocBLAS).
 */
#define GEMM_TILE 64
#define GEMM_THREADS 256

static spin_status gemm_tiled(spin_device *dev, const spin_kcall *c) {
    const spin_view *a = &c->in[0], *b = &c->in[1], *y = &c->out[0];
    int64_t m = y->shape[y->ndim - 2], n = y->shape[y->ndim - 1], k = a->shape[a->ndim - 1];
    int64_t nb0 = y->ndim == 4 ? y->shape[0] : 1, nb1 = y->ndim >= 3 ? y->shape[y->ndim - 3] : 1;
    int64_t tiles_n = (n + GEMM_TILE - 1) / GEMM_TILE, tiles_mn = tiles_n * ((m + GEMM_TILE - 1) / GEMM_TILE);
    if (ctx_of(dev)->max_group < GEMM_THREADS)
        return spin_fail(SPIN_ERR_DEVICE, "%s: work-groups of %d are not supported", dev->name, GEMM_THREADS);
    launch l = {ctx_of(dev)->kernels[OK_gemm_tiled_f32], 0, CL_SUCCESS, 0};
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
    if (l.err != CL_SUCCESS)
        return args_failed(&l);
    size_t local = GEMM_THREADS, global = (size_t)(nb0 * nb1 * tiles_mn) * GEMM_THREADS;
    if (m == 0 || n == 0 || nb0 * nb1 == 0)
        return SPIN_OK;
    CL_CHECK(clEnqueueNDRangeKernel(ctx_of(dev)->queue, l.k, 1, NULL, &global, &local, 0, NULL, NULL));
    return SPIN_OK;
}

static spin_status ocl_MATMUL(struct spin_device *dev, const spin_kcall *c) {
    const spin_view *a = &c->in[0], *b = &c->in[1], *y = &c->out[0];
    if (ctx_of(dev)->gemm_tiled)
        return gemm_tiled(dev, c);
    CLBlastTranspose ta, tb, tc;
    int64_t lda, ldb, ldc;
    if (a->ndim < 2 || b->ndim < 2 || y->ndim < 2 || blas_layout(a, &ta, &lda) || blas_layout(b, &tb, &ldb) ||
        blas_layout(y, &tc, &ldc) || tc != CLBlastTransposeNo)
        return host_fallback(dev, SPIN_K_MATMUL, c);
    int64_t m = y->shape[y->ndim - 2], n = y->shape[y->ndim - 1], k = a->shape[a->ndim - 1];
    float alpha = c->p.f[0], beta = c->p.f[1];
    if (m == 0 || n == 0 || numel(y) == 0)
        return SPIN_OK;
    /* beta == 0 must not read c (it may hold NaN); k == 0 leaves beta * c. */
    if (beta == 0.0f || k == 0) {
        spin_status s = beta == 0.0f ? fill(dev, y, 0.0f) : unary_p(dev, y, y, OK_scale_f32, beta, 0.0f);
        if (s != SPIN_OK || k == 0)
            return s;
    }
    int64_t nb0 = y->ndim == 4 ? y->shape[0] : 1, nb1 = y->ndim >= 3 ? y->shape[y->ndim - 3] : 1;
    ocl_ctx *cx = ctx_of(dev);
    for (int64_t i0 = 0; i0 < nb0; i0++) {
        size_t ao = a->offset + (size_t)(i0 * bstride(a, 0)), bo = b->offset + (size_t)(i0 * bstride(b, 0)),
               yo = y->offset + (size_t)(i0 * bstride(y, 0));
        CLBlastStatusCode st;
        if (nb1 == 1)
            st = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)m, (size_t)n, (size_t)k, alpha,
                              (cl_mem)a->buf, ao, (size_t)lda, (cl_mem)b->buf, bo, (size_t)ldb, beta,
                              (cl_mem)y->buf, yo, (size_t)ldc, &cx->queue, NULL);
        else
            st = CLBlastSgemmStridedBatched(
                CLBlastLayoutRowMajor, ta, tb, (size_t)m, (size_t)n, (size_t)k, alpha, (cl_mem)a->buf, ao,
                (size_t)lda, (size_t)bstride(a, 1), (cl_mem)b->buf, bo, (size_t)ldb, (size_t)bstride(b, 1),
                beta, (cl_mem)y->buf, yo, (size_t)ldc, (size_t)bstride(y, 1), (size_t)nb1, &cx->queue, NULL);
        if (st != CLBlastSuccess)
            return spin_fail(SPIN_ERR_DEVICE, "%s:%d: CLBlast %s failed: status %d (m=%lld n=%lld k=%lld)",
                             __FILE__, __LINE__, nb1 == 1 ? "Sgemm" : "SgemmStridedBatched", (int)st,
                             (long long)m, (long long)n, (long long)k);
    }
    return SPIN_OK;
}

/* ---- capabilities ---- */

static bool ocl_supports(spin_device *dev, spin_kernel k, const spin_dtype *in, int n_in,
                         const spin_dtype *out, int n_out) {
    bool f32_or_i32 = true;
    for (int i = 0; i < n_in; i++)
        f32_or_i32 &= in[i] == SPIN_F32 || in[i] == SPIN_I32;
    for (int i = 0; i < n_out; i++)
        f32_or_i32 &= out[i] == SPIN_F32 || out[i] == SPIN_I32;
    if (k == SPIN_K_COPY)
        return copy_kid(in[0], out[0]) != OK_COUNT;
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
    if (k == SPIN_K_ROPE) /* the angle needs double precision, as in the CPU reference */
        return ctx_of(dev)->fp64 && in[0] == SPIN_F32 && in[1] == SPIN_I32 && in[2] == SPIN_F32 &&
               out[0] == SPIN_F32;
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

static void ocl_describe(spin_device *dev, char *buf, size_t size) {
    ocl_ctx *c = ctx_of(dev);
    char pn[128], pv[128], dn[128], cv[64];
    platform_str(c->platform, CL_PLATFORM_NAME, pn, sizeof pn);
    platform_str(c->platform, CL_PLATFORM_VERSION, pv, sizeof pv);
    device_str(c->device, CL_DEVICE_NAME, dn, sizeof dn);
    device_str(c->device, CL_DEVICE_OPENCL_C_VERSION, cv, sizeof cv);
    int native = 0;
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
        native += dev->backend->kernels[k] != NULL;
    snprintf(buf, size,
             "platform %s (%s); device %s; %s; GEMM: %s %s; row groups of %zu; %d of %d kernels native, "
             "others on the CPU",
             pn, pv, dn, cv, c->gemm_tiled ? "tiled kernel (SPIN_GEMM=tiled), not" : "CLBlast",
             SPIN_CLBLAST_VERSION, c->row_group, native, (int)SPIN_KERNEL_COUNT);
}

/* Kernels without an entry stay NULL: the dispatcher runs them on the CPU (logged, counted). */
static const spin_backend opencl_backend = {
    .api_version = SPIN_BACKEND_API_VERSION,
    .name = "opencl",
    .device_count = ocl_device_count,
    .device_open = ocl_device_open,
    .device_close = ocl_device_close,
    .alloc = ocl_alloc,
    .free = ocl_free,
    .to_host = ocl_to_host,
    .from_host = ocl_from_host,
    .copy = ocl_copy,
    .synchronize = ocl_synchronize,
    .supports = ocl_supports,
    .describe = ocl_describe,
#define E_(name) [SPIN_K_##name] = ocl_##name,
    /* clang-format off */
    .kernels = {E_(COPY) E_(FILL) E_(ARANGE) E_(WHERE) E_(SUM_AXIS) E_(SUMSQ_AXIS) E_(ADD) E_(SUB) E_(MUL)
                    E_(DIV) E_(SCALE) E_(EXP) E_(LOG) E_(SQRT) E_(RSQRT) E_(NEG) E_(SILU) E_(GELU) E_(RELU)
                        E_(LOGSIGMOID) E_(CLAMP) E_(SILU_BACK) E_(GELU_BACK) E_(RELU_BACK) E_(LOGSIGMOID_BACK)
                            E_(CLAMP_BACK) E_(MATMUL) E_(SOFTMAX) E_(LOG_SOFTMAX) E_(SOFTMAX_BACK)
                                E_(LOG_SOFTMAX_BACK) E_(RMSNORM) E_(RMSNORM_BACK) E_(LAYERNORM)
                                    E_(LAYERNORM_BACK) E_(ROPE) E_(ARGMAX)
                E_(RNG_UNIFORM) E_(RNG_NORMAL) E_(EMBEDDING) E_(EMBEDDING_BACK) E_(CE_ROWS) E_(CE_ROWS_BACK)
                E_(TOPK)
                E_(GRAD_SUMSQ) E_(GRAD_CLIP_STAT) E_(RMSPROP_STEP) E_(ADAMW_STEP)
                E_(ATTENTION) E_(ATTENTION_BACK)},
/* clang-format on */
#undef E_
};

const spin_backend *spin_opencl_backend(void) {
    return &opencl_backend;
}
