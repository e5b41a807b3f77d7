/* uclaml/SPIN's JSON-lines rows (tools/spin/jsonl_io.h). */
#define _POSIX_C_SOURCE 200809L
#include "tools/spin/jsonl_io.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"

json_object *jl_parse_object(const char *cmd, const char *file, int64_t line, const char *text, size_t len) {
    json_tokener *jt = json_tokener_new();
    if (!jt) {
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return NULL;
    }
    json_tokener_set_flags(jt, JSON_TOKENER_VALIDATE_UTF8);
    json_object *v = json_tokener_parse_ex(jt, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(jt);
    size_t end = json_tokener_get_parse_end(jt);
    json_tokener_free(jt);
    /* trailing white space after the object is fine (a "\r" of CRLF files) */
    while (v && end < len && (text[end] == ' ' || text[end] == '\t' || text[end] == '\r'))
        end++;
    if (!v || e != json_tokener_success || end != len) {
        fprintf(stderr, "spin %s: %s:%lld: not one JSON object (%s)\n", cmd, file, (long long)line,
                v && e == json_tokener_success
                    ? "text after the object"
                    : json_tokener_error_desc(e == json_tokener_success ? json_tokener_error_parse_eof : e));
        json_object_put(v);
        return NULL;
    }
    if (!json_object_is_type(v, json_type_object)) {
        fprintf(stderr, "spin %s: %s:%lld: a row must be a JSON object\n", cmd, file, (long long)line);
        json_object_put(v);
        return NULL;
    }
    return v;
}

const char *jl_message(const char *cmd, const char *file, int64_t line, json_object *row, const char *key,
                       int i, const char *role) {
    json_object *list, *m, *r, *c;
    if (!json_object_object_get_ex(row, key, &list)) {
        fprintf(stderr, "spin %s: %s:%lld: missing key \"%s\"\n", cmd, file, (long long)line, key);
        return NULL;
    }
    if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) < (size_t)i + 1) {
        fprintf(stderr, "spin %s: %s:%lld: \"%s\" must be a list of at least 2 messages\n", cmd, file,
                (long long)line, key);
        return NULL;
    }
    m = json_object_array_get_idx(list, (size_t)i);
    if (!json_object_is_type(m, json_type_object) || !json_object_object_get_ex(m, "role", &r) ||
        !json_object_object_get_ex(m, "content", &c) || !json_object_is_type(r, json_type_string) ||
        !json_object_is_type(c, json_type_string)) {
        fprintf(stderr, "spin %s: %s:%lld: %s[%d] must be an object with string \"role\" and \"content\"\n",
                cmd, file, (long long)line, key, i);
        return NULL;
    }
    if (strcmp(json_object_get_string(r), role) != 0) {
        fprintf(stderr, "spin %s: %s:%lld: %s[%d].role is \"%s\", expected \"%s\"\n", cmd, file,
                (long long)line, key, i, json_object_get_string(r), role);
        return NULL;
    }
    return json_object_get_string(c);
}

static const char *lstrip(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
        s++;
    return s;
}

static int push_file(jl_rows *out, const char *file) {
    char **f = realloc(out->files, (size_t)(out->n_files + 1) * sizeof *f);
    if (!f)
        return 1;
    out->files = f;
    if (!(f[out->n_files] = strdup(file)))
        return 1;
    out->n_files++;
    return 0;
}

int jl_read_file(const char *cmd, const char *file, bool want_generated, bool need_generated, jl_rows *out) {
    FILE *in = fopen(file, "r");
    if (!in) {
        fprintf(stderr, "spin %s: cannot read %s: %s\n", cmd, file, strerror(errno));
        return 1;
    }
    if (push_file(out, file)) {
        fclose(in);
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return 1;
    }
    const char *fname = out->files[out->n_files - 1];
    char *buf = NULL;
    size_t cap = 0, rcap = (size_t)out->n;
    ssize_t got;
    int64_t line = 0;
    int rc = 0;
    while (rc == 0 && (got = getline(&buf, &cap, in)) >= 0) {
        line++;
        size_t len = (size_t)got;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        size_t b = 0;
        while (b < len && (buf[b] == ' ' || buf[b] == '\t'))
            b++;
        if (b == len)
            continue;
        json_object *o = jl_parse_object(cmd, fname, line, buf, len);
        if (!o) {
            rc = 1;
            break;
        }
        const char *u = jl_message(cmd, fname, line, o, "real", 0, "user");
        const char *r = u ? jl_message(cmd, fname, line, o, "real", 1, "assistant") : NULL;
        const char *g = NULL;
        if (r && want_generated) {
            g = jl_message(cmd, fname, line, o, "generated", 1, "assistant");
            if (g && need_generated && !*lstrip(g)) {
                fprintf(stderr, "spin %s: %s:%lld: generated[1].content is empty (was generation run?)\n",
                        cmd, fname, (long long)line);
                g = NULL;
            }
        }
        if (!r || (want_generated && !g)) {
            json_object_put(o);
            rc = 1;
            break;
        }
        if (!*lstrip(r)) {
            fprintf(stderr, "spin %s: %s:%lld: real[1].content (the response) is empty\n", cmd, fname,
                    (long long)line);
            json_object_put(o);
            rc = 1;
            break;
        }
        if ((size_t)out->n == rcap) {
            rcap = rcap ? 2 * rcap : 256;
            jl_row *nr = realloc(out->row, rcap * sizeof *nr);
            if (!nr) {
                json_object_put(o);
                fprintf(stderr, "spin %s: out of memory\n", cmd);
                rc = 1;
                break;
            }
            out->row = nr;
        }
        jl_row *row = &out->row[out->n];
        row->user = strdup(u);
        row->real = strdup(r);
        row->generated = g ? strdup(lstrip(g)) : NULL;
        row->file = fname;
        row->line = line;
        json_object_put(o);
        out->n++;
        if (!row->user || !row->real || (g && !row->generated)) {
            fprintf(stderr, "spin %s: out of memory\n", cmd);
            rc = 1;
        }
    }
    if (rc == 0 && ferror(in)) {
        fprintf(stderr, "spin %s: reading %s failed: %s\n", cmd, file, strerror(errno));
        rc = 1;
    }
    free(buf);
    fclose(in);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int jl_split_files(const char *cmd, const char *path, const char *split, char ***names, int *n_names) {
    *names = NULL;
    *n_names = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "spin %s: %s: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        *names = malloc(sizeof **names);
        if (!*names || !(**names = strdup(path))) {
            free(*names);
            *names = NULL;
            fprintf(stderr, "spin %s: out of memory\n", cmd);
            return 1;
        }
        *n_names = 1;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "spin %s: cannot read the directory %s: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    char **names_ = NULL;
    int n = 0, rc = 0;
    size_t sl = strlen(split);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        const char *nm = e->d_name;
        size_t k = strlen(nm);
        if (strncmp(nm, split, sl) != 0 || !(nm[sl] == '.' || nm[sl] == '_' || nm[sl] == '-') || k < 6 ||
            strcmp(nm + k - 6, ".jsonl") != 0)
            continue;
        if (k > 22 && !strcmp(nm + k - 22, ".opponent_scores.jsonl"))
            continue; /* `spin train` keeps a file's opponent scores beside it */
        char **nn = realloc(names_, (size_t)(n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = jl_join(path, nm))) {
            names_ = nn ? nn : names_;
            fprintf(stderr, "spin %s: out of memory\n", cmd);
            rc = 1;
            break;
        }
        names_ = nn;
        n++;
    }
    closedir(d);
    if (rc == 0 && n == 0) {
        fprintf(stderr, "spin %s: %s has no %s split: no %s.jsonl, %s_*.jsonl or %s-*.jsonl in it\n", cmd,
                path, split, split, split, split);
        rc = 1;
    }
    if (n > 1)
        qsort(names_, (size_t)n, sizeof *names_, cmp_str);
    if (rc) {
        jl_free_names(names_, n);
        return rc;
    }
    *names = names_;
    *n_names = n;
    return 0;
}

void jl_free_names(char **names, int n) {
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int jl_read_split(const char *cmd, const char *path, const char *split, bool want_generated,
                  bool need_generated, jl_rows *out) {
    char **names;
    int n;
    int rc = jl_split_files(cmd, path, split, &names, &n);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = jl_read_file(cmd, names[i], want_generated, need_generated, out);
    jl_free_names(names, n);
    return rc;
}

void jl_rows_free(jl_rows *r) {
    for (int64_t i = 0; i < r->n; i++) {
        free(r->row[i].user);
        free(r->row[i].real);
        free(r->row[i].generated);
    }
    for (int i = 0; i < r->n_files; i++)
        free(r->files[i]);
    free(r->row);
    free(r->files);
    memset(r, 0, sizeof *r);
}

static json_object *message(const char *role, const char *content) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string(content));
    return m;
}

char *jl_pair_line(const char *user, const char *real, const char *generated) {
    json_object *o = json_object_new_object(), *r = json_object_new_array(), *g = json_object_new_array();
    json_object_array_add(r, message("user", user));
    json_object_array_add(r, message("assistant", real));
    json_object_array_add(g, message("user", user));
    json_object_array_add(g, message("assistant", generated));
    json_object_object_add(o, "real", r);
    json_object_object_add(o, "generated", g);
    char *s =
        strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return s;
}

void jl_permutation(uint64_t seed, int64_t n, int64_t *perm) {
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    spin_rng g = {.seed = seed, .counter = 0};
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t x = ((uint64_t)spin_rng_next_u32(&g) << 32) | spin_rng_next_u32(&g);
        int64_t j = (int64_t)(x % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

char *jl_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

FILE *jl_begin(const char *cmd, const char *path, bool overwrite, char **tmp) {
    *tmp = NULL;
    if (!overwrite && access(path, F_OK) == 0) {
        fprintf(stderr, "spin %s: %s exists (--overwrite replaces it)\n", cmd, path);
        return NULL;
    }
    size_t n = strlen(path) + 5;
    *tmp = malloc(n);
    if (!*tmp) {
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return NULL;
    }
    snprintf(*tmp, n, "%s.tmp", path);
    FILE *f = fopen(*tmp, "w");
    if (!f) {
        fprintf(stderr, "spin %s: cannot write %s: %s\n", cmd, *tmp, strerror(errno));
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

int jl_commit(const char *cmd, FILE *f, char *tmp, const char *path, bool overwrite) {
    bool bad = fflush(f) != 0 || ferror(f);
    bad = fsync(fileno(f)) != 0 || bad;
    bad = fclose(f) != 0 || bad;
    int rc = 0;
    if (bad) {
        fprintf(stderr, "spin %s: writing %s failed: %s\n", cmd, tmp, strerror(errno));
        rc = 1;
    } else if (overwrite ? rename(tmp, path) != 0 : link(tmp, path) != 0) {
        fprintf(stderr, "spin %s: cannot create %s: %s\n", cmd, path, strerror(errno));
        rc = 1;
    }
    if (rc || !overwrite)
        unlink(tmp);
    free(tmp);
    return rc;
}

int jl_mkdir(const char *cmd, const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (mkdir(dir, 0777) != 0) {
        fprintf(stderr, "spin %s: cannot create the directory %s: %s\n", cmd, dir, strerror(errno));
        return 1;
    }
    return 0;
}

void jl_dash_options(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || !strcmp(argv[i - 1], "--stop"))
            continue;
        for (char *c = argv[i] + 2; *c && *c != '='; c++)
            if (*c == '_')
                *c = '-';
    }
}
