/* GGUF vocabularies (tokenizer.ggml.*) mapped onto the tokenizer.json pipelines that Hugging Face
 * uses for the same models, so a GGUF tokenizes exactly like the tokenizer.json it came from:
 *  - model "gpt2" (byte-level BPE with merges): pre-tokenizer by tokenizer.ggml.pre name;
 *  - model "llama" (SentencePiece BPE, scores, no merges): the merges are derived from the vocabulary
 *    and scores as transformers' SentencePieceExtractor does, with the legacy Llama/Mistral pipeline
 *    (Prepend + Replace normalizer, byte fallback, Replace/ByteFallback/Fuse/Strip decoder).
 * Added tokens are the UNKNOWN/CONTROL/USER_DEFINED token types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer_internal.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static const char *LLAMA3_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static json_object *jobj(const char *type) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string(type));
    return o;
}

static json_object *bytelevel(bool use_regex) {
    json_object *o = jobj("ByteLevel");
    json_object_object_add(o, "add_prefix_space", json_object_new_boolean(0));
    json_object_object_add(o, "trim_offsets", json_object_new_boolean(1));
    json_object_object_add(o, "use_regex", json_object_new_boolean(use_regex));
    return o;
}

static json_object *seq(const char *type, const char *key, json_object *a, json_object *b) {
    json_object *o = jobj(type), *arr = json_object_new_array();
    json_object_array_add(arr, a);
    if (b)
        json_object_array_add(arr, b);
    json_object_object_add(o, key, arr);
    return o;
}

/* pre-tokenizer for a gpt2-type vocabulary by llama.cpp's tokenizer.ggml.pre name; *ignore_merges
 * as the corresponding tokenizer.json sets it. NULL: not supported. */
static json_object *gpt2_pre(const char *pre, bool *ignore_merges) {
    *ignore_merges = false;
    if (!pre || !strcmp(pre, "default") || !strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2"))
        return bytelevel(true);
    if (!strcmp(pre, "smollm")) {
        json_object *d = jobj("Digits");
        json_object_object_add(d, "individual_digits", json_object_new_boolean(1));
        return seq("Sequence", "pretokenizers", d, bytelevel(true));
    }
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3")) {
        json_object *s = jobj("Split"), *p = json_object_new_object();
        json_object_object_add(p, "Regex", json_object_new_string(LLAMA3_RE));
        json_object_object_add(s, "pattern", p);
        json_object_object_add(s, "behavior", json_object_new_string("Isolated"));
        json_object_object_add(s, "invert", json_object_new_boolean(0));
        *ignore_merges = true;
        return seq("Sequence", "pretokenizers", s, bytelevel(false));
    }
    return NULL;
}

typedef struct {
    int32_t l, r;
    float score;
    size_t order;
} spm_merge;

static int spm_cmp(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1; /* score descending */
    return x->order < y->order ? -1 : x->order > y->order;
}

/* transformers' generate_merges: for every piece (in id order), each split into two pieces of the
 * vocabulary, by (id left, id right); then all of them by score, highest first (stable). */
static json_object *spm_merges(const spin_gguf_vocab *v, const tk_strmap *ids) {
    size_t n = 0, cap = 1024;
    spm_merge *m = tk_xmalloc(cap * sizeof *m);
    for (int64_t id = 0; id < v->n_tokens; id++) {
        const char *s = v->tokens[id].s;
        size_t len = (size_t)v->tokens[id].len, first = n;
        size_t i = 0;
        uint32_t cp;
        int k = tk_utf8_next((const unsigned char *)s, len, &cp);
        i = k ? (size_t)k : 1;
        for (; i < len;) {
            int32_t l = tk_strmap_get(ids, s, i), r = tk_strmap_get(ids, s + i, len - i);
            if (l >= 0 && r >= 0) {
                if (n == cap)
                    m = tk_xrealloc(m, (cap *= 2) * sizeof *m);
                m[n++] = (spm_merge){l, r, v->scores ? v->scores[id] : (float)-id, 0};
            }
            k = tk_utf8_next((const unsigned char *)s + i, len - i, &cp);
            i += k ? (size_t)k : 1;
        }
        /* local order: by (left id, right id) */
        for (size_t a = first + 1; a < n; a++)
            for (size_t b = a;
                 b > first && (m[b - 1].l > m[b].l || (m[b - 1].l == m[b].l && m[b - 1].r > m[b].r)); b--) {
                spm_merge t = m[b];
                m[b] = m[b - 1];
                m[b - 1] = t;
            }
    }
    for (size_t i = 0; i < n; i++)
        m[i].order = i;
    qsort(m, n, sizeof *m, spm_cmp);
    json_object *arr = json_object_new_array_ext((int)n);
    for (size_t i = 0; i < n; i++) {
        json_object *pair = json_object_new_array_ext(2);
        json_object_array_add(pair,
                              json_object_new_string_len(v->tokens[m[i].l].s, (int)v->tokens[m[i].l].len));
        json_object_array_add(pair,
                              json_object_new_string_len(v->tokens[m[i].r].s, (int)v->tokens[m[i].r].len));
        json_object_array_add(arr, pair);
    }
    free(m);
    return arr;
}

static json_object *template_post(const spin_gguf_vocab *v, bool bos, bool eos) {
    if ((!bos || v->bos_id < 0) && (!eos || v->eos_id < 0))
        return NULL;
    json_object *o = jobj("TemplateProcessing"), *single = json_object_new_array(),
                *specials = json_object_new_object();
    int64_t which[2] = {bos ? v->bos_id : -1, eos ? v->eos_id : -1};
    for (int k = 0; k < 2; k++) {
        if (k == 1) {
            json_object *sq = json_object_new_object(), *a = json_object_new_object();
            json_object_object_add(a, "id", json_object_new_string("A"));
            json_object_object_add(a, "type_id", json_object_new_int(0));
            json_object_object_add(sq, "Sequence", a);
            json_object_array_add(single, sq);
        }
        if (which[k] < 0 || which[k] >= v->n_tokens)
            continue;
        const char *tok = v->tokens[which[k]].s;
        json_object *st = json_object_new_object(), *in = json_object_new_object();
        json_object_object_add(in, "id", json_object_new_string(tok));
        json_object_object_add(in, "type_id", json_object_new_int(0));
        json_object_object_add(st, "SpecialToken", in);
        json_object_array_add(single, st);
        json_object *def = json_object_new_object(), *ids = json_object_new_array(),
                    *toks = json_object_new_array();
        json_object_array_add(ids, json_object_new_int((int32_t)which[k]));
        json_object_array_add(toks, json_object_new_string(tok));
        json_object_object_add(def, "id", json_object_new_string(tok));
        json_object_object_add(def, "ids", ids);
        json_object_object_add(def, "tokens", toks);
        json_object_object_add(specials, tok, def);
    }
    json_object_object_add(o, "single", single);
    json_object_object_add(o, "special_tokens", specials);
    return o;
}

spin_tokenizer *spin_tokenizer_from_gguf(const spin_gguf_vocab *v, const char *name) {
    if (!v->model || !v->tokens || v->n_tokens <= 0) {
        spin_fail(SPIN_ERR_INVALID, "%s: tokenizer.ggml.model and tokenizer.ggml.tokens are required", name);
        return NULL;
    }
    bool gpt2 = !strcmp(v->model, "gpt2"), llama = !strcmp(v->model, "llama");
    if (!gpt2 && !llama) {
        spin_fail(SPIN_ERR_UNSUPPORTED,
                  "%s: tokenizer.ggml.model \"%s\" is not supported (supported: gpt2, llama)", name,
                  v->model);
        return NULL;
    }
    bool ignore_merges = false;
    json_object *pre = NULL;
    if (gpt2) {
        pre = gpt2_pre(v->pre, &ignore_merges);
        if (!pre) {
            spin_fail(
                SPIN_ERR_UNSUPPORTED,
                "%s: tokenizer.ggml.pre \"%s\" is not supported (supported: default, gpt2, gpt-2, smollm, "
                "llama-bpe, llama3)",
                name, v->pre);
            return NULL;
        }
        if (!v->merges || v->n_merges <= 0) {
            json_object_put(pre);
            spin_fail(SPIN_ERR_INVALID, "%s: a gpt2 vocabulary needs tokenizer.ggml.merges", name);
            return NULL;
        }
    }
    json_object *root = json_object_new_object(), *model = jobj("BPE"), *vocab = json_object_new_object(),
                *added = json_object_new_array();
    tk_strmap ids;
    tk_strmap_init(&ids, (size_t)v->n_tokens);
    const char *unk = NULL;
    for (int64_t i = 0; i < v->n_tokens; i++) {
        const spin_gguf_str *t = &v->tokens[i];
        /* the first of duplicate pieces keeps its id, as a vocabulary map built in id order */
        if (tk_strmap_get(&ids, t->s, (size_t)t->len) < 0) {
            tk_strmap_put(&ids, t->s, (size_t)t->len, (int32_t)i);
            json_object_object_add(vocab, t->s, json_object_new_int((int32_t)i));
        }
        int tt = v->token_type ? v->token_type[i] : TT_NORMAL;
        if ((tt == TT_UNKNOWN && !unk) || (i == v->unk_id))
            unk = t->s;
        if (tt == TT_UNKNOWN || tt == TT_CONTROL || tt == TT_USER_DEFINED) {
            json_object *a = json_object_new_object();
            json_object_object_add(a, "id", json_object_new_int((int32_t)i));
            json_object_object_add(a, "content", json_object_new_string_len(t->s, (int)t->len));
            json_object_object_add(a, "single_word", json_object_new_boolean(0));
            json_object_object_add(a, "lstrip", json_object_new_boolean(0));
            json_object_object_add(a, "rstrip", json_object_new_boolean(0));
            json_object_object_add(a, "normalized", json_object_new_boolean(0));
            json_object_object_add(a, "special", json_object_new_boolean(tt != TT_USER_DEFINED));
            json_object_array_add(added, a);
        }
    }
    json_object_object_add(model, "vocab", vocab);
    if (gpt2) {
        json_object *merges = json_object_new_array_ext((int)v->n_merges);
        for (int64_t i = 0; i < v->n_merges; i++)
            json_object_array_add(merges, json_object_new_string_len(v->merges[i].s, (int)v->merges[i].len));
        json_object_object_add(model, "merges", merges);
        json_object_object_add(model, "ignore_merges", json_object_new_boolean(ignore_merges));
        json_object_object_add(root, "pre_tokenizer", pre);
        json_object_object_add(root, "decoder", bytelevel(true));
        json_object *post = template_post(v, v->add_bos == 1, v->add_eos == 1);
        if (post)
            json_object_object_add(root, "post_processor", post);
    } else {
        json_object_object_add(model, "merges", spm_merges(v, &ids));
        if (unk)
            json_object_object_add(model, "unk_token", json_object_new_string(unk));
        json_object_object_add(model, "fuse_unk", json_object_new_boolean(1));
        json_object_object_add(model, "byte_fallback", json_object_new_boolean(1));
        json_object *prep = jobj("Prepend"), *rep = jobj("Replace"), *pat = json_object_new_object();
        json_object_object_add(prep, "prepend", json_object_new_string("\xE2\x96\x81"));
        json_object_object_add(pat, "String", json_object_new_string(" "));
        json_object_object_add(rep, "pattern", pat);
        json_object_object_add(rep, "content", json_object_new_string("\xE2\x96\x81"));
        json_object_object_add(root, "normalizer", seq("Sequence", "normalizers", prep, rep));
        json_object *d1 = jobj("Replace"), *p1 = json_object_new_object(), *st = jobj("Strip");
        json_object_object_add(p1, "String", json_object_new_string("\xE2\x96\x81"));
        json_object_object_add(d1, "pattern", p1);
        json_object_object_add(d1, "content", json_object_new_string(" "));
        json_object_object_add(st, "content", json_object_new_string(" "));
        json_object_object_add(st, "start", json_object_new_int(1));
        json_object_object_add(st, "stop", json_object_new_int(0));
        json_object *dec = seq("Sequence", "decoders", d1, jobj("ByteFallback"));
        json_object *arr = json_object_object_get(dec, "decoders");
        json_object_array_add(arr, jobj("Fuse"));
        json_object_array_add(arr, st);
        json_object_object_add(root, "decoder", dec);
        json_object *post = template_post(v, v->add_bos != 0, v->add_eos == 1);
        if (post)
            json_object_object_add(root, "post_processor", post);
    }
    tk_strmap_free(&ids);
    json_object_object_add(root, "model", model);
    json_object_object_add(root, "added_tokens", added);
    json_object *cfg = json_object_new_object();
    if (v->bos_id >= 0 && v->bos_id < v->n_tokens)
        json_object_object_add(cfg, "bos_token", json_object_new_string(v->tokens[v->bos_id].s));
    if (v->eos_id >= 0 && v->eos_id < v->n_tokens)
        json_object_object_add(cfg, "eos_token", json_object_new_string(v->tokens[v->eos_id].s));
    spin_tokenizer *tok = tk_load_obj(root, name, cfg);
    json_object_put(root);
    json_object_put(cfg);
    return tok;
}

spin_tokenizer *tk_load_gguf(const char *path) {
    spin_gguf *g = spin_gguf_open(path);
    if (!g)
        return NULL;
    spin_gguf_vocab v;
    memset(&v, 0, sizeof v);
    spin_tokenizer *t = NULL;
    if (spin_gguf_vocab_read(g, &v) == SPIN_OK) {
        t = spin_tokenizer_from_gguf(&v, path);
        spin_gguf_vocab_free(&v);
    }
    spin_gguf_close(g);
    return t;
}
