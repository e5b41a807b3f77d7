/* train/comm.h over MPI (-DSPIN_MPI=ON). Tensors are staged through host memory (a read, the MPI
 * call on the host copy, a write back), which works for every backend; the CPU pays two memcpy per
 * call (bench_comm measures it against the bare MPI call). The communicator is a duplicate of
 * MPI_COMM_WORLD with MPI_ERRORS_RETURN, so a failing call becomes a spin error naming the call
 * rather than an abort inside the library. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/comm.h"
#include "train/comm/comm_internal.h"

struct spin_comm {
    MPI_Comm comm;
    int rank, size, refs;
    int we_initialised; /* MPI_Init was ours: finalise with the last reference */
};

static spin_comm g_world;

static spin_status mpi_fail(const spin_comm *c, int rc, const char *call) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return spin_fail(SPIN_ERR_DEVICE, "%s failed on rank %d of %d: %s (a rank may have died)", call, c->rank,
                     c->size, msg);
}
#define MPI_TRY(c, call)                      \
    do {                                      \
        int rc_ = (call);                     \
        if (rc_ != MPI_SUCCESS)               \
            return mpi_fail((c), rc_, #call); \
    } while (0)

spin_status spin_comm_world(int *argc, char ***argv, spin_comm **out) {
    *out = NULL;
    if (g_world.refs == 0) {
        int inited = 0, finalized = 0;
        MPI_Initialized(&inited);
        MPI_Finalized(&finalized);
        if (finalized)
            return spin_fail(SPIN_ERR_INVALID, "comm: MPI was already finalised in this process");
        if (!inited) {
            int provided = 0;
            /* only the main thread calls MPI; OpenMP workers never do */
            if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
                return spin_fail(SPIN_ERR_DEVICE, "comm: MPI_Init_thread failed");
            g_world.we_initialised = 1;
        }
        if (MPI_Comm_dup(MPI_COMM_WORLD, &g_world.comm) != MPI_SUCCESS)
            return spin_fail(SPIN_ERR_DEVICE, "comm: MPI_Comm_dup failed");
        MPI_Comm_set_errhandler(g_world.comm, MPI_ERRORS_RETURN);
        MPI_Comm_rank(g_world.comm, &g_world.rank);
        MPI_Comm_size(g_world.comm, &g_world.size);
    }
    g_world.refs++;
    *out = &g_world;
    return SPIN_OK;
}

void spin_comm_free(spin_comm *c) {
    if (!c || c->refs <= 0 || --c->refs > 0)
        return;
    MPI_Comm_free(&c->comm);
    if (c->we_initialised)
        MPI_Finalize();
    c->we_initialised = 0;
}

int spin_comm_rank(const spin_comm *c) {
    return c->rank;
}

int spin_comm_size(const spin_comm *c) {
    return c->size;
}

const char *spin_comm_kind(const spin_comm *c) {
    (void)c;
    return "mpi";
}

/* A host copy of a contiguous tensor (malloc'd; NULL with the error set). */
static void *stage_in(const spin_tensor *t, size_t *bytes, bool read) {
    *bytes = (size_t)spin_tensor_numel(t) * spin_dtype_size(spin_tensor_dtype(t));
    void *h = malloc(*bytes ? *bytes : 1);
    if (!h) {
        spin_fail(SPIN_ERR_OOM, "comm: %zu bytes of host staging", *bytes);
        return NULL;
    }
    if (read && *bytes && spin_tensor_read(t, h, *bytes) != SPIN_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static MPI_Op mpi_op(spin_reduce_op op) {
    return op == SPIN_REDUCE_MAX ? MPI_MAX : MPI_SUM;
}

/* MPI counts are int: large buffers go in chunks of at most 2^30 elements. */
#define CHUNK ((int64_t)1 << 30)

spin_status spin_comm_allreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op) {
    SPIN_TRY(spin_comm_check_tensor("allreduce", t, true));
    spin_comm_log("allreduce", spin_tensor_numel(t));
    size_t bytes;
    float *h = stage_in(t, &bytes, true);
    if (!h)
        return SPIN_ERR_OOM;
    int64_t n = spin_tensor_numel(t);
    spin_status s = SPIN_OK;
    for (int64_t o = 0; o < n && s == SPIN_OK; o += CHUNK) {
        int k = (int)(n - o < CHUNK ? n - o : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, h + o, k, MPI_FLOAT, mpi_op(op), c->comm);
        if (rc != MPI_SUCCESS)
            s = mpi_fail(c, rc, "MPI_Allreduce");
    }
    if (s == SPIN_OK && op == SPIN_REDUCE_AVG)
        for (int64_t i = 0; i < n; i++)
            h[i] /= (float)c->size;
    if (s == SPIN_OK)
        s = spin_tensor_write(t, h, bytes);
    free(h);
    return s;
}

/* counts (elements) as MPI ints, scaled by `unit` (1, or the element size for byte transfers);
 * displs (when not NULL) the running offsets. */
static spin_status int_counts(const spin_comm *c, const int64_t *counts, int64_t unit, int *out,
                              int *displs) {
    int64_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] * unit > INT_MAX || off > INT_MAX)
            return spin_fail(SPIN_ERR_INVALID,
                             "comm: piece %d of %lld elements is too large for one MPI call", r,
                             (long long)counts[r]);
        out[r] = (int)(counts[r] * unit);
        if (displs)
            displs[r] = (int)off;
        off += counts[r] * unit;
    }
    return SPIN_OK;
}

spin_status spin_comm_reduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                     spin_reduce_op op) {
    SPIN_TRY(spin_comm_check_tensor("reduce_scatter", src, true));
    SPIN_TRY(spin_comm_check_tensor("reduce_scatter", dst, true));
    SPIN_TRY(spin_comm_check_pieces("reduce_scatter", src, dst, counts, c->rank, c->size));
    spin_comm_log("reduce_scatter", spin_tensor_numel(src));
    int *rc_counts = malloc((size_t)c->size * sizeof *rc_counts);
    if (!rc_counts)
        return spin_fail(SPIN_ERR_OOM, "comm: counts");
    spin_status s = int_counts(c, counts, 1, rc_counts, NULL);
    size_t sb = 0, db = 0;
    float *hs = s == SPIN_OK ? stage_in(src, &sb, true) : NULL;
    float *hd = hs ? stage_in(dst, &db, false) : NULL;
    if (s == SPIN_OK && (!hs || !hd))
        s = SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        int rc = MPI_Reduce_scatter(hs, hd, rc_counts, MPI_FLOAT, mpi_op(op), c->comm);
        if (rc != MPI_SUCCESS)
            s = mpi_fail(c, rc, "MPI_Reduce_scatter");
    }
    if (s == SPIN_OK && op == SPIN_REDUCE_AVG)
        for (int64_t i = 0; i < counts[c->rank]; i++)
            hd[i] /= (float)c->size;
    if (s == SPIN_OK)
        s = spin_tensor_write(dst, hd, db);
    free(hs);
    free(hd);
    free(rc_counts);
    return s;
}

spin_status spin_comm_allgather(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts) {
    SPIN_TRY(spin_comm_check_tensor("allgather", src, false));
    SPIN_TRY(spin_comm_check_tensor("allgather", dst, false));
    SPIN_TRY(spin_comm_check_pieces("allgather", dst, src, counts, c->rank, c->size));
    spin_comm_log("allgather", spin_tensor_numel(dst));
    int64_t esz = (int64_t)spin_dtype_size(spin_tensor_dtype(dst));
    int *cnt = malloc(2 * (size_t)c->size * sizeof *cnt);
    if (!cnt)
        return spin_fail(SPIN_ERR_OOM, "comm: counts");
    spin_status s = int_counts(c, counts, esz, cnt, cnt + c->size);
    size_t sb = 0, db = 0;
    void *hs = s == SPIN_OK ? stage_in(src, &sb, true) : NULL;
    void *hd = hs ? stage_in(dst, &db, false) : NULL;
    if (s == SPIN_OK && (!hs || !hd))
        s = SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        int rc = MPI_Allgatherv(hs, cnt[c->rank], MPI_BYTE, hd, cnt, cnt + c->size, MPI_BYTE, c->comm);
        if (rc != MPI_SUCCESS)
            s = mpi_fail(c, rc, "MPI_Allgatherv");
    }
    if (s == SPIN_OK)
        s = spin_tensor_write(dst, hd, db);
    free(hs);
    free(hd);
    free(cnt);
    return s;
}

/* ---- non-blocking reductions: started on a host copy, written back by the wait ---- */

struct spin_comm_request {
    spin_comm *c;
    const char *call;
    int n_mpi;
    MPI_Request *mpi; /* one per chunk of at most CHUNK elements */
    int *counts;      /* MPI_Ireduce_scatter's counts: MPI reads them until completion */
    float *send;      /* staging of the source (reduce-scatter), NULL in place */
    float *recv;      /* staging of the result */
    size_t recv_bytes;
    int64_t n_recv;
    spin_reduce_op op;
    spin_tensor *dst; /* gets the result (retained) */
    spin_tensor *src; /* read by the transport in place until completion (comm_nccl.c; retained) */
    bool on_stream;   /* comm_nccl.c: enqueued on the NCCL stream, no MPI request */
};

static void request_free(spin_comm_request *r) {
    if (!r)
        return;
    spin_tensor_release(r->dst);
    spin_tensor_release(r->src);
    free(r->mpi);
    free(r->counts);
    free(r->send);
    free(r->recv);
    free(r);
}

static spin_comm_request *request_new(spin_comm *c, const char *call, spin_tensor *dst, spin_reduce_op op,
                                      int n_mpi) {
    spin_comm_request *r = calloc(1, sizeof *r);
    if (r)
        r->mpi = malloc((size_t)(n_mpi > 0 ? n_mpi : 1) * sizeof *r->mpi);
    if (!r || !r->mpi) {
        free(r);
        spin_fail(SPIN_ERR_OOM, "comm: %s request", call);
        return NULL;
    }
    r->c = c;
    r->call = call;
    r->op = op;
    r->dst = spin_tensor_retain(dst);
    r->n_recv = spin_tensor_numel(dst);
    return r;
}

spin_status spin_comm_iallreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op, spin_comm_request **req) {
    *req = NULL;
    SPIN_TRY(spin_comm_check_tensor("iallreduce", t, true));
    spin_comm_log("iallreduce", spin_tensor_numel(t));
    int64_t n = spin_tensor_numel(t);
    spin_comm_request *r = request_new(c, "MPI_Iallreduce", t, op, (int)((n + CHUNK - 1) / CHUNK));
    if (!r)
        return SPIN_ERR_OOM;
    r->recv = stage_in(t, &r->recv_bytes, true);
    if (!r->recv) {
        request_free(r);
        return SPIN_ERR_OOM;
    }
    for (int64_t o = 0; o < n; o += CHUNK) {
        int k = (int)(n - o < CHUNK ? n - o : CHUNK);
        int rc =
            MPI_Iallreduce(MPI_IN_PLACE, r->recv + o, k, MPI_FLOAT, mpi_op(op), c->comm, &r->mpi[r->n_mpi]);
        if (rc != MPI_SUCCESS) {
            /* a started collective cannot be cancelled: the transport is broken and the job ends */
            request_free(r);
            return mpi_fail(c, rc, "MPI_Iallreduce");
        }
        r->n_mpi++;
    }
    *req = r;
    return SPIN_OK;
}

spin_status spin_comm_ireduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                      spin_reduce_op op, spin_comm_request **req) {
    *req = NULL;
    SPIN_TRY(spin_comm_check_tensor("ireduce_scatter", src, true));
    SPIN_TRY(spin_comm_check_tensor("ireduce_scatter", dst, true));
    SPIN_TRY(spin_comm_check_pieces("ireduce_scatter", src, dst, counts, c->rank, c->size));
    spin_comm_log("ireduce_scatter", spin_tensor_numel(src));
    spin_comm_request *r = request_new(c, "MPI_Ireduce_scatter", dst, op, 1);
    if (!r)
        return SPIN_ERR_OOM;
    r->counts = malloc((size_t)c->size * sizeof *r->counts);
    spin_status s =
        r->counts ? int_counts(c, counts, 1, r->counts, NULL) : spin_fail(SPIN_ERR_OOM, "comm: counts");
    size_t sb = 0;
    if (s == SPIN_OK &&
        (!(r->send = stage_in(src, &sb, true)) || !(r->recv = stage_in(dst, &r->recv_bytes, false))))
        s = SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        int rc = MPI_Ireduce_scatter(r->send, r->recv, r->counts, MPI_FLOAT, mpi_op(op), c->comm, &r->mpi[0]);
        if (rc != MPI_SUCCESS)
            s = mpi_fail(c, rc, "MPI_Ireduce_scatter");
        else
            r->n_mpi = 1;
    }
    if (s != SPIN_OK) {
        request_free(r);
        return s;
    }
    *req = r;
    return SPIN_OK;
}

spin_status spin_comm_test(spin_comm_request *r, bool *done) {
    *done = true;
    if (!r || r->n_mpi == 0)
        return SPIN_OK;
    int flag = 0;
    int rc = MPI_Testall(r->n_mpi, r->mpi, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS)
        return mpi_fail(r->c, rc, r->call);
    *done = flag != 0;
    return SPIN_OK;
}

spin_status spin_comm_wait(spin_comm_request *r) {
    if (!r)
        return SPIN_OK;
    spin_comm_log("wait", r->n_recv);
    spin_status s = SPIN_OK;
    if (r->n_mpi > 0) {
        int rc = MPI_Waitall(r->n_mpi, r->mpi, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            s = mpi_fail(r->c, rc, r->call);
    }
    if (s == SPIN_OK && r->op == SPIN_REDUCE_AVG)
        for (int64_t i = 0; i < r->n_recv; i++)
            r->recv[i] /= (float)r->c->size;
    if (s == SPIN_OK && r->recv)
        s = spin_tensor_write(r->dst, r->recv, r->recv_bytes);
    request_free(r);
    return s;
}

spin_status spin_comm_broadcast_bytes(spin_comm *c, void *buf, size_t n, int root) {
    if (root < 0 || root >= c->size)
        return spin_fail(SPIN_ERR_INVALID, "broadcast: root %d outside [0, %d)", root, c->size);
    spin_comm_log("broadcast_bytes", (int64_t)n);
    for (size_t o = 0; o < n; o += (size_t)CHUNK) {
        int k = (int)(n - o < (size_t)CHUNK ? n - o : (size_t)CHUNK);
        MPI_TRY(c, MPI_Bcast((char *)buf + o, k, MPI_BYTE, root, c->comm));
    }
    return SPIN_OK;
}

spin_status spin_comm_broadcast(spin_comm *c, spin_tensor *t, int root) {
    SPIN_TRY(spin_comm_check_tensor("broadcast", t, false));
    if (root < 0 || root >= c->size)
        return spin_fail(SPIN_ERR_INVALID, "broadcast: root %d outside [0, %d)", root, c->size);
    size_t bytes;
    void *h = stage_in(t, &bytes, c->rank == root);
    if (!h)
        return SPIN_ERR_OOM;
    spin_status s = spin_comm_broadcast_bytes(c, h, bytes, root);
    if (s == SPIN_OK && c->rank != root)
        s = spin_tensor_write(t, h, bytes);
    free(h);
    return s;
}

spin_status spin_comm_barrier(spin_comm *c) {
    spin_comm_log("barrier", 0);
    MPI_TRY(c, MPI_Barrier(c->comm));
    return SPIN_OK;
}

spin_status spin_comm_allreduce_f64(spin_comm *c, double *v, int n, spin_reduce_op op) {
    if (n <= 0)
        return SPIN_OK;
    spin_comm_log("allreduce_f64", n);
    MPI_TRY(c, MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, mpi_op(op), c->comm));
    if (op == SPIN_REDUCE_AVG)
        for (int i = 0; i < n; i++)
            v[i] /= c->size;
    return SPIN_OK;
}
