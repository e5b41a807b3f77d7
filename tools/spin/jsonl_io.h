/* Shared by `spin reformat`, `generate`, `convert` and `eval`: uclaml/SPIN's JSON-lines rows
 *   {"real": [user, assistant], "generated": [user, assistant]}
 * read with file:line errors, split files of a dataset directory, the shuffle permutation, and
 * outputs written atomically (PATH.tmp, fsync, then link or rename). */
#ifndef SPIN_TOOLS_JSONL_IO_H
#define SPIN_TOOLS_JSONL_IO_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* One SPIN row: the first user message of `real`, its answer and the generated answer (NULL when
 * the row has no "generated" or it was not asked for), with where it came from. */
typedef struct {
    char *user, *real, *generated;
    const char *file; /* borrowed from jl_rows.files */
    int64_t line;     /* 1-based */
} jl_row;

typedef struct {
    jl_row *row;
    int64_t n;
    char **files;
    int n_files;
} jl_rows;

/* Parses one line as a JSON object (UTF-8 checked). NULL after printing
 * "spin CMD: FILE:LINE: ..." when it is not one complete object. */
json_object *jl_parse_object(const char *cmd, const char *file, int64_t line, const char *text, size_t len);

/* The content of messages[i] of the list at key, which must have role `role` and string content;
 * NULL after printing "spin CMD: FILE:LINE: KEY[i]...: ..." otherwise. */
const char *jl_message(const char *cmd, const char *file, int64_t line, json_object *row, const char *key,
                       int i, const char *role);

/* Reads every non-blank line of file (appending to out; blank lines count for line numbers):
 * real[0] (user) and real[1] (assistant), and when want_generated generated[1] (assistant),
 * which must not be empty (after leading white space is dropped) when need_generated. The row's
 * strings are copies; generated has its leading white space removed (uclaml/SPIN's lstrip).
 * Returns 0, or 1 after printing an error naming FILE:LINE and the key. */
int jl_read_file(const char *cmd, const char *file, bool want_generated, bool need_generated, jl_rows *out);

/* The files of split `split` of path: the file itself, or the directory's <split>.jsonl,
 * <split>_*.jsonl and <split>-*.jsonl in sorted order (`spin train` reads the same); malloc'd
 * paths, free with jl_free_names. Returns 0, or 1 after printing (none found, unreadable). */
int jl_split_files(const char *cmd, const char *path, const char *split, char ***names, int *n);
void jl_free_names(char **names, int n);
/* Reads the files of jl_split_files as jl_read_file does. */
int jl_read_split(const char *cmd, const char *path, const char *split, bool want_generated,
                  bool need_generated, jl_rows *out);
void jl_rows_free(jl_rows *r);

/* The JSON line (no newline; malloc'd) of a SPIN row in uclaml/SPIN's schema. */
char *jl_pair_line(const char *user, const char *real, const char *generated);

/* A permutation of 0..n-1 from seed: Fisher-Yates on spin's Philox generator (the permutation
 * `spin train` shuffles with, not numpy's). perm must hold n entries. */
void jl_permutation(uint64_t seed, int64_t n, int64_t *perm);

/* dir + "/" + name, malloc'd. */
char *jl_join(const char *dir, const char *name);

/* Opens PATH.tmp for writing. Refuses (prints, returns NULL) when path exists and !overwrite. */
FILE *jl_begin(const char *cmd, const char *path, bool overwrite, char **tmp);
/* Flushes, fsyncs and closes f, then moves tmp to path (rename with overwrite, otherwise link and
 * unlink, which fails if path appeared meanwhile). Returns 0, or 1 after printing (tmp removed). */
int jl_commit(const char *cmd, FILE *f, char *tmp, const char *path, bool overwrite);

/* uclaml/SPIN's scripts spell options with underscores (--frac_len, --output_dir): rewrites the
 * option names of argv (words starting with "--", except the value after --stop) with dashes. */
void jl_dash_options(int argc, char **argv);

/* Makes the directory (one level) when it does not exist. Returns 0 or 1 after printing. */
int jl_mkdir(const char *cmd, const char *dir);

#endif
