#include "train/collate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_PAD (-100) /* TRL's label_pad_token_id */

static spin_status check_opts(const spin_collate_opts *o, const char *fn) {
    if (o->max_length < 2)
        return spin_fail(SPIN_ERR_INVALID, "%s: max_length is %lld; it must be at least 2", fn,
                         (long long)o->max_length);
    if (o->max_prompt_length < 1 || o->max_prompt_length >= o->max_length)
        /* 0 would keep the whole prompt under keep_end (Python's v[-0:]) and max_length or more
         * leaves no room (or, negative, cuts from the end) for the responses */
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: max_prompt_length is %lld; it must be in [1, max_length - 1 = %lld]", fn,
                         (long long)o->max_prompt_length, (long long)o->max_length - 1);
    if (o->eos_id < 0 || o->pad_id < 0)
        return spin_fail(SPIN_ERR_INVALID, "%s: eos_id (%d) and pad_id (%d) must be token ids >= 0", fn,
                         (int)o->eos_id, (int)o->pad_id);
    return SPIN_OK;
}

/* One tokenised text with its attention bits; room for one appended token. */
typedef struct {
    int32_t *ids;
    uint8_t *attn;
    int64_t n;
} side;

static void side_free(side *s) {
    free(s->ids);
    free(s->attn);
    s->ids = NULL, s->attn = NULL, s->n = 0;
}

static spin_status encode(spin_tokenizer *tok, const char *text, const char *field, int32_t eos_id,
                          bool add_eos, side *out) {
    int32_t *raw = NULL;
    size_t n = 0;
    if (!text)
        return spin_fail(SPIN_ERR_INVALID, "spin_collate_tokenize: %s is NULL", field);
    spin_status s = spin_tokenizer_encode(tok, text, strlen(text), false, &raw, &n);
    if (s != SPIN_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", spin_last_error());
        return spin_fail(s, "spin_collate_tokenize: %s: %s", field, msg);
    }
    size_t total = n + (add_eos ? 1 : 0);
    out->ids = malloc((total ? total : 1) * sizeof *out->ids);
    out->attn = malloc(total ? total : 1);
    if (!out->ids || !out->attn) {
        free(raw);
        side_free(out);
        return spin_fail(SPIN_ERR_OOM, "spin_collate_tokenize: out of host memory (%s, %zu tokens)", field,
                         total);
    }
    for (size_t i = 0; i < n; i++) {
        out->ids[i] = raw[i];
        /* utils.py: an EOS inside the text is kept but not attended to */
        out->attn[i] = raw[i] == eos_id ? 0 : 1;
    }
    free(raw);
    if (add_eos) {
        out->ids[n] = eos_id;
        out->attn[n] = 1;
    }
    out->n = (int64_t)total;
    return SPIN_OK;
}

/* Keeps `keep` tokens from the start or the end (Python slicing: fewer tokens stay as they are). */
static void keep_tokens(side *s, int64_t keep, bool from_start) {
    if (s->n <= keep)
        return;
    if (!from_start) {
        memmove(s->ids, s->ids + (s->n - keep), (size_t)keep * sizeof *s->ids);
        memmove(s->attn, s->attn + (s->n - keep), (size_t)keep);
    }
    s->n = keep;
}

spin_status spin_collate_tokenize(spin_tokenizer *tok, const spin_pref_example *ex,
                                  const spin_collate_opts *o, spin_pref_tokens *out) {
    if (out)
        memset(out, 0, sizeof *out);
    if (!tok || !ex || !o || !out)
        return spin_fail(SPIN_ERR_INVALID, "spin_collate_tokenize: tok, ex, o and out must not be NULL");
    SPIN_TRY(check_opts(o, "spin_collate_tokenize"));
    side p = {0}, c = {0}, r = {0};
    spin_status s = encode(tok, ex->prompt, "prompt", o->eos_id, false, &p);
    if (s == SPIN_OK)
        s = encode(tok, ex->chosen, "chosen", o->eos_id, true, &c);
    if (s == SPIN_OK)
        s = encode(tok, ex->rejected, "rejected", o->eos_id, true, &r);
    if (s == SPIN_OK && p.n == 0)
        s = spin_fail(SPIN_ERR_INVALID,
                      "spin_collate_tokenize: the prompt tokenises to no tokens; the first response token "
                      "would have nothing to be predicted from (TRL scores labels[1:] only)");
    if (s != SPIN_OK) {
        side_free(&p), side_free(&c), side_free(&r);
        return s;
    }
    int64_t longer = c.n > r.n ? c.n : r.n;
    if (p.n + longer > o->max_length)
        keep_tokens(&p, o->max_prompt_length, o->keep_start);
    if (p.n + longer > o->max_length) {
        keep_tokens(&c, o->max_length - o->max_prompt_length, true);
        keep_tokens(&r, o->max_length - o->max_prompt_length, true);
    }
    *out = (spin_pref_tokens){.prompt = p.ids,
                              .chosen = c.ids,
                              .rejected = r.ids,
                              .prompt_attn = p.attn,
                              .chosen_attn = c.attn,
                              .rejected_attn = r.attn,
                              .n_prompt = p.n,
                              .n_chosen = c.n,
                              .n_rejected = r.n};
    return SPIN_OK;
}

void spin_pref_tokens_free(spin_pref_tokens *t) {
    if (!t)
        return;
    free(t->prompt), free(t->chosen), free(t->rejected);
    free(t->prompt_attn), free(t->chosen_attn), free(t->rejected_attn);
    memset(t, 0, sizeof *t);
}

/* ---- hash ------------------------------------------------------------------------------------ */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv_le(uint64_t h, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) {
        h ^= (v >> (8 * i)) & 0xffu;
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t hash_side(uint64_t h, const int32_t *ids, const uint8_t *attn, int64_t n) {
    h = fnv_le(h, (uint64_t)n, 8);
    for (int64_t i = 0; i < n; i++)
        h = fnv_le(h, (uint32_t)ids[i], 4);
    for (int64_t i = 0; i < n; i++)
        h = fnv_le(h, attn[i] ? 1u : 0u, 1);
    return h;
}

uint64_t spin_pref_tokens_hash(const spin_pref_tokens *t) {
    uint64_t h = FNV_OFFSET;
    h = hash_side(h, t->prompt, t->prompt_attn, t->n_prompt);
    h = hash_side(h, t->chosen, t->chosen_attn, t->n_chosen);
    return hash_side(h, t->rejected, t->rejected_attn, t->n_rejected);
}

/* ---- batch ----------------------------------------------------------------------------------- */

static bool side_ok(const int32_t *ids, const uint8_t *attn, int64_t n) {
    return n >= 0 && (n == 0 || (ids && attn));
}

/* Writes one row: prompt + response, then pad_id up to side_len (the collator), then 0 up to T
 * (concatenated_inputs); labels and the mask follow the same layout. */
static void write_row(const spin_pref_tokens *e, bool rejected, int32_t pad_id, int64_t side_len, int64_t T,
                      int32_t *ids, float *mask, int32_t *labels, float *n_resp) {
    const int32_t *rid = rejected ? e->rejected : e->chosen;
    const uint8_t *ratt = rejected ? e->rejected_attn : e->chosen_attn;
    int64_t nr = rejected ? e->n_rejected : e->n_chosen, np = e->n_prompt, t = 0;
    for (int64_t i = 0; i < np; i++, t++) {
        ids[t] = e->prompt[i];
        mask[t] = e->prompt_attn[i] ? 1.0f : 0.0f;
        labels[t] = LABEL_PAD;
    }
    for (int64_t i = 0; i < nr; i++, t++) {
        ids[t] = rid[i];
        mask[t] = ratt[i] ? 1.0f : 0.0f;
        labels[t] = rid[i];
    }
    for (; t < T; t++) {
        ids[t] = t < side_len ? pad_id : 0;
        mask[t] = 0.0f;
        labels[t] = LABEL_PAD;
    }
    *n_resp = (float)nr; /* response ids are >= 0, so every one of them is a label != -100 */
}

spin_status spin_collate_batch(const spin_pref_tokens *const *ex, int64_t b, const spin_collate_opts *o,
                               spin_collated *out) {
    if (out)
        memset(out, 0, sizeof *out);
    if (!ex || !o || !out)
        return spin_fail(SPIN_ERR_INVALID, "spin_collate_batch: ex, o and out must not be NULL");
    if (b < 1)
        return spin_fail(SPIN_ERR_INVALID, "spin_collate_batch: batch size %lld; it must be at least 1",
                         (long long)b);
    if (o->pad_id < 0)
        return spin_fail(SPIN_ERR_INVALID, "spin_collate_batch: pad_id %d is not a token id", (int)o->pad_id);
    int64_t len_c = 0, len_r = 0;
    for (int64_t i = 0; i < b; i++) {
        const spin_pref_tokens *e = ex[i];
        if (!e || !side_ok(e->prompt, e->prompt_attn, e->n_prompt) ||
            !side_ok(e->chosen, e->chosen_attn, e->n_chosen) ||
            !side_ok(e->rejected, e->rejected_attn, e->n_rejected))
            return spin_fail(
                SPIN_ERR_INVALID,
                "spin_collate_batch: example %lld is NULL or has a negative length or a NULL array "
                "behind a non-zero length",
                (long long)i);
        if (e->n_prompt == 0)
            return spin_fail(SPIN_ERR_INVALID, "spin_collate_batch: example %lld has no prompt tokens",
                             (long long)i);
        int64_t lc = e->n_prompt + e->n_chosen, lr = e->n_prompt + e->n_rejected;
        len_c = lc > len_c ? lc : len_c;
        len_r = lr > len_r ? lr : len_r;
    }
    int64_t T = len_c > len_r ? len_c : len_r, rows = 2 * b;
    size_t cells = (size_t)rows * (size_t)T;
    spin_collated c = {.batch = b, .len = T};
    c.ids = malloc(cells * sizeof *c.ids);
    c.key_mask = malloc(cells * sizeof *c.key_mask);
    c.labels = malloc(cells * sizeof *c.labels);
    c.n_response = malloc((size_t)rows * sizeof *c.n_response);
    if (!c.ids || !c.key_mask || !c.labels || !c.n_response) {
        spin_collated_free(&c);
        return spin_fail(SPIN_ERR_OOM, "spin_collate_batch: out of host memory (%lld x %lld rows)",
                         (long long)rows, (long long)T);
    }
    for (int64_t i = 0; i < b; i++) {
        size_t at = (size_t)i * (size_t)T, at_r = (size_t)(b + i) * (size_t)T;
        write_row(ex[i], false, o->pad_id, len_c, T, c.ids + at, c.key_mask + at, c.labels + at,
                  &c.n_response[i]);
        write_row(ex[i], true, o->pad_id, len_r, T, c.ids + at_r, c.key_mask + at_r, c.labels + at_r,
                  &c.n_response[b + i]);
    }
    *out = c;
    return SPIN_OK;
}

void spin_collated_free(spin_collated *c) {
    if (!c)
        return;
    free(c->ids), free(c->key_mask), free(c->labels), free(c->n_response);
    memset(c, 0, sizeof *c);
}
