/* A Hugging Face tokenizer.json (+ tokenizer_config.json) as a GGUF tokenizer.ggml.* vocabulary, the
 * way llama.cpp's convert_hf_to_gguf.py writes it, and the inverse of tokenizer_gguf.c:
 *  - byte-level BPE -> model "gpt2", pre by the pre-tokenizer (gpt-2, smollm, llama-bpe), merges;
 *  - SentencePiece-style BPE with byte fallback -> model "llama", scores = -rank of the first merge
 *    producing each piece (-1e9 for pieces no merge produces), so that the merges tokenizer_gguf.c
 *    derives from pieces and scores keep the merge priority of the tokenizer.json. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "models/tokenizer_internal.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static const char *LLAMA3_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
#define SP_SPACE "\xE2\x96\x81" /* ▁ */

static bool is_type(json_object *o, const char *type) {
    const char *t = o ? tk_jstr(o, "type") : NULL;
    return t && !strcmp(t, type);
}

static size_t arr_len(json_object *a) {
    return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

/* ByteLevel without prefix space, with or without its GPT-2 regex. */
static bool bytelevel(json_object *o, bool use_regex) {
    return is_type(o, "ByteLevel") && !tk_jbool(o, "add_prefix_space", true) &&
           tk_jbool(o, "use_regex", true) == use_regex;
}

/* llama.cpp's tokenizer.ggml.pre name of a byte-level pre-tokenizer, with the ignore_merges that
 * tokenizer_gguf.c gives that name; NULL: none we can name. */
static const char *bytelevel_pre(json_object *pre, bool *ignore_merges) {
    *ignore_merges = false;
    if (bytelevel(pre, true))
        return "gpt-2";
    json_object *kids = is_type(pre, "Sequence") ? tk_jget(pre, "pretokenizers") : NULL;
    if (arr_len(kids) != 2)
        return NULL;
    json_object *a = json_object_array_get_idx(kids, 0), *b = json_object_array_get_idx(kids, 1);
    if (is_type(a, "Digits") && tk_jbool(a, "individual_digits", false) && bytelevel(b, true))
        return "smollm";
    json_object *pat = tk_jget(a, "pattern");
    const char *re = pat ? tk_jstr(pat, "Regex") : NULL, *beh = tk_jstr(a, "behavior");
    if (is_type(a, "Split") && re && !strcmp(re, LLAMA3_RE) && beh && !strcmp(beh, "Isolated") &&
        !tk_jbool(a, "invert", false) && bytelevel(b, false)) {
        *ignore_merges = true;
        return "llama-bpe";
    }
    return NULL;
}

/* The legacy Llama/Mistral normalizer: Prepend ▁, Replace " " -> ▁. */
static bool legacy_sp_normalizer(json_object *n) {
    json_object *kids = is_type(n, "Sequence") ? tk_jget(n, "normalizers") : NULL;
    if (arr_len(kids) != 2)
        return false;
    json_object *a = json_object_array_get_idx(kids, 0), *b = json_object_array_get_idx(kids, 1);
    const char *prep = tk_jstr(a, "prepend"), *content = tk_jstr(b, "content");
    json_object *pat = tk_jget(b, "pattern");
    const char *s = pat ? tk_jstr(pat, "String") : NULL;
    return is_type(a, "Prepend") && prep && !strcmp(prep, SP_SPACE) && is_type(b, "Replace") && s &&
           !strcmp(s, " ") && content && !strcmp(content, SP_SPACE);
}

/* A Metaspace pre-tokenizer (▁, prepended): the SentencePiece family as newer converters write it. */
static bool metaspace_pre(json_object *p) {
    const char *r = tk_jstr(p, "replacement"), *scheme = tk_jstr(p, "prepend_scheme");
    bool prepend = scheme ? strcmp(scheme, "never") != 0 : tk_jbool(p, "add_prefix_space", true);
    return is_type(p, "Metaspace") && r && !strcmp(r, SP_SPACE) && prepend;
}

/* A token named in tokenizer_config.json: a string or {"content": ...}. */
static const char *cfg_token(json_object *cfg, const char *key) {
    json_object *o = cfg ? tk_jget(cfg, key) : NULL;
    if (o && json_object_is_type(o, json_type_object))
        return tk_jstr(o, "content");
    return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

typedef struct {
    const char *file;
    json_object *root, *cfg, *model, *vocab, *added;
    int64_t n; /* tokens written (padded) */
    char **tok;
    int32_t *type;
    float *score;
    tk_strmap ids;
} conv;

static int32_t token_id(conv *c, const char *s) {
    return s ? tk_strmap_get(&c->ids, s, strlen(s)) : -1;
}

/* The single template's special tokens: first (if it starts the template) and last (if it ends it). */
static void template_specials(json_object *post, const char **first, const char **last, int *n_special) {
    *first = *last = NULL;
    *n_special = 0;
    json_object *single = is_type(post, "TemplateProcessing") ? tk_jget(post, "single") : NULL;
    size_t n = arr_len(single);
    for (size_t i = 0; i < n; i++) {
        json_object *st = tk_jget(json_object_array_get_idx(single, i), "SpecialToken");
        if (!st)
            continue;
        (*n_special)++;
        if (i == 0)
            *first = tk_jstr(st, "id");
        if (i == n - 1)
            *last = tk_jstr(st, "id");
    }
}

static spin_status set_id(spin_gguf_writer *w, conv *c, const char *key, const char *tok) {
    int32_t id = token_id(c, tok);
    if (!tok)
        return SPIN_OK;
    if (id < 0)
        return spin_fail(SPIN_ERR_INVALID, "%s: %s \"%s\" is not in the vocabulary", c->file, key, tok);
    return spin_gguf_writer_set_u32(w, key, (uint32_t)id);
}

static spin_status convert(conv *c, int64_t n_vocab, spin_gguf_writer *w) {
    json_object *pre = tk_jget(c->root, "pre_tokenizer"), *norm = tk_jget(c->root, "normalizer");
    if (!is_type(c->model, "BPE"))
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "%s: model.type \"%s\" cannot be written as a GGUF vocabulary (supported: BPE)",
                         c->file, c->model && tk_jstr(c->model, "type") ? tk_jstr(c->model, "type") : "?");
    bool byte_fallback = tk_jbool(c->model, "byte_fallback", false), ignore_merges = false;
    const char *pre_name = NULL;
    const char *prefix = tk_jstr(c->model, "continuing_subword_prefix"),
               *suffix = tk_jstr(c->model, "end_of_word_suffix");
    if ((prefix && *prefix) || (suffix && *suffix))
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "%s: model.continuing_subword_prefix/end_of_word_suffix cannot be written as a GGUF "
                         "vocabulary",
                         c->file);
    bool sp = byte_fallback && ((!pre && legacy_sp_normalizer(norm)) || (!norm && metaspace_pre(pre)));
    if (!sp) {
        pre_name = norm ? NULL : bytelevel_pre(pre, &ignore_merges);
        if (!pre_name || byte_fallback)
            return spin_fail(
                SPIN_ERR_UNSUPPORTED,
                "%s: pre_tokenizer/normalizer: not a pipeline llama.cpp can name: supported are "
                "byte-level BPE with ByteLevel (gpt-2), Digits(individual_digits) + ByteLevel "
                "(smollm) or the Llama 3 Split + ByteLevel (llama-bpe) pre-tokenizer and no "
                "normalizer, and SentencePiece-style BPE with byte_fallback and a Prepend/Replace "
                "▁ normalizer or a Metaspace pre-tokenizer",
                c->file);
        if (tk_jbool(c->model, "ignore_merges", false) != ignore_merges)
            return spin_fail(SPIN_ERR_UNSUPPORTED,
                             "%s: model.ignore_merges is %s, but llama.cpp's \"%s\" pre-tokenizer implies %s",
                             c->file, ignore_merges ? "false" : "true", pre_name,
                             ignore_merges ? "true" : "false");
    }
    if (sp && pre)
        spin_log_msg(SPIN_LOG_WARN,
                     "%s: pre_tokenizer Metaspace: a GGUF \"llama\" vocabulary tokenizes with the legacy "
                     "SentencePiece pipeline (▁ prepended to every text piece, also after special tokens "
                     "and before a leading space): such texts may get other ids than this tokenizer.json",
                     c->file);
    if (!sp && norm)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: normalizer: a byte-level GGUF vocabulary has none",
                         c->file);

    /* ids: model vocabulary and added tokens */
    int64_t n = 0;
    json_object_object_foreach(c->vocab, k0, v0) {
        (void)k0;
        int64_t id = json_object_get_int64(v0);
        if (id < 0 || id > INT32_MAX)
            return spin_fail(SPIN_ERR_INVALID, "%s: model.vocab[\"%s\"]: bad id", c->file, k0);
        if (id + 1 > n)
            n = id + 1;
    }
    for (size_t i = 0; i < arr_len(c->added); i++) {
        int64_t id = json_object_get_int64(tk_jget(json_object_array_get_idx(c->added, i), "id"));
        if (id < 0 || id > INT32_MAX)
            return spin_fail(SPIN_ERR_INVALID, "%s: added_tokens[%zu].id: bad id", c->file, i);
        if (id + 1 > n)
            n = id + 1;
    }
    if (n_vocab > 0 && n > n_vocab)
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s: the tokenizer has %lld ids but the model's vocab_size is %lld: llama.cpp needs one "
            "embedding row per token",
            c->file, (long long)n, (long long)n_vocab);
    if (n_vocab > n)
        n = n_vocab;
    c->n = n;
    c->tok = calloc((size_t)n, sizeof *c->tok);
    c->type = calloc((size_t)n, sizeof *c->type);
    c->score = calloc((size_t)n, sizeof *c->score);
    if (!c->tok || !c->type || !c->score)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", c->file);
    tk_strmap_init(&c->ids, (size_t)n);
    json_object_object_foreach(c->vocab, k, v) {
        int32_t id = json_object_get_int(v);
        c->tok[id] = tk_strndup(k, strlen(k));
        c->type[id] = TT_NORMAL;
        c->score[id] = -1e9f;
        tk_strmap_put(&c->ids, k, strlen(k), id);
        if (sp && strlen(k) == 6 && !strncmp(k, "<0x", 3) && isxdigit((unsigned char)k[3]) &&
            isxdigit((unsigned char)k[4]) && k[5] == '>')
            c->type[id] = TT_BYTE;
    }
    const char *unk = tk_jstr(c->model, "unk_token");
    for (size_t i = 0; i < arr_len(c->added); i++) {
        json_object *a = json_object_array_get_idx(c->added, i);
        int32_t id = json_object_get_int(tk_jget(a, "id"));
        const char *s = tk_jstr(a, "content");
        if (!s)
            return spin_fail(SPIN_ERR_INVALID, "%s: added_tokens[%zu].content is missing", c->file, i);
        free(c->tok[id]);
        c->tok[id] = tk_strndup(s, strlen(s));
        c->type[id] = tk_jbool(a, "special", false) ? TT_CONTROL : TT_USER_DEFINED;
        if (sp && unk && !strcmp(s, unk))
            c->type[id] = TT_UNKNOWN;
        c->score[id] = 0.0f;
        if (tk_strmap_get(&c->ids, s, strlen(s)) < 0)
            tk_strmap_put(&c->ids, s, strlen(s), id);
    }
    int64_t unused = 0;
    for (int64_t i = 0; i < n; i++)
        if (!c->tok[i]) { /* llama.cpp's converter pads holes with [PADn] */
            char b[32];
            snprintf(b, sizeof b, "[PAD%lld]", (long long)i);
            c->tok[i] = tk_strndup(b, strlen(b));
            c->type[i] = TT_UNUSED;
            c->score[i] = -1e9f;
            unused++;
        }
    if (unused)
        spin_log_msg(SPIN_LOG_INFO, "%s: %lld ids without a token written as [PADn] (unused)", c->file,
                     (long long)unused);

    /* merges: gpt2 writes them; llama gets scores from them */
    json_object *merges = tk_jget(c->model, "merges");
    size_t nm = arr_len(merges);
    char **mtext = calloc(nm ? nm : 1, sizeof *mtext);
    if (!mtext)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", c->file);
    spin_status s = SPIN_OK;
    tk_buf b = {0};
    for (size_t i = 0; s == SPIN_OK && i < nm; i++) {
        json_object *e = json_object_array_get_idx(merges, i);
        b.n = 0;
        const char *l = NULL, *r = NULL;
        if (json_object_is_type(e, json_type_string)) {
            const char *t = json_object_get_string(e), *sp1 = strchr(t, ' ');
            if (sp1 && !strchr(sp1 + 1, ' ')) {
                tk_buf_put(&b, t, (size_t)(sp1 - t));
                tk_buf_put(&b, sp1 + 1, strlen(sp1 + 1));
                mtext[i] = tk_strndup(t, strlen(t));
                l = t;
            }
        } else if (arr_len(e) == 2) {
            l = json_object_get_string(json_object_array_get_idx(e, 0));
            r = json_object_get_string(json_object_array_get_idx(e, 1));
            if (l && r && !strchr(l, ' ') && !strchr(r, ' ')) {
                tk_buf_put(&b, l, strlen(l));
                tk_buf_put(&b, r, strlen(r));
                mtext[i] = tk_xmalloc(strlen(l) + strlen(r) + 2);
                sprintf(mtext[i], "%s %s", l, r);
            } else
                l = NULL;
        }
        if (!l) {
            s = spin_fail(
                SPIN_ERR_INVALID,
                "%s: model.merges[%zu] is not a pair of tokens without spaces (GGUF writes \"a b\")", c->file,
                i);
            break;
        }
        int32_t id = tk_strmap_get(&c->ids, b.p, b.n);
        if (id < 0) {
            s = spin_fail(SPIN_ERR_INVALID,
                          "%s: model.merges[%zu] (\"%s\") produces a token not in the vocabulary", c->file, i,
                          mtext[i]);
            break;
        }
        /* SentencePiece score: minus the rank of the first merge producing the piece */
        if (sp && c->type[id] == TT_NORMAL && c->score[id] == -1e9f)
            c->score[id] = -(float)i;
    }
    tk_buf_free(&b);

    /* special ids, add_bos/add_eos (tokenizer_config.json first, then the post-processor) */
    json_object *post = tk_jget(c->root, "post_processor");
    const char *first, *last;
    int n_special;
    template_specials(post, &first, &last, &n_special);
    const char *bos = cfg_token(c->cfg, "bos_token"), *eos = cfg_token(c->cfg, "eos_token"),
               *pad = cfg_token(c->cfg, "pad_token"), *cunk = cfg_token(c->cfg, "unk_token");
    if (!bos && first)
        bos = first;
    if (!eos && last)
        eos = last;
    if (!cunk)
        cunk = unk;
    int add_bos = -1, add_eos = -1;
    json_object *ab = c->cfg ? tk_jget(c->cfg, "add_bos_token") : NULL,
                *ae = c->cfg ? tk_jget(c->cfg, "add_eos_token") : NULL;
    if (ab && json_object_is_type(ab, json_type_boolean))
        add_bos = json_object_get_boolean(ab);
    if (ae && json_object_is_type(ae, json_type_boolean))
        add_eos = json_object_get_boolean(ae);
    if (is_type(post, "TemplateProcessing")) {
        bool tb = first && bos && !strcmp(first, bos), te = last && eos && !strcmp(last, eos);
        if (add_bos < 0)
            add_bos = tb;
        if (add_eos < 0)
            add_eos = te;
        if (n_special != tb + te || (bool)add_bos != tb || (bool)add_eos != te)
            spin_log_msg(SPIN_LOG_WARN,
                         "%s: post_processor: the single template's special tokens are not just bos/eos as "
                         "add_bos_token/add_eos_token say: GGUF keeps only those",
                         c->file);
    } else if (post && !is_type(post, "ByteLevel")) {
        spin_log_msg(SPIN_LOG_WARN, "%s: post_processor %s is not written to GGUF (only add_bos/add_eos)",
                     c->file, tk_jstr(post, "type") ? tk_jstr(post, "type") : "?");
    }
    if (add_bos < 0)
        add_bos = sp; /* the defaults llama.cpp assumes without the key */
    if (add_eos < 0)
        add_eos = 0;

    if (s == SPIN_OK)
        s = spin_gguf_writer_set_string(w, "tokenizer.ggml.model", sp ? "llama" : "gpt2");
    if (s == SPIN_OK && !sp)
        s = spin_gguf_writer_set_string(w, "tokenizer.ggml.pre", pre_name);
    if (s == SPIN_OK)
        s = spin_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", n, (const char *const *)c->tok);
    if (s == SPIN_OK && sp)
        s = spin_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SPIN_GGUF_F32, n, c->score);
    if (s == SPIN_OK)
        s = spin_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SPIN_GGUF_I32, n, c->type);
    if (s == SPIN_OK && !sp)
        s = spin_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (int64_t)nm, (const char *const *)mtext);
    if (s == SPIN_OK)
        s = set_id(w, c, "tokenizer.ggml.bos_token_id", bos);
    if (s == SPIN_OK)
        s = set_id(w, c, "tokenizer.ggml.eos_token_id", eos);
    if (s == SPIN_OK)
        s = set_id(w, c, "tokenizer.ggml.unknown_token_id", cunk);
    if (s == SPIN_OK)
        s = set_id(w, c, "tokenizer.ggml.padding_token_id", pad);
    if (s == SPIN_OK)
        s = spin_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (s == SPIN_OK)
        s = spin_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    /* chat template(s): a string, or a list of {name, template} (default -> tokenizer.chat_template) */
    json_object *ct = c->cfg ? tk_jget(c->cfg, "chat_template") : NULL;
    if (s == SPIN_OK && ct && json_object_is_type(ct, json_type_string))
        s = spin_gguf_writer_set_string(w, "tokenizer.chat_template", json_object_get_string(ct));
    for (size_t i = 0; s == SPIN_OK && i < arr_len(ct); i++) {
        json_object *e = json_object_array_get_idx(ct, i);
        const char *name = tk_jstr(e, "name"), *tpl = tk_jstr(e, "template");
        if (!name || !tpl)
            continue;
        char key[256];
        snprintf(key, sizeof key,
                 strcmp(name, "default") ? "tokenizer.chat_template.%s" : "tokenizer.chat_template", name);
        s = spin_gguf_writer_set_string(w, key, tpl);
    }
    for (size_t i = 0; i < nm; i++)
        free(mtext[i]);
    free(mtext);
    return s;
}

static json_object *read_json(const char *path, bool optional, spin_status *s) {
    *s = SPIN_OK;
    struct stat st;
    if (optional && stat(path, &st) != 0)
        return NULL;
    json_object *o = json_object_from_file(path);
    if (!o)
        *s = spin_fail(SPIN_ERR_INVALID, "%s: cannot read JSON: %s", path, json_util_get_last_err());
    return o;
}

spin_status spin_tokenizer_to_gguf(const char *path, int64_t n_vocab, spin_gguf_writer *w) {
    struct stat st;
    if (stat(path, &st) != 0)
        return spin_fail(SPIN_ERR_IO, "%s: %s", path, strerror(errno));
    tk_buf file = {0}, cfgpath = {0};
    if (S_ISDIR(st.st_mode)) {
        tk_buf_put(&file, path, strlen(path));
        tk_buf_put(&file, "/tokenizer.json", 16); /* with the NUL */
        tk_buf_put(&cfgpath, path, strlen(path));
        tk_buf_put(&cfgpath, "/tokenizer_config.json", 23);
    } else {
        tk_buf_put(&file, path, strlen(path) + 1);
        const char *slash = strrchr(path, '/');
        if (slash)
            tk_buf_put(&cfgpath, path, (size_t)(slash - path + 1));
        tk_buf_put(&cfgpath, "tokenizer_config.json", 22);
    }
    conv c;
    memset(&c, 0, sizeof c);
    c.file = file.p;
    spin_status s;
    c.root = read_json(file.p, false, &s);
    if (s == SPIN_OK)
        c.cfg = read_json(cfgpath.p, true, &s);
    if (s == SPIN_OK) {
        c.model = tk_jget(c.root, "model");
        c.vocab = c.model ? tk_jget(c.model, "vocab") : NULL;
        c.added = tk_jget(c.root, "added_tokens");
        if (!c.vocab || !json_object_is_type(c.vocab, json_type_object))
            s = spin_fail(SPIN_ERR_INVALID, "%s: model.vocab is missing", c.file);
    }
    if (s == SPIN_OK)
        s = convert(&c, n_vocab, w);
    for (int64_t i = 0; c.tok && i < c.n; i++)
        free(c.tok[i]);
    free(c.tok);
    free(c.type);
    free(c.score);
    if (c.ids.cap)
        tk_strmap_free(&c.ids);
    json_object_put(c.root);
    json_object_put(c.cfg);
    tk_buf_free(&file);
    tk_buf_free(&cfgpath);
    return s;
}
