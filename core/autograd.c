#include "core/autograd.h"

#include <stdlib.h>
#include <string.h>

#include "core/dispatch.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/scope.h"
#include "core/tensor_impl.h"

static _Thread_local int no_grad_depth;
static _Thread_local int force_depth;
static _Thread_local spin_pool node_pool = {sizeof(spin_node), NULL};
static _Thread_local struct {
    spin_leaf_hook_fn fn;
    void *ctx;
} leaf_hook;
static _Thread_local int walk_depth; /* backward walks running on this thread (recompute nests them) */

/* A set of tensors (small: a block's parameters, a graph's leaves). */
typedef struct {
    spin_tensor **items;
    int n, cap;
} tensor_set;

static void set_push(tensor_set *s, spin_tensor *t) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->items = realloc(s->items, (size_t)s->cap * sizeof *s->items);
        SPIN_ASSERT(s->items, "out of host memory");
    }
    s->items[s->n++] = t;
}

/* The leaves read while a recompute function runs forward (spin_checkpoint), or NULL. */
static _Thread_local tensor_set *capture;

static bool is_leaf(const spin_tensor *t) {
    return t && !t->node && t->requires_grad;
}

static void capture_add(tensor_set *s, spin_tensor *t) {
    for (int i = 0; i < s->n; i++)
        if (s->items[i] == t)
            return;
    set_push(s, t);
}

void spin_autograd_set_leaf_hook(spin_leaf_hook_fn fn, void *ctx) {
    leaf_hook.fn = fn;
    leaf_hook.ctx = fn ? ctx : NULL;
}

bool spin_backward_running(void) {
    return walk_depth > 0;
}

bool spin_grad_enabled(void) {
    return no_grad_depth == 0 || force_depth > 0;
}
void spin_no_grad_begin(void) {
    no_grad_depth++;
}
void spin_no_grad_end(void) {
    SPIN_ASSERT(no_grad_depth > 0, "unbalanced no-grad");
    no_grad_depth--;
}
void spin_grad_force_begin(void) {
    force_depth++;
}
void spin_grad_force_end(void) {
    SPIN_ASSERT(force_depth > 0, "unbalanced grad force");
    force_depth--;
}

static bool wants_grad(const spin_tensor *t) {
    return t && (t->requires_grad || t->node);
}

spin_node *spin_autograd_record(spin_tensor *out, const char *name, spin_backward_fn backward, int n_in,
                                spin_tensor *const *in) {
    if (capture) /* before the grad-mode test: a recompute function runs forward without recording */
        for (int i = 0; i < n_in; i++)
            if (is_leaf(in[i]))
                capture_add(capture, in[i]);
    if (!out || !spin_grad_enabled())
        return NULL;
    SPIN_ASSERT(n_in <= SPIN_NODE_MAX_IN, "%s: %d inputs", name, n_in);
    bool any = false;
    for (int i = 0; i < n_in; i++)
        any |= wants_grad(in[i]);
    if (!any)
        return NULL;
    spin_node *n = spin_pool_get(&node_pool);
    n->name = name;
    n->backward = backward;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        n->in[i] = spin_tensor_retain(in[i]);
        n->needs[i] = wants_grad(in[i]);
    }
    n->out_ndim = out->ndim;
    memcpy(n->out_shape, out->shape, sizeof n->out_shape);
    SPIN_ASSERT(!out->node, "%s: output already has a node", name);
    out->node = n;
    out->requires_grad = true;
    return n;
}

static spin_tensor *alias_of(spin_tensor *t) {
    spin_scope_manual_begin();
    spin_tensor *a = spin_tensor_view_of(t, t->ndim, t->shape, t->stride, t->offset);
    spin_scope_manual_end();
    return a;
}

void spin_node_save(spin_node *n, spin_tensor *t) {
    SPIN_ASSERT(n->n_saved < SPIN_NODE_MAX_SAVED, "%s: too many saved tensors", n->name);
    n->saved[n->n_saved++] = t ? alias_of(t) : NULL;
}

static void node_release_state(spin_node *n) {
    for (int i = 0; i < n->n_in; i++) {
        spin_tensor_release(n->in[i]);
        n->in[i] = NULL;
    }
    for (int i = 0; i < n->n_saved; i++) {
        spin_tensor_release(n->saved[i]);
        n->saved[i] = NULL;
    }
    if (n->ctx_free)
        n->ctx_free(n->ctx);
    n->ctx = NULL;
    n->ctx_free = NULL;
    for (int i = 0; i < n->n_hidden; i++)
        spin_tensor_release(n->hidden[i]);
    free(n->hidden);
    n->hidden = NULL;
    n->n_hidden = 0;
    n->released = true;
}

void spin_node_free(spin_node *n) {
    if (!n)
        return;
    if (n->walking) {
        n->orphaned = true; /* the walk still needs it; freed when the walk ends */
        return;
    }
    node_release_state(n);
    spin_tensor_release(n->gacc);
    spin_pool_put(&node_pool, n);
}

spin_tensor *spin_detach(spin_tensor *t) {
    spin_tensor *a = spin_tensor_view_of(t, t->ndim, t->shape, t->stride, t->offset);
    return a;
}

spin_status spin_grad_accumulate(spin_tensor **acc, spin_tensor *g) {
    if (!*acc) {
        /* Take g when nobody else can see its storage; otherwise copy so in-place adds later
         * cannot change someone else's tensor. */
        if (g->refcount == 1 && g->st->refcount == 1 && spin_tensor_is_contiguous(g) && g->offset == 0 &&
            !g->node) {
            *acc = spin_tensor_retain(g);
            return SPIN_OK;
        }
        spin_tensor *c = spin_tensor_new(g->st->dev, g->dtype, g->ndim, g->shape);
        if (!c)
            return SPIN_ERR_OOM;
        spin_status s = spin_launch(SPIN_K_COPY, 1, &g, 1, &c, NULL);
        if (s != SPIN_OK) {
            spin_tensor_release(c);
            return s;
        }
        *acc = c;
        return SPIN_OK;
    }
    SPIN_ASSERT(spin_tensor_same_shape(*acc, g), "gradient shape mismatch in accumulation");
    spin_tensor *in[2] = {*acc, g};
    return spin_launch(SPIN_K_ADD, 2, in, 1, acc, NULL);
}

/* A leaf's gradient (a parameter's) is accumulated in f32 whatever the leaf's dtype, as DeepSpeed's
 * bf16 optimizer keeps f32 gradient buffers: micro-batches add up without bf16 rounding, and the
 * optimizer's f32 master update reads it as it is. */
static spin_status accumulate_leaf(spin_tensor *t, spin_tensor *g) {
    if (t->hook_pending < 0) /* a node that differentiates t was not counted: the hook came too early */
        return spin_fail(SPIN_ERR_INVALID,
                         "backward: leaf %s got a gradient after the leaf hook reported it complete",
                         t->name);
    if (g->dtype == SPIN_F32 || t->grad || t->grad_as_interior)
        return spin_grad_accumulate(&t->grad, g); /* an f32 sum already, the first one in f32, or a
                                                     recompute stand-in summing as the tensor it stands for */
    spin_tensor *c = spin_tensor_new(g->st->dev, SPIN_F32, g->ndim, g->shape);
    if (!c)
        return SPIN_ERR_OOM;
    spin_status s = spin_launch(SPIN_K_COPY, 1, &g, 1, &c, NULL);
    if (s == SPIN_OK)
        s = spin_grad_accumulate(&t->grad, c);
    spin_tensor_release(c);
    return s;
}

/* ---- the backward walk ---- */

typedef struct {
    spin_node **items;
    size_t n, cap;
} node_list;

static void list_push(node_list *l, spin_node *n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = realloc(l->items, l->cap * sizeof *l->items);
        SPIN_ASSERT(l->items, "out of host memory");
    }
    l->items[l->n++] = n;
}

static bool list_has(const node_list *l, const spin_node *n) {
    /* Visited nodes are marked by pending >= 1 after discovery; see collect(). */
    (void)l;
    return n->pending > 0;
}

/* ---- leaf hook bookkeeping (only in a hooked walk) ---- */

static void count_leaf(tensor_set *leaves, spin_tensor *t) {
    if (t->hook_pending == 0)
        set_push(leaves, spin_tensor_retain(t)); /* kept until the walk ends: nodes drop their inputs */
    t->hook_pending++;
}

/* The edges from n to leaves: its leaf inputs and its hidden leaves. */
static void count_node_leaves(spin_node *n, tensor_set *leaves) {
    for (int i = 0; i < n->n_in; i++)
        if (n->needs[i] && is_leaf(n->in[i]))
            count_leaf(leaves, n->in[i]);
    for (int i = 0; i < n->n_hidden; i++)
        if (is_leaf(n->hidden[i]))
            count_leaf(leaves, n->hidden[i]);
}

static spin_status leaf_edge_done(spin_tensor *t, spin_leaf_hook_fn fn, void *ctx) {
    if (--t->hook_pending > 0)
        return SPIN_OK;
    t->hook_pending = -1;
    return fn(ctx, t);
}

/* After n's backward: its edges to leaves are spent; the leaves with none left are reported. */
static spin_status node_leaves_done(spin_node *n, spin_leaf_hook_fn fn, void *ctx) {
    spin_status s = SPIN_OK;
    for (int i = 0; i < n->n_in && s == SPIN_OK; i++)
        if (n->needs[i] && is_leaf(n->in[i]))
            s = leaf_edge_done(n->in[i], fn, ctx);
    for (int i = 0; i < n->n_hidden && s == SPIN_OK; i++)
        if (is_leaf(n->hidden[i]))
            s = leaf_edge_done(n->hidden[i], fn, ctx);
    return s;
}

/* Discovers every node reachable from root and counts, per node, how many edges lead into it (and,
 * when leaves is not NULL, per leaf). */
static void collect(spin_node *root, node_list *all, tensor_set *leaves) {
    node_list stack = {0};
    root->pending = 1; /* the seed counts as the root's one consumer */
    root->walking = true;
    list_push(all, root);
    list_push(&stack, root);
    while (stack.n) {
        spin_node *n = stack.items[--stack.n];
        if (leaves)
            count_node_leaves(n, leaves);
        for (int i = 0; i < n->n_in; i++) {
            spin_tensor *t = n->in[i];
            if (!n->needs[i] || !t || !t->node)
                continue;
            spin_node *m = t->node;
            if (!list_has(all, m)) {
                m->walking = true;
                list_push(all, m);
                list_push(&stack, m);
            }
            m->pending++;
        }
    }
    free(stack.items);
}

spin_status spin_backward_seeded(spin_tensor *out, spin_tensor *seed, bool keep_graph) {
    SPIN_ASSERT(spin_tensor_same_shape(out, seed), "seed gradient shape differs from the output");
    spin_scope_manual_begin();
    spin_no_grad_begin();
    /* the hook serves the outermost walk: a recompute node's inner walk is part of its node */
    spin_leaf_hook_fn hook = walk_depth == 0 ? leaf_hook.fn : NULL;
    void *hook_ctx = leaf_hook.ctx;
    walk_depth++;
    spin_status s = SPIN_OK;
    tensor_set leaves = {0};
    if (!out->node) {
        if (out->requires_grad) {
            s = spin_grad_accumulate(&out->grad, seed);
            if (s == SPIN_OK && hook)
                s = hook(hook_ctx, out);
        } else {
            s = spin_fail(SPIN_ERR_INVALID, "backward through a tensor that does not require grad");
        }
        goto done;
    }
    if (out->node->released) {
        s = spin_fail(SPIN_ERR_INVALID, "backward through a graph that was already freed (%s)",
                      out->node->name);
        goto done;
    }
    node_list all = {0}, ready = {0};
    collect(out->node, &all, hook ? &leaves : NULL);
    s = spin_grad_accumulate(&out->node->gacc, seed);
    out->node->pending = 0;
    list_push(&ready, out->node);
    while (ready.n && s == SPIN_OK) {
        spin_node *n = ready.items[--ready.n];
        spin_tensor *gin[SPIN_NODE_MAX_IN] = {0};
        if (n->released) {
            s = spin_fail(SPIN_ERR_INVALID, "backward through a freed graph node (%s)", n->name);
            break;
        }
        s = n->backward(n, n->gacc, gin);
        spin_tensor_release(n->gacc);
        n->gacc = NULL;
        for (int i = 0; i < n->n_in && s == SPIN_OK; i++) {
            spin_tensor *t = n->in[i];
            if (!gin[i]) {
                if (n->needs[i] && t->node && --t->node->pending == 0)
                    list_push(&ready, t->node);
                continue;
            }
            SPIN_ASSERT(spin_tensor_same_shape(gin[i], t), "%s: gradient %d has the wrong shape", n->name, i);
            if (t->node) {
                s = spin_grad_accumulate(&t->node->gacc, gin[i]);
                if (--t->node->pending == 0)
                    list_push(&ready, t->node);
            } else if (t->requires_grad) {
                s = accumulate_leaf(t, gin[i]);
            }
        }
        for (int i = 0; i < n->n_in; i++)
            spin_tensor_release(gin[i]);
        if (hook && s == SPIN_OK)
            s = node_leaves_done(n, hook, hook_ctx);
        if (!keep_graph)
            node_release_state(n);
    }
    for (size_t i = 0; i < all.n; i++) {
        spin_node *n = all.items[i];
        n->pending = 0;
        n->walking = false;
        spin_tensor_release(n->gacc);
        n->gacc = NULL;
        if (n->orphaned)
            spin_node_free(n);
    }
    free(all.items);
    free(ready.items);
done:
    for (int i = 0; i < leaves.n; i++) {
        leaves.items[i]->hook_pending = 0;
        spin_tensor_release(leaves.items[i]);
    }
    free(leaves.items);
    walk_depth--;
    spin_no_grad_end();
    spin_scope_manual_end();
    return s;
}

spin_status spin_backward(spin_tensor *loss) {
    if (spin_tensor_numel(loss) != 1)
        return spin_fail(SPIN_ERR_INVALID, "backward needs a scalar loss, got %lld elements",
                         (long long)spin_tensor_numel(loss));
    spin_scope_manual_begin();
    spin_tensor *seed = spin_tensor_new(loss->st->dev, SPIN_F32, loss->ndim, loss->shape);
    spin_status s = seed ? SPIN_OK : SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        spin_kparams p = {.f = {1.0f}};
        s = spin_launch(SPIN_K_FILL, 0, NULL, 1, &seed, &p);
    }
    if (s == SPIN_OK)
        s = spin_backward_seeded(loss, seed, false);
    spin_tensor_release(seed);
    spin_scope_manual_end();
    return s;
}

/* ---- recompute ---- */

typedef struct {
    spin_recompute_fn fn;
    void *ctx; /* the caller's context, copied */
} recompute_ctx;

static void recompute_ctx_free(void *p) {
    recompute_ctx *rc = p;
    free(rc->ctx);
    free(rc);
}

static spin_status recompute_backward(spin_node *n, spin_tensor *gout, spin_tensor **gin) {
    recompute_ctx *rc = n->ctx;
    spin_tensor *det[SPIN_NODE_MAX_IN] = {0};
    for (int i = 0; i < n->n_in; i++) {
        if (!n->in[i])
            continue;
        det[i] = spin_detach(n->in[i]);
        det[i]->requires_grad = n->needs[i];
        /* the input is interior to the outer graph: its gradient keeps the dtype of its first
         * contribution, as the pass without recompute has it, not the leaves' f32 */
        det[i]->grad_as_interior = true;
    }
    spin_grad_force_begin();
    spin_tensor *out = rc->fn(rc->ctx, det, n->n_in);
    spin_grad_force_end();
    spin_status s = out ? SPIN_OK : SPIN_ERR_INVALID;
    if (s == SPIN_OK && out->node)
        s = spin_backward_seeded(out, gout, false);
    for (int i = 0; i < n->n_in; i++) {
        if (!det[i])
            continue;
        if (n->needs[i])
            gin[i] = spin_tensor_retain(det[i]->grad);
        spin_tensor_release(det[i]);
    }
    spin_tensor_release(out);
    return s;
}

spin_tensor *spin_checkpoint(spin_recompute_fn fn, const void *ctx, size_t ctx_size, int n_in,
                             spin_tensor *const *in) {
    bool record = spin_grad_enabled();
    /* the leaves fn reads (parameters it captured) become the node's hidden leaves */
    tensor_set read = {0}, *outer = capture;
    if (record)
        capture = &read;
    spin_scope_manual_begin();
    spin_no_grad_begin();
    spin_tensor *out = fn((void *)ctx, in, n_in);
    spin_no_grad_end();
    capture = outer;
    for (int i = 0; outer && i < read.n; i++)
        capture_add(outer, read.items[i]);
    if (out && record) {
        /* Parameters captured in ctx may need gradients even when no input does, so the node is
         * recorded whenever grad mode is on. */
        spin_node *n = spin_pool_get(&node_pool);
        n->name = "checkpoint";
        n->backward = recompute_backward;
        n->n_in = n_in;
        for (int i = 0; i < n_in; i++) {
            n->in[i] = spin_tensor_retain(in[i]);
            n->needs[i] = wants_grad(in[i]);
        }
        recompute_ctx *rc = malloc(sizeof *rc);
        void *copy = malloc(ctx_size ? ctx_size : 1);
        SPIN_ASSERT(rc && copy, "out of host memory");
        memcpy(copy, ctx, ctx_size);
        *rc = (recompute_ctx){fn, copy};
        n->ctx = rc;
        n->ctx_free = recompute_ctx_free;
        n->out_ndim = out->ndim;
        memcpy(n->out_shape, out->shape, sizeof n->out_shape);
        for (int i = 0; i < read.n; i++)
            spin_tensor_retain(read.items[i]);
        n->hidden = read.items;
        n->n_hidden = read.n;
        read.items = NULL;
        out->node = n;
        out->requires_grad = true;
    }
    free(read.items);
    spin_scope_manual_end();
    return spin_scope_adopt(out);
}
