/* The thin macro layer that lets the kernel text in backends/kernels (the .cl files) compile as OpenCL C 1.2
 * and, later, as CUDA or HIP: entry points, address spaces, thread indices and math functions.
 * The build embeds this header, then every .cl file, into the binary as one string. */
#ifndef SPIN_KERNEL_H
#define SPIN_KERNEL_H

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
/* Formulas are evaluated as written, as the C reference does (no a*b+c contraction into fma). */
#pragma OPENCL FP_CONTRACT OFF
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t; /* reduction accumulator: double where the device has it */
#else
typedef float acc_t;
#endif
#define KERNEL __kernel void
#define DEVICE_FN static inline
#define GLOBAL __global
#define LOCAL __local     /* a local-memory array declared in a kernel */
#define LOCAL_PTR __local /* a pointer parameter into local memory */
#define GLOBAL_ID0 ((i64)get_global_id(0))
#define LOCAL_ID0 ((int)get_local_id(0))
#define GROUP_ID0 ((i64)get_group_id(0))
#define LOCAL_SIZE0 ((int)get_local_size(0))
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
typedef long i64;
#define M_EXP(x) exp(x)
#define M_LOG(x) log(x)
#define M_LOG1P(x) log1p(x)
#define M_SQRT(x) sqrt(x)
#define M_TANH(x) tanh(x)
#define F2I_RTE(x) convert_int_rte(x) /* round to nearest even, as lrintf */
#else                                 /* CUDA / HIP */
#define KERNEL extern "C" __global__ void
#define DEVICE_FN static __device__ __forceinline__
#define GLOBAL
#define LOCAL __shared__
#define LOCAL_PTR
#define GLOBAL_ID0 ((i64)blockIdx.x * blockDim.x + threadIdx.x)
#define LOCAL_ID0 ((int)threadIdx.x)
#define GROUP_ID0 ((i64)blockIdx.x)
#define LOCAL_SIZE0 ((int)blockDim.x)
#define BARRIER() __syncthreads()
typedef long long i64;
#define M_EXP(x) expf(x)
#define M_LOG(x) logf(x)
#define M_LOG1P(x) log1pf(x)
#define M_SQRT(x) sqrtf(x)
#define M_TANH(x) tanhf(x)
#define F2I_RTE(x) __float2int_rn(x)
typedef double acc_t;

#endif

/* CUDA / HIP only (backends/gpu compiles this text as CUDA with nvcc and as HIP with hipcc): the
 * wave (warp) width comes from the architecture, never a constant: warpSize is 32 on NVIDIA; on
 * AMD it is __AMDGCN_WAVEFRONT_SIZE, 64 on gfx9/CDNA (gfx90a) and 32 on RDNA (gfx10+ default). */
#if !defined(__OPENCL_VERSION__) && !defined(__OPENCL_C_VERSION__)
#if defined(__HIP__) || defined(__HIPCC__)
#ifdef __AMDGCN_WAVEFRONT_SIZE
#define WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE
#else /* hipcc's host pass parses device code too; warpSize is the same width there */
#define WAVE_SIZE warpSize
#endif
#define WAVE_SHFL_DOWN(v, d) __shfl_down((v), (d))
#else
#define WAVE_SIZE warpSize
#define WAVE_SHFL_DOWN(v, d) __shfl_down_sync(0xffffffffu, (v), (d))
#endif
#define WAVE_LANE ((int)(threadIdx.x % WAVE_SIZE))
#endif

/* Strided 4-D views: every view argument is (pointer, element offset, four strides); the output's
 * shape is passed as n1, n2, n3 and the element count. Stride 0 broadcasts. */
#define VIEW_ARGS(p) i64 p##o, i64 p##s0, i64 p##s1, i64 p##s2, i64 p##s3
#define SHAPE_ARGS i64 n1, i64 n2, i64 n3, i64 total
#define AT(p) (p##o + i0 * p##s0 + i1 * p##s1 + i2 * p##s2 + i3 * p##s3)
#define INDEX4()                \
    const i64 gid = GLOBAL_ID0; \
    if (gid >= total)           \
        return;                 \
    const i64 i3 = gid % n3, t3_ = gid / n3, i2 = t3_ % n2, t2_ = t3_ / n2, i1 = t2_ % n1, i0 = t2_ / n1

/* Whether (a, ia) ranks before (b, ib): NaN first, then larger values, ties to the lower index
 * (backends/cpu/cpu_index.c). A total order, so any reduction tree gives the sequential answer. */
DEVICE_FN int ranks_before(float a, i64 ia, float b, i64 ib) {
    const int na = isnan(a), nb = isnan(b);
    if (na != nb)
        return na;
    if (!na && a != b)
        return a > b;
    return ia < ib;
}

/* (bv, bi) = the better of itself and (v, i) under ranks_before; i < 0 marks "nothing yet". */
#define BEST_MERGE_(bv, bi, v, i)                                           \
    do {                                                                    \
        if ((i) >= 0 && ((bi) < 0 || ranks_before((v), (i), (bv), (bi)))) { \
            (bv) = (v);                                                     \
            (bi) = (i);                                                     \
        }                                                                   \
    } while (0)

/* Group reductions, the one primitive of every kernel that reduces over a work-group: each
 * work-item passes its partial and all receive the group's result, combined in a fixed order
 * (reproducible run to run). group_sum (acc_t), group_max (float, `a > b` as the CPU's row max)
 * and group_best (a (value, index) pair under ranks_before: argmax, top-k).
 *
 * Local-memory path (OpenCL 1.2, which has no subgroups): a tree over `scratch` for a group of
 * `width` work-items, a power of two; scratch holds `width` entries. The width is a parameter so
 * the same code runs at any group size (test_group_width runs the row kernels at 32 and 64). */
DEVICE_FN acc_t group_sum_lm(acc_t v, LOCAL_PTR acc_t *scratch, int width) {
    const int lid = LOCAL_ID0;
    scratch[lid] = v;
    BARRIER();
    for (int s = width / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] += scratch[lid + s];
        BARRIER();
    }
    const acc_t r = scratch[0];
    BARRIER();
    return r;
}

DEVICE_FN float group_max_lm(float v, LOCAL_PTR float *scratch, int width) {
    const int lid = LOCAL_ID0;
    scratch[lid] = v;
    BARRIER();
    for (int s = width / 2; s > 0; s >>= 1) {
        if (lid < s && scratch[lid + s] > scratch[lid])
            scratch[lid] = scratch[lid + s];
        BARRIER();
    }
    const float r = scratch[0];
    BARRIER();
    return r;
}

DEVICE_FN void group_best_lm(float *v, i64 *i, LOCAL_PTR float *sv, LOCAL_PTR i64 *si, int width) {
    const int lid = LOCAL_ID0;
    sv[lid] = *v;
    si[lid] = *i;
    BARRIER();
    for (int s = width / 2; s > 0; s >>= 1) {
        if (lid < s)
            BEST_MERGE_(sv[lid], si[lid], sv[lid + s], si[lid + s]);
        BARRIER();
    }
    *v = sv[0];
    *i = si[0];
    BARRIER();
}

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
DEVICE_FN acc_t group_sum(acc_t v, LOCAL_PTR acc_t *scratch) {
    return group_sum_lm(v, scratch, LOCAL_SIZE0);
}
DEVICE_FN float group_max(float v, LOCAL_PTR float *scratch) {
    return group_max_lm(v, scratch, LOCAL_SIZE0);
}
DEVICE_FN void group_best(float *v, i64 *i, LOCAL_PTR float *sv, LOCAL_PTR i64 *si) {
    group_best_lm(v, i, sv, si, LOCAL_SIZE0);
}
#else
/* Shuffle path (CUDA, HIP): a shuffle-down tree inside each wave of WAVE_SIZE lanes, then lane 0
 * of every wave leaves its result in scratch (one entry per wave) and every work-item combines
 * those in wave order. The group size must be a multiple of WAVE_SIZE (ROW_GROUP is 64: two warps
 * on NVIDIA, one wavefront on gfx9, two on RDNA in wave32). */
DEVICE_FN acc_t group_sum(acc_t v, LOCAL_PTR acc_t *scratch) {
    for (int d = WAVE_SIZE / 2; d > 0; d >>= 1)
        v += WAVE_SHFL_DOWN(v, d);
    if (WAVE_LANE == 0)
        scratch[LOCAL_ID0 / WAVE_SIZE] = v;
    BARRIER();
    acc_t r = scratch[0];
    for (int w = 1; w < LOCAL_SIZE0 / WAVE_SIZE; w++)
        r += scratch[w];
    BARRIER();
    return r;
}

DEVICE_FN float group_max(float v, LOCAL_PTR float *scratch) {
    for (int d = WAVE_SIZE / 2; d > 0; d >>= 1) {
        const float o = WAVE_SHFL_DOWN(v, d);
        v = o > v ? o : v;
    }
    if (WAVE_LANE == 0)
        scratch[LOCAL_ID0 / WAVE_SIZE] = v;
    BARRIER();
    float r = scratch[0];
    for (int w = 1; w < LOCAL_SIZE0 / WAVE_SIZE; w++)
        r = scratch[w] > r ? scratch[w] : r;
    BARRIER();
    return r;
}

DEVICE_FN void group_best(float *v, i64 *i, LOCAL_PTR float *sv, LOCAL_PTR i64 *si) {
    float bv = *v;
    i64 bi = *i;
    for (int d = WAVE_SIZE / 2; d > 0; d >>= 1) {
        const float ov = WAVE_SHFL_DOWN(bv, d);
        const i64 oi = WAVE_SHFL_DOWN(bi, d);
        BEST_MERGE_(bv, bi, ov, oi);
    }
    if (WAVE_LANE == 0) {
        sv[LOCAL_ID0 / WAVE_SIZE] = bv;
        si[LOCAL_ID0 / WAVE_SIZE] = bi;
    }
    BARRIER();
    bv = sv[0];
    bi = si[0];
    for (int w = 1; w < LOCAL_SIZE0 / WAVE_SIZE; w++)
        BEST_MERGE_(bv, bi, sv[w], si[w]);
    BARRIER();
    *v = bv;
    *i = bi;
}
#endif

/* Row kernels run one work-group per row: ROW_GROUP work-items by default, any power of two up to
 * ROW_GROUP_MAX (OpenCL: SPIN_ROW_GROUP); they stride by LOCAL_SIZE0 and size scratch by the max. */
#define ROW_GROUP 64
#define ROW_GROUP_MAX 256

#endif
