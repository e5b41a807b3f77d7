/* The BPE model (tokenizers' models/bpe): vocabulary and merge ranks in hash maps, the word split
 * into characters (continuing_subword_prefix / end_of_word_suffix, byte_fallback <0xNN>, unk with
 * fuse_unk), then the merges applied lowest rank first from a binary heap, with a per-word cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer_internal.h"

#define CACHE_MAX_ENTRIES 200000
#define CACHE_MAX_WORD 256

/* ---- merge map: (left, right) -> (rank, new id) ---- */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static void mm_init(tk_mergemap *m, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2)
        cap *= 2;
    m->cap = cap;
    m->keys = calloc(cap, sizeof *m->keys);
    m->rank = calloc(cap, sizeof *m->rank);
    m->new_id = calloc(cap, sizeof *m->new_id);
    SPIN_ASSERT(m->keys && m->rank && m->new_id, "out of host memory");
}

static size_t mm_slot(const tk_mergemap *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

static inline uint64_t mm_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static bool mm_get(const tk_mergemap *m, int32_t a, int32_t b, int32_t *rank, int32_t *new_id) {
    size_t i = mm_slot(m, mm_key(a, b));
    if (!m->keys[i])
        return false;
    *rank = m->rank[i];
    *new_id = m->new_id[i];
    return true;
}

/* ---- parsing ---- */
static spin_status bad(const char *file, const char *what) {
    return spin_fail(SPIN_ERR_INVALID, "%s: model: %s", file, what);
}

static char *opt_str(json_object *o, const char *key, size_t *len) {
    const char *s = tk_jstr(o, key);
    if (!s || !*s)
        return NULL;
    *len = strlen(s);
    return tk_strndup(s, *len);
}

spin_status tk_bpe_parse(tk_bpe *m, json_object *o, const char *file) {
    memset(m, 0, sizeof *m);
    m->unk_id = -1;
    for (int b = 0; b < 256; b++)
        m->byte_id[b] = -1;
    const char *type = tk_jstr(o, "type");
    json_object *vocab = tk_jget(o, "vocab"), *merges = tk_jget(o, "merges");
    if (!type && vocab && merges)
        type = "BPE"; /* older files omit the type */
    if (!type)
        return bad(file, "missing \"type\"");
    if (strcmp(type, "BPE"))
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (supported: BPE)",
                         file, type);
    if (!vocab || !json_object_is_type(vocab, json_type_object))
        return bad(file, "\"vocab\" must be an object of token -> id");
    if (!merges || !json_object_is_type(merges, json_type_array))
        return bad(file, "\"merges\" must be an array");
    json_object *dropout = tk_jget(o, "dropout");
    if (dropout && json_object_get_double(dropout) != 0.0)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: model.dropout = %g is not supported (only null or 0)",
                         file, json_object_get_double(dropout));
    m->fuse_unk = tk_jbool(o, "fuse_unk", false);
    m->byte_fallback = tk_jbool(o, "byte_fallback", false);
    m->ignore_merges = tk_jbool(o, "ignore_merges", false);
    m->prefix = opt_str(o, "continuing_subword_prefix", &m->prefix_len);
    m->suffix = opt_str(o, "end_of_word_suffix", &m->suffix_len);

    size_t nv = (size_t)json_object_object_length(vocab);
    tk_strmap_init(&m->vocab, nv);
    int32_t max_id = -1;
    json_object_object_foreach(vocab, key, val) {
        if (!json_object_is_type(val, json_type_int))
            return spin_fail(SPIN_ERR_INVALID, "%s: model.vocab[\"%s\"] is not an integer id", file, key);
        int64_t id = json_object_get_int64(val);
        if (id < 0 || id > INT32_MAX - 1)
            return spin_fail(SPIN_ERR_INVALID, "%s: model.vocab[\"%s\"] = %lld is out of range", file, key,
                             (long long)id);
        tk_strmap_put(&m->vocab, key, strlen(key), (int32_t)id);
        if (id > max_id)
            max_id = (int32_t)id;
    }
    m->n_ids = max_id + 1;
    m->id_tok = calloc((size_t)m->n_ids + 1, sizeof *m->id_tok);
    m->id_len = calloc((size_t)m->n_ids + 1, sizeof *m->id_len);
    for (size_t i = 0; i < m->vocab.cap; i++)
        if (m->vocab.keys[i]) {
            int32_t id = m->vocab.vals[i];
            m->id_tok[id] = m->vocab.keys[i];
            m->id_len[id] = m->vocab.klen[i];
        }
    for (int b = 0; b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", b);
        m->byte_id[b] = tk_strmap_get(&m->vocab, t, 6);
    }
    const char *unk = tk_jstr(o, "unk_token");
    if (unk) {
        m->unk_id = tk_strmap_get(&m->vocab, unk, strlen(unk));
        if (m->unk_id < 0)
            return spin_fail(SPIN_ERR_INVALID, "%s: model.unk_token \"%s\" is not in model.vocab", file, unk);
    }

    size_t nm = json_object_array_length(merges);
    mm_init(&m->merges, nm);
    tk_buf joined = {0};
    for (size_t i = 0; i < nm; i++) {
        json_object *e = json_object_array_get_idx(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_object_is_type(e, json_type_string)) {
            a = json_object_get_string(e);
            const char *sp = strchr(a, ' ');
            if (!sp)
                return spin_fail(SPIN_ERR_INVALID, "%s: model.merges[%zu] \"%s\" is not \"left right\"", file,
                                 i, a);
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_object_is_type(e, json_type_array) && json_object_array_length(e) == 2 &&
                   json_object_is_type(json_object_array_get_idx(e, 0), json_type_string) &&
                   json_object_is_type(json_object_array_get_idx(e, 1), json_type_string)) {
            a = json_object_get_string(json_object_array_get_idx(e, 0));
            al = (size_t)json_object_get_string_len(json_object_array_get_idx(e, 0));
            b = json_object_get_string(json_object_array_get_idx(e, 1));
            bl = (size_t)json_object_get_string_len(json_object_array_get_idx(e, 1));
        } else {
            return spin_fail(SPIN_ERR_INVALID, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]",
                             file, i);
        }
        int32_t ia = tk_strmap_get(&m->vocab, a, al), ib = tk_strmap_get(&m->vocab, b, bl);
        if (ia < 0 || ib < 0) {
            tk_buf_free(&joined);
            return spin_fail(SPIN_ERR_INVALID, "%s: model.merges[%zu]: token \"%.*s\" is not in model.vocab",
                             file, i, ia < 0 ? (int)al : (int)bl, ia < 0 ? a : b);
        }
        /* the merged token: a + b without b's continuing_subword_prefix */
        joined.n = 0;
        tk_buf_put(&joined, a, al);
        size_t skip =
            m->prefix && bl >= m->prefix_len && !memcmp(b, m->prefix, m->prefix_len) ? m->prefix_len : 0;
        tk_buf_put(&joined, b + skip, bl - skip);
        int32_t id = tk_strmap_get(&m->vocab, joined.p, joined.n);
        if (id < 0) {
            spin_status s = spin_fail(SPIN_ERR_INVALID,
                                      "%s: model.merges[%zu]: merged token \"%s\" is not in model.vocab",
                                      file, i, joined.p);
            tk_buf_free(&joined);
            return s;
        }
        size_t slot = mm_slot(&m->merges, mm_key(ia, ib));
        m->merges.keys[slot] = mm_key(ia, ib);
        m->merges.rank[slot] = (int32_t)i;
        m->merges.new_id[slot] = id;
    }
    tk_buf_free(&joined);
    tk_strmap_init(&m->cache, 1024);
    return SPIN_OK;
}

void tk_bpe_free(tk_bpe *m) {
    tk_strmap_free(&m->vocab);
    free(m->id_tok);
    free(m->id_len);
    free(m->merges.keys);
    free(m->merges.rank);
    free(m->merges.new_id);
    free(m->prefix);
    free(m->suffix);
    tk_strmap_free(&m->cache);
    free(m->cache_ids);
    free(m->cache_span);
    memset(m, 0, sizeof *m);
}

/* ---- one word ---- */
typedef struct {
    int32_t c;
    int prev, next;
    size_t len; /* 0: merged away */
} sym;

typedef struct {
    int32_t rank, new_id;
    int pos;
} hitem;

static bool h_less(hitem a, hitem b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void h_push(hitem *h, size_t *n, hitem x) {
    size_t i = (*n)++;
    h[i] = x;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!h_less(h[i], h[p]))
            break;
        hitem t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static hitem h_pop(hitem *h, size_t *n) {
    hitem top = h[0];
    h[0] = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h_less(h[l], h[m]))
            m = l;
        if (r < *n && h_less(h[r], h[m]))
            m = r;
        if (m == i)
            break;
        hitem t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static void add_sym(sym **v, size_t *n, size_t *cap, int32_t c, size_t len) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = tk_xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[*n] = (sym){c, (int)*n - 1, (int)*n + 1, len};
    (*n)++;
}

static void push_id(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *ids = tk_xrealloc(*ids, *cap * sizeof **ids);
    }
    (*ids)[(*n)++] = id;
}

static void merge_word(tk_bpe *m, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    sym *s = NULL;
    size_t ns = 0, scap = 0;
    bool have_unk = false;
    size_t unk_len = 0;
    tk_buf tmp = {0};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = tk_utf8_next((const unsigned char *)w + i, n - i, &cp);
        if (!k)
            k = 1;
        bool first = i == 0, last = i + (size_t)k >= n;
        const char *str = w + i;
        size_t len = (size_t)k;
        if ((!first && m->prefix) || (last && m->suffix)) {
            tmp.n = 0;
            if (!first && m->prefix)
                tk_buf_put(&tmp, m->prefix, m->prefix_len);
            tk_buf_put(&tmp, w + i, (size_t)k);
            if (last && m->suffix)
                tk_buf_put(&tmp, m->suffix, m->suffix_len);
            str = tmp.p;
            len = tmp.n;
        }
        int32_t id = tk_strmap_get(&m->vocab, str, len);
        if (id >= 0) {
            if (have_unk) {
                add_sym(&s, &ns, &scap, m->unk_id, unk_len);
                have_unk = false;
            }
            add_sym(&s, &ns, &scap, id, (size_t)k);
        } else {
            bool done = false;
            if (m->byte_fallback) {
                bool all = true;
                for (size_t j = 0; j < len; j++)
                    all = all && m->byte_id[(unsigned char)str[j]] >= 0;
                if (all) {
                    for (size_t j = 0; j < len; j++)
                        add_sym(&s, &ns, &scap, m->byte_id[(unsigned char)str[j]], 1);
                    done = true;
                }
            }
            if (!done && m->unk_id >= 0) {
                if (have_unk && m->fuse_unk) {
                    unk_len += (size_t)k;
                } else {
                    if (have_unk)
                        add_sym(&s, &ns, &scap, m->unk_id, unk_len);
                    have_unk = true;
                    unk_len = (size_t)k;
                }
            }
        }
        i += (size_t)k;
    }
    if (have_unk)
        add_sym(&s, &ns, &scap, m->unk_id, unk_len);
    tk_buf_free(&tmp);
    if (ns)
        s[ns - 1].next = -1;

    hitem *heap = tk_xmalloc((ns + 1) * 2 * sizeof *heap);
    size_t hn = 0, hcap = (ns + 1) * 2;
    int32_t rank, nid;
    for (size_t j = 0; j + 1 < ns; j++)
        if (mm_get(&m->merges, s[j].c, s[j + 1].c, &rank, &nid))
            h_push(heap, &hn, (hitem){rank, nid, (int)j});
    while (hn) {
        hitem top = h_pop(heap, &hn);
        sym *cur = &s[top.pos];
        if (!cur->len || cur->next < 0)
            continue;
        int nx = cur->next;
        sym right = s[nx];
        if (!mm_get(&m->merges, cur->c, right.c, &rank, &nid) || nid != top.new_id)
            continue;
        cur->c = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        s[nx].len = 0;
        if (right.next >= 0 && (size_t)right.next < ns)
            s[right.next].prev = top.pos;
        if (hn + 2 > hcap) {
            hcap *= 2;
            heap = tk_xrealloc(heap, hcap * sizeof *heap);
        }
        if (cur->prev >= 0 && mm_get(&m->merges, s[cur->prev].c, cur->c, &rank, &nid))
            h_push(heap, &hn, (hitem){rank, nid, cur->prev});
        if (cur->next >= 0 && mm_get(&m->merges, cur->c, s[cur->next].c, &rank, &nid))
            h_push(heap, &hn, (hitem){rank, nid, top.pos});
    }
    free(heap);
    for (size_t j = 0; j < ns; j++)
        if (s[j].len)
            push_id(ids, n_ids, cap, s[j].c);
    free(s);
}

void tk_bpe_word(tk_bpe *m, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    if (!n)
        return;
    if (m->ignore_merges) {
        int32_t id = tk_strmap_get(&m->vocab, w, n);
        if (id >= 0) {
            push_id(ids, n_ids, cap, id);
            return;
        }
    }
    bool cacheable = n <= CACHE_MAX_WORD;
    if (cacheable) {
        int32_t e = tk_strmap_get(&m->cache, w, n);
        if (e >= 0) {
            uint32_t off = m->cache_span[2 * e], cnt = m->cache_span[2 * e + 1];
            for (uint32_t j = 0; j < cnt; j++)
                push_id(ids, n_ids, cap, m->cache_ids[off + j]);
            return;
        }
    }
    size_t start = *n_ids;
    merge_word(m, w, n, ids, n_ids, cap);
    if (!cacheable)
        return;
    if (m->cache_entries >= CACHE_MAX_ENTRIES) {
        tk_strmap_clear(&m->cache);
        m->cache_entries = 0;
        m->cache_n = 0;
    }
    size_t cnt = *n_ids - start;
    if (m->cache_n + cnt > m->cache_cap) {
        m->cache_cap = (m->cache_n + cnt) * 2 + 1024;
        m->cache_ids = tk_xrealloc(m->cache_ids, m->cache_cap * sizeof *m->cache_ids);
    }
    if (m->cache_entries == m->cache_entries_cap) {
        m->cache_entries_cap = m->cache_entries_cap ? m->cache_entries_cap * 2 : 1024;
        m->cache_span = tk_xrealloc(m->cache_span, m->cache_entries_cap * 2 * sizeof *m->cache_span);
    }
    memcpy(m->cache_ids + m->cache_n, *ids + start, cnt * sizeof **ids);
    m->cache_span[2 * m->cache_entries] = (uint32_t)m->cache_n;
    m->cache_span[2 * m->cache_entries + 1] = (uint32_t)cnt;
    tk_strmap_put(&m->cache, w, n, (int32_t)m->cache_entries);
    m->cache_entries++;
    m->cache_n += cnt;
}
