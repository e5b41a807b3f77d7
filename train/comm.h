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

/* Host values: n doubles reduced in place over every rank (sum, mean or max), for metrics, flags
 * and norms. */
spin_status spin_comm_allreduce_f64(spin_comm *c, double *v, int n, spin_reduce_op op);
/* n bytes of rank root to every rank. */
spin_status spin_comm_broadcast_bytes(spin_comm *c, void *buf, size_t n, int root);

/* Sharding n items (prompts to generate for, examples to score) over size ranks: rank gets
 * [*begin, *end), contiguous and in order, the first n % size ranks one item more, so
 * concatenating the ranks' results in rank order gives the single-process order. */
void spin_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end);

#endif
