/* Reverse-mode autograd. Ops record a node on their output when grad mode is on and an input
 * requires grad; spin_backward walks the nodes in reverse topological order, calling each node's
 * backward rule (which lives with its op in ops/), and accumulates into leaf tensors' .grad.
 * The graph is freed by backward (saved activations released) unless asked to keep it. */
#ifndef SPIN_CORE_AUTOGRAD_H
#define SPIN_CORE_AUTOGRAD_H

#include "core/backend.h"
#include "core/tensor.h"

#define SPIN_NODE_MAX_IN 8
#define SPIN_NODE_MAX_SAVED 8

typedef struct spin_node spin_node;

/* Computes gin[i] (an owned reference, or NULL) for every input with n->needs[i], from the
 * gradient of the node's output. Runs with grad mode off unless the graph is being
 * differentiated twice, which this library does not do. */
typedef spin_status (*spin_backward_fn)(spin_node *n, spin_tensor *gout, spin_tensor **gin);

struct spin_node {
    const char *name;
    spin_backward_fn backward;
    int n_in;
    spin_tensor *in[SPIN_NODE_MAX_IN];
    bool needs[SPIN_NODE_MAX_IN];
    int n_saved;
    spin_tensor *saved[SPIN_NODE_MAX_SAVED];
    spin_kparams p; /* the op's parameters */
    int64_t out_shape[SPIN_MAX_DIMS];
    int out_ndim;
    void *ctx; /* op-private data, freed with ctx_free */
    void (*ctx_free)(void *ctx);
    /* leaves the backward differentiates without holding them as inputs: the parameters a recompute
     * function reads (spin_checkpoint), so a leaf hook knows this node still adds to them */
    int n_hidden;
    spin_tensor **hidden;
    bool released; /* backward has run and freed the saved state */
    /* traversal state */
    bool walking;  /* in a backward walk: its struct outlives its output tensor until the end */
    bool orphaned; /* its output tensor died during the walk */
    int pending;
    spin_tensor *gacc;
};

bool spin_grad_enabled(void);
/* No-grad mode nests: nothing is recorded between begin and end. */
void spin_no_grad_begin(void);
void spin_no_grad_end(void);
/* Re-enables recording inside a no-grad region (used by recompute). */
void spin_grad_force_begin(void);
void spin_grad_force_end(void);

/* Records a node producing `out` if grad mode is on and any input requires grad; returns it (the
 * op then saves what its backward needs) or NULL when nothing is recorded. Inputs may be NULL. */
spin_node *spin_autograd_record(spin_tensor *out, const char *name, spin_backward_fn backward, int n_in,
                                spin_tensor *const *in);
/* Keeps t for backward: an alias sharing t's storage, without t's graph (no reference cycles). */
void spin_node_save(spin_node *n, spin_tensor *t);
void spin_node_free(spin_node *n);

/* Backward from a scalar (seed 1), or from any tensor with a given seed gradient. */
spin_status spin_backward(spin_tensor *loss);
spin_status spin_backward_seeded(spin_tensor *out, spin_tensor *seed, bool keep_graph);

/* A tensor sharing t's storage with no graph and requires_grad off. */
spin_tensor *spin_detach(spin_tensor *t);

/* Activation recompute: runs fn without recording, and records one node whose backward runs fn
 * again with recording on and differentiates through it. Only fn's inputs and output are kept.
 * fn must be deterministic (the RNG is counter-based, so seeded dropout is). fn runs with manual
 * ownership (core/scope.h): it releases its temporaries and returns an owned reference. */
typedef spin_tensor *(*spin_recompute_fn)(void *ctx, spin_tensor *const *in, int n_in);
/* ctx (ctx_size bytes) is copied into the node: tensors fn needs must be inputs, not ctx fields,
 * so they are kept alive until backward. */
spin_tensor *spin_checkpoint(spin_recompute_fn fn, const void *ctx, size_t ctx_size, int n_in,
                             spin_tensor *const *in);

/* Leaf hook, for work that needs finished gradients while backward goes on (data-parallel training
 * starts sending a block's gradients as soon as they are complete). While set, the outermost
 * backward walk of this thread calls fn(ctx, leaf) once for each leaf it reaches (a tensor that
 * requires grad and has no node), as soon as leaf's .grad holds all of this walk's contributions:
 * after the last node that differentiates it has run, a recompute node counting for the parameters
 * its function read. Leaves the walk does not reach are not reported. An error from fn ends the
 * walk with it; so does a contribution to a leaf after it was reported. Thread-local; fn NULL
 * clears it. Unset, backward does no extra work. */
typedef spin_status (*spin_leaf_hook_fn)(void *ctx, spin_tensor *leaf);
void spin_autograd_set_leaf_hook(spin_leaf_hook_fn fn, void *ctx);
/* True while a backward walk runs on this thread (in a leaf hook, for instance). */
bool spin_backward_running(void);

/* Accumulates g into *acc (creating it, contiguous, on first use). */
spin_status spin_grad_accumulate(spin_tensor **acc, spin_tensor *g);

#endif
