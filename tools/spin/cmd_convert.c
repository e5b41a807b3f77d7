/* spin convert: step 1.5 of uclaml/SPIN (spin/convert_data.py). Gathers the generated shards
 * loser_0..N-1.jsonl (train) and loser_0_test.jsonl (test) into train_prefs / test_prefs JSONL
 * files, checking what the Python original does not: every shard present and complete (its
 * options sidecar holds the row count), no empty answer, no row twice. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/spin/commands.h"
#include "tools/spin/jsonl_io.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: spin convert [--input-dir DIR] [--output-dir DIR] [--num-fracs N] [--all-test-shards]\n"
            "                    [--allow-duplicates] [--overwrite]\n"
            "\n"
            "Gathers `spin generate`'s shards as uclaml/SPIN's convert_data.py does: the train split is\n"
            "loser_0.jsonl ... loser_<N-1>.jsonl in shard order, the test split loser_0_test.jsonl only;\n"
            "leading white space of each generated answer is removed. Writes\n"
            "  OUT/train_prefs-00000-of-00001.jsonl and OUT/test_prefs-00000-of-00001.jsonl\n"
            "(uclaml/SPIN's parquet file names with .jsonl; `spin train` reads that directory), each\n"
            "written to PATH.tmp, fsync'ed and renamed.\n"
            "\n"
            "Refused, naming the shard, line or row: a missing shard, a shard with fewer rows than its\n"
            "loser_<k>.options.json says (generation did not finish: rerun `spin generate`), bad JSON, a\n"
            "missing key, an empty answer, and the same (prompt, real answer) twice in a split.\n"
            "\n"
            "options:\n"
            "  --input-dir DIR      the shards (default generated)\n"
            "  --output-dir DIR     where the two files go (default synthetic)\n"
            "  --num-fracs N        shards 0..N-1 must all be there (default 0: every loser_<k>.jsonl\n"
            "                       found, which must be numbered 0..N-1 without a gap)\n"
            "  --all-test-shards    test split from every loser_<k>_test.jsonl found (default: off,\n"
            "                       only loser_0_test.jsonl, as convert_data.py)\n"
            "  --allow-duplicates   keep repeated rows, with a warning (default: an error)\n"
            "  --overwrite          replace existing output files (default: an existing file is an error)\n"
            "  --help, -h           this help\n");
}

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull; /* a separator, so ("ab","c") != ("a","bc") */
}

/* Reports rows whose (user, real) appeared earlier in the split; returns how many. */
static int64_t duplicates(const jl_rows *r, const char *split, bool allowed) {
    size_t cap = 16;
    while (cap < 2 * (size_t)r->n)
        cap *= 2;
    int64_t *slot = malloc(cap * sizeof *slot), dups = 0;
    if (!slot)
        return -1;
    for (size_t i = 0; i < cap; i++)
        slot[i] = -1;
    for (int64_t i = 0; i < r->n; i++) {
        const jl_row *a = &r->row[i];
        size_t h = (size_t)fnv(fnv(0xcbf29ce484222325ull, a->user), a->real) & (cap - 1);
        for (;; h = (h + 1) & (cap - 1)) {
            if (slot[h] < 0) {
                slot[h] = i;
                break;
            }
            const jl_row *b = &r->row[slot[h]];
            if (!strcmp(a->user, b->user) && !strcmp(a->real, b->real)) {
                if (dups < 10)
                    fprintf(stderr, "spin convert: %s: %s:%lld repeats the row of %s:%lld\n",
                            allowed ? "warning" : "error", a->file, (long long)a->line, b->file,
                            (long long)b->line);
                dups++;
                break;
            }
        }
    }
    if (dups)
        fprintf(stderr, "spin convert: %lld duplicate rows in the %s split%s\n", (long long)dups, split,
                allowed ? " (kept: --allow-duplicates)" : " (--allow-duplicates keeps them)");
    free(slot);
    return dups;
}

/* The row count the shard's options sidecar promises, -1 when there is none. */
static int64_t promised_rows(const char *dir, const char *shard) {
    char side[300];
    size_t n = strlen(shard);
    snprintf(side, sizeof side, "%.*s.options.json", (int)(n - 6), shard);
    char *p = jl_join(dir, side);
    json_object *j = p ? json_object_from_file(p) : NULL, *v;
    free(p);
    int64_t rows = j && json_object_object_get_ex(j, "rows", &v) ? json_object_get_int64(v) : -1;
    json_object_put(j);
    return rows;
}

/* Reads one shard and checks it is complete. */
static int read_shard(const char *dir, const char *shard, jl_rows *out) {
    char *p = jl_join(dir, shard);
    int64_t before = out->n;
    int rc = p ? 0 : 1;
    if (rc == 0 && access(p, F_OK) != 0) {
        fprintf(stderr, "spin convert: missing shard %s\n", p);
        rc = 1;
    }
    if (rc == 0)
        rc = jl_read_file("convert", p, true, true, out);
    int64_t want = rc ? -1 : promised_rows(dir, shard);
    if (rc == 0 && want >= 0 && out->n - before != want) {
        fprintf(
            stderr,
            "spin convert: %s has %lld rows, its options file says %lld: generation did not finish (rerun "
            "the same `spin generate` command to resume)\n",
            p, (long long)(out->n - before), (long long)want);
        rc = 1;
    }
    free(p);
    return rc;
}

/* The highest k with DIR/loser_<k><suffix>.jsonl, and whether numbers 0..k are all there. */
static int64_t scan_shards(const char *dir, const char *suffix, int64_t *count) {
    DIR *d = opendir(dir);
    int64_t hi = -1;
    *count = 0;
    if (!d)
        return -2;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strncmp(nm, "loser_", 6) != 0)
            continue;
        char *end;
        errno = 0;
        long long k = strtoll(nm + 6, &end, 10);
        if (errno || end == nm + 6 || k < 0 || strncmp(end, suffix, sl) != 0 ||
            strcmp(end + sl, ".jsonl") != 0)
            continue;
        (*count)++;
        if (k > hi)
            hi = k;
    }
    closedir(d);
    return hi;
}

static int write_out(const char *dir, const char *name, const jl_rows *r, bool overwrite) {
    char *path = jl_join(dir, name), *tmp = NULL;
    FILE *f = path ? jl_begin("convert", path, overwrite, &tmp) : NULL;
    int rc = f ? 0 : 1;
    for (int64_t i = 0; rc == 0 && i < r->n; i++) {
        char *line = jl_pair_line(r->row[i].user, r->row[i].real, r->row[i].generated);
        if (!line || fprintf(f, "%s\n", line) < 0) {
            fprintf(stderr, "spin convert: writing %s failed\n", tmp);
            rc = 1;
        }
        free(line);
    }
    if (f && rc) {
        fclose(f);
        unlink(tmp);
        free(tmp);
    } else if (f) {
        rc = jl_commit("convert", f, tmp, path, overwrite);
    }
    free(path);
    return rc;
}

static const char train_name[] = "train_prefs-00000-of-00001.jsonl",
                  test_name[] = "test_prefs-00000-of-00001.jsonl";

int cmd_convert(int argc, char **argv) {
    const char *in_dir = "generated", *out_dir = "synthetic";
    long long num_fracs = 0;
    bool all_test = false, allow_dups = false, overwrite = false;
    jl_dash_options(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--all-test-shards")) {
            all_test = true;
        } else if (!strcmp(a, "--allow-duplicates")) {
            allow_dups = true;
        } else if (!strcmp(a, "--overwrite")) {
            overwrite = true;
        } else if (i + 1 < argc && !strcmp(a, "--input-dir")) {
            in_dir = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--output-dir")) {
            out_dir = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--num-fracs")) {
            char *end;
            errno = 0;
            num_fracs = strtoll(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || num_fracs < 1) {
                fprintf(stderr, "spin convert: --num-fracs expects an integer >= 1 (got '%s')\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "spin convert: unknown or incomplete option '%s'\n", a);
            help(stderr);
            return 2;
        }
    }
    int64_t found = 0, hi = scan_shards(in_dir, "", &found), test_found = 0,
            test_hi = scan_shards(in_dir, "_test", &test_found);
    if (hi == -2) {
        fprintf(stderr, "spin convert: cannot read the directory %s: %s\n", in_dir, strerror(errno));
        return 1;
    }
    if (num_fracs == 0 && hi < 0) {
        fprintf(stderr, "spin convert: no loser_<k>.jsonl shards in %s\n", in_dir);
        return 1;
    }
    int64_t n_train = num_fracs ? num_fracs : hi + 1, n_test = all_test ? test_hi + 1 : 1;
    int rc = 0;
    /* every missing shard is named before anything else is read */
    for (int64_t k = 0; k < n_train; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "loser_%lld.jsonl", (long long)k);
        char *p = jl_join(in_dir, nm);
        if (p && access(p, F_OK) != 0) {
            fprintf(stderr, "spin convert: missing shard %s\n", p);
            rc = 1;
        }
        free(p);
    }
    if (num_fracs && hi >= num_fracs)
        fprintf(stderr, "spin convert: note: shards above loser_%lld.jsonl are not read (--num-fracs %lld)\n",
                num_fracs - 1, num_fracs);
    if (rc == 0 && !overwrite) {
        for (int j = 0; j < 2; j++) {
            char *p = jl_join(out_dir, j ? test_name : train_name);
            if (p && access(p, F_OK) == 0) {
                fprintf(stderr, "spin convert: %s exists (--overwrite replaces it)\n", p);
                rc = 1;
            }
            free(p);
        }
    }
    jl_rows train = {0}, test = {0};
    for (int64_t k = 0; rc == 0 && k < n_train; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "loser_%lld.jsonl", (long long)k);
        rc = read_shard(in_dir, nm, &train);
    }
    for (int64_t k = 0; rc == 0 && k < (n_test > 0 ? n_test : 1); k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "loser_%lld_test.jsonl", (long long)k);
        rc = read_shard(in_dir, nm, &test);
    }
    if (rc == 0) {
        int64_t d1 = duplicates(&train, "train", allow_dups), d2 = duplicates(&test, "test", allow_dups);
        if (d1 < 0 || d2 < 0) {
            fprintf(stderr, "spin convert: out of memory\n");
            rc = 1;
        } else if ((d1 || d2) && !allow_dups) {
            rc = 1;
        }
    }
    if (rc == 0)
        rc = jl_mkdir("convert", out_dir);
    if (rc == 0)
        rc = write_out(out_dir, train_name, &train, overwrite);
    if (rc == 0)
        rc = write_out(out_dir, test_name, &test, overwrite);
    if (rc == 0)
        printf("spin convert: %lld train rows from %lld shards -> %s/%s; %lld test rows from %lld shard%s -> "
               "%s/%s\n",
               (long long)train.n, (long long)n_train, out_dir, train_name, (long long)test.n,
               (long long)(n_test > 0 ? n_test : 1), n_test > 1 ? "s" : "", out_dir, test_name);
    (void)test_found;
    jl_rows_free(&train);
    jl_rows_free(&test);
    return rc;
}
