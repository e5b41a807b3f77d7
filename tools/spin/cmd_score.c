/* spin score: the opponent scoring pass of SPIN as its own stage. The opponent (the model being
 * fine-tuned, before training) runs once over exactly the token rows `spin train` builds from the
 * same config and its summed response log-probs are stored in a fingerprinted file
 * (train/opponent_scores.h), so training holds one model. Under mpirun the rows are split over the
 * ranks and rank 0 writes the file (the same file as one process's). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/spin/cli_comm.h"
#include "tools/spin/commands.h"
#include "tools/spin/train_cli.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin score [CONFIG.yaml] [--key=value | --key value]... [--output PATH] [--overwrite]\n"
        "\n"
        "Runs the opponent (model_name_or_path, frozen) once over the rows `spin train` trains on with\n"
        "the same config and writes S_op(real) and S_op(generated) (chosen/rejected for DPO data) per\n"
        "example, with a fingerprint of the model weights, tokenizer, chat template, max_length,\n"
        "max_prompt_length and truncation_mode and a hash of each example's token rows; `spin train`\n"
        "refuses a file that does not match. Written atomically (PATH.tmp, fsync, rename).\n"
        "\n"
        "options:\n"
        "  --output PATH    the scores file (default: opponent_scores below)\n"
        "  --overwrite      replace an existing scores file (default: an existing file is an error)\n"
        "  --threads N      CPU threads (default: OMP_NUM_THREADS or all cores)\n"
        "  --device D       device, e.g. cpu, opencl:1 (default: SPIN_DEVICE, else the build's accelerator)\n"
        "  --help, -h       this help\n"
        "Examples are scored in batches of per_device_train_batch_size (a row's score does not depend\n"
        "on its batch). `mpirun -np N spin score ...` (a -DSPIN_MPI=ON build) splits the rows into N\n"
        "contiguous blocks, one per rank; rank 0 writes the file.\n"
        "\n"
        "%s",
        train_config_help);
}

typedef struct {
    const char *output;
    bool overwrite;
} score_opts;

static int own_option(void *ctx, const char *name, const char *eq, const char *next, int *consumed) {
    score_opts *o = ctx;
    if (!strcmp(name, "overwrite")) {
        if (eq) {
            fprintf(stderr, "spin score: --overwrite takes no value\n");
            return -1;
        }
        if (o)
            o->overwrite = true;
        return 0;
    }
    if (!strcmp(name, "output")) {
        const char *v = eq ? eq : next;
        if (!v || !*v) {
            fprintf(stderr, "spin score: --output needs a path\n");
            return -1;
        }
        *consumed = eq ? 0 : 1;
        if (o)
            o->output = v;
        return 0;
    }
    return -2;
}

int cmd_score(int argc, char **argv) {
    train_cli_config c;
    score_opts o = {0};
    int rc = train_cli_parse("score", argc, argv, &c, own_option, &o);
    if (rc == 1) {
        if (cli_rank() == 0)
            help(stdout);
        train_config_free(&c);
        return 0;
    }
    if (rc == 0 && o.output) {
        free(c.opponent_scores);
        c.opponent_scores = strdup(o.output);
    }
    if (rc == 0)
        rc = train_config_check("score", &c);
    /* under mpirun every rank makes the same cli_agree calls, so a rank that fails stops the others */
    if (rc) {
        train_config_free(&c);
        return cli_agree(rc);
    }
    int rank = cli_rank();
    if (rank == 0 && (!strcmp(c.loss_type, "sft") || c.reference_free))
        fprintf(stderr, "spin score: note: %s uses no opponent scores\n",
                c.reference_free ? "reference_free" : "loss_type sft");
    train_rows r;
    rc = train_rows_build("score", &c, &r); /* r is freeable whatever it returns */
    struct stat st;
    if (rc == 0 && rank == 0 && !o.overwrite && stat(r.scores_path, &st) == 0) {
        fprintf(stderr, "spin score: %s exists (--overwrite replaces it)\n", r.scores_path);
        rc = 1;
    }
    spin_llama *opp = NULL;
    if (rc == 0)
        rc = train_cli_load_model("score", &c, &opp);
    float *chosen = NULL, *rejected = NULL;
    if (rc == 0) {
        chosen = malloc((size_t)r.data.n * sizeof *chosen);
        rejected = malloc((size_t)r.data.n * sizeof *rejected);
        if (!chosen || !rejected) {
            fprintf(stderr, "spin score: out of memory\n");
            rc = 1;
        }
    }
    spin_score_fingerprint fp;
    if (rc == 0)
        rc = train_rows_fingerprint("score", &c, &r, opp, &fp);
    rc = cli_agree(rc);
    if (rc == 0)
        rc = train_cli_score("score", opp, &c, &r, chosen, rejected); /* agreed */
    if (rc == 0 && rank == 0 &&
        spin_scores_write(r.scores_path, &fp, r.rows, r.data.n, chosen, rejected, o.overwrite) != SPIN_OK) {
        fprintf(stderr, "spin score: %s\n", spin_last_error());
        rc = 1;
    }
    rc = cli_agree(rc);
    if (rc == 0 && rank == 0)
        printf("spin score: %lld %s examples -> %s\n", (long long)r.data.n, spin_data_kind_name(r.data.kind),
               r.scores_path);
    free(chosen);
    free(rejected);
    spin_llama_free(opp);
    train_rows_free(&r);
    train_config_free(&c);
    return rc;
}
