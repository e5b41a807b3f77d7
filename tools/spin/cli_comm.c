/* The CLI's communicator (cli_comm.h). */
#include "tools/spin/cli_comm.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static spin_comm *g_comm;
static bool g_tried;
static bool g_failed; /* an agreement returned non-zero */

/* Open MPI (OMPI_COMM_WORLD_SIZE), MPICH / Intel MPI's Hydra (PMI_SIZE) and PMIx launchers such as
 * srun or Open MPI 5 (PMIX_RANK) announce a launched rank this way; without one there is no job to
 * join and MPI_Init would only start a singleton. */
static bool launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int cli_launched_size(void) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    return n && atoi(n) > 1 ? atoi(n) : 1;
}

spin_comm *cli_comm(void) {
    if (!g_tried) {
        g_tried = true;
        if (launched() && spin_comm_world(NULL, NULL, &g_comm) != SPIN_OK) {
            fprintf(stderr, "spin: cannot join the MPI job: %s\n", spin_last_error());
            g_comm = NULL;
        }
        /* a build without MPI under mpirun: each rank would be a world of one doing the whole job,
         * every file written N times */
        int n = cli_launched_size();
        if (n > 1 && (!g_comm || spin_comm_size(g_comm) == 1)) {
            fprintf(stderr,
                    "spin: started as one of %d ranks, but this spin %s: configure with -DSPIN_MPI=ON\n", n,
                    g_comm ? "was built without MPI" : "could not join the job");
            exit(2);
        }
    }
    return g_comm && spin_comm_size(g_comm) > 1 ? g_comm : NULL;
}

int cli_rank(void) {
    spin_comm *c = cli_comm();
    return c ? spin_comm_rank(c) : 0;
}

int cli_size(void) {
    spin_comm *c = cli_comm();
    return c ? spin_comm_size(c) : 1;
}

int cli_agree(int rc) {
    spin_comm *c = cli_comm();
    if (!c)
        return rc;
    /* once a failure is agreed every rank heads for the exit, some through fewer agreement points
     * than others (an early return): no rank communicates again */
    if (g_failed)
        return rc ? rc : 1;
    double v = rc;
    if (spin_comm_allreduce_f64(c, &v, 1, SPIN_REDUCE_MAX) != SPIN_OK) {
        fprintf(stderr, "spin: rank %d: %s\n", spin_comm_rank(c), spin_last_error());
        v = 1;
    }
    g_failed = v != 0;
    return (int)v;
}

int cli_bcast(void *v, size_t n) {
    spin_comm *c = cli_comm();
    if (!c)
        return 0;
    if (spin_comm_broadcast_bytes(c, v, n, 0) != SPIN_OK) {
        fprintf(stderr, "spin: rank %d: %s\n", spin_comm_rank(c), spin_last_error());
        return 1;
    }
    return 0;
}

void cli_comm_end(void) {
    spin_comm_free(g_comm);
    g_comm = NULL;
}
