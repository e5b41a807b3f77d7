/* The benchmarks' --json output: one JSON object per row, written to FILE.tmp and renamed into
 * place when complete; an existing FILE is refused unless forced. */
#ifndef SPIN_BENCHMARKS_BENCH_JSON_H
#define SPIN_BENCHMARKS_BENCH_JSON_H

#include <stdbool.h>
#include <stdio.h>

#include "core/device.h"

typedef struct {
    FILE *f;
    char *tmp;
    const char *path, *prog;
} bench_json;

bool bench_json_exists(const char *path);
/* 0 on success; prints the reason (prefixed by prog) and returns 1 otherwise. */
int bench_json_open(bench_json *j, const char *prog, const char *path, bool force);
/* Writes s as a JSON string. */
void bench_json_str(FILE *f, const char *s);
/* Starts a row with the fields every row carries: {"commit", "backend", "device", "threads". */
void bench_json_row_begin(FILE *f, const spin_device *dev, int threads);
/* Renames FILE.tmp to FILE; 0 on success. */
int bench_json_close(bench_json *j);

#endif
