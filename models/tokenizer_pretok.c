/* Normalizers (Sequence, Prepend, Replace, Strip) and pre-tokenizers (Sequence, Split, ByteLevel,
 * Digits, Metaspace, Whitespace, WhitespaceSplit), as tokenizers' normalizers/ and
 * pre_tokenizers/ define them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer_internal.h"

#define SUPPORTED_NORMALIZERS "Sequence, Prepend, Replace, Strip"
#define SUPPORTED_PRETOKENIZERS "Sequence, Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit"

/* ---------------- normalizers ---------------- */

spin_status tk_norm_parse(tk_norm *n, json_object *o, const char *file, const char *path) {
    memset(n, 0, sizeof *n);
    const char *type = tk_jstr(o, "type");
    char where[512];
    snprintf(where, sizeof where, "%s: %s", file, path);
    if (!type)
        return spin_fail(SPIN_ERR_INVALID, "%s: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        n->type = TN_SEQUENCE;
        json_object *arr = tk_jget(o, "normalizers");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return spin_fail(SPIN_ERR_INVALID, "%s: Sequence needs a \"normalizers\" array", where);
        n->nkids = (int)json_object_array_length(arr);
        n->kids = calloc((size_t)n->nkids + 1, sizeof *n->kids);
        for (int i = 0; i < n->nkids; i++) {
            char sub[400];
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i);
            SPIN_TRY(tk_norm_parse(&n->kids[i], json_object_array_get_idx(arr, (size_t)i), file, sub));
        }
        return SPIN_OK;
    }
    if (!strcmp(type, "Prepend")) {
        n->type = TN_PREPEND;
        const char *s = tk_jstr(o, "prepend");
        if (!s)
            return spin_fail(SPIN_ERR_INVALID, "%s: Prepend needs a string \"prepend\"", where);
        n->slen = strlen(s);
        n->str = tk_strndup(s, n->slen);
        return SPIN_OK;
    }
    if (!strcmp(type, "Replace")) {
        n->type = TN_REPLACE;
        const char *s = tk_jstr(o, "content");
        if (!s)
            return spin_fail(SPIN_ERR_INVALID, "%s: Replace needs a string \"content\"", where);
        n->slen = strlen(s);
        n->str = tk_strndup(s, n->slen);
        char w2[600];
        snprintf(w2, sizeof w2, "%s.pattern", where);
        return tk_pattern_parse(&n->pat, tk_jget(o, "pattern"), w2);
    }
    if (!strcmp(type, "Strip")) {
        n->type = TN_STRIP;
        n->left = tk_jbool(o, "strip_left", true);
        n->right = tk_jbool(o, "strip_right", true);
        return SPIN_OK;
    }
    return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported (supported: %s)",
                     where, type, SUPPORTED_NORMALIZERS);
}

void tk_norm_free(tk_norm *n) {
    for (int i = 0; i < n->nkids; i++)
        tk_norm_free(&n->kids[i]);
    free(n->kids);
    free(n->str);
    tk_pattern_free(&n->pat);
    memset(n, 0, sizeof *n);
}

static void replace_all(tk_buf *s, const tk_pattern *pat, const char *with, size_t wlen) {
    size_t *m;
    size_t k = tk_pattern_find(pat, s->p ? s->p : "", s->n, &m);
    if (!k) {
        free(m);
        return;
    }
    tk_buf out = {0};
    size_t prev = 0;
    for (size_t i = 0; i < k; i++) {
        tk_buf_put(&out, s->p + prev, m[2 * i] - prev);
        tk_buf_put(&out, with, wlen);
        prev = m[2 * i + 1];
    }
    tk_buf_put(&out, s->p + prev, s->n - prev);
    free(m);
    tk_buf_free(s);
    *s = out;
}

void tk_norm_apply(const tk_norm *n, tk_buf *s) {
    switch (n->type) {
    case TN_SEQUENCE:
        for (int i = 0; i < n->nkids; i++)
            tk_norm_apply(&n->kids[i], s);
        break;
    case TN_PREPEND:
        if (s->n) {
            tk_buf out = {0};
            tk_buf_put(&out, n->str, n->slen);
            tk_buf_put(&out, s->p, s->n);
            tk_buf_free(s);
            *s = out;
        }
        break;
    case TN_REPLACE: replace_all(s, &n->pat, n->str, n->slen); break;
    case TN_STRIP: {
        size_t a = 0, b = s->n;
        const unsigned char *u = (const unsigned char *)s->p;
        uint32_t cp;
        while (n->left && a < b) {
            int k = tk_utf8_next(u + a, b - a, &cp);
            if (!k || !tk_is_whitespace(cp))
                break;
            a += (size_t)k;
        }
        while (n->right && b > a) {
            size_t st = b - 1;
            while (st > a && (u[st] & 0xC0) == 0x80)
                st--;
            int k = tk_utf8_next(u + st, b - st, &cp);
            if (!k || !tk_is_whitespace(cp))
                break;
            b = st;
        }
        if (a || b != s->n) {
            memmove(s->p, s->p + a, b - a);
            s->n = b - a;
            s->p[s->n] = 0;
        }
        break;
    }
    }
}

/* ---------------- pre-tokenizers ---------------- */

static int parse_behavior(const char *b) {
    if (!b)
        return -1;
    if (!strcmp(b, "Removed"))
        return TB_REMOVED;
    if (!strcmp(b, "Isolated"))
        return TB_ISOLATED;
    if (!strcmp(b, "MergedWithPrevious"))
        return TB_MERGED_PREV;
    if (!strcmp(b, "MergedWithNext"))
        return TB_MERGED_NEXT;
    if (!strcmp(b, "Contiguous"))
        return TB_CONTIGUOUS;
    return -1;
}

spin_status tk_pre_parse(tk_pre *p, json_object *o, const char *file, const char *path) {
    memset(p, 0, sizeof *p);
    const char *type = tk_jstr(o, "type");
    char where[512];
    snprintf(where, sizeof where, "%s: %s", file, path);
    if (!type)
        return spin_fail(SPIN_ERR_INVALID, "%s: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        p->type = TP_SEQUENCE;
        json_object *arr = tk_jget(o, "pretokenizers");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return spin_fail(SPIN_ERR_INVALID, "%s: Sequence needs a \"pretokenizers\" array", where);
        p->nkids = (int)json_object_array_length(arr);
        p->kids = calloc((size_t)p->nkids + 1, sizeof *p->kids);
        for (int i = 0; i < p->nkids; i++) {
            char sub[400];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i);
            SPIN_TRY(tk_pre_parse(&p->kids[i], json_object_array_get_idx(arr, (size_t)i), file, sub));
        }
        return SPIN_OK;
    }
    if (!strcmp(type, "Split")) {
        p->type = TP_SPLIT;
        p->behavior = parse_behavior(tk_jstr(o, "behavior"));
        if (p->behavior < 0)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: Split \"behavior\" must be Removed, Isolated, MergedWithPrevious, "
                             "MergedWithNext or Contiguous",
                             where);
        p->invert = tk_jbool(o, "invert", false);
        char w2[600];
        snprintf(w2, sizeof w2, "%s.pattern", where);
        return tk_pattern_parse(&p->pat, tk_jget(o, "pattern"), w2);
    }
    if (!strcmp(type, "ByteLevel")) {
        p->type = TP_BYTELEVEL;
        p->add_prefix_space = tk_jbool(o, "add_prefix_space", true);
        p->use_regex = tk_jbool(o, "use_regex", true);
        return SPIN_OK;
    }
    if (!strcmp(type, "Digits")) {
        p->type = TP_DIGITS;
        p->individual = tk_jbool(o, "individual_digits", false);
        return SPIN_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        p->type = TP_METASPACE;
        const char *r = tk_jstr(o, "replacement");
        if (!r)
            r = "\xE2\x96\x81";
        uint32_t cp;
        size_t rl = strlen(r);
        if (!rl || tk_utf8_next((const unsigned char *)r, rl, &cp) != (int)rl)
            return spin_fail(SPIN_ERR_INVALID, "%s: Metaspace \"replacement\" must be one character", where);
        memcpy(p->repl, r, rl);
        p->repl_len = rl;
        const char *ps = tk_jstr(o, "prepend_scheme");
        if (ps) {
            if (!strcmp(ps, "always"))
                p->prepend_scheme = TM_ALWAYS;
            else if (!strcmp(ps, "first"))
                p->prepend_scheme = TM_FIRST;
            else if (!strcmp(ps, "never"))
                p->prepend_scheme = TM_NEVER;
            else
                return spin_fail(SPIN_ERR_INVALID,
                                 "%s: Metaspace prepend_scheme \"%s\" (want always|first|never)", where, ps);
        } else {
            p->prepend_scheme = tk_jbool(o, "add_prefix_space", true) ? TM_ALWAYS : TM_NEVER;
        }
        p->split = tk_jbool(o, "split", true);
        return SPIN_OK;
    }
    if (!strcmp(type, "Whitespace")) {
        p->type = TP_WHITESPACE;
        return SPIN_OK;
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->type = TP_WHITESPACESPLIT;
        return SPIN_OK;
    }
    return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: pre-tokenizer type \"%s\" is not supported (supported: %s)",
                     where, type, SUPPORTED_PRETOKENIZERS);
}

void tk_pre_free(tk_pre *p) {
    for (int i = 0; i < p->nkids; i++)
        tk_pre_free(&p->kids[i]);
    free(p->kids);
    tk_pattern_free(&p->pat);
    memset(p, 0, sizeof *p);
}

/* Segments (start, end, is_match) covering s[0..n), from matches as (start, end) pairs. */
typedef struct {
    size_t a, b;
    bool m;
} seg;

static size_t segs_from_matches(const size_t *m, size_t k, size_t n, seg **out) {
    seg *s = tk_xmalloc((2 * k + 2) * sizeof *s);
    size_t c = 0, prev = 0;
    if (!n) {
        s[c++] = (seg){0, 0, false};
        *out = s;
        return c;
    }
    for (size_t i = 0; i < k; i++) {
        if (prev != m[2 * i])
            s[c++] = (seg){prev, m[2 * i], false};
        s[c++] = (seg){m[2 * i], m[2 * i + 1], true};
        prev = m[2 * i + 1];
    }
    if (prev != n)
        s[c++] = (seg){prev, n, false};
    *out = s;
    return c;
}

/* Each character satisfying `pred` is one match (tokenizers' Pattern for Fn(char) -> bool). */
typedef bool (*char_pred)(const char *s, size_t n, uint32_t cp, const tk_regexes *rx);

static size_t segs_from_chars(const char *s, size_t n, char_pred pred, const tk_regexes *rx, seg **out) {
    seg *v = tk_xmalloc((n + 2) * sizeof *v * 2);
    size_t c = 0, last = 0, i = 0;
    if (!n) {
        v[c++] = (seg){0, 0, false};
        *out = v;
        return c;
    }
    while (i < n) {
        uint32_t cp;
        int k = tk_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k)
            k = 1, cp = 0xFFFD;
        if (pred(s + i, (size_t)k, cp, rx)) {
            if (last < i)
                v[c++] = (seg){last, i, false};
            v[c++] = (seg){i, i + (size_t)k, true};
            last = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (n > last)
        v[c++] = (seg){last, n, false};
    *out = v;
    return c;
}

/* Applies a split behaviour and pushes the non-empty parts of piece `pc` to out. */
static void split_push(const tk_piece *pc, seg *s, size_t c, int behavior, tk_pieces *out) {
    size_t w = 0;
    bool prev = false;
    switch (behavior) {
    case TB_REMOVED:
        for (size_t i = 0; i < c; i++)
            if (!s[i].m)
                s[w++] = s[i];
        break;
    case TB_ISOLATED: w = c; break;
    case TB_MERGED_PREV:
        for (size_t i = 0; i < c; i++) {
            if (s[i].m && !prev && w)
                s[w - 1].b = s[i].b;
            else
                s[w++] = s[i];
            prev = s[i].m;
        }
        break;
    case TB_MERGED_NEXT: {
        /* walk backwards, then restore the order */
        seg *r = tk_xmalloc((c + 1) * sizeof *r);
        for (size_t j = c; j-- > 0;) {
            if (s[j].m && !prev && w)
                r[w - 1].a = s[j].a;
            else
                r[w++] = s[j];
            prev = s[j].m;
        }
        for (size_t i = 0; i < w; i++)
            s[i] = r[w - 1 - i];
        free(r);
        break;
    }
    case TB_CONTIGUOUS:
        for (size_t i = 0; i < c; i++) {
            if (s[i].m == prev && w)
                s[w - 1].b = s[i].b;
            else
                s[w++] = s[i];
            prev = s[i].m;
        }
        break;
    }
    for (size_t i = 0; i < w; i++)
        if (s[i].b > s[i].a)
            tk_pieces_push(out, pc->s + s[i].a, s[i].b - s[i].a, -1, pc->origin && s[i].a == 0);
}

static bool is_numeric(const char *s, size_t n, uint32_t cp, const tk_regexes *rx) {
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    if (cp < 0xA0)
        return false;
    return onig_match(rx->digit, (const OnigUChar *)s, (const OnigUChar *)s + n, (const OnigUChar *)s, NULL,
                      ONIG_OPTION_NONE) == (int)n;
}

static bool is_ws(const char *s, size_t n, uint32_t cp, const tk_regexes *rx) {
    (void)s, (void)n, (void)rx;
    return tk_is_whitespace(cp);
}

uint32_t tk_byte_to_cp(unsigned char b) {
    static uint32_t table[256];
    static int ready = 0;
    if (!ready) {
        uint32_t next = 256;
        for (int i = 0; i < 256; i++) {
            bool keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255);
            table[i] = keep ? (uint32_t)i : next++;
        }
        ready = 1;
    }
    return table[b];
}

int tk_cp_to_byte(uint32_t cp) {
    static int16_t inv[324];
    static int ready = 0;
    if (!ready) {
        for (int i = 0; i < 324; i++)
            inv[i] = -1;
        for (int b = 0; b < 256; b++)
            inv[tk_byte_to_cp((unsigned char)b)] = (int16_t)b;
        ready = 1;
    }
    return cp < 324 ? inv[cp] : -1;
}

/* Runs `fn` over every piece without an id, replacing it with what fn pushes. */
typedef void (*piece_fn)(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out);

static void for_pieces(const tk_pre *p, const tk_regexes *rx, tk_pieces *ps, piece_fn fn) {
    tk_pieces out = {0};
    for (size_t i = 0; i < ps->n; i++) {
        tk_piece *pc = &ps->v[i];
        if (pc->id >= 0) {
            if (out.n == out.cap) {
                out.cap = out.cap ? out.cap * 2 : 16;
                out.v = tk_xrealloc(out.v, out.cap * sizeof *out.v);
            }
            out.v[out.n++] = *pc;
            pc->s = NULL;
            continue;
        }
        fn(p, rx, pc, &out);
    }
    tk_pieces_free(ps);
    *ps = out;
}

static void do_split(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out) {
    (void)rx;
    size_t *m;
    size_t k = tk_pattern_find(&p->pat, pc->s, pc->n, &m);
    seg *s;
    size_t c = segs_from_matches(m, k, pc->n, &s);
    free(m);
    if (p->invert)
        for (size_t i = 0; i < c; i++)
            s[i].m = !s[i].m;
    split_push(pc, s, c, p->behavior, out);
    free(s);
}

static void do_chars(const tk_piece *pc, const tk_regexes *rx, char_pred pred, int behavior, tk_pieces *out) {
    seg *s;
    size_t c = segs_from_chars(pc->s, pc->n, pred, rx, &s);
    split_push(pc, s, c, behavior, out);
    free(s);
}

static void do_digits(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out) {
    do_chars(pc, rx, is_numeric, p->individual ? TB_ISOLATED : TB_CONTIGUOUS, out);
}

static void do_wssplit(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out) {
    (void)p;
    do_chars(pc, rx, is_ws, TB_REMOVED, out);
}

static void do_whitespace(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out) {
    (void)p;
    size_t *m;
    size_t k = tk_regex_find(rx->word, pc->s, pc->n, &m);
    seg *s;
    size_t c = segs_from_matches(m, k, pc->n, &s);
    free(m);
    for (size_t i = 0; i < c; i++)
        s[i].m = !s[i].m;
    split_push(pc, s, c, TB_REMOVED, out);
    free(s);
}

static void do_bytelevel_split(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out) {
    tk_piece q = *pc;
    tk_buf b = {0};
    if (p->add_prefix_space && pc->n && pc->s[0] != ' ') {
        tk_buf_putc(&b, ' ');
        tk_buf_put(&b, pc->s, pc->n);
        q.s = b.p;
        q.n = b.n;
    }
    if (p->use_regex) {
        size_t *m;
        size_t k = tk_regex_find(rx->gpt2, q.s, q.n, &m);
        seg *s;
        size_t c = segs_from_matches(m, k, q.n, &s);
        free(m);
        split_push(&q, s, c, TB_ISOLATED, out);
        free(s);
    } else if (q.n) {
        tk_pieces_push(out, q.s, q.n, -1, q.origin);
    }
    tk_buf_free(&b);
}

static void do_metaspace(const tk_pre *p, const tk_regexes *rx, const tk_piece *pc, tk_pieces *out) {
    (void)rx;
    tk_buf b = {0};
    bool starts = false;
    tk_pattern sp = {.str = (char *)" ", .len = 1};
    size_t *m;
    size_t k = tk_pattern_find(&sp, pc->s, pc->n, &m);
    size_t prev = 0;
    for (size_t i = 0; i < k; i++) {
        tk_buf_put(&b, pc->s + prev, m[2 * i] - prev);
        tk_buf_put(&b, p->repl, p->repl_len);
        prev = m[2 * i + 1];
    }
    tk_buf_put(&b, pc->s + prev, pc->n - prev);
    free(m);
    starts = b.n >= p->repl_len && !memcmp(b.p, p->repl, p->repl_len);
    bool prepend =
        b.n && !starts && (p->prepend_scheme == TM_ALWAYS || (p->prepend_scheme == TM_FIRST && pc->origin));
    if (prepend) {
        tk_buf c = {0};
        tk_buf_put(&c, p->repl, p->repl_len);
        tk_buf_put(&c, b.p, b.n);
        tk_buf_free(&b);
        b = c;
    }
    tk_piece q = {b.p, b.n, -1, pc->origin};
    if (p->split) {
        /* each replacement character is one match, merged with the text after it */
        tk_pattern rp = {.str = (char *)p->repl, .len = p->repl_len};
        size_t *mm;
        size_t kk = tk_pattern_find(&rp, q.s ? q.s : "", q.n, &mm);
        seg *s;
        size_t c = segs_from_matches(mm, kk, q.n, &s);
        free(mm);
        split_push(&q, s, c, TB_MERGED_NEXT, out);
        free(s);
    } else if (q.n) {
        tk_pieces_push(out, q.s, q.n, -1, q.origin);
    }
    tk_buf_free(&b);
}

static void bytelevel_map(tk_pieces *ps) {
    for (size_t i = 0; i < ps->n; i++) {
        tk_piece *pc = &ps->v[i];
        if (pc->id >= 0)
            continue;
        tk_buf b = {0};
        for (size_t j = 0; j < pc->n; j++)
            tk_buf_cp(&b, tk_byte_to_cp((unsigned char)pc->s[j]));
        free(pc->s);
        pc->s = b.p ? b.p : tk_strndup("", 0);
        pc->n = b.n;
    }
}

void tk_pre_apply(const tk_pre *p, const tk_regexes *rx, tk_pieces *ps) {
    switch (p->type) {
    case TP_SEQUENCE:
        for (int i = 0; i < p->nkids; i++)
            tk_pre_apply(&p->kids[i], rx, ps);
        break;
    case TP_SPLIT: for_pieces(p, rx, ps, do_split); break;
    case TP_BYTELEVEL:
        for_pieces(p, rx, ps, do_bytelevel_split);
        bytelevel_map(ps);
        break;
    case TP_DIGITS: for_pieces(p, rx, ps, do_digits); break;
    case TP_METASPACE: for_pieces(p, rx, ps, do_metaspace); break;
    case TP_WHITESPACE: for_pieces(p, rx, ps, do_whitespace); break;
    case TP_WHITESPACESPLIT: for_pieces(p, rx, ps, do_wssplit); break;
    }
}
