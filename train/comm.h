/* Collective communication between the processes of a job (docs/distributed.md). One implementation
 * is linked, chosen at build time:
 *   train/comm/comm_single.c   the default build: a world of one process (every collective is the
 *                              identity), so the data-parallel code runs unchanged without MPI;
 *   train/comm/comm_mpi.c      -DSPIN_MPI=ON: MPI (Open MPI); tensors on any device are staged
 *                              through host memory;
 *   train/comm/comm_nccl.c     -DSPIN_MPI=ON with -DBACKEND=cuda and NCCL found: NCCL on the GPU
 *                              tensors' device pointers, the NCCL id exchanged through MPI, host
 *                              buffers through MPI (compile-checked only: no multi-GPU machine ran it).
 *
 * Every collective must be called by every rank of the communicator in the same order, with the
 * same shapes and dtypes. Reductions are on f32 tensors; gathers and broadcasts on any dtype. A
 * failing transport call (a rank that died, a broken link) returns SPIN_ERR_DEVICE naming the call
 * and the rank; Open MPI's launcher also ends the whole job when a rank dies. */
#ifndef SPIN_TRAIN_COMM_H
#define SPIN_TRAIN_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct spin_comm spin_comm;

typedef enum { SPIN_REDUCE_SUM, SPIN_REDUCE_AVG, SPIN_REDUCE_MAX } spin_reduce_op;

/* The communicator of all processes of the job. The first call initialises the transport (MPI:
 * MPI_Init_thread with argc/argv, which may be NULL); spin_comm_free of the last reference
 * finalises it when this library initialised it. A process started without mpirun is a world of
 * one. */
spin_status spin_comm_world(int *argc, char ***argv, spin_comm **out);
void spin_comm_free(spin_comm *c);

int spin_comm_rank(const spin_comm *c);
int spin_comm_size(const spin_comm *c);
/* "single", "mpi" or "nccl+mpi". */
const char *spin_comm_kind(const spin_comm *c);

/* In place over every rank: t (f32, contiguous) becomes the elementwise sum / mean / max. */
spin_status spin_comm_allreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op);
/* src (f32, contiguous, identical length on every rank) is the concatenation of size pieces of
 * counts[0], counts[1], ... elements; dst (f32, contiguous, counts[rank] elements) gets the
 * reduction of this rank's piece over all ranks. counts are the same on every rank. */
spin_status spin_comm_reduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                     spin_reduce_op op);
/* The inverse: src (counts[rank] elements) from every rank, concatenated in rank order into dst
 * (sum of counts elements) on every rank. Any dtype (the same for src and dst). */
spin_status spin_comm_allgather(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts);
/* t (contiguous, any dtype) of rank root to every rank. */
spin_status spin_comm_broadcast(spin_comm *c, spin_tensor *t, int root);
spin_status spin_comm_barrier(spin_comm *c);

/* Non-blocking reductions, to overlap communication with computation (dist_train.c starts each
 * bucket's reduction during backward). The call starts the collective and returns; spin_comm_wait
 * completes it, writes the result into the destination tensor and frees the request. Until then the
 * tensors must not change (the request keeps references). They count as collectives of the
 * communicator: every rank starts the same ones in the same order among its other collectives.
 * Each gives the result its blocking twin gives (MPI: MPI_Iallreduce / MPI_Ireduce_scatter; NCCL:
 * enqueued on its stream); *req is NULL when the call completed at once (a world of one). */
typedef struct spin_comm_request spin_comm_request;
spin_status spin_comm_iallreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op, spin_comm_request **req);
spin_status spin_comm_ireduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                      spin_reduce_op op, spin_comm_request **req);
/* Lets the transport move req along (MPI progresses a non-blocking collective only inside its
 * calls) and says whether it has completed; req stays valid until spin_comm_wait. */
spin_status spin_comm_test(spin_comm_request *req, bool *done);
/* Completes req (NULL: nothing to do) and frees it, also when it fails. */
spin_status spin_comm_wait(spin_comm_request *req);

/* Host values: n doubles reduced in place over every rank (sum, mean or max), for metrics, flags
 * and norms. */
spin_status spin_comm_allreduce_f64(spin_comm *c, double *v, int n, spin_reduce_op op);
/* n bytes of rank root to every rank. */
spin_status spin_comm_broadcast_bytes(spin_comm *c, void *buf, size_t n, int root);

/* A log of this process's collectives, for tests that check when they happen: while set, each
 * call (blocking, start or wait) appends its name, its element count and whether a backward walk
 * was running (core/autograd.h) to log[0 .. cap); *n counts the calls, also beyond cap. log NULL
 * stops logging. */
typedef struct {
    const char *call; /* "allreduce", "iallreduce", "wait", "allreduce_f64", ... */
    int64_t numel;
    bool in_backward;
} spin_comm_event;
void spin_comm_trace(spin_comm_event *log, int cap, int *n);

/* Sharding n items (prompts to generate for, examples to score) over size ranks: rank gets
 * [*begin, *end), contiguous and in order, the first n % size ranks one item more, so
 * concatenating the ranks' results in rank order gives the single-process order. */
void spin_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end);

#endif
