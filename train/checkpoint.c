/* Crash-safe checkpoint directories. See train/checkpoint.h.
 *
 * Assumes one writer per output_dir at a time within a process: leftovers carrying this process's
 * own pid are treated as stale (a restarted job in a container often gets the pid its killed
 * predecessor had). */
#define _GNU_SOURCE /* renameat2: RENAME_NOREPLACE, RENAME_EXCHANGE */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "models/safetensors.h"

#define CKPT_PATH_MAX 4096

const char *const spin_ckpt_required_files[SPIN_CKPT_N_REQUIRED] = {
    "model.safetensors", "config.json", "generation_config.json", "optimizer.safetensors",
    "trainer_state.json"};

/* ---- paths and names ---- */

static spin_status fmt_path(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static spin_status fmt_path(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, CKPT_PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= CKPT_PATH_MAX)
        return spin_fail(SPIN_ERR_INVALID, "checkpoint: path longer than %d bytes (%.200s...)", CKPT_PATH_MAX,
                         buf);
    return SPIN_OK;
}

/* Decimal digits at *p without a leading zero (so each step has one spelling), at most 18. */
static bool parse_digits(const char **p, int64_t *v) {
    const char *s = *p;
    int n = 0;
    *v = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        if (n == 18)
            return false;
        *v = *v * 10 + (s[n] - '0');
        n++;
    }
    if (n == 0 || (n > 1 && s[0] == '0'))
        return false;
    *p = s + n;
    return true;
}

/* "checkpoint-<step>" */
static bool parse_ckpt_name(const char *name, int64_t *step) {
    const char *pre = "checkpoint-";
    if (strncmp(name, pre, strlen(pre)))
        return false;
    const char *p = name + strlen(pre);
    return parse_digits(&p, step) && !*p;
}

/* ".checkpoint-<step>.tmp-<pid>" (a directory being built or being deleted) or
 * ".checkpoint-<step>.old-<pid>" (a checkpoint set aside while being replaced). */
static bool parse_hidden_name(const char *name, int64_t *step, bool *old, int64_t *pid) {
    const char *pre = ".checkpoint-";
    if (strncmp(name, pre, strlen(pre)))
        return false;
    const char *p = name + strlen(pre);
    if (!parse_digits(&p, step))
        return false;
    if (!strncmp(p, ".tmp-", 5))
        *old = false;
    else if (!strncmp(p, ".old-", 5))
        *old = true;
    else
        return false;
    p += 5;
    return parse_digits(&p, pid) && !*p;
}

static bool exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ---- file system primitives ---- */

/* Makes a rename or a new entry in dir durable. File systems that cannot fsync a directory (EINVAL)
 * order metadata themselves. */
static spin_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    if (r != 0 && e != EINVAL)
        return spin_fail(SPIN_ERR_IO, "%s: fsync failed: %s", dir, strerror(e));
    return SPIN_OK;
}

static spin_status make_dirs(const char *path) {
    char buf[CKPT_PATH_MAX];
    SPIN_TRY(fmt_path(buf, "%s", path));
    for (char *p = buf + 1;; p++) {
        bool end = !*p;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return spin_fail(SPIN_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            if (end)
                break;
            *p = '/';
        }
    }
    if (!is_dir(path))
        return spin_fail(SPIN_ERR_IO, "%s: not a directory", path);
    return SPIN_OK;
}

/* rm -rf path. Returns 0 or the errno of the first failure, with its path in failed. Symlinks are
 * removed, never followed. */
static int remove_tree(const char *path, char *failed) {
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(failed, CKPT_PATH_MAX, "%s", path);
        return errno;
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            snprintf(failed, CKPT_PATH_MAX, "%s", path);
            return errno;
        }
        int err = 0;
        struct dirent *e;
        while (!err && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char child[CKPT_PATH_MAX];
            int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            if (n < 0 || n >= (int)sizeof child) {
                snprintf(failed, CKPT_PATH_MAX, "%s", path);
                err = ENAMETOOLONG;
            } else {
                err = remove_tree(child, failed);
            }
        }
        closedir(d);
        if (err)
            return err;
        if (rmdir(path) != 0) {
            snprintf(failed, CKPT_PATH_MAX, "%s", path);
            return errno;
        }
        return 0;
    }
    if (unlink(path) != 0) {
        snprintf(failed, CKPT_PATH_MAX, "%s", path);
        return errno;
    }
    return 0;
}

static spin_status remove_tree_or_fail(const char *path) {
    char failed[CKPT_PATH_MAX] = "";
    int err = remove_tree(path, failed);
    if (err)
        return spin_fail(SPIN_ERR_IO, "%s: cannot remove: %s", failed, strerror(err));
    return SPIN_OK;
}

/* Cleanup after an earlier error: keeps that error's message. */
static void remove_tree_quietly(const char *path) {
    char failed[CKPT_PATH_MAX] = "";
    int err = remove_tree(path, failed);
    if (err)
        spin_log_msg(SPIN_LOG_WARN, "checkpoint: could not remove %s: %s", failed, strerror(err));
}

/* rename(2) with renameat2 flags; *unsupported is set when this kernel or file system cannot. */
static int rename_flags(const char *from, const char *to, unsigned flags, bool *unsupported) {
    *unsupported = false;
#if defined(RENAME_NOREPLACE) && defined(RENAME_EXCHANGE)
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) == 0)
        return 0;
    *unsupported = errno == EINVAL || errno == ENOSYS || errno == ENOTSUP;
    return -1;
#else
    (void)from;
    (void)to;
    (void)flags;
    *unsupported = true;
    errno = ENOSYS;
    return -1;
#endif
}

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

/* ---- scanning ---- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The steps of the checkpoint-<step> directories in dir, ascending (*steps malloc'd; n = 0 and
 * SPIN_OK when dir does not exist). */
static spin_status list_steps(const char *dir, int64_t **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return SPIN_OK;
        return spin_fail(SPIN_ERR_IO, "%s: cannot read directory: %s", dir, strerror(errno));
    }
    spin_status s = SPIN_OK;
    int cap = 0;
    struct dirent *e;
    while (s == SPIN_OK && (e = readdir(d))) {
        int64_t step;
        char p[CKPT_PATH_MAX];
        if (!parse_ckpt_name(e->d_name, &step) || fmt_path(p, "%s/%s", dir, e->d_name) != SPIN_OK ||
            !is_dir(p))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *q = realloc(*steps, (size_t)cap * sizeof *q);
            if (!q) {
                s = spin_fail(SPIN_ERR_OOM, "checkpoint: out of host memory listing %s", dir);
                break;
            }
            *steps = q;
        }
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (s != SPIN_OK) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        return s;
    }
    if (*n > 1)
        qsort(*steps, (size_t)*n, sizeof **steps, cmp_i64);
    return SPIN_OK;
}

static bool pid_alive(int64_t pid) {
    if (pid <= 0 || pid == (int64_t)getpid() || pid != (int64_t)(pid_t)pid)
        return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Finishes what killed runs left in dir: a set-aside old checkpoint whose replacement never arrived
 * goes back to its name; every other leftover (unfinished writes, half-deleted pruned checkpoints,
 * replaced old versions) is removed. Entries of live processes are left to them. */
static spin_status recover(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return SPIN_OK;
        return spin_fail(SPIN_ERR_IO, "%s: cannot read directory: %s", dir, strerror(errno));
    }
    /* collected first: renaming and removing while readdir walks the directory may skip entries */
    char **names = NULL;
    int n = 0, cap = 0;
    spin_status s = SPIN_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step, pid;
        bool old;
        if (!parse_hidden_name(e->d_name, &step, &old, &pid) || pid_alive(pid))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            char **q = realloc(names, (size_t)cap * sizeof *q);
            if (!q) {
                s = spin_fail(SPIN_ERR_OOM, "checkpoint: out of host memory scanning %s", dir);
                break;
            }
            names = q;
        }
        if (!(names[n] = strdup(e->d_name))) {
            s = spin_fail(SPIN_ERR_OOM, "checkpoint: out of host memory scanning %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    /* set-aside directories first, so a restored checkpoint is in place before anything is deleted */
    for (int pass = 0; pass < 2 && s == SPIN_OK; pass++) {
        for (int i = 0; i < n && s == SPIN_OK; i++) {
            int64_t step, pid;
            bool old;
            parse_hidden_name(names[i], &step, &old, &pid);
            if (old != (pass == 0))
                continue;
            char p[CKPT_PATH_MAX], fin[CKPT_PATH_MAX];
            if ((s = fmt_path(p, "%s/%s", dir, names[i])) != SPIN_OK ||
                (s = fmt_path(fin, "%s/checkpoint-%lld", dir, (long long)step)) != SPIN_OK)
                break;
            if (old && !exists(fin)) {
                if (rename(p, fin) != 0) {
                    s = spin_fail(SPIN_ERR_IO, "%s: cannot restore to %s: %s", p, fin, strerror(errno));
                    break;
                }
                spin_log_msg(SPIN_LOG_WARN,
                             "checkpoint: restored %s from %s (its replacement was interrupted, pid %lld)",
                             fin, p, (long long)pid);
                s = fsync_dir(dir);
                continue;
            }
            s = remove_tree_or_fail(p);
            if (s == SPIN_OK)
                spin_log_msg(SPIN_LOG_WARN, "checkpoint: removed %s, left by an interrupted run (pid %lld)",
                             p, (long long)pid);
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return s;
}

static spin_status check_complete(const char *ckpt) {
    for (int i = 0; i < SPIN_CKPT_N_REQUIRED; i++) {
        char p[CKPT_PATH_MAX];
        SPIN_TRY(fmt_path(p, "%s/%s", ckpt, spin_ckpt_required_files[i]));
        struct stat sb;
        if (stat(p, &sb) != 0)
            return spin_fail(SPIN_ERR_IO, "%s: missing from the checkpoint (%s)", p, strerror(errno));
        if (!S_ISREG(sb.st_mode))
            return spin_fail(SPIN_ERR_IO, "%s: not a regular file", p);
    }
    return SPIN_OK;
}

/* ---- trainer_state.json ---- */

static spin_status check_json_object(const char *text, size_t len, const char *where) {
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", where);
    json_object *root = len <= (size_t)INT32_MAX ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    spin_status s = SPIN_OK;
    if (!root)
        s = spin_fail(SPIN_ERR_INVALID, "%s: not valid JSON (%s)", where,
                      err == json_tokener_continue ? "truncated" : json_tokener_error_desc(err));
    else if (!json_object_is_type(root, json_type_object))
        s = spin_fail(SPIN_ERR_INVALID, "%s: must be a JSON object", where);
    for (size_t i = end; s == SPIN_OK && i < len; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
            s = spin_fail(SPIN_ERR_INVALID, "%s: unexpected text after the JSON object (byte %zu)", where, i);
    json_object_put(root);
    return s;
}

static spin_status read_text(const char *path, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    spin_status s = SPIN_OK;
    long n = -1;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        s = spin_fail(SPIN_ERR_IO, "%s: cannot size: %s", path, strerror(errno));
    else if (!(buf = malloc((size_t)n + 1)))
        s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    else if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        s = spin_fail(SPIN_ERR_IO, "%s: read failed", path);
    fclose(f);
    if (s != SPIN_OK) {
        free(buf);
        return s;
    }
    buf[n] = 0;
    if (strlen(buf) != (size_t)n) {
        free(buf);
        return spin_fail(SPIN_ERR_INVALID, "%s: contains a NUL byte", path);
    }
    *out = buf;
    return SPIN_OK;
}

/* ---- save ---- */

static spin_status check_state(spin_named_tensors state, const char *what) {
    if (state.n < 0 || (state.n > 0 && (!state.names || !state.tensors)))
        return spin_fail(SPIN_ERR_INVALID, "%s: state has %d tensors but no names or tensors", what, state.n);
    for (int i = 0; i < state.n; i++) {
        if (!state.names[i] || !state.names[i][0] || !state.tensors[i])
            return spin_fail(SPIN_ERR_INVALID, "%s: state tensor %d has no name or is NULL", what, i);
        if (spin_tensor_dtype(state.tensors[i]) != SPIN_F32)
            return spin_fail(SPIN_ERR_INVALID, "%s: state tensor '%s' is %s (only f32 is stored exactly)",
                             what, state.names[i], spin_dtype_name(spin_tensor_dtype(state.tensors[i])));
        for (int j = 0; j < i; j++)
            if (!strcmp(state.names[i], state.names[j]))
                return spin_fail(SPIN_ERR_INVALID, "%s: duplicate state tensor name '%s'", what,
                                 state.names[i]);
    }
    return SPIN_OK;
}

/* Puts the finished directory tmp at fin. Without overwrite an existing fin is an error. With it, the
 * two are swapped in one step where the file system can; otherwise fin goes aside to `aside` first,
 * which recover() puts back if this process dies before tmp takes its place. Leaves the replaced
 * version at tmp (swap) or aside, for the caller to remove. */
static spin_status install(const char *dir, const char *tmp, const char *fin, const char *aside,
                           bool overwrite) {
    bool unsupported;
    if (!overwrite || !exists(fin)) {
        if (rename_flags(tmp, fin, RENAME_NOREPLACE, &unsupported) == 0)
            return SPIN_OK;
        if (!unsupported) {
            if (errno == EEXIST || errno == ENOTEMPTY)
                return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten unless asked)", fin);
            return spin_fail(SPIN_ERR_IO, "%s: rename from %s failed: %s", fin, tmp, strerror(errno));
        }
        /* rename(2) would replace an empty directory created meanwhile; the check above is the guard */
        if (exists(fin))
            return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten unless asked)", fin);
        if (rename(tmp, fin) != 0)
            return spin_fail(SPIN_ERR_IO, "%s: rename from %s failed: %s", fin, tmp, strerror(errno));
        return SPIN_OK;
    }
    if (rename_flags(tmp, fin, RENAME_EXCHANGE, &unsupported) == 0)
        return SPIN_OK;
    if (!unsupported)
        return spin_fail(SPIN_ERR_IO, "%s: exchange with %s failed: %s", fin, tmp, strerror(errno));
    if (rename(fin, aside) != 0)
        return spin_fail(SPIN_ERR_IO, "%s: cannot move aside to %s: %s", fin, aside, strerror(errno));
    SPIN_TRY(fsync_dir(dir));
    if (rename(tmp, fin) != 0) {
        spin_status s = spin_fail(SPIN_ERR_IO, "%s: rename from %s failed: %s", fin, tmp, strerror(errno));
        if (rename(aside, fin) != 0)
            spin_log_msg(SPIN_LOG_ERROR,
                         "checkpoint: could not put %s back to %s (%s); the next save or "
                         "spin_ckpt_latest restores it",
                         aside, fin, strerror(errno));
        return s;
    }
    return SPIN_OK;
}

spin_status spin_ckpt_save(const char *output_dir, int64_t step, const spin_llama *model,
                           spin_named_tensors state, const char *trainer_state_json, bool overwrite,
                           char **path) {
    if (path)
        *path = NULL;
    if (!output_dir || !output_dir[0] || !model || !trainer_state_json)
        return spin_fail(SPIN_ERR_INVALID,
                         "checkpoint save: output_dir, model and trainer_state_json are required");
    if (step < 0)
        return spin_fail(SPIN_ERR_INVALID, "checkpoint save: step %lld is negative", (long long)step);
    char fin[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX], aside[CKPT_PATH_MAX], p[CKPT_PATH_MAX];
    long long st = (long long)step, pid = (long long)getpid();
    SPIN_TRY(fmt_path(fin, "%s/checkpoint-%lld", output_dir, st));
    SPIN_TRY(fmt_path(tmp, "%s/.checkpoint-%lld.tmp-%lld", output_dir, st, pid));
    SPIN_TRY(fmt_path(aside, "%s/.checkpoint-%lld.old-%lld", output_dir, st, pid));
    SPIN_TRY(check_state(state, fin));
    SPIN_TRY(fmt_path(p, "%s/trainer_state.json", fin));
    SPIN_TRY(check_json_object(trainer_state_json, strlen(trainer_state_json), p));
    SPIN_TRY(make_dirs(output_dir));
    SPIN_TRY(recover(output_dir));
    if (!overwrite && exists(fin))
        return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten unless asked)", fin);
    if (mkdir(tmp, 0755) != 0)
        return spin_fail(SPIN_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
    /* the model in its training dtype (config.json's torch_dtype says which) */
    spin_status s = spin_llama_save_as(model, tmp, spin_llama_dtype(model), false);
    if (s == SPIN_OK && (s = fmt_path(p, "%s/optimizer.safetensors", tmp)) == SPIN_OK)
        s = spin_st_save(p, state.n, state.names, state.tensors, SPIN_F32, false);
    if (s == SPIN_OK && (s = fmt_path(p, "%s/trainer_state.json", tmp)) == SPIN_OK)
        s = spin_write_file_atomic(p, trainer_state_json, strlen(trainer_state_json), false);
    /* the files are fsync'ed by their writers; this makes their names in tmp durable too */
    if (s == SPIN_OK)
        s = fsync_dir(tmp);
    if (s == SPIN_OK)
        s = install(output_dir, tmp, fin, aside, overwrite);
    if (s != SPIN_OK) {
        remove_tree_quietly(tmp);
        return s;
    }
    SPIN_TRY(fsync_dir(output_dir));
    /* the replaced version (at tmp after a swap, or aside) is garbage now; a crash here leaves it to
     * recover() */
    remove_tree_quietly(tmp);
    remove_tree_quietly(aside);
    if (path && !(*path = strdup(fin)))
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", fin);
    return SPIN_OK;
}

/* ---- latest, prune ---- */

spin_status spin_ckpt_latest(const char *output_dir, char **path) {
    *path = NULL;
    if (!output_dir || !output_dir[0])
        return spin_fail(SPIN_ERR_INVALID, "checkpoint latest: output_dir is required");
    SPIN_TRY(recover(output_dir));
    int64_t *steps;
    int n;
    SPIN_TRY(list_steps(output_dir, &steps, &n));
    if (n == 0)
        return SPIN_OK;
    char p[CKPT_PATH_MAX];
    spin_status s = fmt_path(p, "%s/checkpoint-%lld", output_dir, (long long)steps[n - 1]);
    free(steps);
    SPIN_TRY(s);
    SPIN_TRY(check_complete(p));
    if (!(*path = strdup(p)))
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", p);
    return SPIN_OK;
}

spin_status spin_ckpt_prune(const char *output_dir, int keep) {
    if (!output_dir || !output_dir[0])
        return spin_fail(SPIN_ERR_INVALID, "checkpoint prune: output_dir is required");
    if (keep < 0)
        return spin_fail(SPIN_ERR_INVALID, "checkpoint prune: keep (save_total_limit) %d is negative", keep);
    SPIN_TRY(recover(output_dir));
    if (keep == 0)
        return SPIN_OK;
    int64_t *steps;
    int n;
    SPIN_TRY(list_steps(output_dir, &steps, &n));
    spin_status s = SPIN_OK;
    for (int i = 0; i + keep < n && s == SPIN_OK; i++) {
        char fin[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
        long long st = (long long)steps[i];
        if ((s = fmt_path(fin, "%s/checkpoint-%lld", output_dir, st)) != SPIN_OK ||
            (s = fmt_path(tmp, "%s/.checkpoint-%lld.tmp-%lld", output_dir, st, (long long)getpid())) !=
                SPIN_OK)
            break;
        /* out of sight in one rename, so a crash while deleting leaves no partial checkpoint-<step> */
        if (rename(fin, tmp) != 0)
            s = spin_fail(SPIN_ERR_IO, "%s: cannot rename to %s: %s", fin, tmp, strerror(errno));
        if (s == SPIN_OK)
            s = fsync_dir(output_dir);
        if (s == SPIN_OK)
            s = remove_tree_or_fail(tmp);
    }
    free(steps);
    return s;
}

/* ---- load ---- */

/* The safetensors name of a float dtype. */
static const char *st_dtype_name(spin_dtype t) {
    return t == SPIN_BF16 ? "BF16" : t == SPIN_F16 ? "F16" : "F32";
}

/* Checks that every named tensor is stored in st with the target's dtype (F32, or BF16 for a bf16
 * model) and shape, and that st holds nothing else. */
static spin_status check_stored(const spin_safetensors *st, const char *file, int n, const char *const *names,
                                spin_tensor *const *targets) {
    for (int i = 0; i < n; i++) {
        const spin_st_info *in = spin_st_find(st, names[i]);
        if (!in)
            return spin_fail(SPIN_ERR_INVALID, "%s: missing tensor '%s'", file, names[i]);
        const char *want_dt = st_dtype_name(spin_tensor_dtype(targets[i]));
        if (strcmp(in->dtype, want_dt) ||
            (spin_tensor_dtype(targets[i]) != SPIN_F32 && !spin_tensor_is_contiguous(targets[i])))
            return spin_fail(
                SPIN_ERR_INVALID,
                "%s: tensor '%s' is %s, the target is %s (checkpoints restore exactly: resume with "
                "the precision the checkpoint was written with)",
                file, names[i], in->dtype, want_dt);
        int nd = spin_tensor_ndim(targets[i]);
        bool same = in->ndim == nd;
        for (int d = 0; same && d < nd; d++)
            same = in->shape[d] == spin_tensor_dim(targets[i], d);
        if (!same) {
            char want[128];
            char have[128] = "[";
            for (int d = 0; d < in->ndim; d++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", d ? ", " : "",
                         (long long)in->shape[d]);
            snprintf(have + strlen(have), sizeof have - strlen(have), "]");
            return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has shape %s, expected %s", file, names[i],
                             have, spin_shape_str(targets[i], want, sizeof want));
        }
    }
    if (spin_st_count(st) != n) /* names are distinct, so some stored tensor is not asked for */
        for (int i = 0; i < spin_st_count(st); i++) {
            const char *name = spin_st_at(st, i)->name;
            bool wanted = false;
            for (int j = 0; j < n && !wanted; j++)
                wanted = !strcmp(names[j], name);
            if (!wanted)
                return spin_fail(SPIN_ERR_INVALID, "%s: unexpected tensor '%s'", file, name);
        }
    return SPIN_OK;
}

static spin_status copy_stored(const spin_safetensors *st, const char *file, const char *name,
                               spin_tensor *t) {
    const spin_st_info *in = spin_st_find(st, name);
    if (spin_tensor_is_contiguous(t))
        return spin_tensor_write(t, in->data, in->nbytes);
    /* the mapped data need not be float-aligned */
    float *buf = malloc(in->nbytes ? in->nbytes : 1);
    if (!buf)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory restoring '%s'", file, name);
    memcpy(buf, in->data, in->nbytes);
    spin_status s = spin_tensor_write_f32(t, buf, spin_tensor_numel(t));
    free(buf);
    return s;
}

spin_status spin_ckpt_load(const char *ckpt_dir, spin_llama *model, spin_named_tensors state,
                           char **trainer_state_json) {
    if (trainer_state_json)
        *trainer_state_json = NULL;
    if (!ckpt_dir || !model)
        return spin_fail(SPIN_ERR_INVALID, "checkpoint load: ckpt_dir and model are required");
    SPIN_TRY(check_complete(ckpt_dir));
    char mp[CKPT_PATH_MAX], op[CKPT_PATH_MAX], tp[CKPT_PATH_MAX];
    SPIN_TRY(fmt_path(mp, "%s/model.safetensors", ckpt_dir));
    SPIN_TRY(fmt_path(op, "%s/optimizer.safetensors", ckpt_dir));
    SPIN_TRY(fmt_path(tp, "%s/trainer_state.json", ckpt_dir));
    SPIN_TRY(check_state(state, op));
    spin_safetensors *ms = NULL, *os = NULL;
    char *text = NULL;
    spin_status s = spin_st_open(mp, &ms);
    if (s == SPIN_OK)
        s = check_stored(ms, mp, model->n_params, (const char *const *)model->names, model->params);
    if (s == SPIN_OK)
        s = spin_st_open(op, &os);
    if (s == SPIN_OK)
        s = check_stored(os, op, state.n, state.names, state.tensors);
    if (s == SPIN_OK)
        s = read_text(tp, &text);
    if (s == SPIN_OK)
        s = check_json_object(text, strlen(text), tp);
    for (int i = 0; i < model->n_params && s == SPIN_OK; i++)
        s = copy_stored(ms, mp, model->names[i], model->params[i]);
    for (int i = 0; i < state.n && s == SPIN_OK; i++)
        s = copy_stored(os, op, state.names[i], state.tensors[i]);
    spin_st_close(ms);
    spin_st_close(os);
    if (s != SPIN_OK || !trainer_state_json)
        free(text);
    else
        *trainer_state_json = text;
    return s;
}
