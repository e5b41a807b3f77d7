/* st_nerr A B: the normalised error ||a - b|| / ||b|| over every tensor of safetensors file B (F32
 * or BF16, widened to double), a holding the same names and shapes. Prints the number; exits 0, or 1
 * naming the problem. The CLI tests of tests/mpi compare final models with it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/safetensors.h"

static int value(const spin_st_info *t, size_t i, double *v) {
    if (!strcmp(t->dtype, "F32")) {
        float f;
        memcpy(&f, (const char *)t->data + 4 * i, 4);
        *v = f;
    } else if (!strcmp(t->dtype, "BF16")) {
        unsigned short h;
        memcpy(&h, (const char *)t->data + 2 * i, 2);
        unsigned int u = (unsigned int)h << 16;
        float f;
        memcpy(&f, &u, 4);
        *v = f;
    } else {
        return 1;
    }
    return 0;
}

static size_t count(const spin_st_info *t) {
    return t->nbytes / (!strcmp(t->dtype, "F32") ? 4 : 2);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: st_nerr A.safetensors B.safetensors\n");
        return 1;
    }
    spin_safetensors *a = NULL, *b = NULL;
    if (spin_st_open(argv[1], &a) != SPIN_OK || spin_st_open(argv[2], &b) != SPIN_OK) {
        fprintf(stderr, "st_nerr: %s\n", spin_last_error());
        return 1;
    }
    double num = 0, den = 0;
    int rc = spin_st_count(a) == spin_st_count(b) ? 0 : 1;
    if (rc)
        fprintf(stderr, "st_nerr: %d tensors in %s, %d in %s\n", spin_st_count(a), argv[1], spin_st_count(b),
                argv[2]);
    for (int k = 0; rc == 0 && k < spin_st_count(b); k++) {
        const spin_st_info *tb = spin_st_at(b, k), *ta = spin_st_find(a, tb->name);
        if (!ta || strcmp(ta->dtype, tb->dtype) || ta->nbytes != tb->nbytes) {
            fprintf(stderr, "st_nerr: tensor %s differs in name, dtype or size\n", tb->name);
            rc = 1;
            break;
        }
        for (size_t i = 0; rc == 0 && i < count(tb); i++) {
            double x, y;
            if (value(ta, i, &x) || value(tb, i, &y)) {
                fprintf(stderr, "st_nerr: %s: dtype %s is not compared\n", tb->name, tb->dtype);
                rc = 1;
            }
            num += (x - y) * (x - y);
            den += y * y;
        }
    }
    if (rc == 0)
        printf("%.6g\n", den > 0 ? sqrt(num / den) : sqrt(num));
    spin_st_close(a);
    spin_st_close(b);
    return rc;
}
