/* Tokenizer helpers: strings, UTF-8, hash maps, Oniguruma patterns, JSON access. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "models/tokenizer_internal.h"

void *tk_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    SPIN_ASSERT(p != NULL, "out of host memory (%zu bytes)", n);
    return p;
}

void *tk_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    SPIN_ASSERT(q != NULL, "out of host memory (%zu bytes)", n);
    return q;
}

char *tk_strndup(const char *s, size_t n) {
    char *p = tk_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = tk_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void tk_buf_putc(tk_buf *b, char c) {
    tk_buf_put(b, &c, 1);
}

void tk_buf_cp(tk_buf *b, uint32_t cp) {
    char o[4];
    int n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    tk_buf_put(b, o, (size_t)n);
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* Number of bytes of the longest valid prefix of a UTF-8 sequence at s (the "maximal subpart"),
 * and whether it is complete. */
static int utf8_scan(const unsigned char *s, size_t n, uint32_t *cp, bool *complete) {
    *complete = false;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        *complete = true;
        return 1;
    }
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 1;
    }
    int i = 1;
    for (; i <= need; i++) {
        if ((size_t)i >= n)
            return i;
        unsigned char d = s[i];
        if (d < lo || d > hi)
            return i;
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (d & 0x3F);
    }
    *cp = v;
    *complete = true;
    return i;
}

int tk_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    bool ok;
    int k = utf8_scan(s, n, cp, &ok);
    return ok ? k : 0;
}

void tk_utf8_lossy(tk_buf *out, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        bool ok;
        int k = utf8_scan(s + i, n - i, &cp, &ok);
        if (ok)
            tk_buf_put(out, s + i, (size_t)k);
        else
            tk_buf_put(out, "\xEF\xBF\xBD", 3);
        i += (size_t)k;
    }
}

bool tk_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = tk_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k)
            return false;
        i += (size_t)k;
    }
    return true;
}

bool tk_is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* ---- hash map ---- */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void tk_strmap_init(tk_strmap *m, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2)
        cap *= 2;
    m->cap = cap;
    m->count = 0;
    m->keys = calloc(cap, sizeof *m->keys);
    m->klen = calloc(cap, sizeof *m->klen);
    m->vals = calloc(cap, sizeof *m->vals);
    SPIN_ASSERT(m->keys && m->klen && m->vals, "out of host memory");
}

void tk_strmap_free(tk_strmap *m) {
    if (m->keys)
        for (size_t i = 0; i < m->cap; i++)
            free(m->keys[i]);
    free(m->keys);
    free(m->klen);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void tk_strmap_clear(tk_strmap *m) {
    for (size_t i = 0; i < m->cap; i++) {
        free(m->keys[i]);
        m->keys[i] = NULL;
    }
    m->count = 0;
}

static size_t strmap_slot(const tk_strmap *m, const char *k, size_t n) {
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(k, n) & mask;
    while (m->keys[i] && !(m->klen[i] == n && !memcmp(m->keys[i], k, n)))
        i = (i + 1) & mask;
    return i;
}

void tk_strmap_put(tk_strmap *m, const char *k, size_t n, int32_t v) {
    if ((m->count + 1) * 2 > m->cap) {
        tk_strmap big;
        tk_strmap_init(&big, m->cap);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = strmap_slot(&big, m->keys[i], m->klen[i]);
                big.keys[j] = m->keys[i];
                big.klen[j] = m->klen[i];
                big.vals[j] = m->vals[i];
                big.count++;
            }
        free(m->keys);
        free(m->klen);
        free(m->vals);
        *m = big;
    }
    size_t i = strmap_slot(m, k, n);
    if (!m->keys[i]) {
        m->keys[i] = tk_strndup(k, n);
        m->klen[i] = (uint32_t)n;
        m->count++;
    }
    m->vals[i] = v;
}

int32_t tk_strmap_get(const tk_strmap *m, const char *k, size_t n) {
    if (!m->cap)
        return -1;
    size_t i = strmap_slot(m, k, n);
    return m->keys[i] ? m->vals[i] : -1;
}

/* ---- pieces and lists ---- */
void tk_pieces_push(tk_pieces *p, const char *s, size_t n, int32_t id, bool origin) {
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->v = tk_xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n++] = (tk_piece){tk_strndup(s, n), n, id, origin};
}

void tk_pieces_free(tk_pieces *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].s);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void tk_strlist_push(tk_strlist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = tk_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n] = (tk_buf){0};
    tk_buf_put(&l->v[l->n], s, n);
    l->n++;
}

void tk_strlist_free(tk_strlist *l) {
    for (size_t i = 0; i < l->n; i++)
        tk_buf_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- regexes and patterns ---- */
spin_status tk_regex_compile(regex_t **re, const char *pat, size_t len, const char *where) {
    static int inited = 0;
    if (!inited) {
        OnigEncoding enc = ONIG_ENCODING_UTF8;
        onig_initialize(&enc, 1);
        inited = 1;
    }
    OnigErrorInfo einfo;
    int r = onig_new(re, (const OnigUChar *)pat, (const OnigUChar *)pat + len, ONIG_OPTION_NONE,
                     ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &einfo);
    if (r != ONIG_NORMAL) {
        OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        *re = NULL;
        return spin_fail(SPIN_ERR_INVALID, "%s: regex /%.*s/ does not compile: %s", where, (int)len, pat,
                         (const char *)msg);
    }
    return SPIN_OK;
}

spin_status tk_pattern_parse(tk_pattern *p, json_object *o, const char *where) {
    memset(p, 0, sizeof *p);
    if (!o || !json_object_is_type(o, json_type_object))
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: pattern must be an object {\"String\": ...} or {\"Regex\": ...}", where);
    json_object *s = NULL;
    if (json_object_object_get_ex(o, "String", &s) && json_object_is_type(s, json_type_string)) {
        p->len = (size_t)json_object_get_string_len(s);
        p->str = tk_strndup(json_object_get_string(s), p->len);
        return SPIN_OK;
    }
    if (json_object_object_get_ex(o, "Regex", &s) && json_object_is_type(s, json_type_string)) {
        p->is_regex = true;
        p->len = (size_t)json_object_get_string_len(s);
        p->str = tk_strndup(json_object_get_string(s), p->len);
        return tk_regex_compile(&p->re, p->str, p->len, where);
    }
    return spin_fail(SPIN_ERR_INVALID, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
}

void tk_pattern_free(tk_pattern *p) {
    free(p->str);
    if (p->re)
        onig_free(p->re);
    memset(p, 0, sizeof *p);
}

static void push_pair(size_t **out, size_t *n, size_t *cap, size_t a, size_t b) {
    if (*n + 2 > *cap) {
        *cap = *cap ? *cap * 2 : 32;
        *out = tk_xrealloc(*out, *cap * sizeof **out);
    }
    (*out)[(*n)++] = a;
    (*out)[(*n)++] = b;
}

size_t tk_regex_find(regex_t *re, const char *s, size_t n, size_t **out) {
    size_t cnt = 0, cap = 0;
    *out = NULL;
    OnigRegion *reg = onig_region_new();
    const OnigUChar *str = (const OnigUChar *)s, *end = str + n;
    size_t pos = 0;
    bool have_last = false;
    size_t last_end = 0;
    while (pos <= n) {
        int r = onig_search(re, str, end, str + pos, end, reg, ONIG_OPTION_NONE);
        if (r < 0)
            break;
        size_t ms = (size_t)reg->beg[0], me = (size_t)reg->end[0];
        if (ms == me && have_last && last_end == me) {
            if (pos >= n)
                break;
            uint32_t cp;
            int k = tk_utf8_next(str + pos, n - pos, &cp);
            pos += k ? (size_t)k : 1;
            continue;
        }
        pos = me;
        have_last = true;
        last_end = me;
        push_pair(out, &cnt, &cap, ms, me);
        if (ms == me && pos >= n)
            break;
    }
    onig_region_free(reg, 1);
    return cnt / 2;
}

size_t tk_pattern_find(const tk_pattern *p, const char *s, size_t n, size_t **out) {
    if (p->is_regex)
        return tk_regex_find(p->re, s, n, out);
    size_t cnt = 0, cap = 0;
    *out = NULL;
    if (!p->len)
        return 0;
    size_t i = 0;
    while (i + p->len <= n) {
        const char *f = memmem(s + i, n - i, p->str, p->len);
        if (!f)
            break;
        size_t a = (size_t)(f - s);
        push_pair(out, &cnt, &cap, a, a + p->len);
        i = a + p->len;
    }
    return cnt / 2;
}

/* ---- JSON ---- */
json_object *tk_jget(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

const char *tk_jstr(json_object *o, const char *key) {
    json_object *v = tk_jget(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

bool tk_jbool(json_object *o, const char *key, bool dflt) {
    json_object *v = tk_jget(o, key);
    return v && json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : dflt;
}
