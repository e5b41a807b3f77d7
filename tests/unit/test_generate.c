/* The batched generation engine (models/generate.h) on the tiny golden models of tests/data/llama:
 * batched greedy decoding with the KV cache and slot refills against one-at-a-time greedy decoding
 * by full recompute (token by token wherever the reference's top-2 logit margin exceeds 1e-3, and
 * the log-probs), queue order and batch size not mattering, seeded sampling reproducible and
 * independent of the batch, EOS / max_new_tokens / stop strings, and the text path with a tiny
 * tokenizer. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "models/generate.h"
#include "ops/ops.h"

#define MARGIN 1e-3
#define MAXN 32
#define NP 7

static spin_device *dev;

static spin_llama *load(const char *v) {
    char p[1024];
    snprintf(p, sizeof p, "%s/llama/%s", SPIN_TEST_DATA, v);
    spin_llama *m;
    assert_int_equal(spin_llama_load(p, dev, &m), SPIN_OK);
    return m;
}

/* NP prompts of lengths 1..13, ids in [3, 97). */
static int32_t prompt_ids[NP][16];
static int64_t prompt_len[NP];
static const int32_t *prompt_ptr[NP];

static void make_prompts(void) {
    static const int64_t lens[NP] = {5, 1, 9, 3, 13, 7, 2};
    for (int q = 0; q < NP; q++) {
        prompt_len[q] = lens[q];
        for (int t = 0; t < lens[q]; t++)
            prompt_ids[q][t] = 3 + (q * 37 + t * (11 + q) + t * t * 5) % 94;
        prompt_ptr[q] = prompt_ids[q];
    }
}

/* ---- the reference: one prompt at a time, full forward over the whole sequence each step ---- */

typedef struct {
    int32_t toks[MAXN];
    float lp[MAXN];
    double margin[MAXN];
    int64_t n;
    spin_finish_reason finish;
    char text[512];
} seq;

/* mask_id >= 0: that id gets key mask 0 at the prompt positions where it occurs */
static void ref_greedy_masked(spin_llama *m, int q, int64_t max_new, int32_t eos, int32_t mask_id, seq *out) {
    const int64_t V = m->cfg.vocab_size;
    int32_t ids[64];
    float km[64];
    int64_t L = prompt_len[q];
    memcpy(ids, prompt_ids[q], (size_t)L * sizeof *ids);
    for (int64_t t = 0; t < 64; t++)
        km[t] = t < L && mask_id >= 0 && ids[t] == mask_id ? 0.0f : 1.0f;
    memset(out, 0, sizeof *out);
    out->finish = SPIN_FINISH_LENGTH;
    float *lg = malloc((size_t)V * sizeof *lg);
    spin_no_grad_begin();
    for (int64_t j = 0; j < max_new; j++) {
        spin_scope_begin();
        spin_tensor *ti = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){1, L + j}, ids);
        spin_tensor *tm = mask_id >= 0 ? spin_from_host(dev, SPIN_F32, 2, (int64_t[]){1, L + j}, km) : NULL;
        spin_tensor *h = spin_llama_forward(m, ti, NULL, tm, NULL);
        spin_tensor *last = spin_narrow(h, 0, L + j - 1, 1);
        spin_tensor *l = spin_llama_logits(m, last);
        assert_int_equal(spin_tensor_read(l, lg, (size_t)V * sizeof *lg), SPIN_OK);
        spin_scope_end();
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++)
            best = lg[i] > lg[best] ? (int32_t)i : best;
        double second = -INFINITY, mx = lg[best], sum = 0;
        for (int64_t i = 0; i < V; i++) {
            if (i != best && lg[i] > second)
                second = lg[i];
            sum += exp((double)lg[i] - mx);
        }
        out->toks[j] = best;
        out->margin[j] = mx - second;
        out->lp[j] = (float)(-log(sum));
        out->n = j + 1;
        ids[L + j] = best;
        if (best == eos) {
            out->finish = SPIN_FINISH_EOS;
            break;
        }
    }
    spin_no_grad_end();
    free(lg);
}

static void ref_greedy(spin_llama *m, int q, int64_t max_new, int32_t eos, seq *out) {
    ref_greedy_masked(m, q, max_new, eos, -1, out);
}

/* ---- running the engine ---- */

typedef struct {
    seq s[NP];
    int order[NP]; /* completion order */
    int n_done;
} results;

static const int *cur_perm; /* queue order of the running spin_generate (NULL: identity) */

/* streamed tokens, by queue index */
typedef struct {
    int32_t toks[NP][MAXN];
    int64_t n[NP];
} streamed;

static void on_token(void *ctx, int64_t index, int32_t token) {
    streamed *st = ctx;
    assert_true(index >= 0 && index < NP && st->n[index] < MAXN);
    st->toks[index][st->n[index]++] = token;
}

static spin_status collect(void *ctx, const spin_gen_result *r) {
    results *res = ctx;
    int pq = cur_perm ? cur_perm[r->index] : (int)r->index;
    assert_true(r->index >= 0 && r->index < NP);
    assert_true(r->n_tokens <= MAXN);
    seq *s = &res->s[r->index];
    memcpy(s->toks, r->tokens, (size_t)r->n_tokens * sizeof *s->toks);
    if (r->logprobs)
        memcpy(s->lp, r->logprobs, (size_t)r->n_tokens * sizeof *s->lp);
    s->n = r->n_tokens;
    s->finish = r->finish;
    snprintf(s->text, sizeof s->text, "%s", r->text ? r->text : "");
    assert_int_equal(r->prompt_len, prompt_len[pq]);
    assert_memory_equal(r->prompt, prompt_ids[pq], (size_t)r->prompt_len * sizeof(int32_t));
    res->order[res->n_done++] = (int)r->index;
    return SPIN_OK;
}

/* Runs the prompts in queue order perm (perm[i] = prompt at queue position i), results by prompt. */
static void run(spin_llama *m, const spin_tokenizer *tok, const spin_gen_opts *o, const int *perm,
                results *out) {
    const int32_t *pp[NP];
    int64_t pl[NP];
    for (int i = 0; i < NP; i++) {
        pp[i] = prompt_ptr[perm ? perm[i] : i];
        pl[i] = prompt_len[perm ? perm[i] : i];
    }
    results tmp;
    memset(&tmp, 0, sizeof tmp);
    spin_gen_stats st;
    cur_perm = perm;
    assert_int_equal(spin_generate(m, tok, pp, pl, NP, o, collect, &tmp, &st), SPIN_OK);
    cur_perm = NULL;
    assert_int_equal(tmp.n_done, NP);
    assert_int_equal(st.prompts, NP);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < NP; i++)
        out->s[perm ? perm[i] : i] = tmp.s[i];
    int64_t real = 0;
    for (int i = 0; i < NP; i++)
        real += prompt_len[i];
    assert_int_equal(st.prefill_tokens, real);
}

/* Engine tokens equal the reference's up to the first step whose margin is below MARGIN; returns
 * the number of steps compared. */
static int compare_greedy(const seq *got, const seq *ref, double *worst_lp) {
    int64_t j = 0;
    for (; j < ref->n; j++) {
        assert_true(j < got->n);
        if (ref->margin[j] < MARGIN)
            return (int)j;
        assert_int_equal(got->toks[j], ref->toks[j]);
        double d = fabs((double)got->lp[j] - ref->lp[j]);
        *worst_lp = d > *worst_lp ? d : *worst_lp;
    }
    assert_int_equal(got->n, ref->n);
    assert_int_equal(got->finish, ref->finish);
    return (int)j;
}

static void test_greedy_matches_reference(void **state) {
    (void)state;
    static const char *const variants[] = {"llama_gqa", "llama_tied", "mistral_window", "llama3_rope"};
    const int64_t max_new = 10;
    static const int reversed[NP] = {6, 5, 4, 3, 2, 1, 0}, rotated[NP] = {3, 4, 5, 6, 0, 1, 2};
    for (int vi = 0; vi < 4; vi++) {
        spin_llama *m = load(variants[vi]);
        /* EOS: prompt 0's third greedy token, so some sequences stop early and slots refill at
         * different steps */
        seq ref[NP];
        ref_greedy(m, 0, max_new, -1, &ref[0]);
        int32_t eos = ref[0].toks[2];
        for (int q = 0; q < NP; q++)
            ref_greedy(m, q, max_new, eos, &ref[q]);
        spin_gen_opts o = spin_gen_opts_default();
        o.max_new_tokens = max_new;
        o.eos_ids = &eos;
        o.n_eos = 1;
        o.logprobs = true;
        int compared = 0, n_eos = 0, runs = 0;
        double worst_lp = 0;
        int near_ties = 0;
        for (int q = 0; q < NP; q++) {
            n_eos += ref[q].finish == SPIN_FINISH_EOS;
            for (int64_t j = 0; j < ref[q].n; j++)
                near_ties += ref[q].margin[j] < MARGIN;
        }
        const int64_t batches[4] = {1, 2, 3, 8};
        for (int bi = 0; bi < 4; bi++) {
            o.batch_size = batches[bi];
            for (int pi = 0; pi < 3; pi++) {
                if (batches[bi] == 8 && pi > 0)
                    continue;
                results r;
                run(m, NULL, &o, pi == 0 ? NULL : pi == 1 ? reversed : rotated, &r);
                runs++;
                for (int q = 0; q < NP; q++)
                    compared += compare_greedy(&r.s[q], &ref[q], &worst_lp);
            }
        }
        printf(
            "    %-15s %d runs (batch 1, 2, 3, 8; three queue orders): %d tokens checked, %d of %d prompts "
            "end on EOS, %d reference steps with margin < 1e-3, worst logprob diff %.1e\n",
            variants[vi], runs, compared, n_eos, NP, near_ties, worst_lp);
        assert_true(n_eos >= 1 && n_eos < NP);
        assert_true(worst_lp < 1e-4);
        spin_llama_free(m);
    }
}

/* mask_prompt_id: the id gets attention 0 in the prompts (as the training collator masks EOS inside
 * the text), decoding included: the engine (batch 3, slots refilled) against the reference's full
 * forwards with that key mask, tokens up to near-ties and log-probs within 1e-4; the mask changes
 * the answer of at least one prompt (so the check has teeth). */
static void test_prompt_mask(void **state) {
    (void)state;
    spin_llama *m = load("llama_gqa");
    const int64_t max_new = 8;
    int32_t mask_id = prompt_ids[4][3]; /* an id of the longest prompt */
    int with = 0, changed = 0;
    seq ref[NP], plain;
    for (int q = 0; q < NP; q++) {
        ref_greedy_masked(m, q, max_new, -1, mask_id, &ref[q]);
        bool has = false;
        for (int64_t t = 0; t < prompt_len[q]; t++)
            has |= prompt_ids[q][t] == mask_id;
        with += has;
        ref_greedy(m, q, max_new, -1, &plain);
        changed +=
            !(plain.n == ref[q].n && !memcmp(plain.toks, ref[q].toks, (size_t)plain.n * sizeof(int32_t)));
    }
    spin_gen_opts o = spin_gen_opts_default();
    o.max_new_tokens = max_new;
    o.ignore_eos = true;
    o.logprobs = true;
    o.batch_size = 3;
    o.mask_prompt_id = true;
    o.prompt_mask_id = mask_id;
    results r;
    run(m, NULL, &o, NULL, &r);
    double worst_lp = 0;
    int compared = 0;
    for (int q = 0; q < NP; q++)
        compared += compare_greedy(&r.s[q], &ref[q], &worst_lp);
    printf("    id %d masked in %d of %d prompts: %d tokens checked, %d answers changed by the mask, worst "
           "logprob diff %.1e\n",
           (int)mask_id, with, NP, compared, changed, worst_lp);
    assert_true(with >= 1);
    assert_true(changed >= 1);
    assert_true(worst_lp < 1e-4);
    spin_llama_free(m);
}

static bool same_tokens(const seq *a, const seq *b) {
    return a->n == b->n && !memcmp(a->toks, b->toks, (size_t)a->n * sizeof *a->toks);
}

static void test_sampling_seeded(void **state) {
    (void)state;
    spin_llama *m = load("llama_gqa");
    spin_gen_opts o = spin_gen_opts_default();
    o.max_new_tokens = 12;
    o.ignore_eos = true;
    o.temperature = 1.3f;
    o.top_k = 40;
    o.top_p = 0.95f;
    o.seed = 1234;
    results base, r;
    o.batch_size = 1;
    run(m, NULL, &o, NULL, &base);
    /* the RNG is keyed by the queue index, so the queue order stays; the batch size varies */
    const int64_t batches[3] = {2, 3, 7};
    for (int bi = 0; bi < 3; bi++) {
        o.batch_size = batches[bi];
        run(m, NULL, &o, NULL, &r);
        for (int q = 0; q < NP; q++)
            assert_true(same_tokens(&r.s[q], &base.s[q]));
    }
    /* index_offset: the last NP - 2 prompts alone, keyed from row 2, draw what they drew in the
     * whole list (a resumed run, or another rank's block) */
    {
        const int32_t *pp[NP];
        int64_t pl[NP];
        for (int i = 2; i < NP; i++) {
            pp[i - 2] = prompt_ptr[i];
            pl[i - 2] = prompt_len[i];
        }
        int shift[NP];
        for (int i = 0; i < NP; i++)
            shift[i] = i + 2 < NP ? i + 2 : 0;
        cur_perm = shift; /* collect checks call index i against prompt i + 2 */
        results tail;
        memset(&tail, 0, sizeof tail);
        spin_gen_stats st;
        spin_gen_opts ot = o;
        ot.index_offset = 2;
        assert_int_equal(spin_generate(m, NULL, pp, pl, NP - 2, &ot, collect, &tail, &st), SPIN_OK);
        for (int q = 2; q < NP; q++)
            assert_true(same_tokens(&tail.s[q - 2], &base.s[q]));
        /* without the offset the same prompts draw other samples */
        ot.index_offset = 0;
        memset(&tail, 0, sizeof tail);
        assert_int_equal(spin_generate(m, NULL, pp, pl, NP - 2, &ot, collect, &tail, &st), SPIN_OK);
        int moved = 0;
        for (int q = 2; q < NP; q++)
            moved += !same_tokens(&tail.s[q - 2], &base.s[q]);
        assert_true(moved >= NP - 3);
        cur_perm = NULL;
    }
    /* another seed changes the samples; the same seed again does not */
    o.seed = 99;
    run(m, NULL, &o, NULL, &r);
    int differ = 0;
    for (int q = 0; q < NP; q++)
        differ += !same_tokens(&r.s[q], &base.s[q]);
    assert_true(differ >= NP - 1);
    /* streaming: every token arrives through on_token, in order, before its result */
    streamed str;
    memset(&str, 0, sizeof str);
    o.on_token = on_token;
    o.on_token_ctx = &str;
    o.batch_size = 3;
    run(m, NULL, &o, NULL, &r);
    for (int q = 0; q < NP; q++) {
        assert_int_equal(str.n[q], r.s[q].n);
        assert_memory_equal(str.toks[q], r.s[q].toks, (size_t)r.s[q].n * sizeof(int32_t));
    }
    o.on_token = NULL;
    /* top_k = 1 is greedy whatever the temperature */
    o.top_k = 1;
    results g1, g0;
    run(m, NULL, &o, NULL, &g1);
    spin_gen_opts og = spin_gen_opts_default();
    og.max_new_tokens = 12;
    og.ignore_eos = true;
    run(m, NULL, &og, NULL, &g0);
    for (int q = 0; q < NP; q++)
        assert_true(same_tokens(&g1.s[q], &g0.s[q]));
    printf("    sampled tokens identical for batch 1, 2, 3, 7; seed 99 changes %d of %d\n", differ, NP);
    spin_llama_free(m);
}

/* spin_sample on known logits: probabilities 1/6, 2/6, 3/6 (and two tokens at -inf). */
static void test_sampler(void **state) {
    (void)state;
    const float lg[5] = {0.0f, logf(2.0f), logf(3.0f), -INFINITY, -INFINITY};
    spin_sampler s = {0};
    int counts[5] = {0};
    const int N = 30000;
    for (int i = 0; i < N; i++) {
        float lp;
        int32_t t = spin_sample(&s, lg, 5, 1.0f, 0, 1.0f, spin_gen_uniform(5, 0, i), &lp);
        assert_true(t >= 0 && t < 3);
        assert_true(fabs(lp - logf((float)(t + 1) / 6.0f)) < 1e-5);
        counts[t]++;
    }
    for (int t = 0; t < 3; t++)
        assert_true(fabs((double)counts[t] / N - (t + 1) / 6.0) < 0.015);
    /* greedy; top-k 2 never picks token 0; top-p 0.5 keeps only token 2; top-p 0.6 keeps 1 and 2 */
    assert_int_equal(spin_sample(&s, lg, 5, 0.0f, 0, 1.0f, 0.3, NULL), 2);
    int seen[5] = {0};
    for (int i = 0; i < 2000; i++) {
        double u = spin_gen_uniform(6, 1, i);
        seen[spin_sample(&s, lg, 5, 1.0f, 2, 1.0f, u, NULL)]++;
        assert_int_equal(spin_sample(&s, lg, 5, 1.0f, 0, 0.5f, u, NULL), 2);
        int32_t t = spin_sample(&s, lg, 5, 1.0f, 0, 0.6f, u, NULL);
        assert_true(t == 1 || t == 2);
    }
    assert_int_equal(seen[0], 0);
    assert_true(seen[1] > 0 && seen[2] > seen[1]);
    /* a low temperature concentrates on the max */
    int top = 0;
    for (int i = 0; i < 1000; i++)
        top += spin_sample(&s, lg, 5, 0.05f, 0, 1.0f, spin_gen_uniform(7, 0, i), NULL) == 2;
    assert_true(top > 990);
    /* uniforms are in [0, 1) and keyed */
    assert_true(spin_gen_uniform(1, 2, 3) != spin_gen_uniform(1, 3, 2));
    assert_true(spin_gen_uniform(1, 2, 3) == spin_gen_uniform(1, 2, 3));
    spin_sampler_free(&s);
}

static void test_stopping(void **state) {
    (void)state;
    spin_llama *m = load("llama_tied"); /* its config has eos as a list */
    spin_gen_opts o = spin_gen_opts_default();
    o.batch_size = 3;
    /* max_new_tokens = 1: one token each, from the prefill */
    o.max_new_tokens = 1;
    o.ignore_eos = true;
    results r;
    run(m, NULL, &o, NULL, &r);
    for (int q = 0; q < NP; q++) {
        assert_int_equal(r.s[q].n, 1);
        assert_int_equal(r.s[q].finish, SPIN_FINISH_LENGTH);
    }
    /* EOS: the 4th greedy token of prompt 2 stops it with that token last */
    o.max_new_tokens = 8;
    run(m, NULL, &o, NULL, &r);
    int32_t eos[2] = {96, r.s[2].toks[3]};
    int first = 0;
    while (r.s[2].toks[first] != eos[1])
        first++;
    o.ignore_eos = false;
    o.eos_ids = eos;
    o.n_eos = 2;
    results re;
    run(m, NULL, &o, NULL, &re);
    assert_int_equal(re.s[2].finish, SPIN_FINISH_EOS);
    assert_int_equal(re.s[2].n, first + 1);
    assert_int_equal(re.s[2].toks[first], eos[1]);
    for (int q = 0; q < NP; q++)
        assert_true(re.s[q].n == 8 ? re.s[q].finish != SPIN_FINISH_EOS || re.s[q].toks[7] == eos[0] ||
                                         re.s[q].toks[7] == eos[1]
                                   : re.s[q].finish == SPIN_FINISH_EOS);
    /* errors name the prompt */
    const int32_t bad[2] = {5, 97};
    const int32_t *bp[1] = {bad};
    int64_t bl[1] = {2};
    assert_int_equal(spin_generate(m, NULL, bp, bl, 1, &o, collect, NULL, NULL), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "prompt 0 token 1"));
    bl[0] = 0;
    assert_int_equal(spin_generate(m, NULL, bp, bl, 1, &o, collect, NULL, NULL), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "prompt 0 is empty"));
    spin_llama_free(m);
}

/* Text: a tokenizer decodes the completions; stop strings end a sequence and cut its text. */
static void test_text_and_stop_strings(void **state) {
    (void)state;
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizer/tiny-bytelevel.json", SPIN_TEST_DATA);
    spin_tokenizer *tok = spin_tokenizer_load(p);
    assert_non_null(tok);
    spin_llama *m = load("llama_gqa");
    /* a text prompt whose ids fit the tiny model's vocabulary of 97 */
    const char *text = "zq{xk|v~";
    int32_t *ids;
    size_t n;
    assert_int_equal(spin_tokenizer_encode(tok, text, strlen(text), false, &ids, &n), SPIN_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] < 97);
    memcpy(prompt_ids[0], ids, n * sizeof *ids);
    prompt_len[0] = (int64_t)n;
    free(ids);
    spin_gen_opts o = spin_gen_opts_default();
    o.batch_size = 2;
    o.max_new_tokens = 16;
    o.ignore_eos = true;
    o.skip_special = false;
    o.temperature = 1.5f; /* varied text (greedy repeats one character) */
    o.seed = 3;
    results r;
    run(m, tok, &o, NULL, &r);
    for (int q = 0; q < NP; q++) {
        char *dec;
        assert_int_equal(spin_tokenizer_decode(tok, r.s[q].toks, (size_t)r.s[q].n, false, &dec, NULL),
                         SPIN_OK);
        assert_string_equal(dec, r.s[q].text);
        free(dec);
    }
    /* stop at a piece of prompt 0's completion: the first two bytes from the 4th on that do not
     * occur earlier */
    const seq *full = &r.s[0];
    size_t flen = strlen(full->text), i = 3;
    char stop[3] = {0};
    for (; i + 1 < flen; i++) {
        stop[0] = full->text[i];
        stop[1] = full->text[i + 1];
        if ((size_t)(strstr(full->text, stop) - full->text) == i)
            break;
    }
    assert_true(i + 1 < flen);
    const char *stops[2] = {"@@never@@", stop};
    o.stop = stops;
    o.n_stop = 2;
    results rs;
    run(m, tok, &o, NULL, &rs);
    const seq *cut = &rs.s[0];
    size_t at = (size_t)(strstr(full->text, stop) - full->text);
    printf("    completion \"%s\", stop \"%s\" -> \"%s\" after %lld of %lld tokens\n", full->text, stop,
           cut->text, (long long)cut->n, (long long)full->n);
    assert_int_equal(cut->finish, SPIN_FINISH_STOP);
    assert_int_equal(strlen(cut->text), at);
    assert_memory_equal(cut->text, full->text, at);
    assert_true(cut->n <= full->n);
    assert_memory_equal(cut->toks, full->toks, (size_t)cut->n * sizeof(int32_t));
    for (int q = 1; q < NP; q++)
        if (rs.s[q].finish != SPIN_FINISH_STOP)
            assert_true(same_tokens(&rs.s[q], &r.s[q]));
    /* stop strings without a tokenizer are refused */
    assert_int_equal(spin_generate(m, NULL, prompt_ptr, prompt_len, NP, &o, collect, NULL, NULL),
                     SPIN_ERR_INVALID);
    make_prompts();
    spin_llama_free(m);
    spin_tokenizer_free(tok);
}

static int64_t live_at_start;
static void test_no_leaks(void **state) {
    (void)state;
    assert_int_equal(spin_tensor_live_count(), live_at_start);
}

int main(void) {
    dev = spin_init();
    live_at_start = spin_tensor_live_count();
    make_prompts();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sampler),         cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_sampling_seeded), cmocka_unit_test(test_prompt_mask),
        cmocka_unit_test(test_stopping),        cmocka_unit_test(test_text_and_stop_strings),
        cmocka_unit_test(test_no_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
