/* The tokenizer pipeline (tokenizers' tokenizer/mod.rs and added_vocabulary.rs): load
 * tokenizer.json, split out added tokens (non-normalized ones on the raw text, normalized ones on
 * the normalized text), normalize, pre-tokenize, run the model, post-process; and decode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/tokenizer_internal.h"

typedef struct {
    char *content;
    size_t len;
    char *pat; /* what is matched: content, or its normalized form for normalized tokens */
    size_t plen;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} tk_added;

/* Leftmost-longest matcher over a few added tokens: per first byte, candidates by length. */
typedef struct {
    int *idx[256];
    int cnt[256];
} tk_matcher;

enum { TPP_NONE, TPP_TEMPLATE, TPP_NOOP };

struct spin_tokenizer {
    char *name;
    bool has_norm, has_pre, has_dec;
    tk_norm norm;
    tk_pre pre;
    tk_dec dec;
    tk_bpe bpe;
    tk_regexes rx;
    regex_t *ends_word, *starts_word, *space_end, *space_start;
    tk_added *added;
    int n_added;
    tk_matcher m_raw, m_norm;
    /* decode table: id -> token text (added tokens override the model's) */
    int32_t n_ids;
    const char **id_tok;
    uint32_t *id_len;
    bool *special;
    tk_strmap added_map;
    int post;     /* TPP_* */
    int32_t *tpl; /* single template: ids, with INT32_MIN for the sequence */
    size_t n_tpl;
    int32_t bos, eos;
};

static const char *GPT2_RE =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* The Rust regex crate's \\w (used by tokenizers for the Whitespace pre-tokenizer and for the
 * single_word/lstrip/rstrip rules of added tokens): Alphabetic, marks, decimal digits, connector
 * punctuation and Join_Control. Oniguruma's own \\w differs (all of \\p{N}, no ZWJ). Its \\s is
 * White_Space in both. */
#define RUST_WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
#define RUST_WORD "[" RUST_WORD_CLASS "]"

/* ---------------- added tokens ---------------- */

static void matcher_build(tk_matcher *m, const tk_added *a, int n, bool normalized) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < n; i++)
        if (a[i].normalized == normalized && a[i].plen)
            m->cnt[(unsigned char)a[i].pat[0]]++;
    for (int b = 0; b < 256; b++) {
        if (m->cnt[b])
            m->idx[b] = tk_xmalloc((size_t)m->cnt[b] * sizeof(int));
        m->cnt[b] = 0;
    }
    for (int i = 0; i < n; i++)
        if (a[i].normalized == normalized && a[i].plen) {
            unsigned char b = (unsigned char)a[i].pat[0];
            int *v = m->idx[b];
            int k = m->cnt[b]++;
            /* insertion by decreasing length (longest first) */
            while (k > 0 && a[v[k - 1]].plen < a[i].plen) {
                v[k] = v[k - 1];
                k--;
            }
            v[k] = i;
        }
}

static void matcher_free(tk_matcher *m) {
    for (int b = 0; b < 256; b++)
        free(m->idx[b]);
}

static bool re_hit(regex_t *re, const char *s, size_t n) {
    const OnigUChar *u = (const OnigUChar *)s;
    return onig_search(re, u, u + n, u, u + n, NULL, ONIG_OPTION_NONE) >= 0;
}

static size_t re_pos(regex_t *re, const char *s, size_t n, bool end) {
    const OnigUChar *u = (const OnigUChar *)s;
    OnigRegion *r = onig_region_new();
    size_t out = end ? 0 : n;
    if (onig_search(re, u, u + n, u, u + n, r, ONIG_OPTION_NONE) >= 0)
        out = (size_t)(end ? r->end[0] : r->beg[0]);
    onig_region_free(r, 1);
    return out;
}

/* AddedVocabulary::find_matches + split_with_indices for one piece. */
static void split_added(const spin_tokenizer *t, const tk_matcher *m, const tk_piece *pc, tk_pieces *out) {
    const char *s = pc->s;
    size_t n = pc->n, start_offset = 0, i = 0;
    while (i < n) {
        const int *cand = m->idx[(unsigned char)s[i]];
        int nc = m->cnt[(unsigned char)s[i]], hit = -1;
        for (int c = 0; c < nc; c++) {
            const tk_added *a = &t->added[cand[c]];
            if (a->plen <= n - i && !memcmp(s + i, a->pat, a->plen)) {
                hit = cand[c];
                break;
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        const tk_added *a = &t->added[hit];
        size_t start = i, stop = i + a->plen;
        i = stop;
        if (a->single_word) {
            bool start_space = start == 0 || !re_hit(t->ends_word, s, start);
            bool stop_space = stop == n || !re_hit(t->starts_word, s + stop, n - stop);
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            size_t ns = re_pos(t->space_end, s, start, false);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip)
            stop += re_pos(t->space_start, s + stop, n - stop, true);
        if (start_offset < start)
            tk_pieces_push(out, s + start_offset, start - start_offset, -1, pc->origin && start_offset == 0);
        tk_pieces_push(out, s + start, stop - start, a->id, pc->origin && start == 0);
        start_offset = stop;
        if (i < stop)
            i = stop;
    }
    if (start_offset < n)
        tk_pieces_push(out, s + start_offset, n - start_offset, -1, pc->origin && start_offset == 0);
}

/* ---------------- loading ---------------- */

static spin_status parse_added(spin_tokenizer *t, json_object *arr) {
    if (!arr)
        return SPIN_OK;
    if (!json_object_is_type(arr, json_type_array))
        return spin_fail(SPIN_ERR_INVALID, "%s: \"added_tokens\" must be an array", t->name);
    t->n_added = (int)json_object_array_length(arr);
    t->added = calloc((size_t)t->n_added + 1, sizeof *t->added);
    for (int i = 0; i < t->n_added; i++) {
        json_object *o = json_object_array_get_idx(arr, (size_t)i);
        const char *c = tk_jstr(o, "content");
        json_object *id = tk_jget(o, "id");
        if (!c || !id || !json_object_is_type(id, json_type_int) || json_object_get_int64(id) < 0 ||
            json_object_get_int64(id) > INT32_MAX - 1)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: added_tokens[%d] needs a string \"content\" and an id >= 0", t->name, i);
        tk_added *a = &t->added[i];
        a->len = strlen(c);
        a->content = tk_strndup(c, a->len);
        a->id = (int32_t)json_object_get_int64(id);
        a->single_word = tk_jbool(o, "single_word", false);
        a->lstrip = tk_jbool(o, "lstrip", false);
        a->rstrip = tk_jbool(o, "rstrip", false);
        a->normalized = tk_jbool(o, "normalized", true);
        a->special = tk_jbool(o, "special", false);
        tk_buf p = {0};
        tk_buf_put(&p, a->content, a->len);
        if (a->normalized && t->has_norm)
            tk_norm_apply(&t->norm, &p);
        a->pat = p.p ? p.p : tk_strndup("", 0);
        a->plen = p.n;
    }
    return SPIN_OK;
}

/* post_processor: TemplateProcessing, Bert/Roberta ([cls] $A [sep]), ByteLevel (ids unchanged),
 * Sequence of those. */
static spin_status parse_post(spin_tokenizer *t, json_object *o, const char *path) {
    const char *type = tk_jstr(o, "type");
    if (!type)
        return spin_fail(SPIN_ERR_INVALID, "%s: %s: missing \"type\"", t->name, path);
    if (!strcmp(type, "ByteLevel"))
        return SPIN_OK;
    if (!strcmp(type, "Sequence")) {
        json_object *arr = tk_jget(o, "processors");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return spin_fail(SPIN_ERR_INVALID, "%s: %s: Sequence needs a \"processors\" array", t->name,
                             path);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            SPIN_TRY(parse_post(t, json_object_array_get_idx(arr, i), sub));
        }
        return SPIN_OK;
    }
    if (t->post == TPP_TEMPLATE)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: %s: more than one id-adding post-processor", t->name,
                         path);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_object *cls = tk_jget(o, "cls"), *sep = tk_jget(o, "sep");
        if (!cls || !sep || json_object_array_length(cls) != 2 || json_object_array_length(sep) != 2)
            return spin_fail(SPIN_ERR_INVALID, "%s: %s: %s needs \"cls\" and \"sep\" as [token, id]", t->name,
                             path, type);
        t->tpl = tk_xmalloc(3 * sizeof *t->tpl);
        t->tpl[0] = json_object_get_int(json_object_array_get_idx(cls, 1));
        t->tpl[1] = INT32_MIN;
        t->tpl[2] = json_object_get_int(json_object_array_get_idx(sep, 1));
        t->n_tpl = 3;
        t->post = TPP_TEMPLATE;
        return SPIN_OK;
    }
    if (strcmp(type, "TemplateProcessing"))
        return spin_fail(
            SPIN_ERR_UNSUPPORTED,
            "%s: %s: post-processor type \"%s\" is not supported (supported: TemplateProcessing, "
            "BertProcessing, RobertaProcessing, ByteLevel, Sequence)",
            t->name, path, type);
    json_object *single = tk_jget(o, "single"), *specials = tk_jget(o, "special_tokens");
    if (!single || !json_object_is_type(single, json_type_array))
        return spin_fail(SPIN_ERR_INVALID, "%s: %s.single must be an array", t->name, path);
    size_t cap = 8, n = 0;
    int32_t *tpl = tk_xmalloc(cap * sizeof *tpl);
    for (size_t i = 0; i < json_object_array_length(single); i++) {
        json_object *it = json_object_array_get_idx(single, i), *sp = tk_jget(it, "SpecialToken");
        if (tk_jget(it, "Sequence")) {
            if (n == cap)
                tpl = tk_xrealloc(tpl, (cap *= 2) * sizeof *tpl);
            tpl[n++] = INT32_MIN;
            continue;
        }
        const char *name = sp ? tk_jstr(sp, "id") : NULL;
        json_object *def = name ? tk_jget(specials, name) : NULL, *ids = tk_jget(def, "ids");
        if (!ids || !json_object_is_type(ids, json_type_array)) {
            free(tpl);
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: %s.single[%zu]: special token \"%s\" has no ids in special_tokens", t->name,
                             path, i, name ? name : "?");
        }
        for (size_t j = 0; j < json_object_array_length(ids); j++) {
            if (n == cap)
                tpl = tk_xrealloc(tpl, (cap *= 2) * sizeof *tpl);
            tpl[n++] = json_object_get_int(json_object_array_get_idx(ids, j));
        }
    }
    t->tpl = tpl;
    t->n_tpl = n;
    t->post = TPP_TEMPLATE;
    return SPIN_OK;
}

static int32_t config_token(spin_tokenizer *t, json_object *cfg, const char *key) {
    json_object *v = tk_jget(cfg, key);
    const char *s = NULL;
    if (v && json_object_is_type(v, json_type_string))
        s = json_object_get_string(v);
    else if (v)
        s = tk_jstr(v, "content");
    return s ? spin_tokenizer_token_to_id(t, s) : -1;
}

spin_tokenizer *tk_load_obj(json_object *root, const char *name, json_object *cfg) {
    spin_tokenizer *t = calloc(1, sizeof *t);
    SPIN_ASSERT(t, "out of host memory");
    t->name = tk_strndup(name, strlen(name));
    t->bos = t->eos = -1;
    spin_status s = SPIN_OK;
#define CHECK(expr)                  \
    do {                             \
        if ((s = (expr)) != SPIN_OK) \
            goto fail;               \
    } while (0)
    if (!json_object_is_type(root, json_type_object)) {
        spin_fail(SPIN_ERR_INVALID, "%s: not a JSON object", name);
        goto fail;
    }
    json_object *trunc = tk_jget(root, "truncation");
    if (trunc) {
        spin_fail(SPIN_ERR_UNSUPPORTED,
                  "%s: \"truncation\" is set; truncation is not supported (set it to null)", name);
        goto fail;
    }
    CHECK(tk_regex_compile(&t->rx.gpt2, GPT2_RE, strlen(GPT2_RE), name));
    CHECK(tk_regex_compile(&t->rx.digit, "\\A\\p{N}", strlen("\\A\\p{N}"), name));
    CHECK(tk_regex_compile(&t->rx.word, RUST_WORD "+|[^\\s" RUST_WORD_CLASS "]+",
                           strlen(RUST_WORD "+|[^\\s" RUST_WORD_CLASS "]+"), name));
    CHECK(tk_regex_compile(&t->ends_word, RUST_WORD "\\z", strlen(RUST_WORD "\\z"), name));
    CHECK(tk_regex_compile(&t->starts_word, "\\A" RUST_WORD, strlen("\\A" RUST_WORD), name));
    CHECK(tk_regex_compile(&t->space_end, "\\s*\\z", strlen("\\s*\\z"), name));
    CHECK(tk_regex_compile(&t->space_start, "\\A\\s*", strlen("\\A\\s*"), name));
    json_object *o;
    if ((o = tk_jget(root, "normalizer"))) {
        t->has_norm = true; /* set first: a partial parse is freed too */
        CHECK(tk_norm_parse(&t->norm, o, name, "normalizer"));
    }
    if ((o = tk_jget(root, "pre_tokenizer"))) {
        t->has_pre = true;
        CHECK(tk_pre_parse(&t->pre, o, name, "pre_tokenizer"));
    }
    if ((o = tk_jget(root, "decoder"))) {
        t->has_dec = true;
        CHECK(tk_dec_parse(&t->dec, o, name, "decoder"));
    }
    if (!(o = tk_jget(root, "model"))) {
        spin_fail(SPIN_ERR_INVALID, "%s: missing \"model\"", name);
        goto fail;
    }
    CHECK(tk_bpe_parse(&t->bpe, o, name));
    CHECK(parse_added(t, tk_jget(root, "added_tokens")));
    if ((o = tk_jget(root, "post_processor")))
        CHECK(parse_post(t, o, "post_processor"));
#undef CHECK
    matcher_build(&t->m_raw, t->added, t->n_added, false);
    matcher_build(&t->m_norm, t->added, t->n_added, true);

    /* the id table */
    t->n_ids = t->bpe.n_ids;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id + 1 > t->n_ids)
            t->n_ids = t->added[i].id + 1;
    t->id_tok = calloc((size_t)t->n_ids + 1, sizeof *t->id_tok);
    t->id_len = calloc((size_t)t->n_ids + 1, sizeof *t->id_len);
    t->special = calloc((size_t)t->n_ids + 1, sizeof *t->special);
    SPIN_ASSERT(t->id_tok && t->id_len && t->special, "out of host memory");
    for (int32_t i = 0; i < t->bpe.n_ids; i++) {
        t->id_tok[i] = t->bpe.id_tok[i];
        t->id_len[i] = t->bpe.id_len[i];
    }
    tk_strmap_init(&t->added_map, (size_t)t->n_added + 1);
    for (int i = 0; i < t->n_added; i++) {
        tk_added *a = &t->added[i];
        t->id_tok[a->id] = a->content;
        t->id_len[a->id] = (uint32_t)a->len;
        t->special[a->id] = a->special;
        tk_strmap_put(&t->added_map, a->content, a->len, a->id);
    }
    if (t->post == TPP_TEMPLATE) {
        if (t->n_tpl && t->tpl[0] != INT32_MIN)
            t->bos = t->tpl[0];
        if (t->n_tpl > 1 && t->tpl[t->n_tpl - 1] != INT32_MIN)
            t->eos = t->tpl[t->n_tpl - 1];
    }
    if (cfg) {
        int32_t b = config_token(t, cfg, "bos_token"), e = config_token(t, cfg, "eos_token");
        if (b >= 0)
            t->bos = b;
        if (e >= 0)
            t->eos = e;
    }
    return t;
fail:
    spin_tokenizer_free(t);
    return NULL;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    tk_buf b = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        tk_buf_put(&b, chunk, k);
    bool err = ferror(f);
    fclose(f);
    if (err) {
        tk_buf_free(&b);
        return NULL;
    }
    *len = b.n;
    return b.p ? b.p : tk_strndup("", 0);
}

static json_object *parse_json(const char *text, size_t len, const char *name) {
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    if (!o || e != json_tokener_success) {
        spin_fail(SPIN_ERR_INVALID, "%s: invalid JSON at byte %zu: %s", name,
                  (size_t)json_tokener_get_parse_end(tok),
                  json_tokener_error_desc(e == json_tokener_success ? json_tokener_continue : e));
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

spin_tokenizer *spin_tokenizer_load_json(const char *json, size_t len, const char *name) {
    json_object *root = parse_json(json, len, name);
    if (!root)
        return NULL;
    spin_tokenizer *t = tk_load_obj(root, name, NULL);
    json_object_put(root);
    return t;
}

spin_tokenizer *spin_tokenizer_load(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        spin_fail(SPIN_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    tk_buf file = {0}, cfgpath = {0};
    tk_buf_put(&file, path, strlen(path));
    if (S_ISDIR(st.st_mode)) {
        tk_buf_put(&cfgpath, path, strlen(path));
        tk_buf_put(&file, "/tokenizer.json", 15);
        tk_buf_put(&cfgpath, "/tokenizer_config.json", 22);
    } else {
        char magic[4] = {0};
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(magic, 1, 4, f) : 0;
        if (f)
            fclose(f);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            tk_buf_free(&file);
            return tk_load_gguf(path);
        }
    }
    size_t len;
    char *text = read_file(file.p, &len);
    if (!text) {
        spin_fail(SPIN_ERR_IO, "%s: cannot read: %s", file.p, strerror(errno));
        tk_buf_free(&file);
        tk_buf_free(&cfgpath);
        return NULL;
    }
    json_object *root = parse_json(text, len, file.p), *cfg = NULL;
    free(text);
    spin_tokenizer *t = NULL;
    if (root && cfgpath.n) {
        size_t clen;
        char *ctext = read_file(cfgpath.p, &clen);
        if (ctext) {
            cfg = parse_json(ctext, clen, cfgpath.p);
            free(ctext);
            if (!cfg) {
                json_object_put(root);
                root = NULL;
            }
        }
    }
    if (root)
        t = tk_load_obj(root, file.p, cfg);
    json_object_put(root);
    json_object_put(cfg);
    tk_buf_free(&file);
    tk_buf_free(&cfgpath);
    return t;
}

void spin_tokenizer_free(spin_tokenizer *t) {
    if (!t)
        return;
    if (t->has_norm)
        tk_norm_free(&t->norm);
    if (t->has_pre)
        tk_pre_free(&t->pre);
    if (t->has_dec)
        tk_dec_free(&t->dec);
    tk_bpe_free(&t->bpe);
    regex_t *res[] = {t->rx.gpt2,     t->rx.digit,  t->rx.word,    t->ends_word,
                      t->starts_word, t->space_end, t->space_start};
    for (size_t i = 0; i < sizeof res / sizeof *res; i++)
        if (res[i])
            onig_free(res[i]);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].pat);
    }
    free(t->added);
    matcher_free(&t->m_raw);
    matcher_free(&t->m_norm);
    free(t->id_tok);
    free(t->id_len);
    free(t->special);
    tk_strmap_free(&t->added_map);
    free(t->tpl);
    free(t->name);
    free(t);
}

/* ---------------- encode / decode ---------------- */

spin_status spin_tokenizer_encode(spin_tokenizer *t, const char *text, size_t len, bool add_special,
                                  int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (!tk_utf8_valid(text, len)) {
        size_t i = 0;
        uint32_t cp;
        int k;
        while (i < len && (k = tk_utf8_next((const unsigned char *)text + i, len - i, &cp)) > 0)
            i += (size_t)k;
        return spin_fail(SPIN_ERR_INVALID, "tokenizer encode: input is not valid UTF-8 (byte %zu)", i);
    }
    tk_pieces a = {0}, b = {0};
    tk_piece whole = {(char *)text, len, -1, true};
    /* 1. non-normalized added tokens on the raw text */
    split_added(t, &t->m_raw, &whole, &a);
    /* 2. normalize the rest, then the normalized added tokens */
    for (size_t i = 0; i < a.n; i++) {
        tk_piece *pc = &a.v[i];
        if (pc->id >= 0) {
            tk_pieces_push(&b, pc->s, pc->n, pc->id, pc->origin);
            continue;
        }
        tk_buf s = {0};
        tk_buf_put(&s, pc->s, pc->n);
        if (t->has_norm)
            tk_norm_apply(&t->norm, &s);
        tk_piece np = {s.p ? s.p : "", s.n, -1, pc->origin};
        split_added(t, &t->m_norm, &np, &b);
        tk_buf_free(&s);
    }
    tk_pieces_free(&a);
    /* 3. pre-tokenize */
    if (t->has_pre)
        tk_pre_apply(&t->pre, &t->rx, &b);
    /* 4. the model, and 5. the post-processor */
    int32_t *out = NULL;
    size_t cnt = 0, cap = 0;
    bool tpl = add_special && t->post == TPP_TEMPLATE;
    size_t tpl_at = 0;
    if (tpl)
        for (; tpl_at < t->n_tpl && t->tpl[tpl_at] != INT32_MIN; tpl_at++) {
            if (cnt == cap)
                out = tk_xrealloc(out, (cap = cap ? cap * 2 : 64) * sizeof *out);
            out[cnt++] = t->tpl[tpl_at];
        }
    for (size_t i = 0; i < b.n; i++) {
        if (b.v[i].id >= 0) {
            if (cnt == cap)
                out = tk_xrealloc(out, (cap = cap ? cap * 2 : 64) * sizeof *out);
            out[cnt++] = b.v[i].id;
        } else {
            tk_bpe_word(&t->bpe, b.v[i].s, b.v[i].n, &out, &cnt, &cap);
        }
    }
    tk_pieces_free(&b);
    if (tpl)
        for (size_t j = tpl_at + 1; j < t->n_tpl; j++) {
            if (t->tpl[j] == INT32_MIN)
                continue;
            if (cnt == cap)
                out = tk_xrealloc(out, (cap = cap ? cap * 2 : 64) * sizeof *out);
            out[cnt++] = t->tpl[j];
        }
    *ids = out ? out : tk_xmalloc(sizeof *out);
    *n = cnt;
    return SPIN_OK;
}

spin_status spin_tokenizer_decode(const spin_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                                  char **text, size_t *len) {
    tk_strlist l = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->id_tok[id])
            continue;
        if (skip_special && t->special[id])
            continue;
        tk_strlist_push(&l, t->id_tok[id], t->id_len[id]);
    }
    tk_buf out = {0};
    if (t->has_dec) {
        tk_dec_apply(&t->dec, &l);
        for (size_t i = 0; i < l.n; i++)
            tk_buf_put(&out, l.v[i].p, l.v[i].n);
    } else {
        for (size_t i = 0; i < l.n; i++) {
            if (i)
                tk_buf_putc(&out, ' ');
            tk_buf_put(&out, l.v[i].p, l.v[i].n);
        }
    }
    tk_strlist_free(&l);
    if (!out.p)
        tk_buf_put(&out, "", 0);
    *text = out.p;
    if (len)
        *len = out.n;
    return SPIN_OK;
}

/* ---------------- lookups ---------------- */

int32_t spin_tokenizer_vocab_size(const spin_tokenizer *t) {
    return t->n_ids;
}

int32_t spin_tokenizer_token_to_id(const spin_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = tk_strmap_get(&t->added_map, token, n);
    return id >= 0 ? id : tk_strmap_get(&t->bpe.vocab, token, n);
}

const char *spin_tokenizer_id_to_token(const spin_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->id_tok[id] : NULL;
}

bool spin_tokenizer_is_special(const spin_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->special[id];
}

int32_t spin_tokenizer_bos_id(const spin_tokenizer *t) {
    return t->bos;
}

int32_t spin_tokenizer_eos_id(const spin_tokenizer *t) {
    return t->eos;
}
