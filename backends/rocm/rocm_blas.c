/* MATMUL's vendor GEMM on ROCm: rocBLAS loaded at run time with dlopen (Debian 12 packages no rocBLAS
 * or hipBLAS headers, so the few entry points are declared here from rocBLAS's documented C API).
 * When the library cannot be loaded the backend uses the tiled GEMM kernel of the shared text.
 * SPIN_ROCBLAS_LIBRARY names the library file; otherwise the usual sonames are tried. f32 GEMMs
 * compute in f32; bf16 and f16 operands accumulate in f32. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/gpu/gpu_blas.h"
#include "core/log.h"

/* rocblas.h's types and constants (rocblas-types.h; enums are C ints, rocblas_int is int32_t,
 * rocblas_stride is int64_t). */
typedef struct rocblas_handle_ *rocblas_handle;
typedef int rocblas_status;
enum { rocblas_status_success = 0 };
enum { rocblas_operation_none = 111, rocblas_operation_transpose = 112 };
enum { rocblas_datatype_f16_r = 150, rocblas_datatype_f32_r = 151, rocblas_datatype_bf16_r = 168 };
enum { rocblas_gemm_algo_standard = 0 };

typedef rocblas_status (*create_handle_fn)(rocblas_handle *);
typedef rocblas_status (*destroy_handle_fn)(rocblas_handle);
typedef rocblas_status (*set_stream_fn)(rocblas_handle, hipStream_t);
typedef rocblas_status (*gemm_ex_fn)(rocblas_handle, int trans_a, int trans_b, int32_t m, int32_t n,
                                     int32_t k, const void *alpha, const void *a, int a_type, int32_t lda,
                                     const void *b, int b_type, int32_t ldb, const void *beta, const void *c,
                                     int c_type, int32_t ldc, void *d, int d_type, int32_t ldd,
                                     int compute_type, int algo, int32_t solution_index, uint32_t flags);
typedef rocblas_status (*gemm_strided_batched_ex_fn)(rocblas_handle, int trans_a, int trans_b, int32_t m,
                                                     int32_t n, int32_t k, const void *alpha, const void *a,
                                                     int a_type, int32_t lda, int64_t stride_a, const void *b,
                                                     int b_type, int32_t ldb, int64_t stride_b,
                                                     const void *beta, const void *c, int c_type, int32_t ldc,
                                                     int64_t stride_c, void *d, int d_type, int32_t ldd,
                                                     int64_t stride_d, int32_t batch_count, int compute_type,
                                                     int algo, int32_t solution_index, uint32_t flags);
typedef const char *(*status_to_string_fn)(rocblas_status);
typedef rocblas_status (*get_version_string_fn)(char *buf, size_t len);

struct gpu_blas {
    void *lib;
    char path[128];
    char version[64];
    rocblas_handle h;
    destroy_handle_fn destroy_handle;
    gemm_ex_fn gemm_ex;
    gemm_strided_batched_ex_fn gemm_strided_batched_ex;
    status_to_string_fn status_to_string; /* optional */
};

static const char *status_str(const gpu_blas *b, rocblas_status st) {
    return b->status_to_string ? b->status_to_string(st) : "rocblas_status";
}

#define ROCBLAS_CHECK(b, call)                                                                        \
    do {                                                                                              \
        rocblas_status st_ = (call);                                                                  \
        if (st_ != rocblas_status_success)                                                            \
            return spin_fail(SPIN_ERR_DEVICE, "%s:%d: %s failed: %s (%d)", __FILE__, __LINE__, #call, \
                             status_str(b, st_), (int)st_);                                           \
    } while (0)

static spin_status load(gpu_blas *b, gpuStream_t stream, char *why, size_t why_size) {
    const char *env = getenv("SPIN_ROCBLAS_LIBRARY");
    const char *names[] = {"librocblas.so", "librocblas.so.4", "librocblas.so.3", "librocblas.so.0"};
    if (env && *env) {
        b->lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!b->lib)
            return spin_fail(SPIN_ERR_INVALID, "SPIN_ROCBLAS_LIBRARY=%s: %s", env, dlerror());
        snprintf(b->path, sizeof b->path, "%s", env);
    } else {
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !b->lib; i++) {
            b->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
            if (b->lib)
                snprintf(b->path, sizeof b->path, "%s", names[i]);
        }
        if (!b->lib) {
            snprintf(why, why_size,
                     "rocBLAS not found: dlopen(librocblas.so) failed; set SPIN_ROCBLAS_LIBRARY");
            return SPIN_OK;
        }
    }
    create_handle_fn create_handle = (create_handle_fn)dlsym(b->lib, "rocblas_create_handle");
    set_stream_fn set_stream = (set_stream_fn)dlsym(b->lib, "rocblas_set_stream");
    b->destroy_handle = (destroy_handle_fn)dlsym(b->lib, "rocblas_destroy_handle");
    b->gemm_ex = (gemm_ex_fn)dlsym(b->lib, "rocblas_gemm_ex");
    b->gemm_strided_batched_ex = (gemm_strided_batched_ex_fn)dlsym(b->lib, "rocblas_gemm_strided_batched_ex");
    b->status_to_string = (status_to_string_fn)dlsym(b->lib, "rocblas_status_to_string");
    get_version_string_fn version = (get_version_string_fn)dlsym(b->lib, "rocblas_get_version_string");
    if (!create_handle || !set_stream || !b->destroy_handle || !b->gemm_ex || !b->gemm_strided_batched_ex)
        return spin_fail(SPIN_ERR_DEVICE,
                         "%s: a rocBLAS entry point is missing (rocblas_create_handle, "
                         "rocblas_set_stream, rocblas_destroy_handle, rocblas_gemm_ex, "
                         "rocblas_gemm_strided_batched_ex)",
                         b->path);
    if (!version || version(b->version, sizeof b->version) != rocblas_status_success)
        snprintf(b->version, sizeof b->version, "unknown version");
    ROCBLAS_CHECK(b, create_handle(&b->h));
    ROCBLAS_CHECK(b, set_stream(b->h, stream));
    return SPIN_OK;
}

spin_status gpu_blas_open(gpu_blas **out, gpuStream_t stream, char *why, size_t why_size) {
    *out = NULL;
    gpu_blas *b = calloc(1, sizeof *b);
    if (!b)
        return spin_fail(SPIN_ERR_OOM, "out of host memory");
    spin_status s = load(b, stream, why, why_size);
    if (s != SPIN_OK || !b->lib) {
        gpu_blas_close(b);
        return s;
    }
    *out = b;
    return SPIN_OK;
}

void gpu_blas_close(gpu_blas *b) {
    if (!b)
        return;
    rocblas_status st = b->h && b->destroy_handle ? b->destroy_handle(b->h) : rocblas_status_success;
    if (st != rocblas_status_success)
        spin_log_msg(SPIN_LOG_ERROR, "%s:%d: rocblas_destroy_handle failed: %s (%d)", __FILE__, __LINE__,
                     status_str(b, st), (int)st);
    if (b->lib && dlclose(b->lib) != 0)
        spin_log_msg(SPIN_LOG_ERROR, "%s:%d: dlclose(%s) failed: %s", __FILE__, __LINE__, b->path, dlerror());
    free(b);
}

static int rocblas_type(spin_dtype t) {
    switch (t) {
    case SPIN_F32: return rocblas_datatype_f32_r;
    case SPIN_BF16: return rocblas_datatype_bf16_r;
    case SPIN_F16: return rocblas_datatype_f16_r;
    default: return -1;
    }
}

bool gpu_blas_supports(const gpu_blas *b, spin_dtype a, spin_dtype bt, spin_dtype c) {
    (void)b;
    if (a != bt || rocblas_type(a) < 0)
        return false;
    return c == SPIN_F32 || c == a;
}

bool gpu_blas_needs_zeroed_c(const gpu_blas *b) {
    (void)b;
    return true; /* whichever rocBLAS is installed: do not rely on it skipping c when beta == 0 */
}

spin_status gpu_blas_gemm(gpu_blas *b, int64_t m, int64_t n, int64_t k, float alpha,
                          const gpu_blas_operand *a, const gpu_blas_operand *bb, float beta, void *c,
                          spin_dtype c_dtype, int64_t ldc, int64_t c_stride, int64_t batch) {
    int ta = rocblas_type(a->dtype), tb = rocblas_type(bb->dtype), tc = rocblas_type(c_dtype);
    if (ta < 0 || tb < 0 || tc < 0)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "rocBLAS GEMM: unsupported operand types");
    /* Row-major c = a @ b is column-major c^T = b^T @ a^T: swap the operands, keep the strides. */
    int opb = bb->trans ? rocblas_operation_transpose : rocblas_operation_none;
    int opa = a->trans ? rocblas_operation_transpose : rocblas_operation_none;
    if (batch == 1)
        ROCBLAS_CHECK(b,
                      b->gemm_ex(b->h, opb, opa, (int32_t)n, (int32_t)m, (int32_t)k, &alpha, bb->ptr, tb,
                                 (int32_t)bb->ld, a->ptr, ta, (int32_t)a->ld, &beta, c, tc, (int32_t)ldc, c,
                                 tc, (int32_t)ldc, rocblas_datatype_f32_r, rocblas_gemm_algo_standard, 0, 0));
    else
        ROCBLAS_CHECK(b, b->gemm_strided_batched_ex(
                             b->h, opb, opa, (int32_t)n, (int32_t)m, (int32_t)k, &alpha, bb->ptr, tb,
                             (int32_t)bb->ld, bb->stride, a->ptr, ta, (int32_t)a->ld, a->stride, &beta, c, tc,
                             (int32_t)ldc, c_stride, c, tc, (int32_t)ldc, c_stride, (int32_t)batch,
                             rocblas_datatype_f32_r, rocblas_gemm_algo_standard, 0, 0));
    return SPIN_OK;
}

void gpu_blas_describe(const gpu_blas *b, char *buf, size_t size) {
    snprintf(buf, size, "rocBLAS %s (%s, loaded at run time; rocblas_gemm_ex, f32 accumulation)", b->version,
             b->path);
}
