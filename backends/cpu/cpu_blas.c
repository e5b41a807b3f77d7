/* Loads the BLAS at run time so the OpenBLAS kernel can be chosen before the library starts.
 *
 * Debian's OpenBLAS 0.3.21 picks its kernel from the CPU model number when it is loaded; on CPUs
 * newer than it (e.g. Intel Emerald Rapids) it falls back to the SSE3 "Prescott" kernel at under
 * 20% of peak, and the only fix is the OPENBLAS_CORETYPE variable, read at load time. Linking
 * OpenBLAS normally would load it before any of our code runs, so we dlopen the library CMake
 * found instead: first we read the CPU's features and, unless the user set OPENBLAS_CORETYPE
 * (never overridden) or the library is already loaded, set it to the kernel those features
 * support (Cooperlake for AVX-512 with BF16, SkylakeX for AVX-512, Haswell for AVX2 + FMA). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_kernels.h"
#include "core/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#ifndef SPIN_BLAS_LIBRARY
#define SPIN_BLAS_LIBRARY "libopenblas.so.0"
#endif

static cpu_sgemm_fn sgemm;
static cpu_sgemv_fn sgemv;
static const char *(*get_corename)(void);
static char description[512];
static char chosen_note[128] = "";

static const char *coretype_for_this_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return NULL;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!osxsave || !avx)
        return NULL;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    bool ymm_os = (xlo & 0x6) == 0x6, zmm_os = (xlo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return NULL;
    bool avx2 = b & (1u << 5);
    bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));
    unsigned a1 = 0, b1, c1, d1;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    bool bf16 = a1 & (1u << 5);
    if (avx512 && zmm_os)
        return bf16 ? "Cooperlake" : "SkylakeX";
    if (avx2 && fma && ymm_os)
        return "Haswell";
#endif
    return NULL;
}

static void load(void) {
    const char *path = getenv("SPIN_BLAS_LIBRARY");
    if (!path || !*path)
        path = SPIN_BLAS_LIBRARY;
    bool is_openblas = strstr(path, "openblas") != NULL;
    void *already = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (already) {
        snprintf(chosen_note, sizeof chosen_note, "library was already loaded: kernel choice left to it");
        dlclose(already);
    } else if (is_openblas && user && *user) {
        snprintf(chosen_note, sizeof chosen_note, "OPENBLAS_CORETYPE=%s set by the user", user);
    } else if (is_openblas) {
        const char *core = coretype_for_this_cpu();
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 0);
            snprintf(chosen_note, sizeof chosen_note, "OPENBLAS_CORETYPE=%s chosen from CPU features", core);
        }
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        SPIN_ABORT("cannot load the BLAS library %s: %s (set SPIN_BLAS_LIBRARY)", path, dlerror());
    sgemm = (cpu_sgemm_fn)dlsym(h, "cblas_sgemm");
    if (!sgemm)
        SPIN_ABORT("%s has no cblas_sgemm", path);
    sgemv = (cpu_sgemv_fn)dlsym(h, "cblas_sgemv");
    get_corename = (const char *(*)(void))dlsym(h, "openblas_get_corename");
    void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    if (set_threads)
        set_threads(omp_get_max_threads());
    snprintf(description, sizeof description, "%s (kernel %s%s%s%s)", path,
             get_corename ? get_corename() : "n/a", chosen_note[0] ? "; " : "", chosen_note, "");
}

cpu_sgemm_fn cpu_blas_sgemm(void) {
    if (!sgemm)
        load();
    return sgemm;
}

cpu_sgemv_fn cpu_blas_sgemv(void) {
    cpu_blas_sgemm();
    return sgemv;
}

const char *cpu_blas_describe(void) {
    cpu_blas_sgemm();
    return description;
}

const char *cpu_blas_corename(void) {
    cpu_blas_sgemm();
    return get_corename ? get_corename() : "n/a";
}

int cpu_threads(void) {
    return omp_get_max_threads();
}
