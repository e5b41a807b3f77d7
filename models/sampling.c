/* Token selection on host logits: greedy, temperature, top-k, top-p (transformers' order), and the
 * keyed uniform. See models/generate.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/generate.h"

void spin_sampler_free(spin_sampler *s) {
    if (!s)
        return;
    free(s->idx);
    free(s->val);
    memset(s, 0, sizeof *s);
}

double spin_gen_uniform(uint64_t seed, int64_t index, int64_t position) {
    uint64_t counter = ((uint64_t)index << 32) | ((uint64_t)position & 0xffffffffu);
    spin_philox_out o = spin_philox(seed, counter);
    uint64_t bits = ((uint64_t)(o.v[0] >> 5) << 26) | (uint64_t)(o.v[1] >> 6); /* 27 + 26 bits */
    return (double)bits * (1.0 / 9007199254740992.0);
}

static bool grow(spin_sampler *s, int64_t n) {
    if (s->cap >= n)
        return true;
    int32_t *idx = realloc(s->idx, (size_t)n * sizeof *idx);
    if (idx)
        s->idx = idx;
    float *val = realloc(s->val, (size_t)n * sizeof *val);
    if (val)
        s->val = val;
    if (!idx || !val)
        return false;
    s->cap = n;
    return true;
}

/* log sum exp of logits (double accumulation). */
static double lse_of(const float *x, int64_t n, float *maxv) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    if (maxv)
        *maxv = mx;
    return (double)mx + log(sum);
}

/* The k-th largest of v[0..n) (1-based k), by quickselect on a copy in tmp. */
static float kth_largest(float *tmp, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = tmp[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (tmp[i] > pivot)
                i++;
            while (tmp[j] < pivot)
                j--;
            if (i <= j) {
                float t = tmp[i];
                tmp[i] = tmp[j];
                tmp[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return tmp[want];
    }
    return tmp[want];
}

/* Descending by value, then ascending by index (a total order: deterministic). */
static _Thread_local const float *sort_vals;
static int by_prob_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sort_vals[x] != sort_vals[y])
        return sort_vals[x] > sort_vals[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int32_t spin_sample(spin_sampler *s, const float *logits, int64_t V, float temperature, int64_t top_k,
                    float top_p, double u, float *logprob) {
    int32_t tok = 0;
    if (temperature > 0 && !grow(s, V))
        return -1;
    if (temperature <= 0) {
        for (int64_t i = 1; i < V; i++)
            if (logits[i] > logits[tok])
                tok = (int32_t)i;
    } else {
        /* probabilities of logits / temperature, unnormalised, relative to the max */
        float mx = -INFINITY;
        for (int64_t i = 0; i < V; i++)
            mx = logits[i] > mx ? logits[i] : mx;
        float thresh = -INFINITY; /* top-k: keep logits >= the k-th largest */
        if (top_k > 0 && top_k < V) {
            memcpy(s->val, logits, (size_t)V * sizeof *s->val);
            thresh = kth_largest(s->val, V, top_k);
        }
        const double inv_t = 1.0 / temperature;
        float *p = s->val; /* p[i] for every i (0 where removed by top-k) */
        double total = 0;
        for (int64_t i = 0; i < V; i++) {
            p[i] = logits[i] >= thresh ? (float)exp(((double)logits[i] - mx) * inv_t) : 0.0f;
            total += p[i];
        }
        int64_t nc = 0;
        if (top_p < 1.0f) {
            /* Only tokens above a threshold t can be in the nucleus once the mass of the tokens
             * >= t reaches top_p; lower t until it does, then sort just those. */
            double want = (double)top_p * total;
            float t = 1e-3f;
            for (;;) {
                double mass = 0;
                nc = 0;
                for (int64_t i = 0; i < V; i++)
                    if (p[i] > 0 && p[i] >= t) {
                        s->idx[nc++] = (int32_t)i;
                        mass += p[i];
                    }
                if (mass >= want || t == 0.0f)
                    break;
                t = t > 1e-30f ? t * 1e-3f : 0.0f;
            }
            sort_vals = p;
            qsort(s->idx, (size_t)nc, sizeof *s->idx, by_prob_desc);
            double cum = 0;
            int64_t keep = 0;
            while (keep < nc && (keep == 0 || cum < want))
                cum += p[s->idx[keep++]];
            nc = keep;
            total = cum;
        } else {
            for (int64_t i = 0; i < V; i++)
                if (p[i] > 0)
                    s->idx[nc++] = (int32_t)i;
        }
        double target = u * total, cum = 0;
        tok = s->idx[nc - 1];
        for (int64_t j = 0; j < nc; j++) {
            cum += p[s->idx[j]];
            if (cum > target) {
                tok = s->idx[j];
                break;
            }
        }
    }
    if (logprob)
        *logprob = (float)((double)logits[tok] - lse_of(logits, V, NULL));
    return tok;
}
