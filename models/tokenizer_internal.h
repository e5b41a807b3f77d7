/* Internals of the tokenizer (models/tokenizer*.c only): strings, hash maps, regexes and the
 * component structures parsed from tokenizer.json. */
#ifndef SPIN_MODELS_TOKENIZER_INTERNAL_H
#define SPIN_MODELS_TOKENIZER_INTERNAL_H

#include <json-c/json.h>
#include <oniguruma.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "models/tokenizer.h"

/* ---- growable byte strings and lists (allocation failure aborts) ---- */
typedef struct {
    char *p;
    size_t n, cap;
} tk_buf;
void *tk_xmalloc(size_t n);
void *tk_xrealloc(void *p, size_t n);
char *tk_strndup(const char *s, size_t n);
void tk_buf_put(tk_buf *b, const void *s, size_t n);
void tk_buf_putc(tk_buf *b, char c);
void tk_buf_cp(tk_buf *b, uint32_t cp); /* UTF-8 encode */
void tk_buf_free(tk_buf *b);

/* ---- UTF-8 ---- */
/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if invalid; *cp gets the code point. */
int tk_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD. */
void tk_utf8_lossy(tk_buf *out, const unsigned char *s, size_t n);
bool tk_utf8_valid(const char *s, size_t n);
bool tk_is_whitespace(uint32_t cp); /* Rust char::is_whitespace (White_Space) */

/* ---- string -> int32 hash map (keys copied) ---- */
typedef struct {
    char **keys;
    uint32_t *klen;
    int32_t *vals;
    size_t cap, count;
} tk_strmap;
void tk_strmap_init(tk_strmap *m, size_t expect);
void tk_strmap_free(tk_strmap *m);
/* Inserts or overwrites. */
void tk_strmap_put(tk_strmap *m, const char *k, size_t n, int32_t v);
/* Value or -1. */
int32_t tk_strmap_get(const tk_strmap *m, const char *k, size_t n);
void tk_strmap_clear(tk_strmap *m);

/* ---- patterns: {"String": s} or {"Regex": r} (Oniguruma, UTF-8, Ruby syntax as the onig crate) ---- */
typedef struct {
    bool is_regex;
    char *str;
    size_t len;
    regex_t *re;
} tk_pattern;
spin_status tk_regex_compile(regex_t **re, const char *pat, size_t len, const char *where);
spin_status tk_pattern_parse(tk_pattern *p, json_object *o, const char *where);
void tk_pattern_free(tk_pattern *p);
/* Non-overlapping matches of p in s[0..n) as (start, end) pairs (the onig crate's find_iter:
 * an empty match right after the previous match is skipped). *out malloc'ed, 2 * count entries. */
size_t tk_pattern_find(const tk_pattern *p, const char *s, size_t n, size_t **out);
size_t tk_regex_find(regex_t *re, const char *s, size_t n, size_t **out);

/* ---- pieces of the text between the stages ---- */
typedef struct {
    char *s;
    size_t n;
    int32_t id;  /* >= 0: an added token, final */
    bool origin; /* starts at offset 0 of the original text */
} tk_piece;
typedef struct {
    tk_piece *v;
    size_t n, cap;
} tk_pieces;
void tk_pieces_push(tk_pieces *p, const char *s, size_t n, int32_t id, bool origin);
void tk_pieces_free(tk_pieces *p);

/* ---- normalizers ---- */
enum { TN_SEQUENCE, TN_PREPEND, TN_REPLACE, TN_STRIP };
typedef struct tk_norm {
    int type;
    struct tk_norm *kids;
    int nkids;
    char *str; /* Prepend: prepend; Replace: content */
    size_t slen;
    tk_pattern pat;
    bool left, right;
} tk_norm;
spin_status tk_norm_parse(tk_norm *n, json_object *o, const char *file, const char *path);
void tk_norm_free(tk_norm *n);
void tk_norm_apply(const tk_norm *n, tk_buf *s);

/* ---- pre-tokenizers ---- */
enum { TP_SEQUENCE, TP_SPLIT, TP_BYTELEVEL, TP_DIGITS, TP_METASPACE, TP_WHITESPACE, TP_WHITESPACESPLIT };
enum { TB_REMOVED, TB_ISOLATED, TB_MERGED_PREV, TB_MERGED_NEXT, TB_CONTIGUOUS };
enum { TM_ALWAYS, TM_FIRST, TM_NEVER };
typedef struct tk_pre {
    int type;
    struct tk_pre *kids;
    int nkids;
    tk_pattern pat; /* Split */
    int behavior;
    bool invert;
    bool add_prefix_space, use_regex; /* ByteLevel */
    bool individual;                  /* Digits */
    char repl[8];                     /* Metaspace */
    size_t repl_len;
    int prepend_scheme;
    bool split;
} tk_pre;
typedef struct {
    regex_t *gpt2;  /* the GPT-2 regex of ByteLevel */
    regex_t *digit; /* \p{N} */
    regex_t *word;  /* Whitespace: \w+|[^\w\s]+ */
} tk_regexes;
spin_status tk_pre_parse(tk_pre *p, json_object *o, const char *file, const char *path);
void tk_pre_free(tk_pre *p);
/* Splits every piece without an id in place. */
void tk_pre_apply(const tk_pre *p, const tk_regexes *rx, tk_pieces *ps);
/* GPT-2's bytes_to_unicode: byte -> code point, and the inverse (-1 where none). */
uint32_t tk_byte_to_cp(unsigned char b);
int tk_cp_to_byte(uint32_t cp);

/* ---- the BPE model ---- */
typedef struct {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 = empty */
    int32_t *rank, *new_id;
    size_t cap;
} tk_mergemap;
typedef struct {
    tk_strmap vocab;
    char **id_tok; /* id -> token (NULL where none) */
    uint32_t *id_len;
    int32_t n_ids; /* max id + 1 */
    tk_mergemap merges;
    int32_t unk_id; /* -1: none */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix (NULL: none) */
    size_t prefix_len, suffix_len;
    int32_t byte_id[256]; /* <0xNN> tokens, -1 where absent */
    /* per-word cache: word -> span of cache_ids */
    tk_strmap cache;
    int32_t *cache_ids;
    size_t cache_n, cache_cap;
    uint32_t *cache_span; /* entry -> (offset, count) pairs */
    size_t cache_entries, cache_entries_cap;
} tk_bpe;
spin_status tk_bpe_parse(tk_bpe *m, json_object *o, const char *file);
void tk_bpe_free(tk_bpe *m);
/* Appends the ids of one pre-tokenized word. */
void tk_bpe_word(tk_bpe *m, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap);

/* ---- decoders ---- */
enum {
    TD_SEQUENCE,
    TD_BYTELEVEL,
    TD_REPLACE,
    TD_BYTEFALLBACK,
    TD_FUSE,
    TD_STRIP,
    TD_METASPACE,
    TD_BPE,
    TD_WORDPIECE
};
typedef struct tk_dec {
    int type;
    struct tk_dec *kids;
    int nkids;
    tk_pattern pat; /* Replace */
    char *content;  /* Replace: content; BPEDecoder: suffix; WordPiece: prefix */
    size_t clen;
    bool cleanup;      /* WordPiece */
    uint32_t strip_cp; /* Strip */
    int start, stop;
    uint32_t repl_cp; /* Metaspace */
    int prepend_scheme;
} tk_dec;
typedef struct {
    tk_buf *v;
    size_t n, cap;
} tk_strlist;
void tk_strlist_push(tk_strlist *l, const char *s, size_t n);
void tk_strlist_free(tk_strlist *l);
spin_status tk_dec_parse(tk_dec *d, json_object *o, const char *file, const char *path);
void tk_dec_free(tk_dec *d);
/* Runs the decoder's decode_chain on l in place. */
void tk_dec_apply(const tk_dec *d, tk_strlist *l);

/* ---- loading (tokenizer.c, tokenizer_gguf.c) ---- */
/* A tokenizer from a parsed tokenizer.json; cfg (may be NULL): tokenizer_config.json for BOS/EOS. */
spin_tokenizer *tk_load_obj(json_object *root, const char *name, json_object *cfg);
spin_tokenizer *tk_load_gguf(const char *path);

/* ---- JSON helpers ---- */
json_object *tk_jget(json_object *o, const char *key); /* NULL if absent or JSON null */
const char *tk_jstr(json_object *o, const char *key);  /* NULL if absent or not a string */
bool tk_jbool(json_object *o, const char *key, bool dflt);

#endif
