/* The batched generation engine (continuous batching over one KV cache). See models/generate.h and
 * docs/generation.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/scope.h"
#include "models/generate.h"

const char *spin_finish_reason_name(spin_finish_reason r) {
    switch (r) {
    case SPIN_FINISH_EOS: return "eos";
    case SPIN_FINISH_STOP: return "stop";
    case SPIN_FINISH_LENGTH: return "length";
    }
    return "unknown";
}

spin_gen_opts spin_gen_opts_default(void) {
    return (spin_gen_opts){.batch_size = 8, .max_new_tokens = 256, .top_p = 1.0f, .skip_special = true};
}

typedef struct {
    int64_t prompt;   /* queue index, -1: idle */
    int64_t pos_next; /* RoPE position of the next token fed */
    int32_t last;     /* the last generated token, fed on the next step */
    int32_t *toks;
    float *lps;
    int64_t n;
} slot;

typedef struct {
    spin_llama *m;
    const spin_tokenizer *tok;
    const int32_t *const *prompts;
    const int64_t *lens;
    int64_t n, next, V, C, B;
    const spin_gen_opts *o;
    spin_gen_callback cb;
    void *ctx;
    spin_gen_stats *st;
    int32_t eos[SPIN_LLAMA_MAX_EOS + 1];
    int n_eos;
    spin_llama_cache *cache;
    slot *slots;
    spin_sampler smp;
    float *logits; /* host [B, V] */
} engine;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Logits of the last position of each of the n rows of h [n*T, C] into out [n, V] (host). */
static spin_status last_logits(engine *e, spin_tensor *h, int64_t n, int64_t T, float *out) {
    spin_scope_manual_begin();
    spin_tensor *r = NULL, *nar = NULL, *c = NULL, *hl = NULL, *lg = NULL;
    if (T > 1) {
        r = spin_reshape(h, 3, (int64_t[]){n, T, e->C});
        nar = r ? spin_narrow(r, 1, T - 1, 1) : NULL;
        c = nar ? spin_contiguous(nar) : NULL;
        hl = c ? spin_reshape(c, 2, (int64_t[]){n, e->C}) : NULL;
    } else {
        hl = spin_tensor_retain(h);
    }
    lg = hl ? spin_matmul(hl, spin_llama_head(e->m), false, true) : NULL;
    spin_status s = lg ? spin_tensor_read(lg, out, (size_t)(n * e->V) * sizeof *out) : SPIN_ERR_INVALID;
    spin_tensor_release(r);
    spin_tensor_release(nar);
    spin_tensor_release(c);
    spin_tensor_release(hl);
    spin_tensor_release(lg);
    spin_scope_manual_end();
    return s;
}

static bool is_eos(const engine *e, int32_t t) {
    for (int i = 0; i < e->n_eos; i++)
        if (e->eos[i] == t)
            return true;
    return false;
}

/* The completion text of a slot (malloc'd): its tokens without a final EOS, decoded. */
static spin_status slot_text(engine *e, const slot *sl, bool drop_last, char **text, size_t *len) {
    int64_t n = sl->n - (drop_last ? 1 : 0);
    return spin_tokenizer_decode(e->tok, sl->toks, (size_t)(n > 0 ? n : 0), e->o->skip_special, text, len);
}

/* Byte offset of the earliest stop string in text, or -1. */
static int64_t find_stop(const engine *e, const char *text) {
    int64_t best = -1;
    for (int i = 0; i < e->o->n_stop; i++) {
        if (!e->o->stop[i] || !e->o->stop[i][0])
            continue;
        const char *p = strstr(text, e->o->stop[i]);
        if (p && (best < 0 || p - text < best))
            best = p - text;
    }
    return best;
}

/* Delivers a finished slot and empties it (and its cache row). */
static spin_status finish(engine *e, int64_t b, spin_finish_reason why) {
    slot *sl = &e->slots[b];
    char *text = NULL;
    size_t len = 0;
    if (e->tok) {
        SPIN_TRY(slot_text(e, sl, why == SPIN_FINISH_EOS, &text, &len));
        if (why == SPIN_FINISH_STOP) {
            int64_t at = find_stop(e, text);
            if (at >= 0)
                text[at] = 0;
        }
    }
    spin_gen_result r = {.index = sl->prompt,
                         .prompt = e->prompts[sl->prompt],
                         .prompt_len = e->lens[sl->prompt],
                         .tokens = sl->toks,
                         .n_tokens = sl->n,
                         .logprobs = e->o->logprobs ? sl->lps : NULL,
                         .text = text,
                         .finish = why};
    spin_status s = e->cb ? e->cb(e->ctx, &r) : SPIN_OK;
    free(text);
    sl->prompt = -1;
    sl->n = 0;
    if (s == SPIN_OK)
        s = spin_llama_cache_reset_row(e->cache, b);
    return s;
}

/* Chooses slot b's next token from its logits row and finishes it when it is done. */
static spin_status accept(engine *e, int64_t b, const float *row) {
    slot *sl = &e->slots[b];
    const spin_gen_opts *o = e->o;
    double u = o->temperature > 0
                   ? spin_gen_uniform(o->seed, o->index_offset + sl->prompt, e->lens[sl->prompt] + sl->n)
                   : 0;
    float lp = 0;
    int32_t t =
        spin_sample(&e->smp, row, e->V, o->temperature, o->top_k, o->top_p, u, o->logprobs ? &lp : NULL);
    if (t < 0)
        return spin_fail(SPIN_ERR_OOM, "generate: out of host memory for sampling");
    sl->toks[sl->n] = t;
    sl->lps[sl->n] = lp;
    sl->n++;
    sl->last = t;
    if (o->on_token)
        o->on_token(o->on_token_ctx, sl->prompt, t);
    if (!o->ignore_eos && is_eos(e, t))
        return finish(e, b, SPIN_FINISH_EOS);
    if (o->n_stop > 0 && e->tok) {
        char *text;
        size_t len;
        SPIN_TRY(slot_text(e, sl, false, &text, &len));
        int64_t at = find_stop(e, text);
        free(text);
        if (at >= 0)
            return finish(e, b, SPIN_FINISH_STOP);
    }
    if (sl->n >= o->max_new_tokens)
        return finish(e, b, SPIN_FINISH_LENGTH);
    return SPIN_OK;
}

/* Prefills the next g prompts of the queue into the idle slots free[0..g): left-padded in a
 * scratch cache of g rows (padding masked, positions from each prompt's first token), the rows
 * moved into the slots (the first fill of an empty cache is written there directly), then each
 * prompt's first token chosen. */
static spin_status prefill(engine *e, const int64_t *free_slots, int64_t g) {
    double t0 = now_s();
    int64_t T = 0, real = 0;
    for (int64_t i = 0; i < g; i++) {
        int64_t L = e->lens[e->next + i];
        T = L > T ? L : T;
        real += L;
    }
    int32_t *ids = calloc((size_t)(g * T), sizeof *ids), *pos = calloc((size_t)(g * T), sizeof *pos);
    float *mask = calloc((size_t)(g * T), sizeof *mask);
    float *lg = malloc((size_t)(g * e->V) * sizeof *lg);
    spin_status s =
        ids && pos && mask && lg ? SPIN_OK : spin_fail(SPIN_ERR_OOM, "generate: out of host memory");
    for (int64_t i = 0; s == SPIN_OK && i < g; i++) {
        int64_t L = e->lens[e->next + i], pad = T - L;
        for (int64_t t = 0; t < L; t++) {
            ids[i * T + pad + t] = e->prompts[e->next + i][t];
            pos[i * T + pad + t] = (int32_t)t;
            bool masked = e->o->mask_prompt_id && e->prompts[e->next + i][t] == e->o->prompt_mask_id;
            mask[i * T + pad + t] = masked ? 0.0f : 1.0f;
        }
    }
    /* the first fill (every row empty, every slot taken) goes straight into the cache */
    bool direct = g == e->B && e->cache->len == 0;
    spin_llama_cache *scratch = s == SPIN_OK && !direct ? spin_llama_cache_new(e->m, g, T) : NULL;
    if (s == SPIN_OK && !direct && !scratch)
        s = SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        spin_scope_manual_begin();
        const int64_t shape[2] = {g, T};
        spin_tensor *ti = spin_from_host(e->m->dev, SPIN_I32, 2, shape, ids);
        spin_tensor *tp = spin_from_host(e->m->dev, SPIN_I32, 2, shape, pos);
        spin_tensor *tm = spin_from_host(e->m->dev, SPIN_F32, 2, shape, mask);
        spin_tensor *h =
            ti && tp && tm ? spin_llama_forward(e->m, ti, tp, tm, direct ? e->cache : scratch) : NULL;
        s = h ? last_logits(e, h, g, T, lg) : SPIN_ERR_INVALID;
        spin_tensor_release(ti);
        spin_tensor_release(tp);
        spin_tensor_release(tm);
        spin_tensor_release(h);
        spin_scope_manual_end();
    }
    for (int64_t i = 0; s == SPIN_OK && i < g; i++) {
        slot *sl = &e->slots[free_slots[i]];
        if (!direct)
            s = spin_llama_cache_copy_row(e->cache, free_slots[i], scratch, i);
        sl->prompt = e->next + i;
        sl->pos_next = e->lens[e->next + i];
        sl->n = 0;
    }
    spin_llama_cache_free(scratch);
    if (s == SPIN_OK) {
        e->next += g;
        if (e->st) {
            e->st->prefill_tokens += real;
            e->st->prefill_calls++;
            e->st->prefill_s += now_s() - t0;
        }
    }
    for (int64_t i = 0; s == SPIN_OK && i < g; i++)
        s = accept(e, free_slots[i], lg + i * e->V);
    free(ids);
    free(pos);
    free(mask);
    free(lg);
    return s;
}

/* Fills idle slots from the queue until none is idle or the queue is empty. */
static spin_status refill(engine *e) {
    int64_t *free_slots = malloc((size_t)e->B * sizeof *free_slots);
    if (!free_slots)
        return spin_fail(SPIN_ERR_OOM, "generate: out of host memory");
    spin_status s = SPIN_OK;
    while (s == SPIN_OK && e->next < e->n) {
        int64_t g = 0;
        for (int64_t b = 0; b < e->B && e->next + g < e->n; b++)
            if (e->slots[b].prompt < 0)
                free_slots[g++] = b;
        if (g == 0)
            break;
        s = prefill(e, free_slots, g);
    }
    free(free_slots);
    return s;
}

/* One decode step over every slot (idle rows run a dummy token and are emptied again). */
static spin_status decode_step(engine *e, int64_t active) {
    double t0 = now_s();
    int32_t *ids = calloc((size_t)e->B, sizeof *ids), *pos = calloc((size_t)e->B, sizeof *pos);
    spin_status s = ids && pos ? SPIN_OK : spin_fail(SPIN_ERR_OOM, "generate: out of host memory");
    for (int64_t b = 0; s == SPIN_OK && b < e->B; b++)
        if (e->slots[b].prompt >= 0) {
            ids[b] = e->slots[b].last;
            pos[b] = (int32_t)e->slots[b].pos_next;
        }
    if (s == SPIN_OK) {
        spin_scope_manual_begin();
        const int64_t shape[2] = {e->B, 1};
        spin_tensor *ti = spin_from_host(e->m->dev, SPIN_I32, 2, shape, ids);
        spin_tensor *tp = spin_from_host(e->m->dev, SPIN_I32, 2, shape, pos);
        spin_tensor *h = ti && tp ? spin_llama_forward(e->m, ti, tp, NULL, e->cache) : NULL;
        s = h ? last_logits(e, h, e->B, 1, e->logits) : SPIN_ERR_INVALID;
        spin_tensor_release(ti);
        spin_tensor_release(tp);
        spin_tensor_release(h);
        spin_scope_manual_end();
    }
    free(ids);
    free(pos);
    if (s == SPIN_OK && e->st) {
        e->st->decode_steps++;
        e->st->decode_tokens += active;
        e->st->decode_s += now_s() - t0;
    }
    for (int64_t b = 0; s == SPIN_OK && b < e->B; b++) {
        if (e->slots[b].prompt < 0) {
            s = spin_llama_cache_reset_row(e->cache, b);
        } else {
            e->slots[b].pos_next++;
            s = accept(e, b, e->logits + b * e->V);
        }
    }
    return s;
}

static spin_status check_args(const spin_llama *m, const spin_tokenizer *tok, const int32_t *const *prompts,
                              const int64_t *lens, int64_t n, const spin_gen_opts *o) {
    if (n < 0 || (n > 0 && (!prompts || !lens)))
        return spin_fail(SPIN_ERR_INVALID, "generate: no prompts given");
    if (o->batch_size < 1)
        return spin_fail(SPIN_ERR_INVALID, "generate: batch_size must be >= 1 (got %lld)",
                         (long long)o->batch_size);
    if (o->max_new_tokens < 1)
        return spin_fail(SPIN_ERR_INVALID, "generate: max_new_tokens must be >= 1 (got %lld)",
                         (long long)o->max_new_tokens);
    if (!(o->temperature >= 0))
        return spin_fail(SPIN_ERR_INVALID, "generate: temperature must be >= 0 (got %g)",
                         (double)o->temperature);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return spin_fail(SPIN_ERR_INVALID, "generate: top_p must be in (0, 1] (got %g)", (double)o->top_p);
    if (o->top_k < 0)
        return spin_fail(SPIN_ERR_INVALID, "generate: top_k must be >= 0 (got %lld)", (long long)o->top_k);
    if (o->n_stop > 0 && !tok)
        return spin_fail(SPIN_ERR_INVALID, "generate: stop strings need a tokenizer");
    if (o->n_eos < 0 || o->n_eos > SPIN_LLAMA_MAX_EOS)
        return spin_fail(SPIN_ERR_INVALID, "generate: %d EOS ids (at most %d)", o->n_eos, SPIN_LLAMA_MAX_EOS);
    for (int64_t i = 0; i < n; i++) {
        if (lens[i] < 1 || !prompts[i])
            return spin_fail(SPIN_ERR_INVALID,
                             "generate: prompt %lld is empty (a prompt needs at least one token)",
                             (long long)i);
        for (int64_t t = 0; t < lens[i]; t++)
            if (prompts[i][t] < 0 || prompts[i][t] >= m->cfg.vocab_size)
                return spin_fail(SPIN_ERR_INVALID,
                                 "generate: prompt %lld token %lld is id %d, outside the vocabulary of %lld",
                                 (long long)i, (long long)t, prompts[i][t], (long long)m->cfg.vocab_size);
    }
    return SPIN_OK;
}

spin_status spin_generate(spin_llama *m, const spin_tokenizer *tok, const int32_t *const *prompts,
                          const int64_t *lens, int64_t n, const spin_gen_opts *opts, spin_gen_callback cb,
                          void *ctx, spin_gen_stats *stats) {
    spin_gen_opts defaults = spin_gen_opts_default();
    const spin_gen_opts *o = opts ? opts : &defaults;
    SPIN_TRY(check_args(m, tok, prompts, lens, n, o));
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (n == 0)
        return SPIN_OK;
    engine e = {.m = m,
                .tok = tok,
                .prompts = prompts,
                .lens = lens,
                .n = n,
                .V = m->cfg.vocab_size,
                .C = m->cfg.hidden_size,
                .B = o->batch_size < n ? o->batch_size : n,
                .o = o,
                .cb = cb,
                .ctx = ctx,
                .st = stats};
    if (o->n_eos > 0) {
        memcpy(e.eos, o->eos_ids, (size_t)o->n_eos * sizeof *e.eos);
        e.n_eos = o->n_eos;
    } else if (m->cfg.gen.present && m->cfg.gen.n_eos > 0) {
        memcpy(e.eos, m->cfg.gen.eos_token_ids, (size_t)m->cfg.gen.n_eos * sizeof *e.eos);
        e.n_eos = m->cfg.gen.n_eos;
    } else if (m->cfg.n_eos > 0) {
        memcpy(e.eos, m->cfg.eos_token_ids, (size_t)m->cfg.n_eos * sizeof *e.eos);
        e.n_eos = m->cfg.n_eos;
    } else if (tok && spin_tokenizer_eos_id(tok) >= 0) {
        e.eos[e.n_eos++] = spin_tokenizer_eos_id(tok);
    }
    int64_t max_prompt = 0;
    for (int64_t i = 0; i < n; i++)
        max_prompt = lens[i] > max_prompt ? lens[i] : max_prompt;
    spin_status s = SPIN_OK;
    e.slots = calloc((size_t)e.B, sizeof *e.slots);
    e.logits = malloc((size_t)(e.B * e.V) * sizeof *e.logits);
    if (!e.slots || !e.logits)
        s = spin_fail(SPIN_ERR_OOM, "generate: out of host memory");
    for (int64_t b = 0; s == SPIN_OK && b < e.B; b++) {
        e.slots[b].prompt = -1;
        e.slots[b].toks = malloc((size_t)o->max_new_tokens * sizeof *e.slots[b].toks);
        e.slots[b].lps = malloc((size_t)o->max_new_tokens * sizeof *e.slots[b].lps);
        if (!e.slots[b].toks || !e.slots[b].lps)
            s = spin_fail(SPIN_ERR_OOM, "generate: out of host memory");
    }
    if (s == SPIN_OK) {
        e.cache = spin_llama_cache_new(m, e.B, max_prompt + o->max_new_tokens);
        if (!e.cache)
            s = SPIN_ERR_OOM;
    }
    spin_no_grad_begin();
    if (s == SPIN_OK)
        s = refill(&e);
    while (s == SPIN_OK) {
        int64_t active = 0;
        for (int64_t b = 0; b < e.B; b++)
            active += e.slots[b].prompt >= 0;
        if (active == 0)
            break;
        s = decode_step(&e, active);
        if (s == SPIN_OK)
            s = refill(&e);
    }
    spin_no_grad_end();
    if (stats)
        stats->prompts = e.next;
    spin_llama_cache_free(e.cache);
    for (int64_t b = 0; e.slots && b < e.B; b++) {
        free(e.slots[b].toks);
        free(e.slots[b].lps);
    }
    free(e.slots);
    free(e.logits);
    spin_sampler_free(&e.smp);
    return s;
}
