/* spin tokenize: JSON lines in, JSON lines out (text -> ids, or ids -> text with --decode). */
#define _POSIX_C_SOURCE 200809L
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer.h"
#include "tools/spin/commands.h"

static void help(FILE *f) {
    fprintf(f, "usage: spin tokenize --tokenizer PATH [--add-special] [--decode [--skip-special]]\n"
               "\n"
               "Reads one JSON value per line on stdin and writes one per line on stdout.\n"
               "  encode (default): a JSON string in, a JSON array of token ids out\n"
               "  --decode:         a JSON array of token ids in, a JSON string out\n"
               "\n"
               "options:\n"
               "  --tokenizer PATH  tokenizer.json, a model directory holding tokenizer.json (and\n"
               "                    tokenizer_config.json for the BOS/EOS tokens), or a GGUF file\n"
               "  --add-special     encode: add the post-processor's special tokens (e.g. BOS)\n"
               "  --decode          decode id arrays instead of encoding strings\n"
               "  --skip-special    decode: leave out special tokens\n"
               "  --help, -h        this help\n"
               "Special tokens written in the text (e.g. </s>) are always recognised.\n");
}

static int hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* json-c 0.16 decodes some escaped surrogate pairs to U+FFFD (every high surrogate with
 * (hi & 0x3E) == 0x36, e.g. "\ud876\udf8d", i.e. U+1D800-1DFFF, U+2D800-2DFFF, ...), and Python's
 * json.dumps escapes everything outside ASCII. So escaped pairs are turned into UTF-8 bytes before
 * json-c sees the line: a lexical rewrite of `\uHHHH\uLLLL` only, in place (it never grows). */
static size_t unescape_surrogate_pairs(char *s, size_t n) {
    size_t r = 0, w = 0;
    while (r < n) {
        if (s[r] != '\\' || r + 1 >= n) {
            s[w++] = s[r++];
            continue;
        }
        int hi = s[r + 1] == 'u' && r + 6 <= n ? hex4(s + r + 2) : -1;
        int lo = hi >= 0xD800 && hi <= 0xDBFF && r + 12 <= n && s[r + 6] == '\\' && s[r + 7] == 'u'
                     ? hex4(s + r + 8)
                     : -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            unsigned cp = 0x10000u + (((unsigned)hi - 0xD800u) << 10) + ((unsigned)lo - 0xDC00u);
            s[w++] = (char)(0xF0 | (cp >> 18));
            s[w++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            s[w++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            s[w++] = (char)(0x80 | (cp & 0x3F));
            r += 12;
        } else {
            s[w++] = s[r++]; /* the backslash and the escaped character, verbatim */
            s[w++] = s[r++];
        }
    }
    return w;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    bool add_special = false, decode = false, skip_special = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--add-special")) {
            add_special = true;
        } else if (!strcmp(argv[i], "--decode")) {
            decode = true;
        } else if (!strcmp(argv[i], "--skip-special")) {
            skip_special = true;
        } else {
            fprintf(stderr, "spin tokenize: unknown or incomplete option '%s'\n", argv[i]);
            help(stderr);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "spin tokenize: --tokenizer PATH is required\n");
        help(stderr);
        return 2;
    }
    spin_tokenizer *tok = spin_tokenizer_load(path);
    if (!tok) {
        fprintf(stderr, "spin tokenize: %s\n", spin_last_error());
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    json_tokener *jt = json_tokener_new();
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (!decode)
            n = unescape_surrogate_pairs(line, n);
        json_tokener_reset(jt);
        json_object *v = json_tokener_parse_ex(jt, line, (int)n);
        if (!v || json_tokener_get_error(jt) != json_tokener_success || json_tokener_get_parse_end(jt) != n) {
            fprintf(stderr, "spin tokenize: stdin line %ld: not a single JSON value\n", lineno);
            json_object_put(v);
            rc = 1;
            break;
        }
        if (!decode) {
            if (!json_object_is_type(v, json_type_string)) {
                fprintf(stderr, "spin tokenize: stdin line %ld: expected a JSON string\n", lineno);
                json_object_put(v);
                rc = 1;
                break;
            }
            int32_t *ids;
            size_t k;
            if (spin_tokenizer_encode(tok, json_object_get_string(v), (size_t)json_object_get_string_len(v),
                                      add_special, &ids, &k) != SPIN_OK) {
                fprintf(stderr, "spin tokenize: stdin line %ld: %s\n", lineno, spin_last_error());
                json_object_put(v);
                rc = 1;
                break;
            }
            putchar('[');
            for (size_t i = 0; i < k; i++)
                printf(i ? ",%d" : "%d", ids[i]);
            fputs("]\n", stdout);
            free(ids);
        } else {
            bool ok = json_object_is_type(v, json_type_array);
            size_t k = ok ? json_object_array_length(v) : 0;
            int32_t *ids = malloc((k + 1) * sizeof *ids);
            for (size_t i = 0; ok && i < k; i++) {
                json_object *e = json_object_array_get_idx(v, i);
                ok = json_object_is_type(e, json_type_int) && json_object_get_int64(e) >= 0 &&
                     json_object_get_int64(e) <= INT32_MAX;
                ids[i] = ok ? (int32_t)json_object_get_int64(e) : 0;
            }
            if (!ok) {
                fprintf(stderr,
                        "spin tokenize: stdin line %ld: expected a JSON array of token ids (integers >= 0)\n",
                        lineno);
                free(ids);
                json_object_put(v);
                rc = 1;
                break;
            }
            char *text;
            size_t tl;
            spin_tokenizer_decode(tok, ids, k, skip_special, &text, &tl);
            json_object *s = json_object_new_string_len(text, (int)tl);
            puts(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(s);
            free(text);
            free(ids);
        }
        json_object_put(v);
    }
    json_tokener_free(jt);
    free(line);
    spin_tokenizer_free(tok);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "spin tokenize: writing stdout failed\n");
        rc = 1;
    }
    return rc;
}
