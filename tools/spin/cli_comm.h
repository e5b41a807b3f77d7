/* The job's communicator for the commands that run data parallel under an MPI launcher (spin
 * train, generate, score, iterate; docs/distributed.md). The transport is initialised only when the
 * process was started by a launcher (mpirun / srun / mpiexec set their rank variables), so a plain
 * `spin train` of an -DSPIN_MPI=ON build never touches MPI and a build without MPI is a world of
 * one: every helper below is then the identity. */
#ifndef SPIN_TOOLS_CLI_COMM_H
#define SPIN_TOOLS_CLI_COMM_H

#include <stddef.h>

#include "train/comm.h"

/* The communicator when the job has more than one rank, else NULL (initialised on the first call;
 * a failing initialisation is printed and treated as a world of one). */
spin_comm *cli_comm(void);
int cli_rank(void);
int cli_size(void);
/* Agreement on an exit status: the largest rc of any rank, on every rank (so a failure anywhere
 * stops every rank before the next collective). A transport failure returns 1. Once an agreement
 * was non-zero, later calls return at once (rc, or 1 for 0) without communicating: the ranks may
 * leave through different numbers of agreement points. */
int cli_agree(int rc);
/* Rank 0's value of *v (n bytes) on every rank; 0, or 1 on a transport failure (printed). */
int cli_bcast(void *v, size_t n);
/* The number of ranks the launcher announced (1 when none), without joining the job. */
int cli_launched_size(void);
/* Finalises the transport when cli_comm initialised it (main, after the command). */
void cli_comm_end(void);

#endif
