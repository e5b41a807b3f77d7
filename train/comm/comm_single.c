/* A world of one process (the build without -DSPIN_MPI): every collective is the identity, so
 * data-parallel code runs unchanged, and a reduce-scatter or all-gather copies the one piece. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "train/comm.h"
#include "train/comm/comm_internal.h"

struct spin_comm {
    int refs;
};

static spin_comm g_world = {0};

spin_status spin_comm_world(int *argc, char ***argv, spin_comm **out) {
    (void)argc;
    (void)argv;
    g_world.refs++;
    *out = &g_world;
    return SPIN_OK;
}

void spin_comm_free(spin_comm *c) {
    if (c && c->refs > 0)
        c->refs--;
}

int spin_comm_rank(const spin_comm *c) {
    (void)c;
    return 0;
}

int spin_comm_size(const spin_comm *c) {
    (void)c;
    return 1;
}

const char *spin_comm_kind(const spin_comm *c) {
    (void)c;
    return "single";
}

spin_status spin_comm_allreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op) {
    (void)c;
    (void)op;
    spin_comm_log("allreduce", t ? spin_tensor_numel(t) : 0);
    return spin_comm_check_tensor("allreduce", t, true);
}

static spin_status copy_piece(const char *what, spin_tensor *whole, spin_tensor *part, const int64_t *counts,
                              bool to_part, bool need_f32) {
    SPIN_TRY(spin_comm_check_tensor(what, whole, need_f32));
    SPIN_TRY(spin_comm_check_tensor(what, part, need_f32));
    SPIN_TRY(spin_comm_check_pieces(what, whole, part, counts, 0, 1));
    spin_tensor *src = to_part ? whole : part, *dst = to_part ? part : whole;
    spin_scope_begin();
    spin_tensor *s = spin_reshape(src, spin_tensor_ndim(dst), spin_tensor_shape(dst));
    spin_status st = s ? spin_copy_into(dst, s) : SPIN_ERR_OOM;
    spin_scope_end();
    return st;
}

spin_status spin_comm_reduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                     spin_reduce_op op) {
    (void)c;
    (void)op;
    spin_comm_log("reduce_scatter", src ? spin_tensor_numel(src) : 0);
    return copy_piece("reduce_scatter", src, dst, counts, true, true);
}

/* A world of one completes at once: no request. */
spin_status spin_comm_iallreduce(spin_comm *c, spin_tensor *t, spin_reduce_op op, spin_comm_request **req) {
    (void)c;
    (void)op;
    *req = NULL;
    spin_comm_log("iallreduce", t ? spin_tensor_numel(t) : 0);
    return spin_comm_check_tensor("iallreduce", t, true);
}

spin_status spin_comm_ireduce_scatter(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts,
                                      spin_reduce_op op, spin_comm_request **req) {
    (void)c;
    (void)op;
    *req = NULL;
    spin_comm_log("ireduce_scatter", src ? spin_tensor_numel(src) : 0);
    return copy_piece("ireduce_scatter", src, dst, counts, true, true);
}

spin_status spin_comm_test(spin_comm_request *req, bool *done) {
    (void)req;
    *done = true;
    return SPIN_OK;
}

spin_status spin_comm_wait(spin_comm_request *req) {
    (void)req;
    spin_comm_log("wait", 0);
    return SPIN_OK;
}

spin_status spin_comm_allgather(spin_comm *c, spin_tensor *src, spin_tensor *dst, const int64_t *counts) {
    (void)c;
    spin_comm_log("allgather", dst ? spin_tensor_numel(dst) : 0);
    return copy_piece("allgather", dst, src, counts, false, false);
}

spin_status spin_comm_broadcast(spin_comm *c, spin_tensor *t, int root) {
    (void)c;
    spin_comm_log("broadcast", t ? spin_tensor_numel(t) : 0);
    if (root != 0)
        return spin_fail(SPIN_ERR_INVALID, "broadcast: root %d outside a world of 1", root);
    return spin_comm_check_tensor("broadcast", t, false);
}

spin_status spin_comm_barrier(spin_comm *c) {
    (void)c;
    spin_comm_log("barrier", 0);
    return SPIN_OK;
}

spin_status spin_comm_allreduce_f64(spin_comm *c, double *v, int n, spin_reduce_op op) {
    (void)c;
    (void)v;
    (void)op;
    spin_comm_log("allreduce_f64", n);
    return SPIN_OK;
}

spin_status spin_comm_broadcast_bytes(spin_comm *c, void *buf, size_t n, int root) {
    (void)c;
    (void)buf;
    spin_comm_log("broadcast_bytes", (int64_t)n);
    if (root != 0)
        return spin_fail(SPIN_ERR_INVALID, "broadcast: root %d outside a world of 1", root);
    return SPIN_OK;
}
