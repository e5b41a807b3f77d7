/* spin demo: trains a small character-level transformer on a text with the tensor library and
 * shows a greedy continuation. It becomes the SPIN demo when the pipeline lands. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backends.h"
#include "core/rng.h"
#include "models/tiny_lm.h"
#include "train/sgd.h"
#include "tools/spin/commands.h"

static const char builtin_text[] =
    "Self-play fine-tuning starts from a supervised model and lets it play against itself. "
    "In each iteration the current model writes an answer for every prompt of the training set. "
    "The next model is then trained to tell the human answer from the answer of its previous self, "
    "with the same logistic loss that direct preference optimisation uses. "
    "When the model can no longer tell the two apart, its answers follow the data, and the game ends. "
    "The whole loop runs as one program: generate with the current model, score with the frozen "
    "opponent, train, and iterate. ";

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf && (n += fread(buf + n, 1, cap - n, f)) == cap) {
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *len = n;
    return buf;
}

int cmd_demo(int argc, char **argv) {
    const char *text_path = NULL;
    int steps = 1000, seq = 48, batch = 8;
    float lr = 0.5f;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: spin demo [--text FILE] [--steps N (1000)] [--lr X (0.5)]\n"
                   "  trains a 2-layer character-level transformer (RMSNorm, RoPE, GQA attention, SwiGLU)\n"
                   "  with SGD on FILE (default: a built-in paragraph) and prints a greedy continuation\n");
            return 0;
        } else if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            text_path = argv[++i];
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--lr") && i + 1 < argc) {
            lr = (float)atof(argv[++i]);
        } else {
            fprintf(stderr, "spin demo: unknown option '%s' (see spin demo --help)\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || !(lr > 0)) {
        fprintf(stderr, "spin demo: --steps must be >= 1 and --lr > 0\n");
        return 2;
    }
    size_t len = strlen(builtin_text);
    char *text = (char *)builtin_text;
    if (text_path) {
        text = read_file(text_path, &len);
        if (!text) {
            fprintf(stderr, "spin demo: cannot read %s\n", text_path);
            return 1;
        }
        if (len > 200000)
            len = 200000;
    }
    if (len < (size_t)seq + 2) {
        fprintf(stderr, "spin demo: %s has %zu bytes; need at least %d\n", text_path ? text_path : "text",
                len, seq + 2);
        return 1;
    }
    /* vocabulary: the bytes that occur */
    int32_t to_id[256];
    unsigned char to_byte[256];
    int vocab = 0;
    for (int b = 0; b < 256; b++)
        to_id[b] = -1;
    for (size_t i = 0; i < len; i++)
        to_id[(unsigned char)text[i]] = 0;
    for (int b = 0; b < 256; b++)
        if (to_id[b] == 0)
            to_byte[vocab] = (unsigned char)b, to_id[b] = vocab++;

    spin_device *dev = spin_init();
    if (!dev) {
        fprintf(stderr, "spin demo: %s\n", spin_last_error());
        return 1;
    }
    spin_tiny_lm_config cfg = {.vocab = vocab,
                               .dim = 64,
                               .n_layers = 2,
                               .n_heads = 4,
                               .n_kv_heads = 2,
                               .head_dim = 16,
                               .ffn = 128,
                               .rope_theta = 10000.0f,
                               .norm_eps = 1e-5f};
    spin_tiny_lm m;
    if (spin_tiny_lm_init(&m, dev, &cfg, 1234) != SPIN_OK) {
        fprintf(stderr, "spin demo: %s\n", spin_last_error());
        return 1;
    }
    printf("demo: %zu bytes of text, vocabulary %d, model dim %d x %d layers, batch %d x %d, device %s\n",
           len, vocab, cfg.dim, cfg.n_layers, batch, seq, dev->name);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(batch * seq)),
            *tg = malloc(sizeof(int32_t) * (size_t)(batch * seq));
    spin_rng rng = {.seed = 99};
    double t0 = now();
    float loss_v = NAN, first = NAN;
    for (int step = 1; step <= steps; step++) {
        for (int b = 0; b < batch; b++) {
            size_t start = spin_rng_next_u32(&rng) % (len - (size_t)seq - 1);
            for (int t = 0; t < seq; t++) {
                ids[b * seq + t] = to_id[(unsigned char)text[start + (size_t)t]];
                tg[b * seq + t] = to_id[(unsigned char)text[start + (size_t)t + 1]];
            }
        }
        spin_scope_begin();
        spin_tensor *tid = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){batch, seq}, ids);
        spin_tensor *ttg = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){batch * seq}, tg);
        spin_tensor *loss = spin_tiny_lm_loss(&m, tid, ttg);
        spin_status s = loss ? spin_backward(loss) : SPIN_ERR_INVALID;
        if (s == SPIN_OK)
            s = spin_tensor_read_f32(loss, &loss_v, 1);
        spin_scope_end();
        if (s == SPIN_OK)
            s = spin_sgd_step(m.params, m.n_params, lr);
        if (s != SPIN_OK) {
            fprintf(stderr, "spin demo: step %d: %s\n", step, spin_last_error());
            return 1;
        }
        if (step == 1)
            first = loss_v;
        if (step == 1 || step % 25 == 0 || step == steps)
            printf("step %4d  loss %.4f  %.1f tokens/s\n", step, loss_v,
                   (double)step * batch * seq / (now() - t0));
    }
    printf("loss %.4f -> %.4f (a uniform guess is %.4f)\n", first, loss_v, log((double)vocab));
    int total = 120, n = 12;
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)total);
    for (int i = 0; i < n; i++)
        gen[i] = to_id[(unsigned char)text[i]];
    if (spin_tiny_lm_greedy(&m, gen, n, total) != SPIN_OK) {
        fprintf(stderr, "spin demo: generation: %s\n", spin_last_error());
        return 1;
    }
    printf("greedy continuation of \"%.*s\":\n  ", n, text);
    for (int i = 0; i < total; i++)
        putchar(to_byte[gen[i]]);
    putchar('\n');
    free(gen);
    free(ids);
    free(tg);
    spin_tiny_lm_free(&m);
    if (text != builtin_text)
        free(text);
    return 0;
}
