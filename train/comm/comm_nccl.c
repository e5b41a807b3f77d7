/* train/comm.h with NCCL for tensors on a CUDA device (-DSPIN_MPI=ON -DBACKEND=cuda with NCCL found):
 * all-reduce, reduce-scatter, all-gather and broadcast run on the tensors' device memory; host
 * buffers, the barrier and tensors on other devices go through the MPI implementation, which is
 * compiled into this file under other names. The NCCL unique id is made by rank 0 and broadcast
 * over MPI; the NCCL communicator is created at the first GPU collective (every rank makes it, since
 * every rank makes the same collectives), on the tensors' CUDA device.
 *
 * COMPILE-CHECKED ONLY: it builds and links against NCCL 2.x, but no multi-GPU machine has run it
 * (docs/distributed.md). Ordering: the backend's stream is private to the backend, so each call
 * synchronises the device (spin_backend.synchronize), runs NCCL on its own stream and waits for it;
 * the non-blocking calls return after enqueueing, and spin_comm_wait synchronises the stream. */
#include <cuda_runtime_api.h>
#include <nccl.h>

/* The MPI implementation, renamed: this file defines the public names and calls these. */
#define spin_comm_world spin_comm_mpi_world_
#define spin_comm_free spin_comm_mpi_free_
#define spin_comm_rank spin_comm_mpi_rank_
#define spin_comm_size spin_comm_mpi_size_
#define spin_comm_kind spin_comm_mpi_kind_
#define spin_comm_allreduce spin_comm_mpi_allreduce_
#define spin_comm_reduce_scatter spin_comm_mpi_reduce_scatter_
#define spin_comm_allgather spin_comm_mpi_allgather_
#define spin_comm_broadcast spin_comm_mpi_broadcast_
#define spin_comm_barrier spin_comm_mpi_barrier_
#define spin_comm_allreduce_f64 spin_comm_mpi_allreduce_f64_
#define spin_comm_broadcast_bytes spin_comm_mpi_broadcast_bytes_
#define spin_comm_iallreduce spin_comm_mpi_iallreduce_
#define spin_comm_ireduce_scatter spin_comm_mpi_ireduce_scatter_
#define spin_comm_test spin_comm_mpi_test_
#define spin_comm_wait spin_comm_mpi_wait_
#include "train/comm/comm_mpi.c"
#undef spin_comm_world
#undef spin_comm_free
#undef spin_comm_rank
#undef spin_comm_size
#undef spin_comm_kind
#undef spin_comm_allreduce
#undef spin_comm_reduce_scatter
#undef spin_comm_allgather
#undef spin_comm_broadcast
#undef spin_comm_barrier
#undef spin_comm_allreduce_f64
#undef spin_comm_broadcast_bytes
#undef spin_comm_iallreduce
#undef spin_comm_ireduce_scatter
#undef spin_comm_test
#undef spin_comm_wait

#include "core/device.h"
/* NCCL needs the device address of a tensor; core/ exposes it only to its own layer (the
 * dispatcher's kernel view), so this one file reads it there. */
#include "core/tensor_impl.h"

static struct {
    bool ready;
    int device;
    ncclComm_t comm;
    cudaStream_t stream;
} g_nccl;

static bool on_cuda(const spin_tensor *t) {
    const spin_device *dev = spin_tensor_device(t);
    return dev && dev->backend && !strcmp(dev->backend->name, "cuda");
}

static void *dev_ptr(const spin_tensor *t) {
    spin_view v = spin_tensor_kview(t);
    return (char *)v.buf + v.offset * spin_dtype_size(v.dtype);
}

#define CUDA_TRY(call)                                                                         \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            return spin_fail(SPIN_ERR_DEVICE, "%s failed: %s", #call, cudaGetErrorString(e_)); \
    } while (0)
#define NCCL_TRY(c, call)                                                                                    \
    do {                                                                                                     \
        ncclResult_t r_ = (call);                                                                            \
        if (r_ != ncclSuccess)                                                                               \
            return spin_fail(SPIN_ERR_DEVICE, "%s failed on rank %d of %d: %s", #call, (c)->rank, (c)->size, \
                             ncclGetErrorString(r_));                                                        \
    } while (0)

/* Before a GPU collective: the communicator (first use) and the device's queued work done. */
static spin_status nccl_begin(spin_comm *c, const spin_tensor *t) {
    spin_device *dev = spin_tensor_device(t);
    if (!g_nccl.ready) {
        ncclUniqueId id;
        if (c->rank == 0)
            NCCL_TRY(c, ncclGetUniqueId(&id));
        SPIN_TRY(spin_comm_mpi_broadcast_bytes_(c, &id, sizeof id, 0));
        CUDA_TRY(cudaSetDevice(dev->index));
        CUDA_TRY(cudaStreamCreateWithFlags(&g_nccl.stream, cudaStreamNonBlocking));
        NCCL_TRY(c, ncclCommInitRank(&g_nccl.comm, c->size, id, c->rank));
        g_nccl.device = dev->index;
        g_nccl.ready = true;
    }
    if (dev->index != g_nccl.device)
        return spin_fail(SPIN_ERR_INVALID, "comm: NCCL was set up on cuda:%d, this tensor is on cuda:%d",
                         g_nccl.device, dev->index);
    return dev->backend->synchronize(dev);
}

static spin_status nccl_end(void) {
    CUDA_TRY(cudaStreamSynchronize(g_nccl.stream));
    return SPIN_OK;
}

static ncclRedOp_t nccl_op(spin_reduce_op op) {
    return op == SPIN_REDUCE_AVG ? ncclAvg : op == SPIN_REDUCE_MAX ? ncclMax : ncclSum;
}

spin_status spin_comm_world(int *argc, char ***argv, spin_comm **out) {
    return spin_comm_mpi_world_(argc, argv, out);
}

void spin_comm_free(spin_comm *c) {
    if (c && c->refs == 1 && g_nccl.ready) {
        ncclCommDestroy(g_nccl.comm);
        cudaStreamDestroy(g_nccl.stream);
        g_nccl.ready = false;
    }
    spin_comm_mpi_free_(c);
}

int spin_comm_rank(const spin_comm *c) {
    return spin_comm_mpi_rank_(c);
}

int spin_comm_size(const spin_comm *c) {
    return spin_comm_mpi_size_(c);
}

const char *spin_comm_kind(const spin_comm *c) {
    (void)c;
    return "nccl+mpi";
}

spin_status spin_comm_allreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op) {
    if (!t || !on_cuda(t))
        return spin_comm_mpi_allreduce_(c, t, op);
    SPIN_TRY(spin_comm_check_tensor("allreduce", t, true));
    spin_comm_log("allreduce", spin_tensor_numel(t));
    SPIN_TRY(nccl_begin(c, t));
    void *p = dev_ptr(t);
    NCCL_TRY(c, ncclAllReduce(p, p, (size_t)spin_tensor_numel(t), ncclFloat32, nccl_op(op), g_nccl.comm,
                              g_nccl.stream));
    return nccl_end();
}

/* Enqueues the reduce-scatter on the NCCL stream (the caller ran nccl_begin). */
static spin_status nccl_reduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst,
                                       const int64_t *counts, spin_reduce_op op) {
    float *s = dev_ptr(src), *d = dev_ptr(dst);
    bool equal = true;
    for (int r = 1; r < c->size; r++)
        equal &= counts[r] == counts[0];
    if (equal) {
        NCCL_TRY(c, ncclReduceScatter(s, d, (size_t)counts[0], ncclFloat32, nccl_op(op), g_nccl.comm,
                                      g_nccl.stream));
        return SPIN_OK;
    }
    /* uneven pieces: one reduce to each piece's owner, grouped into one launch */
    NCCL_TRY(c, ncclGroupStart());
    int64_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] > 0)
            NCCL_TRY(c, ncclReduce(s + off, r == c->rank ? d : s + off, (size_t)counts[r], ncclFloat32,
                                   nccl_op(op), r, g_nccl.comm, g_nccl.stream));
        off += counts[r];
    }
    NCCL_TRY(c, ncclGroupEnd());
    return SPIN_OK;
}

spin_status spin_comm_reduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                     spin_reduce_op op) {
    if (!src || !dst || !on_cuda(src) || !on_cuda(dst))
        return spin_comm_mpi_reduce_scatter_(c, src, dst, counts, op);
    SPIN_TRY(spin_comm_check_tensor("reduce_scatter", src, true));
    SPIN_TRY(spin_comm_check_tensor("reduce_scatter", dst, true));
    SPIN_TRY(spin_comm_check_pieces("reduce_scatter", src, dst, counts, c->rank, c->size));
    spin_comm_log("reduce_scatter", spin_tensor_numel(src));
    SPIN_TRY(nccl_begin(c, src));
    SPIN_TRY(nccl_reduce_scatter(c, src, dst, counts, op));
    return nccl_end();
}

/* The non-blocking calls: enqueued on the NCCL stream; the request keeps the tensors alive. */
static spin_status stream_request(spin_comm *c, const char *call, spin_tensor *src, spin_tensor *dst,
                                  spin_reduce_op op, spin_comm_request **req) {
    spin_comm_request *r = request_new(c, call, dst, op, 0);
    if (!r) {
        nccl_end(); /* nothing will wait for it: the tensors may go once it is done */
        return SPIN_ERR_OOM;
    }
    r->src = spin_tensor_retain(src);
    r->on_stream = true;
    *req = r;
    return SPIN_OK;
}

spin_status spin_comm_iallreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op, spin_comm_request **req) {
    *req = NULL;
    if (!t || !on_cuda(t))
        return spin_comm_mpi_iallreduce_(c, t, op, req);
    SPIN_TRY(spin_comm_check_tensor("iallreduce", t, true));
    spin_comm_log("iallreduce", spin_tensor_numel(t));
    SPIN_TRY(nccl_begin(c, t));
    void *p = dev_ptr(t);
    NCCL_TRY(c, ncclAllReduce(p, p, (size_t)spin_tensor_numel(t), ncclFloat32, nccl_op(op), g_nccl.comm,
                              g_nccl.stream));
    return stream_request(c, "ncclAllReduce", t, t, op, req);
}

spin_status spin_comm_ireduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                      spin_reduce_op op, spin_comm_request **req) {
    *req = NULL;
    if (!src || !dst || !on_cuda(src) || !on_cuda(dst))
        return spin_comm_mpi_ireduce_scatter_(c, src, dst, counts, op, req);
    SPIN_TRY(spin_comm_check_tensor("ireduce_scatter", src, true));
    SPIN_TRY(spin_comm_check_tensor("ireduce_scatter", dst, true));
    SPIN_TRY(spin_comm_check_pieces("ireduce_scatter", src, dst, counts, c->rank, c->size));
    spin_comm_log("ireduce_scatter", spin_tensor_numel(src));
    SPIN_TRY(nccl_begin(c, src));
    SPIN_TRY(nccl_reduce_scatter(c, src, dst, counts, op));
    return stream_request(c, "ncclReduceScatter", src, dst, op, req);
}

spin_status spin_comm_test(spin_comm_request *req, bool *done) {
    if (!req || !req->on_stream)
        return spin_comm_mpi_test_(req, done);
    cudaError_t e = cudaStreamQuery(g_nccl.stream);
    if (e != cudaSuccess && e != cudaErrorNotReady)
        return spin_fail(SPIN_ERR_DEVICE, "cudaStreamQuery failed: %s", cudaGetErrorString(e));
    *done = e == cudaSuccess;
    return SPIN_OK;
}

spin_status spin_comm_wait(spin_comm_request *req) {
    if (!req || !req->on_stream)
        return spin_comm_mpi_wait_(req);
    spin_comm_log("wait", req->n_recv);
    spin_status s = nccl_end();
    request_free(req);
    return s;
}

spin_status spin_comm_allgather(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts) {
    if (!src || !dst || !on_cuda(src) || !on_cuda(dst))
        return spin_comm_mpi_allgather_(c, src, dst, counts);
    SPIN_TRY(spin_comm_check_tensor("allgather", src, false));
    SPIN_TRY(spin_comm_check_tensor("allgather", dst, false));
    SPIN_TRY(spin_comm_check_pieces("allgather", dst, src, counts, c->rank, c->size));
    spin_comm_log("allgather", spin_tensor_numel(dst));
    SPIN_TRY(nccl_begin(c, dst));
    size_t esz = spin_dtype_size(spin_tensor_dtype(dst));
    char *s = dev_ptr(src), *d = dev_ptr(dst);
    bool equal = true;
    for (int r = 1; r < c->size; r++)
        equal &= counts[r] == counts[0];
    if (equal) {
        NCCL_TRY(c, ncclAllGather(s, d, (size_t)counts[0] * esz, ncclUint8, g_nccl.comm, g_nccl.stream));
        return nccl_end();
    }
    /* uneven pieces: each rank broadcasts its own, grouped into one launch */
    NCCL_TRY(c, ncclGroupStart());
    size_t off = 0;
    for (int r = 0; r < c->size; r++) {
        size_t n = (size_t)counts[r] * esz;
        if (n > 0)
            NCCL_TRY(c, ncclBroadcast(s, d + off, n, ncclUint8, r, g_nccl.comm, g_nccl.stream));
        off += n;
    }
    NCCL_TRY(c, ncclGroupEnd());
    return nccl_end();
}

spin_status spin_comm_broadcast(spin_comm *c, spin_tensor *t, int root) {
    if (!t || !on_cuda(t))
        return spin_comm_mpi_broadcast_(c, t, root);
    SPIN_TRY(spin_comm_check_tensor("broadcast", t, false));
    if (root < 0 || root >= c->size)
        return spin_fail(SPIN_ERR_INVALID, "broadcast: root %d outside [0, %d)", root, c->size);
    spin_comm_log("broadcast", spin_tensor_numel(t));
    SPIN_TRY(nccl_begin(c, t));
    void *p = dev_ptr(t);
    size_t n = (size_t)spin_tensor_numel(t) * spin_dtype_size(spin_tensor_dtype(t));
    NCCL_TRY(c, ncclBroadcast(p, p, n, ncclUint8, root, g_nccl.comm, g_nccl.stream));
    return nccl_end();
}

spin_status spin_comm_barrier(spin_comm *c) {
    return spin_comm_mpi_barrier_(c);
}

spin_status spin_comm_allreduce_f64(spin_comm *c, double *v, int n, spin_reduce_op op) {
    return spin_comm_mpi_allreduce_f64_(c, v, n, op);
}

spin_status spin_comm_broadcast_bytes(spin_comm *c, void *buf, size_t n, int root) {
    return spin_comm_mpi_broadcast_bytes_(c, buf, n, root);
}
