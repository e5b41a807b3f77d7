/* Decoders (tokenizers' decoders/): each rewrites the list of token strings (decode_chain); the
 * tokenizer joins the result. ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer_internal.h"

#define SUPPORTED_DECODERS \
    "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder, WordPiece"

static spin_status one_char(const char *s, uint32_t *cp, const char *where, const char *field) {
    size_t n = s ? strlen(s) : 0;
    if (!n || tk_utf8_next((const unsigned char *)s, n, cp) != (int)n)
        return spin_fail(SPIN_ERR_INVALID, "%s: \"%s\" must be one character", where, field);
    return SPIN_OK;
}

spin_status tk_dec_parse(tk_dec *d, json_object *o, const char *file, const char *path) {
    memset(d, 0, sizeof *d);
    const char *type = tk_jstr(o, "type");
    char where[512];
    snprintf(where, sizeof where, "%s: %s", file, path);
    if (!type)
        return spin_fail(SPIN_ERR_INVALID, "%s: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        d->type = TD_SEQUENCE;
        json_object *arr = tk_jget(o, "decoders");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return spin_fail(SPIN_ERR_INVALID, "%s: Sequence needs a \"decoders\" array", where);
        d->nkids = (int)json_object_array_length(arr);
        d->kids = calloc((size_t)d->nkids + 1, sizeof *d->kids);
        for (int i = 0; i < d->nkids; i++) {
            char sub[400];
            snprintf(sub, sizeof sub, "%s.decoders[%d]", path, i);
            SPIN_TRY(tk_dec_parse(&d->kids[i], json_object_array_get_idx(arr, (size_t)i), file, sub));
        }
        return SPIN_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        d->type = TD_BYTELEVEL;
        return SPIN_OK;
    }
    if (!strcmp(type, "Replace")) {
        d->type = TD_REPLACE;
        const char *c = tk_jstr(o, "content");
        if (!c)
            return spin_fail(SPIN_ERR_INVALID, "%s: Replace needs a string \"content\"", where);
        d->clen = strlen(c);
        d->content = tk_strndup(c, d->clen);
        char w2[600];
        snprintf(w2, sizeof w2, "%s.pattern", where);
        return tk_pattern_parse(&d->pat, tk_jget(o, "pattern"), w2);
    }
    if (!strcmp(type, "ByteFallback")) {
        d->type = TD_BYTEFALLBACK;
        return SPIN_OK;
    }
    if (!strcmp(type, "Fuse")) {
        d->type = TD_FUSE;
        return SPIN_OK;
    }
    if (!strcmp(type, "Strip")) {
        d->type = TD_STRIP;
        SPIN_TRY(one_char(tk_jstr(o, "content"), &d->strip_cp, where, "content"));
        json_object *a = tk_jget(o, "start"), *b = tk_jget(o, "stop");
        d->start = a ? json_object_get_int(a) : 0;
        d->stop = b ? json_object_get_int(b) : 0;
        return SPIN_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        d->type = TD_METASPACE;
        const char *r = tk_jstr(o, "replacement");
        SPIN_TRY(one_char(r ? r : "\xE2\x96\x81", &d->repl_cp, where, "replacement"));
        const char *ps = tk_jstr(o, "prepend_scheme");
        if (ps)
            d->prepend_scheme = !strcmp(ps, "never") ? TM_NEVER : !strcmp(ps, "first") ? TM_FIRST : TM_ALWAYS;
        else
            d->prepend_scheme = tk_jbool(o, "add_prefix_space", true) ? TM_ALWAYS : TM_NEVER;
        return SPIN_OK;
    }
    if (!strcmp(type, "BPEDecoder") || !strcmp(type, "WordPiece")) {
        bool bpe = type[0] == 'B';
        d->type = bpe ? TD_BPE : TD_WORDPIECE;
        const char *c = tk_jstr(o, bpe ? "suffix" : "prefix");
        if (!c)
            c = bpe ? "</w>" : "##";
        d->clen = strlen(c);
        d->content = tk_strndup(c, d->clen);
        d->cleanup = tk_jbool(o, "cleanup", true);
        return SPIN_OK;
    }
    return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: decoder type \"%s\" is not supported (supported: %s)", where,
                     type, SUPPORTED_DECODERS);
}

void tk_dec_free(tk_dec *d) {
    for (int i = 0; i < d->nkids; i++)
        tk_dec_free(&d->kids[i]);
    free(d->kids);
    free(d->content);
    tk_pattern_free(&d->pat);
    memset(d, 0, sizeof *d);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Byte of a "<0xNN>" token, or -1. */
static int byte_token(const tk_buf *t) {
    if (t->n != 6 || memcmp(t->p, "<0x", 3) || t->p[5] != '>')
        return -1;
    int a = hexval(t->p[3]), b = hexval(t->p[4]);
    return a < 0 || b < 0 ? -1 : a * 16 + b;
}

static void flush_bytes(tk_strlist *out, tk_buf *bytes) {
    if (!bytes->n)
        return;
    if (tk_utf8_valid(bytes->p, bytes->n))
        tk_strlist_push(out, bytes->p, bytes->n);
    else
        for (size_t i = 0; i < bytes->n; i++)
            tk_strlist_push(out, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
}

static void replace_in(tk_buf *t, const tk_pattern *pat, const char *with, size_t wlen) {
    size_t *m;
    size_t k = tk_pattern_find(pat, t->p ? t->p : "", t->n, &m);
    if (k) {
        tk_buf out = {0};
        size_t prev = 0;
        for (size_t i = 0; i < k; i++) {
            tk_buf_put(&out, t->p + prev, m[2 * i] - prev);
            tk_buf_put(&out, with, wlen);
            prev = m[2 * i + 1];
        }
        tk_buf_put(&out, t->p + prev, t->n - prev);
        tk_buf_free(t);
        *t = out;
    }
    free(m);
}

/* Code points of t (at most cap), returns the count. */
static size_t cps(const tk_buf *t, uint32_t *out, size_t *off, size_t cap) {
    size_t c = 0, i = 0;
    while (i < t->n && c < cap) {
        uint32_t cp;
        int k = tk_utf8_next((const unsigned char *)t->p + i, t->n - i, &cp);
        if (!k)
            k = 1, cp = 0xFFFD;
        out[c] = cp;
        off[c++] = i;
        i += (size_t)k;
    }
    off[c] = i;
    return c;
}

void tk_dec_apply(const tk_dec *d, tk_strlist *l) {
    switch (d->type) {
    case TD_SEQUENCE:
        for (int i = 0; i < d->nkids; i++)
            tk_dec_apply(&d->kids[i], l);
        return;
    case TD_BYTELEVEL: {
        tk_buf bytes = {0};
        for (size_t i = 0; i < l->n; i++) {
            const tk_buf *t = &l->v[i];
            tk_buf mine = {0};
            bool ok = true;
            size_t j = 0;
            while (j < t->n) {
                uint32_t cp;
                int k = tk_utf8_next((const unsigned char *)t->p + j, t->n - j, &cp);
                int b = k ? tk_cp_to_byte(cp) : -1;
                if (b < 0) {
                    ok = false;
                    break;
                }
                tk_buf_putc(&mine, (char)b);
                j += (size_t)k;
            }
            if (ok)
                tk_buf_put(&bytes, mine.p, mine.n);
            else
                tk_buf_put(&bytes, t->p, t->n);
            tk_buf_free(&mine);
        }
        tk_buf s = {0};
        tk_utf8_lossy(&s, (const unsigned char *)bytes.p, bytes.n);
        tk_buf_free(&bytes);
        tk_strlist_free(l);
        tk_strlist_push(l, s.p ? s.p : "", s.n);
        tk_buf_free(&s);
        return;
    }
    case TD_REPLACE:
        for (size_t i = 0; i < l->n; i++)
            replace_in(&l->v[i], &d->pat, d->content, d->clen);
        return;
    case TD_BYTEFALLBACK: {
        tk_strlist out = {0};
        tk_buf bytes = {0};
        for (size_t i = 0; i < l->n; i++) {
            int b = byte_token(&l->v[i]);
            if (b >= 0) {
                tk_buf_putc(&bytes, (char)b);
                continue;
            }
            flush_bytes(&out, &bytes);
            tk_strlist_push(&out, l->v[i].p ? l->v[i].p : "", l->v[i].n);
        }
        flush_bytes(&out, &bytes);
        tk_buf_free(&bytes);
        tk_strlist_free(l);
        *l = out;
        return;
    }
    case TD_FUSE: {
        tk_buf s = {0};
        for (size_t i = 0; i < l->n; i++)
            tk_buf_put(&s, l->v[i].p, l->v[i].n);
        tk_strlist_free(l);
        tk_strlist_push(l, s.p ? s.p : "", s.n);
        tk_buf_free(&s);
        return;
    }
    case TD_STRIP:
        for (size_t i = 0; i < l->n; i++) {
            tk_buf *t = &l->v[i];
            uint32_t *cp = tk_xmalloc((t->n + 1) * sizeof *cp);
            size_t *off = tk_xmalloc((t->n + 2) * sizeof *off);
            size_t nc = cps(t, cp, off, t->n + 1);
            size_t a = 0, z = 0;
            while (a < nc && a < (size_t)d->start && cp[a] == d->strip_cp)
                a++;
            while (z < nc && z < (size_t)d->stop && cp[nc - 1 - z] == d->strip_cp)
                z++;
            /* tokenizers keeps chars().skip(a).take(byte_len - a - z) */
            size_t take = t->n >= a + z ? t->n - a - z : 0;
            size_t endc = a + take < nc ? a + take : nc;
            size_t from = off[a], to = off[endc];
            tk_buf nb = {0};
            tk_buf_put(&nb, t->p ? t->p + from : "", to - from);
            tk_buf_free(t);
            *t = nb;
            free(cp);
            free(off);
        }
        return;
    case TD_BPE:
        for (size_t i = 0; i < l->n; i++) {
            tk_pattern p = {.str = d->content, .len = d->clen};
            replace_in(&l->v[i], &p, " ", i + 1 == l->n ? 0 : 1);
        }
        return;
    case TD_WORDPIECE:
        for (size_t i = 0; i < l->n; i++) {
            tk_buf *t = &l->v[i];
            if (i) {
                tk_buf nb = {0};
                if (t->n >= d->clen && !memcmp(t->p, d->content, d->clen)) {
                    tk_buf_put(&nb, t->p + d->clen, t->n - d->clen);
                } else {
                    tk_buf_putc(&nb, ' ');
                    tk_buf_put(&nb, t->p, t->n);
                }
                tk_buf_free(t);
                *t = nb;
            }
            if (d->cleanup) {
                static const char *from[] = {" .",  " ?",      " !",  " ,",   " ' ", " n't",
                                             " 'm", " do not", " 's", " 've", " 're"};
                static const char *to[] = {".",  "?",      "!",  ",",   "'",  "n't",
                                           "'m", " don't", "'s", "'ve", "'re"};
                for (size_t r = 0; r < sizeof from / sizeof *from; r++) {
                    tk_pattern p = {.str = (char *)from[r], .len = strlen(from[r])};
                    replace_in(t, &p, to[r], strlen(to[r]));
                }
            }
        }
        return;
    case TD_METASPACE:
        for (size_t i = 0; i < l->n; i++) {
            tk_buf *t = &l->v[i];
            tk_buf nb = {0};
            size_t j = 0;
            while (j < t->n) {
                uint32_t c;
                int k = tk_utf8_next((const unsigned char *)t->p + j, t->n - j, &c);
                if (!k)
                    k = 1;
                if (k && c == d->repl_cp) {
                    if (!(i == 0 && d->prepend_scheme != TM_NEVER))
                        tk_buf_putc(&nb, ' ');
                } else {
                    tk_buf_put(&nb, t->p + j, (size_t)k);
                }
                j += (size_t)k;
            }
            if (!nb.p)
                tk_buf_put(&nb, "", 0);
            tk_buf_free(t);
            *t = nb;
        }
        return;
    }
}
