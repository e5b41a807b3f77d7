#include "benchmarks/bench_json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool bench_json_exists(const char *path) {
    FILE *f = fopen(path, "r");
    if (f)
        fclose(f);
    return f != NULL;
}

int bench_json_open(bench_json *j, const char *prog, const char *path, bool force) {
    *j = (bench_json){.path = path, .prog = prog};
    if (!force && bench_json_exists(path)) {
        fprintf(stderr, "%s: %s exists (use --force to overwrite)\n", prog, path);
        return 1;
    }
    size_t len = strlen(path) + 5;
    j->tmp = malloc(len);
    if (!j->tmp)
        return 1;
    snprintf(j->tmp, len, "%s.tmp", path);
    j->f = fopen(j->tmp, "w");
    if (!j->f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", prog, j->tmp, strerror(errno));
        free(j->tmp);
        return 1;
    }
    return 0;
}

void bench_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void bench_json_row_begin(FILE *f, const spin_device *dev, int threads) {
    fputs("{\"commit\": ", f);
    bench_json_str(f, SPIN_GIT_COMMIT);
    fputs(", \"backend\": ", f);
    bench_json_str(f, dev->backend->name);
    fputs(", \"device\": ", f);
    bench_json_str(f, dev->name);
    fprintf(f, ", \"threads\": %d", threads);
}

int bench_json_close(bench_json *j) {
    bool bad = ferror(j->f) != 0;
    if (fclose(j->f) != 0)
        bad = true;
    int rc = 0;
    if (bad || rename(j->tmp, j->path) != 0) {
        fprintf(stderr, "%s: writing %s failed: %s\n", j->prog, j->path, strerror(errno));
        remove(j->tmp);
        rc = 1;
    } else {
        printf("wrote %s\n", j->path);
    }
    free(j->tmp);
    return rc;
}
