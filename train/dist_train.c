#include "train/dist_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/scope.h"

#define ENTRY_NAME_MAX 48

typedef struct {
    char name[ENTRY_NAME_MAX];
    spin_tensor *t; /* the owner's optimizer tensor, a rank-0 copy (temp), or NULL */
    bool temp;
    int owner; /* -1: every rank holds it (zero_stage 0) */
    int param;
} entry;

struct spin_dist {
    spin_comm *comm;
    int rank, size, zero;
    double max_norm; /* the run's clip (ZeRO-1 applies it here, with the global norm) */
    spin_llama *model;
    int n;
    int *owner;    /* [n] owning rank (zero_stage 1), -1 for every rank */
    int *local_of; /* [n] index in this rank's optimizer, -1 when not held */
    spin_tensor **held;
    int n_held;
    spin_optim *opt;
    int n_buckets;
    int *bstart;     /* [n_buckets + 1]: bucket b is parameters bstart[b] .. bstart[b+1]-1 */
    int *order;      /* scratch [n] */
    float *flags;    /* scratch [n] */
    int64_t *counts; /* scratch [size] */
    /* the update's reduction, bucket by bucket from the last to the first (the order backward
     * completes them in, and the same on every rank) */
    int next;                 /* the next bucket to start; -1 when all are */
    int *left;                /* [n_buckets] parameters whose gradient backward has not completed */
    bool *done;               /* [n] reported complete by the leaf hook */
    spin_comm_request **reqs; /* [n_buckets] */
    spin_tensor **wire;       /* [n_buckets] what each bucket sends */
    spin_tensor **got;        /* [n_buckets] what it receives (the wire itself for an all-reduce) */
    spin_tensor *acc;
    int n_entries;
    entry *entries;
    const char **names;
    spin_tensor **tensors;
};

int spin_dist_rank(const spin_dist *d) {
    return d ? d->rank : 0;
}

int spin_dist_size(const spin_dist *d) {
    return d ? d->size : 1;
}

spin_optim *spin_dist_optim(spin_dist *d) {
    return d->opt;
}

int spin_dist_local_index(const spin_dist *d, int i) {
    return d->local_of[i];
}

spin_named_tensors spin_dist_state(const spin_dist *d) {
    return (spin_named_tensors){d->n_entries, d->names, d->tensors};
}

/* Parameters of one transformer block share a bucket; the others (embedding, final norm, an untied
 * head) are buckets of their own. */
static long layer_key(const char *name, int i) {
    long l;
    if (sscanf(name, "model.layers.%ld.", &l) == 1)
        return l;
    return -1 - i;
}

/* ZeRO-1 ownership: largest parameters first, each to the least loaded rank (lowest on ties): the
 * same on every rank. */
static void assign_owners(spin_dist *d) {
    int64_t *load = calloc((size_t)d->size, sizeof *load);
    bool *done = calloc((size_t)d->n + 1, sizeof *done);
    for (int k = 0; k < d->n; k++) {
        int best = -1;
        for (int i = 0; i < d->n; i++)
            if (!done[i] && (best < 0 || spin_tensor_numel(d->model->params[i]) >
                                             spin_tensor_numel(d->model->params[best])))
                best = i;
        int r = 0;
        for (int q = 1; q < d->size; q++)
            if (load[q] < load[r])
                r = q;
        d->owner[best] = r;
        load[r] += spin_tensor_numel(d->model->params[best]);
        done[best] = true;
    }
    free(load);
    free(done);
}

static spin_tensor *find_state(spin_optim *o, const char *name) {
    for (int k = 0; k < spin_optim_state_count(o); k++) {
        const char *nm;
        spin_tensor *t;
        if (spin_optim_state_at(o, k, &nm, &t) == SPIN_OK && !strcmp(nm, name))
            return t;
    }
    return NULL;
}

/* The single-process state names (train/optim.h), each mapped to the tensor this rank holds. */
static spin_status build_entries(spin_dist *d, const spin_optim_config *oc) {
    const char *kinds_rms[] = {"state.%d.square_avg"},
               *kinds_adam[] = {"state.%d.exp_avg", "state.%d.exp_avg_sq"};
    const char **kinds = oc->kind == SPIN_OPTIM_ADAMW ? kinds_adam : kinds_rms;
    int nk = oc->kind == SPIN_OPTIM_ADAMW ? 2 : 1;
    d->entries = calloc((size_t)d->n * 3 + 1, sizeof *d->entries);
    d->names = calloc((size_t)d->n * 3 + 1, sizeof *d->names);
    d->tensors = calloc((size_t)d->n * 3 + 1, sizeof *d->tensors);
    if (!d->entries || !d->names || !d->tensors)
        return spin_fail(SPIN_ERR_OOM, "dist: state list");
    for (int i = 0; i < d->n; i++) {
        spin_tensor *p = d->model->params[i];
        bool master = spin_tensor_dtype(p) != SPIN_F32;
        for (int k = master ? -1 : 0; k < nk; k++) {
            const char *fmt = k < 0 ? "master.%d" : kinds[k];
            entry *e = &d->entries[d->n_entries];
            snprintf(e->name, sizeof e->name, fmt, i);
            e->owner = d->owner[i];
            e->param = i;
            if (d->local_of[i] >= 0) {
                char local[ENTRY_NAME_MAX];
                snprintf(local, sizeof local, fmt, d->local_of[i]);
                e->t = find_state(d->opt, local);
                if (!e->t)
                    return spin_fail(SPIN_ERR_INVALID, "dist: the optimizer has no state %s", local);
            } else if (d->rank == 0) {
                e->t = spin_zeros(spin_tensor_device(p), SPIN_F32, spin_tensor_ndim(p), spin_tensor_shape(p));
                if (!e->t)
                    return SPIN_ERR_OOM;
                e->temp = true;
            }
            d->names[d->n_entries] = e->name;
            d->tensors[d->n_entries] = e->t;
            d->n_entries++;
        }
    }
    return SPIN_OK;
}

spin_status spin_dist_new(spin_comm *comm, int zero_stage, const spin_optim_config *oc, spin_llama *model,
                          spin_dist **out) {
    *out = NULL;
    if (zero_stage != 0 && zero_stage != 1)
        return spin_fail(SPIN_ERR_INVALID, "zero_stage must be 0 or 1 (got %d): ZeRO-2/3 are not implemented",
                         zero_stage);
    spin_dist *d = calloc(1, sizeof *d);
    if (!d)
        return spin_fail(SPIN_ERR_OOM, "dist: out of host memory");
    d->comm = comm;
    d->rank = spin_comm_rank(comm);
    d->size = spin_comm_size(comm);
    d->zero = zero_stage;
    d->max_norm = oc->max_grad_norm;
    d->model = model;
    d->n = model->n_params;
    size_t n1 = (size_t)d->n + 1;
    d->owner = calloc(n1, sizeof *d->owner);
    d->local_of = calloc(n1, sizeof *d->local_of);
    d->held = calloc(n1, sizeof *d->held);
    d->bstart = calloc(n1 + 1, sizeof *d->bstart);
    d->order = calloc(n1, sizeof *d->order);
    d->flags = calloc(n1, sizeof *d->flags);
    d->counts = calloc((size_t)d->size, sizeof *d->counts);
    d->left = calloc(n1, sizeof *d->left);
    d->done = calloc(n1, sizeof *d->done);
    d->reqs = calloc(n1, sizeof *d->reqs);
    d->wire = calloc(n1, sizeof *d->wire);
    d->got = calloc(n1, sizeof *d->got);
    if (!d->owner || !d->local_of || !d->held || !d->bstart || !d->order || !d->flags || !d->counts ||
        !d->left || !d->done || !d->reqs || !d->wire || !d->got) {
        spin_dist_free(d);
        return spin_fail(SPIN_ERR_OOM, "dist: out of host memory");
    }
    for (int i = 0; i < d->n; i++)
        d->owner[i] = -1;
    if (d->zero)
        assign_owners(d);
    for (int i = 0; i < d->n; i++) {
        d->local_of[i] = d->owner[i] < 0 || d->owner[i] == d->rank ? d->n_held : -1;
        if (d->local_of[i] >= 0)
            d->held[d->n_held++] = model->params[i];
    }
    for (int i = 0; i < d->n; i++)
        if (i == 0 || layer_key(model->names[i], i) != layer_key(model->names[i - 1], i - 1))
            d->bstart[d->n_buckets++] = i;
    d->bstart[d->n_buckets] = d->n;
    d->next = d->n_buckets - 1;

    /* ZeRO-1 owners clip with the global norm themselves (spin_dist_step), so their optimizer's own
     * clip is off (a coefficient of exactly 1) */
    spin_optim_config lc = *oc;
    if (d->zero)
        lc.max_grad_norm = 0;
    d->opt = spin_optim_new(&lc, d->held, d->n_held);
    spin_status s = d->opt ? SPIN_OK : SPIN_ERR_INVALID;
    spin_scope_manual_begin();
    if (s == SPIN_OK) {
        d->acc = spin_zeros(model->dev, SPIN_F32, 1, (int64_t[]){2});
        s = d->acc ? build_entries(d, oc) : SPIN_ERR_OOM;
    }
    spin_scope_manual_end();
    if (s != SPIN_OK) {
        spin_dist_free(d);
        return s;
    }
    *out = d;
    return SPIN_OK;
}

void spin_dist_free(spin_dist *d) {
    if (!d)
        return;
    if (d->reqs)
        spin_dist_drop(d); /* a run that stopped between starting the reduction and the step */
    for (int k = 0; d->entries && k < d->n_entries; k++)
        if (d->entries[k].temp)
            spin_tensor_release(d->entries[k].t);
    spin_tensor_release(d->acc);
    spin_optim_free(d->opt);
    free(d->owner);
    free(d->local_of);
    free(d->held);
    free(d->bstart);
    free(d->order);
    free(d->flags);
    free(d->counts);
    free(d->left);
    free(d->done);
    free(d->reqs);
    free(d->wire);
    free(d->got);
    free(d->entries);
    free(d->names);
    free(d->tensors);
    free(d);
}

void spin_dist_slice(const spin_dist *d, int64_t b, int64_t grad_accum, int64_t *lo, int64_t *cnt,
                     float *loss_scale) {
    int64_t e;
    spin_shard_range(b, spin_dist_rank(d), spin_dist_size(d), lo, &e);
    *cnt = e - *lo;
    /* formed in double and rounded once: with one rank it is exactly 1.0f / grad_accum */
    *loss_scale = (float)((double)*cnt / (double)b / (double)grad_accum);
}

/* ---- agreement ---- */

spin_status spin_dist_agree(spin_dist *d, spin_status s, bool *flag) {
    if (!d)
        return s;
    /* failed anywhere, the lowest failing rank (as -rank under max), the flag */
    double v[3] = {s != SPIN_OK, s != SPIN_OK ? -(double)d->rank : -(double)d->size, flag && *flag};
    spin_status cs = spin_comm_allreduce_f64(d->comm, v, 3, SPIN_REDUCE_MAX);
    if (cs != SPIN_OK)
        return cs;
    if (flag)
        *flag = v[2] > 0;
    if (v[0] == 0)
        return SPIN_OK;
    int root = (int)-v[1];
    struct {
        int code;
        char msg[1000];
    } m = {0};
    if (d->rank == root) {
        m.code = (int)s;
        snprintf(m.msg, sizeof m.msg, "%s", spin_last_error());
    }
    cs = spin_comm_broadcast_bytes(d->comm, &m, sizeof m, root);
    if (s != SPIN_OK)
        return s;
    if (cs != SPIN_OK)
        return cs;
    return spin_fail((spin_status)m.code, "rank %d of %d failed: %s", root, d->size, m.msg);
}

spin_status spin_dist_combine(spin_dist *d, spin_status s, spin_pref_metrics *m, bool *finite) {
    if (!d)
        return s;
    bool ok = s == SPIN_OK;
    double w = ok ? (double)m->batch : 0;
    double v[13] = {0};
    if (ok && w > 0) {
        double f[9] = {m->loss,         m->rewards_chosen, m->rewards_rejected, m->accuracies,     m->margins,
                       m->logps_chosen, m->logps_rejected, m->logits_chosen,    m->logits_rejected};
        for (int k = 0; k < 9; k++)
            v[k] = w * f[k];
    }
    v[9] = ok ? (double)m->tokens : 0;
    v[10] = w;
    v[11] = ok && !*finite;
    v[12] = !ok;
    spin_status cs = spin_comm_allreduce_f64(d->comm, v, 13, SPIN_REDUCE_SUM);
    if (cs != SPIN_OK)
        return cs;
    if (v[12] > 0)
        return spin_dist_agree(d, s, NULL);
    double b = v[10] > 0 ? v[10] : 1;
    *m = (spin_pref_metrics){.loss = v[0] / b,
                             .rewards_chosen = v[1] / b,
                             .rewards_rejected = v[2] / b,
                             .accuracies = v[3] / b,
                             .margins = v[4] / b,
                             .logps_chosen = v[5] / b,
                             .logps_rejected = v[6] / b,
                             .logits_chosen = v[7] / b,
                             .logits_rejected = v[8] / b,
                             .tokens = (int64_t)v[9],
                             .batch = (int64_t)v[10]};
    *finite = v[11] == 0 && isfinite(m->loss);
    return SPIN_OK;
}

/* ---- the update ---- */

/* A zero gradient for a parameter this rank has none of (its slice of a short last batch was
 * empty): d/dp sum(0 * p) through the public autograd. */
static spin_status ensure_grad(spin_tensor *p) {
    spin_scope_begin();
    spin_tensor *z = spin_sum(spin_scale(spin_reshape(p, 1, (int64_t[]){-1}), 0.0f), 0, false);
    spin_status s = z ? spin_backward(z) : SPIN_ERR_OOM;
    spin_scope_end();
    return s;
}

/* The parameters of bucket b in wire order (by owner under ZeRO-1), with the per-rank element
 * counts; returns how many. */
static int bucket_list(spin_dist *d, int b) {
    int k = 0;
    memset(d->counts, 0, (size_t)d->size * sizeof *d->counts);
    for (int pass = 0; pass < (d->zero ? d->size : 1); pass++)
        for (int i = d->bstart[b]; i < d->bstart[b + 1]; i++) {
            if (d->zero && d->owner[i] != pass)
                continue;
            d->order[k++] = i;
            if (d->zero)
                d->counts[pass] += spin_tensor_numel(d->model->params[i]);
        }
    return k;
}

/* One flat tensor of the listed parameters (in their dtype), only those of only_owner when it is
 * >= 0; n elements (the caller knows them). */
static spin_tensor *flat_concat(spin_dist *d, int k, int only_owner, int64_t n) {
    spin_dtype dt = spin_tensor_dtype(d->model->params[d->order[0]]);
    spin_tensor *flat = spin_tensor_new(d->model->dev, dt, 1, &n);
    int64_t off = 0;
    for (int j = 0; flat && j < k; j++) {
        int i = d->order[j];
        if (only_owner >= 0 && d->owner[i] != only_owner)
            continue;
        spin_tensor *t = d->model->params[i];
        int64_t m = spin_tensor_numel(t);
        spin_tensor *piece =
            spin_reshape(spin_narrow(flat, 0, off, m), spin_tensor_ndim(t), spin_tensor_shape(t));
        if (!piece || spin_copy_into(piece, t) != SPIN_OK)
            return NULL;
        off += m;
    }
    return flat;
}

/* Copies consecutive pieces of flat into the listed parameters but those of skip_owner. */
static spin_status scatter_params(spin_dist *d, int k, spin_tensor *flat, int skip_owner) {
    int64_t off = 0;
    spin_status s = SPIN_OK;
    for (int j = 0; j < k && s == SPIN_OK; j++) {
        int i = d->order[j];
        spin_tensor *p = d->model->params[i];
        int64_t n = spin_tensor_numel(p);
        if (d->owner[i] != skip_owner) {
            spin_tensor *piece =
                spin_reshape(spin_narrow(flat, 0, off, n), spin_tensor_ndim(p), spin_tensor_shape(p));
            s = piece ? spin_copy_into(p, piece) : SPIN_ERR_OOM;
        }
        off += n;
    }
    return s;
}

/* ---- the gradient reduction, overlapped with backward ----
 * A bucket's wire is, per owner group (all of the bucket for zero_stage 0, each rank's parameters
 * under ZeRO-1), the group's gradients in f32 and then one flag per parameter: 1 when this rank
 * has a gradient for it. Summed, the flag says whether any rank has one: such parameters get the
 * sum (a rank without a gradient sends zeros, as a zero gradient would), the others keep none, as
 * without data parallelism. So the layout does not depend on which gradients a rank has, and a
 * bucket can be sent as soon as its own gradients are complete. */

/* Packs bucket b (wire order of bucket_list) into d->wire[b] and starts its reduction. */
static spin_status start_bucket(spin_dist *d, int b) {
    int k = bucket_list(d, b);
    int64_t total = k;
    for (int j = 0; j < k; j++)
        total += spin_tensor_numel(d->model->params[d->order[j]]);
    if (d->zero)
        for (int j = 0; j < k; j++)
            d->counts[d->owner[d->order[j]]]++; /* the flags */
    spin_status s = SPIN_OK;
    spin_no_grad_begin();
    spin_scope_begin();
    spin_tensor *flat = spin_scope_keep(spin_tensor_new(d->model->dev, SPIN_F32, 1, &total));
    if (!flat)
        s = SPIN_ERR_OOM;
    int64_t off = 0;
    for (int j = 0, g0 = 0; j < k && s == SPIN_OK; j++) {
        spin_tensor *p = d->model->params[d->order[j]], *g = spin_tensor_grad(p);
        int64_t m = spin_tensor_numel(p);
        spin_tensor *piece = spin_narrow(flat, 0, off, m);
        d->flags[j] = g != NULL;
        if (!piece)
            s = SPIN_ERR_OOM;
        else if (g)
            s = spin_copy_into(spin_reshape(piece, spin_tensor_ndim(p), spin_tensor_shape(p)), g);
        else
            s = spin_fill_(piece, 0.0f);
        off += m;
        bool group_end = j + 1 == k || (d->zero && d->owner[d->order[j + 1]] != d->owner[d->order[j]]);
        if (s == SPIN_OK && group_end) {
            spin_tensor *fl = spin_narrow(flat, 0, off, j + 1 - g0);
            s = fl ? spin_tensor_write(fl, d->flags + g0, (size_t)(j + 1 - g0) * sizeof(float))
                   : SPIN_ERR_OOM;
            off += j + 1 - g0;
            g0 = j + 1;
        }
    }
    spin_tensor *mine = NULL;
    if (s == SPIN_OK && d->zero) {
        mine = spin_scope_keep(spin_tensor_new(d->model->dev, SPIN_F32, 1, &d->counts[d->rank]));
        s = mine ? spin_comm_ireduce_scatter(d->comm, flat, mine, d->counts, SPIN_REDUCE_SUM, &d->reqs[b])
                 : SPIN_ERR_OOM;
    } else if (s == SPIN_OK) {
        s = spin_comm_iallreduce(d->comm, flat, SPIN_REDUCE_SUM, &d->reqs[b]);
    }
    spin_scope_end();
    spin_no_grad_end();
    d->wire[b] = flat;
    d->got[b] = d->zero ? mine : spin_tensor_retain(flat);
    return s;
}

/* Starts the buckets from d->next down while their gradients are complete (every bucket when
 * all is set), and lets the transport move the started ones along. */
static spin_status start_ready(spin_dist *d, bool all) {
    spin_status s = SPIN_OK;
    while (s == SPIN_OK && d->next >= 0 && (all || d->left[d->next] == 0))
        s = start_bucket(d, d->next--);
    for (int b = d->n_buckets - 1; b > d->next && s == SPIN_OK; b--) {
        bool fin;
        s = spin_comm_test(d->reqs[b], &fin);
    }
    return s;
}

/* The leaf hook: a parameter's gradient is complete for this backward. */
static spin_status on_leaf(void *ctx, spin_tensor *leaf) {
    spin_dist *d = ctx;
    for (int b = d->n_buckets - 1; b >= 0; b--) /* backward reports the last buckets first */
        for (int i = d->bstart[b]; i < d->bstart[b + 1]; i++)
            if (d->model->params[i] == leaf) {
                if (!d->done[i]) {
                    d->done[i] = true;
                    d->left[b]--;
                }
                return start_ready(d, false);
            }
    return SPIN_OK; /* not a parameter of this model */
}

void spin_dist_overlap_begin(spin_dist *d) {
    for (int b = 0; b < d->n_buckets; b++)
        d->left[b] = d->bstart[b + 1] - d->bstart[b];
    memset(d->done, 0, (size_t)d->n * sizeof *d->done);
    spin_autograd_set_leaf_hook(on_leaf, d);
}

spin_status spin_dist_overlap_end(spin_dist *d, spin_status s) {
    spin_autograd_set_leaf_hook(NULL, NULL);
    /* every rank starts every bucket, in the same order, whatever its backward did (a failure is
     * agreed on afterwards; an empty slice sends zeros) */
    spin_status st = start_ready(d, true);
    return s != SPIN_OK ? s : st;
}

/* Completes bucket b: the summed gradients into the parameters this rank keeps (all, or those it
 * owns under ZeRO-1; the others drop theirs). */
static spin_status finish_bucket(spin_dist *d, int b) {
    spin_status s = spin_comm_wait(d->reqs[b]);
    d->reqs[b] = NULL;
    int k = bucket_list(d, b), mine = d->zero ? d->rank : -1;
    int64_t off = 0;
    int kk = 0;
    for (int j = 0; j < k; j++)
        if (mine < 0 || d->owner[d->order[j]] == mine) {
            off += spin_tensor_numel(d->model->params[d->order[j]]);
            kk++;
        }
    spin_scope_begin();
    spin_tensor *fl = s == SPIN_OK ? spin_narrow(d->got[b], 0, off, kk) : NULL;
    if (s == SPIN_OK)
        s = fl ? spin_tensor_read(fl, d->flags, (size_t)kk * sizeof(float)) : SPIN_ERR_OOM;
    /* a rank without a gradient for a parameter another rank has gets a zero one to add into */
    for (int j = 0, q = 0; j < k && s == SPIN_OK; j++) {
        spin_tensor *p = d->model->params[d->order[j]];
        if (mine >= 0 && d->owner[d->order[j]] != mine)
            continue;
        if (d->flags[q++] > 0 && !spin_tensor_grad(p))
            s = ensure_grad(p);
    }
    spin_no_grad_begin();
    off = 0;
    for (int j = 0, q = 0; j < k && s == SPIN_OK; j++) {
        spin_tensor *p = d->model->params[d->order[j]];
        if (mine >= 0 && d->owner[d->order[j]] != mine) {
            spin_tensor_zero_grad(p);
            continue;
        }
        int64_t n = spin_tensor_numel(p);
        if (d->flags[q++] > 0) {
            spin_tensor *piece =
                spin_reshape(spin_narrow(d->got[b], 0, off, n), spin_tensor_ndim(p), spin_tensor_shape(p));
            s = piece ? spin_copy_into(spin_tensor_grad(p), piece) : SPIN_ERR_OOM;
        }
        off += n;
    }
    spin_no_grad_end();
    spin_scope_end();
    return s;
}

/* Releases the buckets' tensors and readies the next update. */
static void reset_buckets(spin_dist *d) {
    for (int b = 0; b < d->n_buckets; b++) {
        spin_tensor_release(d->wire[b]);
        spin_tensor_release(d->got[b]);
        d->wire[b] = d->got[b] = NULL;
    }
    d->next = d->n_buckets - 1;
}

spin_status spin_dist_drop(spin_dist *d) {
    spin_autograd_set_leaf_hook(NULL, NULL);
    spin_status s = SPIN_OK;
    for (int b = d->n_buckets - 1; b > d->next; b--) {
        spin_status w = spin_comm_wait(d->reqs[b]);
        d->reqs[b] = NULL;
        if (s == SPIN_OK)
            s = w;
    }
    reset_buckets(d);
    return s;
}

/* Sums the gradients over the ranks: every rank (zero_stage 0) or the owner (1) ends with the
 * total; under ZeRO-1 other ranks drop theirs. Buckets backward has not started are started here
 * (all of them when the trainer did not overlap). */
static spin_status reduce_grads(spin_dist *d) {
    spin_status s = start_ready(d, true);
    for (int b = d->n_buckets - 1; b >= 0 && s == SPIN_OK; b--)
        s = finish_bucket(d, b);
    if (s != SPIN_OK)
        spin_dist_drop(d); /* what is still in flight */
    else
        reset_buckets(d);
    return s;
}

/* ZeRO-1: every parameter from its owner to every rank, bucket by bucket. */
static spin_status gather_params(spin_dist *d) {
    spin_status s = SPIN_OK;
    spin_no_grad_begin();
    for (int b = 0; b < d->n_buckets && s == SPIN_OK; b++) {
        int k = bucket_list(d, b);
        int64_t total = 0;
        for (int r = 0; r < d->size; r++)
            total += d->counts[r];
        spin_scope_begin();
        spin_dtype dt = spin_tensor_dtype(d->model->params[d->order[0]]);
        spin_tensor *mine = flat_concat(d, k, d->rank, d->counts[d->rank]);
        spin_tensor *all = spin_tensor_new(d->model->dev, dt, 1, &total);
        s = mine && all ? spin_comm_allgather(d->comm, mine, all, d->counts) : SPIN_ERR_OOM;
        if (s == SPIN_OK)
            s = scatter_params(d, k, all, d->rank);
        spin_scope_end();
    }
    spin_no_grad_end();
    return s;
}

/* ZeRO-1's clip: the squares of the owned gradients (the optimizer's own kernel), summed over the
 * ranks in double, then torch's coefficient in f32 as GRAD_CLIP_STAT forms it. */
static spin_status global_norm(spin_dist *d, double max_norm, float *norm, float *coef) {
    spin_status s = spin_fill_(d->acc, 0.0f);
    spin_no_grad_begin();
    spin_scope_begin();
    for (int j = 0; j < d->n_held && s == SPIN_OK; j++) {
        spin_tensor *g = spin_tensor_grad(d->held[j]);
        if (!g)
            continue;
        if (spin_tensor_dtype(g) != SPIN_F32)
            g = spin_cast(g, SPIN_F32);
        s = spin_launch(SPIN_K_GRAD_SUMSQ, 1, &g, 1, &d->acc, NULL);
    }
    spin_scope_end();
    spin_no_grad_end();
    float a[2] = {0, 0};
    if (s == SPIN_OK)
        s = spin_tensor_read(d->acc, a, sizeof a);
    double total = (double)a[0] + (double)a[1];
    if (s == SPIN_OK)
        s = spin_comm_allreduce_f64(d->comm, &total, 1, SPIN_REDUCE_SUM);
    *norm = (float)sqrt(total);
    *coef = 1.0f;
    if (max_norm > 0) {
        float c = (1.0f / (*norm + 1e-6f)) * (float)max_norm;
        *coef = c < 1.0f ? c : 1.0f;
    }
    return s;
}

static void drop_held_grads(spin_dist *d) {
    for (int j = 0; j < d->n_held; j++)
        spin_tensor_zero_grad(d->held[j]);
}

spin_status spin_dist_step(spin_dist *d, double lr, spin_optim_result *res) {
    *res = (spin_optim_result){0.0f, true};
    spin_status s = reduce_grads(d);
    if (s != SPIN_OK || !d->zero)
        return s == SPIN_OK ? spin_optim_step(d->opt, lr, res) : s;
    float norm, coef;
    s = global_norm(d, d->max_norm, &norm, &coef);
    res->grad_norm = norm;
    res->finite = isfinite(norm);
    if (s != SPIN_OK || !res->finite) {
        /* nothing changes anywhere, as spin_optim_step with a non-finite gradient */
        drop_held_grads(d);
        return s;
    }
    if (coef != 1.0f) {
        spin_no_grad_begin();
        spin_scope_begin();
        for (int j = 0; j < d->n_held && s == SPIN_OK; j++) {
            spin_tensor *g = spin_tensor_grad(d->held[j]);
            if (g)
                s = spin_copy_into(g, spin_scale(g, coef)); /* g * coef in f32, as the step kernels */
        }
        spin_scope_end();
        spin_no_grad_end();
    }
    int64_t steps = spin_optim_steps(d->opt);
    spin_optim_result local;
    if (s == SPIN_OK)
        s = spin_optim_step(d->opt, lr, &local);
    /* a rank that owns no gradient did not count the step: every rank counts it */
    spin_optim_set_steps(d->opt, steps + 1);
    if (s == SPIN_OK)
        s = gather_params(d);
    return s;
}

/* ---- checkpoints ---- */

/* Broadcasts entry e from root into whatever this rank holds for it (a transient tensor when it
 * holds nothing). */
static spin_status bcast_entry(spin_dist *d, entry *e, int root) {
    spin_tensor *p = d->model->params[e->param];
    if (e->t)
        return spin_comm_broadcast(d->comm, e->t, root);
    spin_scope_begin();
    spin_tensor *t =
        spin_tensor_new(spin_tensor_device(p), SPIN_F32, spin_tensor_ndim(p), spin_tensor_shape(p));
    spin_status s = t ? spin_comm_broadcast(d->comm, t, root) : SPIN_ERR_OOM;
    spin_scope_end();
    return s;
}

static spin_status bcast_string(spin_dist *d, char **str, int root) {
    int64_t len = d->rank == root ? (*str ? (int64_t)strlen(*str) : -1) : 0;
    SPIN_TRY(spin_comm_broadcast_bytes(d->comm, &len, sizeof len, root));
    if (d->rank != root) {
        free(*str);
        *str = NULL;
        if (len < 0)
            return SPIN_OK;
        *str = calloc((size_t)len + 1, 1);
        if (!*str)
            return spin_fail(SPIN_ERR_OOM, "dist: out of host memory");
    }
    return len > 0 ? spin_comm_broadcast_bytes(d->comm, *str, (size_t)len, root) : SPIN_OK;
}

spin_status spin_dist_ckpt_save(spin_dist *d, const char *output_dir, int64_t step, const spin_llama *model,
                                const char *trainer_state_json, char **path) {
    *path = NULL;
    spin_status s = SPIN_OK;
    /* ZeRO-1: the owners' state to rank 0 (a broadcast: the one primitive every transport has;
     * checkpoints are rare) */
    for (int k = 0; k < d->n_entries && s == SPIN_OK; k++)
        if (d->entries[k].owner > 0)
            s = bcast_entry(d, &d->entries[k], d->entries[k].owner);
    if (s == SPIN_OK && d->rank == 0) {
        spin_named_tensors st = spin_dist_state(d);
        s = spin_ckpt_save(output_dir, step, model, st, trainer_state_json, true, path);
    }
    s = spin_dist_agree(d, s, NULL);
    if (s == SPIN_OK)
        s = bcast_string(d, path, 0);
    return s;
}

spin_status spin_dist_ckpt_resume(spin_dist *d, const char *output_dir, spin_llama *model, char **ckpt,
                                  char **trainer_state_json) {
    *ckpt = NULL;
    *trainer_state_json = NULL;
    spin_status s = SPIN_OK;
    if (d->rank == 0) {
        s = spin_ckpt_latest(output_dir, ckpt);
        if (s == SPIN_OK && *ckpt)
            s = spin_ckpt_load(*ckpt, model, spin_dist_state(d), trainer_state_json);
    }
    s = spin_dist_agree(d, s, NULL);
    if (s == SPIN_OK)
        s = bcast_string(d, ckpt, 0);
    if (s == SPIN_OK)
        s = bcast_string(d, trainer_state_json, 0);
    if (s != SPIN_OK || !*ckpt)
        return s;
    spin_no_grad_begin();
    for (int i = 0; i < model->n_params && s == SPIN_OK; i++)
        s = spin_comm_broadcast(d->comm, model->params[i], 0);
    spin_no_grad_end();
    for (int k = 0; k < d->n_entries && s == SPIN_OK; k++)
        if (d->entries[k].owner != 0)
            s = bcast_entry(d, &d->entries[k], 0);
    return s;
}
