/* The Llama-family decoder. See models/llama.h. */
#define _POSIX_C_SOURCE 200809L
#include "models/llama.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/scope.h"
#include "models/safetensors.h"

enum { P_INPUT_NORM, P_Q, P_K, P_V, P_O, P_POST_NORM, P_GATE, P_UP, P_DOWN, P_PER_LAYER };

static const char *const layer_suffix[P_PER_LAYER] = {
    "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};

static spin_tensor **layer_slot(spin_llama_layer *L, int i) {
    spin_tensor **s[P_PER_LAYER] = {&L->input_norm, &L->q,    &L->k,  &L->v,   &L->o,
                                    &L->post_norm,  &L->gate, &L->up, &L->down};
    return s[i];
}

/* The expected parameters: HF name and shape, in HF order. */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    spin_tensor **slot;
} param_spec;

static int param_specs(spin_llama *m, param_spec *ps) {
    const spin_llama_config *c = &m->cfg;
    int64_t C = c->hidden_size, F = c->intermediate_size, qd = c->num_attention_heads * c->head_dim,
            kvd = c->num_key_value_heads * c->head_dim, V = c->vocab_size;
    int n = 0;
    ps[n++] = (param_spec){"model.embed_tokens.weight", 2, {V, C}, &m->embed};
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const int64_t shapes[P_PER_LAYER][2] = {{C, 0}, {qd, C}, {kvd, C}, {kvd, C}, {C, qd},
                                                {C, 0}, {F, C},  {F, C},   {C, F}};
        for (int i = 0; i < P_PER_LAYER; i++) {
            param_spec *p = &ps[n++];
            snprintf(p->name, sizeof p->name, "model.layers.%lld.%s", (long long)l, layer_suffix[i]);
            p->ndim = shapes[i][1] ? 2 : 1;
            p->shape[0] = shapes[i][0];
            p->shape[1] = shapes[i][1];
            p->slot = layer_slot(&m->layers[l], i);
        }
    }
    ps[n++] = (param_spec){"model.norm.weight", 1, {C, 0}, &m->norm};
    if (!c->tie_word_embeddings)
        ps[n++] = (param_spec){"lm_head.weight", 2, {V, C}, &m->lm_head};
    return n;
}

/* Allocates the model struct and its tables for cfg (copied). */
static spin_status model_alloc(const spin_llama_config *cfg, spin_device *dev, spin_llama **out,
                               param_spec **ps, int *n) {
    spin_llama *m = calloc(1, sizeof *m);
    if (!m)
        return spin_fail(SPIN_ERR_OOM, "llama: out of host memory");
    *out = m;
    SPIN_TRY(spin_llama_config_copy(&m->cfg, cfg));
    m->dev = dev;
    m->loss_chunk = 256;
    int64_t L = cfg->num_hidden_layers, max = 3 + L * P_PER_LAYER;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->params = calloc((size_t)max, sizeof *m->params);
    m->names = calloc((size_t)max, sizeof *m->names);
    *ps = calloc((size_t)max, sizeof **ps);
    if (!m->layers || !m->params || !m->names || !*ps)
        return spin_fail(SPIN_ERR_OOM, "llama: out of host memory");
    *n = param_specs(m, *ps);
    for (int i = 0; i < *n; i++)
        if (!(m->names[i] = strdup((*ps)[i].name)))
            return spin_fail(SPIN_ERR_OOM, "llama: out of host memory");
    float *f = malloc((size_t)(cfg->head_dim / 2) * sizeof *f);
    if (!f)
        return spin_fail(SPIN_ERR_OOM, "llama: out of host memory");
    spin_llama_inv_freq(cfg, f);
    spin_scope_manual_begin();
    m->inv_freq = spin_from_host(dev, SPIN_F32, 1, (int64_t[]){cfg->head_dim / 2}, f);
    spin_scope_manual_end();
    free(f);
    return m->inv_freq ? SPIN_OK : SPIN_ERR_OOM;
}

static void set_param(spin_llama *m, int i, param_spec *p, spin_tensor *t) {
    spin_tensor_set_requires_grad(t, true);
    spin_tensor_set_name(t, p->name);
    *p->slot = t;
    m->params[i] = t;
    m->n_params = i + 1;
}

static void finish_tie(spin_llama *m) {
    if (m->cfg.tie_word_embeddings)
        m->lm_head = m->embed;
}

void spin_llama_free(spin_llama *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_params; i++)
        spin_tensor_release(m->params[i]);
    if (m->names)
        for (int64_t i = 0; i < 3 + m->cfg.num_hidden_layers * P_PER_LAYER; i++)
            free(m->names[i]);
    free(m->names);
    free(m->params);
    free(m->layers);
    spin_tensor_release(m->inv_freq);
    spin_llama_config_free(&m->cfg);
    free(m->source);
    free(m);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

spin_status spin_llama_build(const spin_llama_config *cfg, spin_device *dev, spin_llama_tensor_fn fn,
                             void *ctx, spin_llama **out) {
    *out = NULL;
    SPIN_TRY(spin_llama_config_validate(cfg, cfg->architecture[0] ? cfg->architecture : "llama config"));
    spin_llama *m = NULL;
    param_spec *ps = NULL;
    int n = 0;
    spin_status s = model_alloc(cfg, dev, &m, &ps, &n);
    spin_scope_manual_begin();
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        spin_tensor *t = fn(ctx, ps[i].name, ps[i].ndim, ps[i].shape);
        if (!t) {
            s = SPIN_ERR_INVALID;
        } else if (spin_tensor_dtype(t) != SPIN_F32 || spin_tensor_ndim(t) != ps[i].ndim ||
                   spin_tensor_dim(t, 0) != ps[i].shape[0] ||
                   (ps[i].ndim == 2 && spin_tensor_dim(t, 1) != ps[i].shape[1])) {
            char b[64];
            s = spin_fail(SPIN_ERR_INVALID, "llama: tensor '%s' is %s %s, expected f32 [%lld%s%lld]",
                          ps[i].name, spin_dtype_name(spin_tensor_dtype(t)), spin_shape_str(t, b, sizeof b),
                          (long long)ps[i].shape[0], ps[i].ndim == 2 ? ", " : "",
                          ps[i].ndim == 2 ? (long long)ps[i].shape[1] : 0LL);
            spin_tensor_release(t);
        } else {
            set_param(m, i, &ps[i], t);
        }
    }
    spin_scope_manual_end();
    free(ps);
    if (s != SPIN_OK) {
        spin_llama_free(m);
        return s;
    }
    finish_tie(m);
    *out = m;
    return SPIN_OK;
}

typedef struct {
    spin_safetensors *st;
    spin_device *dev;
} st_ctx;

static spin_tensor *st_fn(void *vctx, const char *name, int ndim, const int64_t *shape) {
    st_ctx *c = vctx;
    return spin_st_load(c->st, name, c->dev, ndim, shape);
}

spin_status spin_llama_load(const char *path, spin_device *dev, spin_llama **out) {
    *out = NULL;
    size_t pl = strlen(path);
    if (pl > 5 && !strcasecmp(path + pl - 5, ".gguf"))
        return spin_llama_load_gguf(path, dev, out);
    spin_llama_config cfg;
    SPIN_TRY(spin_llama_config_load(path, &cfg));
    spin_safetensors *st = NULL;
    spin_status s = spin_st_open(path, &st);
    spin_llama *m = NULL;
    if (s == SPIN_OK) {
        st_ctx c = {st, dev};
        s = spin_llama_build(&cfg, dev, st_fn, &c, &m);
    }
    spin_llama_config_free(&cfg);
    /* anything else in the checkpoint means a model we do not implement */
    for (int i = 0; s == SPIN_OK && i < spin_st_count(st); i++) {
        const spin_st_info *in = spin_st_at(st, i);
        if (spin_llama_param(m, in->name) || ends_with(in->name, ".rotary_emb.inv_freq"))
            continue;
        if (m->cfg.tie_word_embeddings && !strcmp(in->name, "lm_head.weight")) {
            spin_log_msg(SPIN_LOG_DEBUG, "%s: lm_head.weight ignored (tie_word_embeddings)", in->file);
            continue;
        }
        s = spin_fail(SPIN_ERR_UNSUPPORTED, "%s: unexpected tensor '%s' for %s (%lld layers)", in->file,
                      in->name, m->cfg.architecture, (long long)m->cfg.num_hidden_layers);
    }
    spin_st_close(st);
    if (s == SPIN_OK && !(m->source = strdup(path)))
        s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    if (s != SPIN_OK) {
        spin_llama_free(m);
        return s;
    }
    *out = m;
    return SPIN_OK;
}

typedef struct {
    spin_device *dev;
    uint64_t seed;
    int i;
} init_ctx;

static spin_tensor *init_fn(void *vctx, const char *name, int ndim, const int64_t *shape) {
    init_ctx *c = vctx;
    uint64_t off = (uint64_t)c->i++ << 40;
    return ends_with(name, "norm.weight") ? spin_full(c->dev, SPIN_F32, ndim, shape, 1.0f)
                                          : spin_rand_normal(c->dev, ndim, shape, c->seed, off, 0, 0.02f);
}

spin_status spin_llama_init(const spin_llama_config *cfg, spin_device *dev, uint64_t seed, spin_llama **out) {
    init_ctx c = {dev, seed, 0};
    return spin_llama_build(cfg, dev, init_fn, &c, out);
}

spin_status spin_llama_set_dtype(spin_llama *m, spin_dtype dt) {
    if (dt != SPIN_F32 && dt != SPIN_BF16)
        return spin_fail(SPIN_ERR_INVALID, "llama: parameters can be f32 or bf16, not %s",
                         spin_dtype_name(dt));
    int64_t max = 3 + m->cfg.num_hidden_layers * P_PER_LAYER;
    param_spec *ps = calloc((size_t)max, sizeof *ps);
    spin_tensor **cast = calloc((size_t)max, sizeof *cast);
    spin_status s = ps && cast ? SPIN_OK : spin_fail(SPIN_ERR_OOM, "llama: out of host memory");
    int n = s == SPIN_OK ? param_specs(m, ps) : 0;
    SPIN_ASSERT(s != SPIN_OK || n == m->n_params, "llama: %d parameter specs for %d parameters", n,
                m->n_params);
    /* every copy first, so a failure leaves the model as it was */
    spin_scope_manual_begin();
    spin_no_grad_begin();
    for (int i = 0; i < n && s == SPIN_OK; i++)
        if (spin_tensor_dtype(m->params[i]) != dt && !(cast[i] = spin_cast(m->params[i], dt)))
            s = SPIN_ERR_OOM;
    spin_no_grad_end();
    spin_scope_manual_end();
    for (int i = 0; i < n; i++) {
        if (!cast[i])
            continue;
        if (s != SPIN_OK) {
            spin_tensor_release(cast[i]);
            continue;
        }
        spin_tensor_set_requires_grad(cast[i], spin_tensor_requires_grad(m->params[i]));
        spin_tensor_set_name(cast[i], ps[i].name);
        spin_tensor_release(m->params[i]);
        *ps[i].slot = m->params[i] = cast[i];
    }
    if (s == SPIN_OK)
        finish_tie(m);
    free(ps);
    free(cast);
    return s;
}

spin_dtype spin_llama_dtype(const spin_llama *m) {
    return spin_tensor_dtype(m->embed);
}

spin_tensor *spin_llama_param(const spin_llama *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->names[i], name))
            return m->params[i];
    return NULL;
}

spin_tensor *spin_llama_head(const spin_llama *m) {
    return m->lm_head;
}

/* The tokenizer files a saved model carries along so transformers / vLLM load it. */
static const char *const tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json",
                                              "special_tokens_map.json"};
enum { N_TOKENIZER_FILES = 3 };

/* The directory of m->source ("" when the model was built in code or came from a GGUF file). */
static void source_dir(const spin_llama *m, char *dir, size_t cap) {
    dir[0] = 0;
    struct stat sb;
    if (!m->source || stat(m->source, &sb) != 0)
        return;
    size_t n = strlen(m->source);
    if (n > 5 && !strcasecmp(m->source + n - 5, ".gguf"))
        return;
    snprintf(dir, cap, "%s", m->source);
    if (!S_ISDIR(sb.st_mode)) {
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(dir, cap, ".");
    }
}

static spin_status copy_file(const char *from, const char *to, bool overwrite) {
    FILE *f = fopen(from, "rb");
    if (!f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open: %s", from, strerror(errno));
    spin_status s = SPIN_OK;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (!buf)
            s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory", from);
        else if (fread(buf, 1, (size_t)n, f) != (size_t)n)
            s = spin_fail(SPIN_ERR_IO, "%s: read failed", from);
    } else {
        s = spin_fail(SPIN_ERR_IO, "%s: cannot size: %s", from, strerror(errno));
    }
    fclose(f);
    if (s == SPIN_OK)
        s = spin_write_file_atomic(to, buf, (size_t)n, overwrite);
    free(buf);
    return s;
}

spin_status spin_llama_save_as(const spin_llama *m, const char *dir, spin_dtype dtype, bool overwrite) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return spin_fail(SPIN_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    char st[4200], cp[4200], gp[4200], src[4096], tf[N_TOKENIZER_FILES][4200], tt[N_TOKENIZER_FILES][4200];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    snprintf(cp, sizeof cp, "%s/config.json", dir);
    snprintf(gp, sizeof gp, "%s/generation_config.json", dir);
    struct stat sb, db;
    /* tokenizer files of the source directory (not when saving into that same directory) */
    source_dir(m, src, sizeof src);
    bool same = src[0] && stat(src, &sb) == 0 && stat(dir, &db) == 0 && sb.st_dev == db.st_dev &&
                sb.st_ino == db.st_ino;
    for (int i = 0; i < N_TOKENIZER_FILES; i++) {
        snprintf(tf[i], sizeof tf[i], "%s/%s", src, tokenizer_files[i]);
        snprintf(tt[i], sizeof tt[i], "%s/%s", dir, tokenizer_files[i]);
        if (!src[0] || same || stat(tf[i], &sb) != 0)
            tf[i][0] = 0;
    }
    const char *paths[3 + N_TOKENIZER_FILES] = {st, cp, gp, tt[0], tt[1], tt[2]};
    for (int i = 0; i < 3 + N_TOKENIZER_FILES && !overwrite; i++)
        if ((i < 3 || tf[i - 3][0]) && stat(paths[i], &sb) == 0)
            return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten unless asked)", paths[i]);
    SPIN_TRY(spin_st_save(st, m->n_params, (const char *const *)m->names, m->params, dtype, overwrite));
    SPIN_TRY(spin_llama_config_save(&m->cfg, dir,
                                    dtype == SPIN_F32    ? "float32"
                                    : dtype == SPIN_BF16 ? "bfloat16"
                                                         : "float16",
                                    overwrite));
    for (int i = 0; i < N_TOKENIZER_FILES; i++)
        if (tf[i][0])
            SPIN_TRY(copy_file(tf[i], tt[i], overwrite));
    return SPIN_OK;
}

spin_status spin_llama_save(const spin_llama *m, const char *dir, bool overwrite) {
    return spin_llama_save_as(m, dir, SPIN_F32, overwrite);
}

/* ---- KV cache ---- */

void spin_llama_cache_free(spin_llama_cache *c) {
    if (!c)
        return;
    for (int i = 0; i < c->n_layers; i++) {
        if (c->k)
            spin_tensor_release(c->k[i]);
        if (c->v)
            spin_tensor_release(c->v[i]);
    }
    free(c->k);
    free(c->v);
    free(c->row_len);
    spin_tensor_release(c->kmask);
    free(c);
}

spin_llama_cache *spin_llama_cache_new(const spin_llama *m, int64_t batch, int64_t max_len) {
    if (batch <= 0 || max_len <= 0) {
        spin_fail(SPIN_ERR_INVALID, "llama cache: batch %lld and max_len %lld must be positive",
                  (long long)batch, (long long)max_len);
        return NULL;
    }
    spin_llama_cache *c = calloc(1, sizeof *c);
    if (!c) {
        spin_fail(SPIN_ERR_OOM, "llama cache: out of host memory");
        return NULL;
    }
    c->batch = batch;
    c->max_len = max_len;
    c->n_layers = (int)m->cfg.num_hidden_layers;
    c->k = calloc((size_t)c->n_layers, sizeof *c->k);
    c->v = calloc((size_t)c->n_layers, sizeof *c->v);
    c->row_len = calloc((size_t)batch, sizeof *c->row_len);
    bool ok = c->k && c->v && c->row_len;
    spin_scope_manual_begin();
    const int64_t shape[4] = {batch, m->cfg.num_key_value_heads, max_len, m->cfg.head_dim};
    for (int i = 0; ok && i < c->n_layers; i++) {
        c->k[i] = spin_zeros(m->dev, spin_llama_dtype(m), 4, shape);
        c->v[i] = spin_zeros(m->dev, spin_llama_dtype(m), 4, shape);
        ok = c->k[i] && c->v[i];
    }
    c->kmask = ok ? spin_zeros(m->dev, SPIN_F32, 2, (int64_t[]){batch, max_len}) : NULL;
    spin_scope_manual_end();
    if (!ok || !c->kmask) {
        spin_llama_cache_free(c);
        spin_fail(SPIN_ERR_OOM, "llama cache: out of device memory for %lld x %lld slots", (long long)batch,
                  (long long)max_len);
        return NULL;
    }
    return c;
}

spin_status spin_llama_cache_reset(spin_llama_cache *c) {
    c->len = 0;
    memset(c->row_len, 0, (size_t)c->batch * sizeof *c->row_len);
    return spin_fill_(c->kmask, 0.0f);
}

static void update_len(spin_llama_cache *c) {
    c->len = 0;
    for (int64_t b = 0; b < c->batch; b++)
        c->len = c->row_len[b] > c->len ? c->row_len[b] : c->len;
}

spin_status spin_llama_cache_reset_row(spin_llama_cache *c, int64_t row) {
    if (row < 0 || row >= c->batch)
        return spin_fail(SPIN_ERR_INVALID, "llama cache: row %lld outside the batch of %lld", (long long)row,
                         (long long)c->batch);
    spin_scope_manual_begin();
    spin_tensor *r = spin_narrow(c->kmask, 0, row, 1);
    spin_status s = r ? spin_fill_(r, 0.0f) : SPIN_ERR_INVALID;
    spin_tensor_release(r);
    spin_scope_manual_end();
    if (s == SPIN_OK) {
        c->row_len[row] = 0;
        update_len(c);
    }
    return s;
}

/* dst row db, slots [0, n) (along dim) <- src row sb, slots [0, n). */
static spin_status copy_slots(spin_tensor *dst, int64_t db, spin_tensor *src, int64_t sb, int dim,
                              int64_t n) {
    spin_tensor *d0 = spin_narrow(dst, 0, db, 1), *s0 = spin_narrow(src, 0, sb, 1);
    spin_tensor *d1 = d0 ? spin_narrow(d0, dim, 0, n) : NULL, *s1 = s0 ? spin_narrow(s0, dim, 0, n) : NULL;
    spin_status s = d1 && s1 ? spin_copy_into(d1, s1) : SPIN_ERR_INVALID;
    spin_tensor_release(d0);
    spin_tensor_release(s0);
    spin_tensor_release(d1);
    spin_tensor_release(s1);
    return s;
}

spin_status spin_llama_cache_copy_row(spin_llama_cache *dst, int64_t drow, const spin_llama_cache *src,
                                      int64_t srow) {
    if (drow < 0 || drow >= dst->batch || srow < 0 || srow >= src->batch || dst->n_layers != src->n_layers)
        return spin_fail(SPIN_ERR_INVALID,
                         "llama cache: cannot copy row %lld (of %lld) into row %lld (of %lld)",
                         (long long)srow, (long long)src->batch, (long long)drow, (long long)dst->batch);
    int64_t n = src->row_len[srow];
    if (n > dst->max_len)
        return spin_fail(SPIN_ERR_INVALID, "llama cache: row of %lld slots does not fit %lld", (long long)n,
                         (long long)dst->max_len);
    SPIN_TRY(spin_llama_cache_reset_row(dst, drow));
    if (n == 0)
        return SPIN_OK;
    spin_scope_manual_begin();
    spin_status s = copy_slots(dst->kmask, drow, src->kmask, srow, 1, n);
    for (int l = 0; l < dst->n_layers && s == SPIN_OK; l++) {
        s = copy_slots(dst->k[l], drow, src->k[l], srow, 2, n);
        if (s == SPIN_OK)
            s = copy_slots(dst->v[l], drow, src->v[l], srow, 2, n);
    }
    spin_scope_manual_end();
    if (s == SPIN_OK) {
        dst->row_len[drow] = n;
        update_len(dst);
    }
    return s;
}

/* Writes src [B, .., T, ..] (T along dim) into dst at slots row_len[b] .. row_len[b] + T - 1 of
 * each row b: one copy when the rows are aligned, otherwise one per row. */
static spin_status write_slots(spin_tensor *dst, spin_tensor *src, int dim, const int64_t *row_len, int64_t B,
                               int64_t T) {
    bool aligned = true;
    for (int64_t b = 1; b < B; b++)
        aligned = aligned && row_len[b] == row_len[0];
    spin_status s = SPIN_OK;
    for (int64_t b = 0; b < (aligned ? 1 : B) && s == SPIN_OK; b++) {
        spin_tensor *d0 = aligned ? spin_tensor_retain(dst) : spin_narrow(dst, 0, b, 1);
        spin_tensor *s0 = aligned ? spin_tensor_retain(src) : spin_narrow(src, 0, b, 1);
        spin_tensor *d1 = d0 ? spin_narrow(d0, dim, row_len[b], T) : NULL;
        s = d1 && s0 ? spin_copy_into(d1, s0) : SPIN_ERR_INVALID;
        spin_tensor_release(d0);
        spin_tensor_release(s0);
        spin_tensor_release(d1);
    }
    return s;
}

/* ---- the block: the one definition of the math ---- */

typedef struct {
    spin_llama *m;
    int layer;
    int64_t b, t;
    spin_llama_cache *cache; /* NULL when training/scoring */
    int64_t span;            /* cache slots attended: max row length after this step */
} block_ctx;

typedef struct {
    spin_tensor *t[48];
    int n;
} temps;

static spin_tensor *tmp(temps *l, spin_tensor *t) {
    SPIN_ASSERT(l->n < 48, "too many temporaries");
    return l->t[l->n++] = t;
}

/* [B*T, h*D] -> [B, h, T, D] (a view) */
static spin_tensor *to_heads(temps *l, spin_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d) {
    if (!x)
        return NULL;
    spin_tensor *r = tmp(l, spin_reshape(x, 4, (int64_t[]){b, t, h, d}));
    return r ? tmp(l, spin_transpose(r, 1, 2)) : NULL;
}

static spin_tensor *linear(temps *l, spin_tensor *x, spin_tensor *w) {
    return x ? tmp(l, spin_matmul(x, w, false, true)) : NULL;
}

/* in: x [B*T, C], pos i32 [B, T], then without a cache an optional key mask [B, T]; with a cache
 * qpos i32 [B, T] (slots) and the valid-slot mask [B, start + T]. Manual ownership. */
static spin_tensor *block(void *vctx, spin_tensor *const *in, int n_in) {
    block_ctx *bc = vctx;
    const spin_llama_config *c = &bc->m->cfg;
    spin_llama_layer *L = &bc->m->layers[bc->layer];
    spin_tensor *x = in[0], *pos = in[1];
    const int64_t B = bc->b, T = bc->t, Hq = c->num_attention_heads, Hkv = c->num_key_value_heads,
                  D = c->head_dim;
    const float eps = (float)c->rms_norm_eps;
    temps l = {0};
    spin_tensor *out = NULL;
    spin_tensor *h = tmp(&l, spin_rmsnorm(x, L->input_norm, eps));
    spin_tensor *q = to_heads(&l, linear(&l, h, L->q), B, T, Hq, D);
    spin_tensor *k = to_heads(&l, linear(&l, h, L->k), B, T, Hkv, D);
    spin_tensor *v = to_heads(&l, linear(&l, h, L->v), B, T, Hkv, D);
    if (!q || !k || !v)
        goto done;
    spin_tensor *qr = tmp(&l, spin_rope(q, pos, bc->m->inv_freq, SPIN_ROPE_HALF));
    spin_tensor *kr = tmp(&l, spin_rope(k, pos, bc->m->inv_freq, SPIN_ROPE_HALF));
    if (!qr || !kr)
        goto done;
    spin_attn_opts o = {.window = c->sliding_window};
    spin_tensor *a;
    if (bc->cache) {
        spin_tensor *ck = bc->cache->k[bc->layer], *cv = bc->cache->v[bc->layer];
        if (write_slots(ck, kr, 2, bc->cache->row_len, B, T) != SPIN_OK ||
            write_slots(cv, v, 2, bc->cache->row_len, B, T) != SPIN_OK)
            goto done;
        spin_tensor *kk = tmp(&l, spin_narrow(ck, 2, 0, bc->span));
        spin_tensor *vv = tmp(&l, spin_narrow(cv, 2, 0, bc->span));
        a = kk && vv ? tmp(&l, spin_attention(qr, kk, vv, in[2], in[3], &o)) : NULL;
    } else {
        a = tmp(&l, spin_attention(qr, kr, v, NULL, n_in > 2 ? in[2] : NULL, &o));
    }
    if (!a)
        goto done;
    spin_tensor *merged =
        tmp(&l, spin_reshape(tmp(&l, spin_transpose(a, 1, 2)), 2, (int64_t[]){B * T, Hq * D}));
    spin_tensor *ao = linear(&l, merged, L->o);
    spin_tensor *x1 = ao ? tmp(&l, spin_add(x, ao)) : NULL;
    spin_tensor *h2 = x1 ? tmp(&l, spin_rmsnorm(x1, L->post_norm, eps)) : NULL;
    spin_tensor *g = linear(&l, h2, L->gate), *u = linear(&l, h2, L->up);
    spin_tensor *sg = g ? tmp(&l, spin_silu(g)) : NULL;
    spin_tensor *act = sg && u ? tmp(&l, spin_mul(sg, u)) : NULL;
    spin_tensor *down = linear(&l, act, L->down);
    out = down ? spin_add(x1, down) : NULL;
done:
    for (int i = 0; i < l.n; i++)
        spin_tensor_release(l.t[i]);
    return out;
}

/* i32 [B, T] with row values start .. start+T-1. */
static spin_tensor *positions(spin_device *dev, int64_t b, int64_t t, int64_t start) {
    spin_tensor *ar = spin_arange(dev, SPIN_I32, t, (float)start, 1);
    spin_tensor *ex = ar ? spin_expand(ar, 2, (int64_t[]){b, t}) : NULL;
    spin_tensor *p = ex ? spin_contiguous(ex) : NULL;
    spin_tensor_release(ar);
    spin_tensor_release(ex);
    return p;
}

static bool is_2d(const spin_tensor *t, spin_dtype dt, int64_t b, int64_t n) {
    return spin_tensor_ndim(t) == 2 && spin_tensor_dtype(t) == dt && spin_tensor_dim(t, 0) == b &&
           spin_tensor_dim(t, 1) == n;
}

spin_tensor *spin_llama_forward(spin_llama *m, spin_tensor *ids, spin_tensor *pos, spin_tensor *key_mask,
                                spin_llama_cache *cache) {
    char sb[64];
    if (!ids || spin_tensor_ndim(ids) != 2 || spin_tensor_dtype(ids) != SPIN_I32) {
        spin_fail(SPIN_ERR_INVALID, "llama forward: ids must be i32 [B, T] (got %s %s)",
                  ids ? spin_dtype_name(spin_tensor_dtype(ids)) : "NULL",
                  ids ? spin_shape_str(ids, sb, sizeof sb) : "");
        return NULL;
    }
    const int64_t B = spin_tensor_dim(ids, 0), T = spin_tensor_dim(ids, 1);
    if (pos && !is_2d(pos, SPIN_I32, B, T)) {
        spin_fail(SPIN_ERR_INVALID, "llama forward: pos must be i32 [%lld, %lld] (got %s)", (long long)B,
                  (long long)T, spin_shape_str(pos, sb, sizeof sb));
        return NULL;
    }
    if (key_mask && !is_2d(key_mask, SPIN_F32, B, T)) {
        spin_fail(SPIN_ERR_INVALID, "llama forward: key_mask must be f32 [%lld, %lld] (got %s)", (long long)B,
                  (long long)T, spin_shape_str(key_mask, sb, sizeof sb));
        return NULL;
    }
    if (cache && (cache->batch != B || cache->len + T > cache->max_len)) { /* len: the longest row */
        spin_fail(
            SPIN_ERR_INVALID,
            "llama forward: %lld x %lld tokens do not fit the cache (batch %lld, %lld of %lld slots used)",
            (long long)B, (long long)T, (long long)cache->batch, (long long)cache->len,
            (long long)cache->max_len);
        return NULL;
    }
    if (cache)
        spin_no_grad_begin(); /* cache writes are not recorded: inference only */
    spin_scope_manual_begin();
    spin_device *dev = spin_tensor_device(ids);
    spin_tensor *h = NULL, *qpos = NULL, *kmask = NULL, *own_pos = NULL;
    bool ok = true;
    if (cache) {
        /* the query slots of row b are row_len[b] .. row_len[b] + T - 1 */
        int32_t *qp = malloc((size_t)(B * T) * sizeof *qp);
        for (int64_t b = 0; qp && b < B; b++)
            for (int64_t i = 0; i < T; i++)
                qp[b * T + i] = (int32_t)(cache->row_len[b] + i);
        qpos = qp ? spin_from_host(dev, SPIN_I32, 2, (int64_t[]){B, T}, qp) : NULL;
        free(qp);
        /* mark the new slots valid (or as the key mask says), then view the used part */
        spin_tensor *ones = key_mask ? NULL : spin_full(dev, SPIN_F32, 2, (int64_t[]){B, T}, 1.0f);
        ok = qpos && (key_mask || ones) &&
             write_slots(cache->kmask, key_mask ? key_mask : ones, 1, cache->row_len, B, T) == SPIN_OK;
        spin_tensor_release(ones);
        kmask = ok ? spin_narrow(cache->kmask, 1, 0, cache->len + T) : NULL;
        ok = kmask != NULL;
        if (ok && !pos)
            pos = qpos;
    } else if (!pos) {
        pos = own_pos = positions(dev, B, T, 0);
        ok = pos != NULL;
    }
    int64_t n = B * T;
    spin_tensor *flat = ok ? spin_reshape(ids, 1, &n) : NULL;
    /* pad_token_id's row gets no gradient, as in transformers (nn.Embedding(padding_idx=)) */
    spin_tensor *x = flat ? spin_embedding_pad(m->embed, flat, m->cfg.pad_token_id) : NULL;
    spin_tensor_release(flat);
    for (int64_t l = 0; l < m->cfg.num_hidden_layers && x; l++) {
        block_ctx bc = {m, (int)l, B, T, cache, cache ? cache->len + T : 0};
        spin_tensor *in[4] = {x, pos, cache ? qpos : key_mask, kmask};
        int n_in = cache ? 4 : key_mask ? 3 : 2;
        spin_tensor *y =
            !cache && m->recompute ? spin_checkpoint(block, &bc, sizeof bc, n_in, in) : block(&bc, in, n_in);
        spin_tensor_release(x);
        x = y;
    }
    if (x)
        h = spin_rmsnorm(x, m->norm, (float)m->cfg.rms_norm_eps);
    if (h && cache) {
        for (int64_t b = 0; b < B; b++)
            cache->row_len[b] += T;
        update_len(cache);
    }
    spin_tensor_release(x);
    spin_tensor_release(own_pos);
    spin_tensor_release(qpos);
    spin_tensor_release(kmask);
    spin_scope_manual_end();
    if (cache)
        spin_no_grad_end();
    return spin_scope_adopt(h);
}

spin_tensor *spin_llama_logits(spin_llama *m, spin_tensor *hidden) {
    spin_scope_manual_begin();
    spin_tensor *y = spin_matmul(hidden, m->lm_head, false, true);
    if (y && spin_tensor_dtype(y) != SPIN_F32) {
        /* transformers' logits.float(): bf16 logits handed out as f32 */
        spin_tensor *f = spin_cast(y, SPIN_F32);
        spin_tensor_release(y);
        y = f;
    }
    spin_scope_manual_end();
    return spin_scope_adopt(y);
}

spin_tensor *spin_llama_loss(spin_llama *m, spin_tensor *hidden, spin_tensor *targets, int32_t ignore_index) {
    return spin_cross_entropy(hidden, m->lm_head, targets, ignore_index, m->loss_chunk);
}

spin_tensor *spin_llama_logprob(spin_llama *m, spin_tensor *hidden, spin_tensor *targets,
                                int32_t ignore_index, spin_tensor **logit_sum, spin_tensor **lse) {
    return spin_linear_logprob(hidden, m->lm_head, targets, ignore_index, m->loss_chunk, logit_sum, lse);
}

void spin_llama_shift_labels(const int32_t *labels, int64_t batch, int64_t t, int32_t ignore_index,
                             int32_t *targets) {
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < t; i++)
            targets[b * t + i] = i + 1 < t ? labels[b * t + i + 1] : ignore_index;
}
