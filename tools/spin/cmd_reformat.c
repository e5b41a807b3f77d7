/* spin reformat: an SFT dataset -> uclaml/SPIN's rows (spin/reformat.py), split into
 * train_prefs / test_prefs JSONL files. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/spin/commands.h"
#include "tools/spin/jsonl_io.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin reformat --input FILE [--output-dir DIR] [--test-fraction F] [--seed S]\n"
        "                     [--test-input FILE] [--max-records N] [--overwrite]\n"
        "\n"
        "Turns SFT records into uclaml/SPIN's rows (spin/reformat.py), one JSON object per line:\n"
        "  {\"real\": [user, assistant], \"generated\": [user, {\"role\": \"assistant\", \"content\": "
        "\"\"}]}\n"
        "and writes DIR/train_prefs-00000-of-00001.jsonl and DIR/test_prefs-00000-of-00001.jsonl.\n"
        "\n"
        "input: a JSON array of records or JSON lines (one record per line), each one of\n"
        "  {\"messages\": [{\"role\", \"content\"}, ...]}         ultrachat_200k, tulu-v2-sft-mixture\n"
        "  {\"conversations\": [{\"from\", \"value\"}, ...]}      ShareGPT (human/user, gpt/assistant)\n"
        "  {\"instruction\", \"input\", \"output\"}              Alpaca; the user turn is the instruction,\n"
        "                                                    then a blank line and the input when it is\n"
        "                                                    not empty\n"
        "Only the first user turn and its answer are kept (later turns are dropped, as reformat.py\n"
        "does); leading system messages are skipped. A record without those two turns or with an\n"
        "empty one is an error naming the file, line (JSON lines) or record (JSON array) and key.\n"
        "\n"
        "options:\n"
        "  --input FILE         SFT records (required)\n"
        "  --output-dir DIR     where the two files go (default reformatted)\n"
        "  --test-fraction F    share of records in the test split, 0 <= F < 1; ceil(F * N) records\n"
        "                       (datasets' train_test_split rounding) (default 0.1)\n"
        "  --seed S             seed of the split's permutation (default 42); both files keep the\n"
        "                       input order\n"
        "  --test-input FILE    the test split's records (ultrachat_200k's test_sft); --input is then\n"
        "                       the train split and nothing is split off it (default: none)\n"
        "  --max-records N      use only the first N records of each input (default: all)\n"
        "  --overwrite          replace existing output files (default: an existing file is an error)\n"
        "  --help, -h           this help\n"
        "Option names may also be spelt with underscores (--output_dir).\n");
}

typedef struct {
    char *user, *assistant;
} pair;

/* Where a record is, for messages: "FILE:LINE" or "FILE: record N". */
typedef struct {
    const char *file;
    long line;   /* JSON lines: 1-based line */
    long record; /* JSON array: 0-based index; -1 for JSON lines */
} where;

static void complain(const where *w, const char *fmt, const char *key, const char *extra) {
    if (w->record >= 0)
        fprintf(stderr, "spin reformat: %s: record %ld: ", w->file, w->record);
    else
        fprintf(stderr, "spin reformat: %s:%ld: ", w->file, w->line);
    fprintf(stderr, fmt, key, extra);
    fputc('\n', stderr);
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n\f\v", *s))
            return false;
    return true;
}

static bool blank_n(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\f\v", s[i]))
            return false;
    return true;
}

static const char *str_field(const where *w, json_object *o, const char *key, bool required) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        if (required)
            complain(w, "missing key \"%s\"%s", key, "");
        return required ? NULL : "";
    }
    if (!json_object_is_type(v, json_type_string)) {
        complain(w, "\"%s\" must be a string%s", key, "");
        return NULL;
    }
    return json_object_get_string(v);
}

/* Role of a ShareGPT "from" value, or NULL. */
static const char *sharegpt_role(const char *from) {
    static const char *const user[] = {"human", "user"};
    static const char *const asst[] = {"gpt", "assistant", "chatgpt", "bing", "bard", "model"};
    for (size_t i = 0; i < sizeof user / sizeof *user; i++)
        if (!strcmp(from, user[i]))
            return "user";
    for (size_t i = 0; i < sizeof asst / sizeof *asst; i++)
        if (!strcmp(from, asst[i]))
            return "assistant";
    return !strcmp(from, "system") ? "system" : NULL;
}

/* The first user turn and its answer from a message list (messages or conversations). */
static int from_turns(const where *w, json_object *list, const char *key, bool sharegpt, pair *out) {
    const char *rk = sharegpt ? "from" : "role", *ck = sharegpt ? "value" : "content";
    if (!json_object_is_type(list, json_type_array)) {
        complain(w, "\"%s\" must be a list%s", key, "");
        return 1;
    }
    size_t n = json_object_array_length(list), i = 0;
    const char *got[2] = {NULL, NULL};
    static const char *const want[2] = {"user", "assistant"};
    for (int k = 0; k < 2; k++) {
        for (;; i++) {
            char kk[64];
            snprintf(kk, sizeof kk, "%s[%zu]", key, i);
            if (i >= n) {
                complain(w, "%s: no %s turn", kk, k == 0 ? "user" : "assistant (answer)");
                return 1;
            }
            json_object *m = json_object_array_get_idx(list, i), *r, *c;
            if (!json_object_is_type(m, json_type_object) || !json_object_object_get_ex(m, rk, &r) ||
                !json_object_object_get_ex(m, ck, &c) || !json_object_is_type(r, json_type_string) ||
                !json_object_is_type(c, json_type_string)) {
                complain(w, "%s must be an object with string %s", kk,
                         sharegpt ? "\"from\" and \"value\"" : "\"role\" and \"content\"");
                return 1;
            }
            const char *role =
                sharegpt ? sharegpt_role(json_object_get_string(r)) : json_object_get_string(r);
            if (k == 0 && role && !strcmp(role, "system"))
                continue; /* leading system messages */
            if (!role || strcmp(role, want[k]) != 0) {
                char e[160];
                snprintf(e, sizeof e, "%.100s, expected %s", json_object_get_string(r),
                         sharegpt ? (k ? "gpt" : "human") : want[k]);
                complain(w, "%s: role %s", kk, e);
                return 1;
            }
            if (blank(json_object_get_string(c))) {
                complain(w, "%s: empty %s", kk, k ? "response" : "prompt");
                return 1;
            }
            got[k] = json_object_get_string(c);
            i++;
            break;
        }
    }
    out->user = strdup(got[0]);
    out->assistant = strdup(got[1]);
    return 0;
}

static int from_record(const where *w, json_object *o, pair *out) {
    json_object *list;
    if (!json_object_is_type(o, json_type_object)) {
        complain(w, "a record must be a JSON object%s%s", "", "");
        return 1;
    }
    if (json_object_object_get_ex(o, "messages", &list))
        return from_turns(w, list, "messages", false, out);
    if (json_object_object_get_ex(o, "conversations", &list))
        return from_turns(w, list, "conversations", true, out);
    if (json_object_object_get_ex(o, "instruction", &list)) {
        const char *ins = str_field(w, o, "instruction", true),
                   *in = ins ? str_field(w, o, "input", false) : NULL,
                   *outp = in ? str_field(w, o, "output", true) : NULL;
        if (!outp)
            return 1;
        if (blank(ins)) {
            complain(w, "\"%s\" is empty%s", "instruction", "");
            return 1;
        }
        if (blank(outp)) {
            complain(w, "\"%s\" is empty (no response)%s", "output", "");
            return 1;
        }
        size_t n = strlen(ins) + strlen(in) + 3;
        out->user = malloc(n);
        if (out->user)
            snprintf(out->user, n, blank(in) ? "%s" : "%s\n\n%s", ins, in);
        out->assistant = strdup(outp);
        return 0;
    }
    complain(w,
             "no \"%s\" key: expected \"messages\", \"conversations\" (ShareGPT) or \"instruction\"/"
             "\"output\" (Alpaca)%s",
             "messages", "");
    return 1;
}

typedef struct {
    pair *p;
    long n, cap;
} pairs;

static int push(pairs *ps, const where *w, json_object *o) {
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 1024;
        pair *np = realloc(ps->p, (size_t)ps->cap * sizeof *np);
        if (!np) {
            fprintf(stderr, "spin reformat: out of memory\n");
            return 1;
        }
        ps->p = np;
    }
    pair *p = &ps->p[ps->n];
    memset(p, 0, sizeof *p);
    if (from_record(w, o, p))
        return 1;
    ps->n++;
    if (!p->user || !p->assistant) {
        fprintf(stderr, "spin reformat: out of memory\n");
        return 1;
    }
    return 0;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb)
                free(b);
            b = nb;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad || !b) {
        free(b);
        errno = bad ? EIO : ENOMEM;
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

static int read_input(const char *path, long max_records, pairs *ps) {
    long start = ps->n;
    size_t len = 0;
    char *buf = slurp(path, &len);
    if (!buf) {
        fprintf(stderr, "spin reformat: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t s = 0;
    while (s < len && strchr(" \t\r\n", buf[s]))
        s++;
    int rc = 0;
    if (s < len && buf[s] == '[') { /* one JSON array */
        json_tokener *jt = json_tokener_new();
        json_tokener_set_flags(jt, JSON_TOKENER_VALIDATE_UTF8);
        json_object *v = json_tokener_parse_ex(jt, buf, (int)len);
        enum json_tokener_error e = json_tokener_get_error(jt);
        json_tokener_free(jt);
        if (!v || e != json_tokener_success) {
            fprintf(stderr, "spin reformat: %s: not a valid JSON array (%s)\n", path,
                    json_tokener_error_desc(e == json_tokener_success ? json_tokener_error_parse_eof : e));
            rc = 1;
        }
        size_t n = rc ? 0 : json_object_array_length(v);
        for (size_t i = 0; rc == 0 && i < n && ps->n - start != max_records; i++) {
            where w = {path, 0, (long)i};
            rc = push(ps, &w, json_object_array_get_idx(v, i));
        }
        json_object_put(v);
    } else { /* JSON lines */
        long line = 0;
        for (char *p = buf; rc == 0 && p < buf + len && ps->n - start != max_records;) {
            char *nl = memchr(p, '\n', (size_t)(buf + len - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(buf + len - p);
            line++;
            if (!blank_n(p, n)) {
                json_object *o = jl_parse_object("reformat", path, line, p, n);
                where w = {path, line, -1};
                rc = o ? push(ps, &w, o) : 1;
                json_object_put(o);
            }
            p += n + 1;
        }
    }
    free(buf);
    if (rc == 0 && ps->n == start) {
        fprintf(stderr, "spin reformat: %s: no records\n", path);
        rc = 1;
    }
    return rc;
}

static int write_split(const char *dir, const char *name, const pairs *ps, const bool *is_test, bool test,
                       bool overwrite, long *count) {
    char *path = jl_join(dir, name), *tmp = NULL;
    FILE *f = path ? jl_begin("reformat", path, overwrite, &tmp) : NULL;
    int rc = f ? 0 : 1;
    *count = 0;
    for (long i = 0; rc == 0 && i < ps->n; i++) {
        if (is_test[i] != test)
            continue;
        char *line = jl_pair_line(ps->p[i].user, ps->p[i].assistant, "");
        if (!line || fprintf(f, "%s\n", line) < 0) {
            fprintf(stderr, "spin reformat: writing %s failed\n", tmp);
            rc = 1;
        }
        free(line);
        (*count)++;
    }
    if (f && rc) {
        fclose(f);
        unlink(tmp);
        free(tmp);
    } else if (f) {
        rc = jl_commit("reformat", f, tmp, path, overwrite);
    }
    free(path);
    return rc;
}

static const char train_name[] = "train_prefs-00000-of-00001.jsonl",
                  test_name[] = "test_prefs-00000-of-00001.jsonl";

int cmd_reformat(int argc, char **argv) {
    const char *input = NULL, *test_input = NULL, *out_dir = "reformatted";
    double test_fraction = 0.1;
    long long seed = 42, max_records = -1;
    bool overwrite = false;
    jl_dash_options(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--overwrite")) {
            overwrite = true;
        } else if (i + 1 < argc && !strcmp(a, "--input")) {
            input = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--test-input")) {
            test_input = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--output-dir")) {
            out_dir = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--test-fraction")) {
            test_fraction = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(test_fraction >= 0 && test_fraction < 1)) {
                fprintf(stderr, "spin reformat: --test-fraction expects a number in [0, 1) (got '%s')\n",
                        argv[i]);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(a, "--max-records")) {
            errno = 0;
            max_records = strtoll(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || max_records < 1) {
                fprintf(stderr, "spin reformat: --max-records expects an integer >= 1 (got '%s')\n", argv[i]);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(a, "--seed")) {
            errno = 0;
            seed = strtoll(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || seed < 0) {
                fprintf(stderr, "spin reformat: --seed expects an integer >= 0 (got '%s')\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "spin reformat: unknown or incomplete option '%s'\n", a);
            help(stderr);
            return 2;
        }
    }
    if (!input) {
        fprintf(stderr, "spin reformat: --input FILE is required\n");
        help(stderr);
        return 2;
    }
    pairs ps = {0};
    int rc = read_input(input, (long)max_records, &ps);
    long n_main = ps.n;
    if (rc == 0 && test_input)
        rc = read_input(test_input, (long)max_records, &ps);
    int64_t *perm = NULL;
    bool *is_test = NULL;
    if (rc == 0) {
        perm = malloc((size_t)ps.n * sizeof *perm);
        is_test = calloc((size_t)ps.n, sizeof *is_test);
        if (!perm || !is_test) {
            fprintf(stderr, "spin reformat: out of memory\n");
            rc = 1;
        }
    }
    long n_train = 0, n_test = 0;
    if (rc == 0) {
        long k = test_input ? 0 : (long)ceil(test_fraction * (double)n_main - 1e-9);
        jl_permutation((uint64_t)seed, n_main, perm);
        for (long i = 0; i < k; i++)
            is_test[perm[i]] = true;
        for (long i = n_main; i < ps.n; i++)
            is_test[i] = true; /* --test-input */
        rc = jl_mkdir("reformat", out_dir);
    }
    if (rc == 0 && !overwrite) { /* refuse before writing either file */
        char *a = jl_join(out_dir, train_name), *b = jl_join(out_dir, test_name);
        for (int j = 0; j < 2 && rc == 0; j++)
            if (access(j ? b : a, F_OK) == 0) {
                fprintf(stderr, "spin reformat: %s exists (--overwrite replaces it)\n", j ? b : a);
                rc = 1;
            }
        free(a);
        free(b);
    }
    if (rc == 0)
        rc = write_split(out_dir, train_name, &ps, is_test, false, overwrite, &n_train);
    if (rc == 0)
        rc = write_split(out_dir, test_name, &ps, is_test, true, overwrite, &n_test);
    if (rc == 0)
        printf("spin reformat: %ld records from %s%s%s -> %s/%s (%ld), %s/%s (%ld)\n", ps.n, input,
               test_input ? " and " : "", test_input ? test_input : "", out_dir, train_name, n_train, out_dir,
               test_name, n_test);
    for (long i = 0; i < ps.n; i++) {
        free(ps.p[i].user);
        free(ps.p[i].assistant);
    }
    free(ps.p);
    free(perm);
    free(is_test);
    return rc;
}
