/* spin train: fine-tunes a model on SPIN / DPO / SPPO data from uclaml/SPIN's YAML config (and
 * --key=value overrides) through the trainer of train/trainer.h, against stored opponent scores
 * (mode b, the default: computed first when the file is missing) or the opponent in memory (mode a).
 * Output: output_dir/metrics.jsonl, checkpoint-<step>/ directories, and the final model in Hugging
 * Face layout in output_dir itself (run_spin.py's save_model). Under mpirun it trains data parallel
 * (docs/distributed.md): every rank reads the data and the model, rank 0 alone writes. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/spin/cli_comm.h"
#include "tools/spin/commands.h"
#include "tools/spin/train_cli.h"
#include "train/trainer.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin train [CONFIG.yaml] [--key=value | --key value]... [--dry-run]\n"
        "\n"
        "Fine-tunes model_name_or_path on the datasets of dataset_mixer with the SPIN loss (or another\n"
        "loss_type) as uclaml/SPIN's run_spin.py does: `spin train configs/config.yaml\n"
        "--num_train_epochs=6 --output_dir=outputs/iter0-ckpt` reads their config. The data kind is\n"
        "detected from the columns: SPIN {real, generated}; DPO {prompt, chosen, rejected} as strings\n"
        "or message lists; SPPO adds chosen_probs, chosen_probs_win, chosen_probs_lose.\n"
        "\n"
        "options:\n"
        "  --dry-run        print the resolved config, the data, total and warmup steps and a memory\n"
        "                   estimate, then exit (loads no weights)\n"
        "  --loss NAME      = --loss_type;  --label-smoothing E, --reference-free as the keys below\n"
        "  --model DIR, --data P[:F],..., --output DIR, --template NAME, --scores PATH: key aliases\n"
        "  --overwrite      = overwrite_output_dir: replace a previous run in output_dir (its\n"
        "                   metrics.jsonl, checkpoint-*/ and final model files are deleted)\n"
        "  --resume         = resume_from_checkpoint: continue from output_dir's newest checkpoint\n"
        "  --threads N      CPU threads (default: OMP_NUM_THREADS or all cores)\n"
        "  --device D       device, e.g. cpu, opencl:1 (default: SPIN_DEVICE, else the build's accelerator)\n"
        "  --help, -h       this help\n"
        "An output_dir holding a previous run (metrics.jsonl, checkpoint-*, model.safetensors) is an\n"
        "error unless --resume or --overwrite. SIGINT/SIGTERM write a checkpoint and stop; --resume\n"
        "continues bit for bit.\n"
        "Data parallel: `mpirun -np N spin train ...` (a -DSPIN_MPI=ON build) trains on N ranks, each\n"
        "taking per_device_train_batch_size examples of every micro-batch (zero_stage: 0 or 1); rank 0\n"
        "writes the metrics, checkpoints and final model. A checkpoint resumes on any number of ranks\n"
        "with the same global batch (docs/distributed.md).\n"
        "\n"
        "%s",
        train_config_help);
}

static int own_option(void *ctx, const char *name, const char *eq, const char *next, int *consumed) {
    (void)next;
    (void)consumed;
    if (strcmp(name, "dry-run") && strcmp(name, "dry_run"))
        return -2;
    if (eq) {
        fprintf(stderr, "spin train: --dry-run takes no value\n");
        return -1;
    }
    *(bool *)ctx = true;
    return 0;
}

/* ---- the output directory ---- */

static bool is_checkpoint_name(const char *n) {
    if (strncmp(n, "checkpoint-", 11) || !n[11])
        return false;
    for (const char *q = n + 11; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    return true;
}

static const char *const final_files[] = {"model.safetensors",      "config.json",
                                          "generation_config.json", "tokenizer.json",
                                          "tokenizer_config.json",  "special_tokens_map.json"};

/* What of a previous run output_dir holds ("" when nothing). */
static void previous_run(const char *dir, char *what, size_t cap) {
    what[0] = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strcmp(e->d_name, "metrics.jsonl") || !strcmp(e->d_name, "model.safetensors") ||
            is_checkpoint_name(e->d_name)) {
            size_t n = strlen(what);
            snprintf(what + n, cap - n, "%s%s", n ? ", " : "", e->d_name);
        }
    closedir(d);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* --overwrite: deletes the previous run's files (and only those) from output_dir. */
static int clear_previous_run(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    char path[PATH_MAX];
    while (rc == 0 && (e = readdir(d))) {
        bool ckpt = is_checkpoint_name(e->d_name), file = !strcmp(e->d_name, "metrics.jsonl");
        for (size_t i = 0; i < sizeof final_files / sizeof *final_files; i++)
            file |= !strcmp(e->d_name, final_files[i]);
        if (!ckpt && !file)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if ((ckpt ? nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) : remove(path)) != 0) {
            fprintf(stderr, "spin train: --overwrite: cannot remove %s: %s\n", path, strerror(errno));
            rc = 1;
        }
    }
    closedir(d);
    return rc;
}

static bool same_dir(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

/* ---- dry run ---- */

static int64_t n_params(const spin_llama_config *m) {
    int64_t H = m->hidden_size, I = m->intermediate_size, V = m->vocab_size, hd = m->head_dim;
    int64_t layer = H * hd * (m->num_attention_heads * 2 + m->num_key_value_heads * 2) + 3 * H * I + 2 * H;
    return V * H * (m->tie_word_embeddings ? 1 : 2) + m->num_hidden_layers * layer + H;
}

static const char *human(double bytes, char *buf, size_t cap) {
    if (bytes >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
    else if (bytes >= 1024.0 * 1024)
        snprintf(buf, cap, "%.1f MiB", bytes / (1024.0 * 1024));
    else
        snprintf(buf, cap, "%.1f KiB", bytes / 1024.0);
    return buf;
}

static void memory_estimate(const train_cli_config *c, const spin_llama_config *m, bool opponent_model) {
    double P = (double)n_params(m);
    double state = strcmp(c->optim, "rmsprop") ? 2 : 1;
    /* bf16: 2-byte weights, f32 gradients, f32 optimizer masters beside the state */
    bool bf16 = train_cli_bf16(c);
    double wb = bf16 ? 2 : 4, weights = wb * P, grads = 4 * P, opt = 4 * P * (state + (bf16 ? 1 : 0)),
           opp = opponent_model ? wb * P : 0;
    /* activations kept for backward on 2B rows of max_length tokens, per layer per token: about 12
     * hidden-size and 4 intermediate-size f32 vectors plus one attention row per head; with
     * gradient_checkpointing only each block's input, plus one block recomputed at a time */
    double tok = 2.0 * (double)c->per_device_train_batch_size * (double)c->max_length;
    double H = (double)m->hidden_size, I = (double)m->intermediate_size, L = (double)m->num_hidden_layers;
    double block = 12 * H + 4 * I + (double)m->num_attention_heads * (double)c->max_length;
    double act = wb * tok * (c->gradient_checkpointing ? L * H + block : L * block);
    char b[6][32];
    printf("memory estimate (%s; rows of max_length, so an upper bound for shorter data):\n"
           "  weights        %s (%.0f parameters)\n  gradients      %s\n  optimizer      %s (%s)\n"
           "  opponent       %s%s\n  activations    %s (2 x %lld rows x %lld tokens%s)\n"
           "  total          ~%s\n",
           bf16 ? "bf16 weights, f32 gradients and optimizer masters" : "f32", human(weights, b[0], 32), P,
           human(grads, b[1], 32), human(opt, b[2], 32), c->optim, human(opp, b[3], 32),
           opponent_model ? " (opponent: model, a second copy)" : " (none in memory)", human(act, b[4], 32),
           (long long)c->per_device_train_batch_size, (long long)c->max_length,
           c->gradient_checkpointing ? ", gradient checkpointing" : "",
           human(weights + grads + opt + opp + act, b[5], 32));
}

/* ---- the run ---- */

static int build_train_config(const train_cli_config *c, const train_rows *r, spin_train_config *t) {
    *t = spin_train_defaults();
    spin_loss_type lt;
    spin_optim_kind ok;
    spin_sched_kind sk;
    if (spin_loss_type_from_name(c->loss_type, &lt) != SPIN_OK ||
        spin_optim_kind_from_name(c->optim, &ok) != SPIN_OK ||
        spin_sched_kind_from_name(c->lr_scheduler_type, &sk) != SPIN_OK)
        return 2; /* train_config_check vetted them */
    t->loss = (spin_pref_loss_opts){.type = lt,
                                    .beta = (float)c->beta,
                                    .label_smoothing = (float)c->label_smoothing,
                                    .reference_free = c->reference_free};
    t->average_logprob = false;
    t->optim = spin_optim_defaults(ok);
    t->optim.weight_decay = c->weight_decay;
    t->decay_rule = SPIN_DECAY_HF; /* the Trainer's no-decay group (transformers 4.37) */
    t->optim.max_grad_norm = c->max_grad_norm;
    if (ok == SPIN_OPTIM_ADAMW) {
        t->optim.beta1 = c->adam_beta1;
        t->optim.beta2 = c->adam_beta2;
        t->optim.eps = c->adam_epsilon;
    }
    t->scheduler = sk;
    t->learning_rate = c->learning_rate;
    t->warmup_ratio = c->warmup_ratio;
    t->warmup_steps = c->warmup_steps;
    t->num_train_epochs = c->num_train_epochs;
    t->max_steps = c->max_steps;
    t->per_device_train_batch_size = c->per_device_train_batch_size;
    t->gradient_accumulation_steps = c->gradient_accumulation_steps;
    t->gradient_checkpointing = c->gradient_checkpointing;
    /* HF bf16 under DeepSpeed ZeRO, as uclaml/SPIN runs: bf16 weights, f32 optimizer masters */
    t->precision = train_cli_bf16(c) ? SPIN_BF16 : SPIN_F32;
    t->seed = (uint64_t)(c->data_seed >= 0 ? c->data_seed : c->seed);
    t->shuffle = true;
    t->logging_steps = c->logging_steps;
    t->save_steps = !strcmp(c->save_strategy, "steps") ? c->save_steps : 0;
    t->save_each_epoch = !strcmp(c->save_strategy, "epoch");
    t->save_total_limit = (int)c->save_total_limit;
    t->output_dir = c->output_dir;
    t->resume = c->resume_from_checkpoint;
    t->nonfinite = !strcmp(c->on_nonfinite, "skip") ? SPIN_NONFINITE_SKIP : SPIN_NONFINITE_STOP;
    t->progress = true;
    t->spin_names = r->data.kind == SPIN_DATA_SPIN;
    t->stop_after = c->stop_after;
    return 0;
}

/* Mode (b): reads the scores file, or computes and writes it first when it is missing. Under mpirun
 * rank 0 decides whether it exists, the ranks score their shares, rank 0 writes it; the result is
 * agreed. */
static int opponent_scores(const train_cli_config *c, const train_rows *r, spin_llama *policy, float *chosen,
                           float *rejected) {
    spin_score_fingerprint fp;
    if (cli_agree(train_rows_fingerprint("train", c, r, policy, &fp)) != 0)
        return 1;
    struct stat st;
    int missing = cli_rank() == 0 && stat(r->scores_path, &st) != 0;
    if (cli_bcast(&missing, sizeof missing))
        return 1;
    if (missing) {
        if (cli_rank() == 0)
            fprintf(stderr,
                    "spin train: no opponent scores at %s: scoring the opponent first (as `spin score`)\n",
                    r->scores_path);
        if (train_cli_score("train", policy, c, r, chosen, rejected) != 0)
            return 1; /* agreed inside */
        int rc = 0;
        if (cli_rank() == 0 &&
            spin_scores_write(r->scores_path, &fp, r->rows, r->data.n, chosen, rejected, false) != SPIN_OK) {
            fprintf(stderr, "spin train: %s\n", spin_last_error());
            rc = 1;
        }
        if (rc == 0 && cli_rank() == 0)
            fprintf(stderr, "spin train: opponent scores written to %s\n", r->scores_path);
        return cli_agree(rc);
    }
    if (spin_scores_read(r->scores_path, &fp, r->rows, r->data.n, chosen, rejected) != SPIN_OK) {
        const char *ex = strstr(spin_last_error(), "example ");
        long long k = -1;
        if (ex && sscanf(ex, "example %lld", &k) == 1 && k >= 0 && k < r->data.n)
            fprintf(stderr, "spin train: %s (example %lld is %s:%lld)\n", spin_last_error(), k,
                    r->src_file[k], (long long)r->src_line[k]);
        else
            fprintf(stderr, "spin train: %s\n", spin_last_error());
        fprintf(stderr, "  (the scores do not belong to this model, data and settings: rerun `spin score ... "
                        "--overwrite`, or delete the file and they are computed again)\n");
        return cli_agree(1);
    }
    return cli_agree(0);
}

int cmd_train(int argc, char **argv) {
    train_cli_config c;
    bool dry = false;
    int rc = train_cli_parse("train", argc, argv, &c, own_option, &dry);
    if (rc == 1) {
        if (cli_rank() == 0)
            help(stdout);
        train_config_free(&c);
        return 0;
    }
    if (rc == 0)
        rc = train_config_check("train", &c);
    if (rc == 0 && !c.output_dir) {
        fprintf(stderr, "spin train: output_dir is required (--output DIR)\n");
        rc = 2;
    }
    /* under mpirun every return before the training makes one cli_agree call, so a rank that stops
     * early stops the others at their first agreement */
    if (rc) {
        train_config_free(&c);
        return cli_agree(rc);
    }
    int rank = cli_rank(), world = cli_size();
    spin_loss_type lt;
    spin_loss_type_from_name(c.loss_type, &lt);
    bool need_ref = lt != SPIN_LOSS_SFT && !c.reference_free,
         opp_model = need_ref && !strcmp(c.opponent, "model");

    train_rows r;
    rc = train_rows_build("train", &c, &r);
    int64_t total = 0, warmup = 0;
    if (rc == 0) {
        total = spin_sched_total_steps(c.num_train_epochs, r.data.n, c.per_device_train_batch_size, world,
                                       c.gradient_accumulation_steps, c.max_steps);
        warmup = spin_sched_warmup_steps(c.warmup_ratio, c.warmup_steps, total);
        if (total < 1) {
            fprintf(stderr, "spin train: %s\n", spin_last_error());
            rc = 2;
        }
    }
    if (rc == 0 && dry && rank != 0) {
        train_rows_free(&r);
        train_config_free(&c);
        return cli_agree(0);
    }
    if (rc == 0 && dry) {
        train_config_print(stdout, &c);
        printf("data: %lld %s examples; template %s; eos id %d, pad id %d\n", (long long)r.data.n,
               spin_data_kind_name(r.data.kind), spin_chat_template_name(r.tpl), r.collate.eos_id,
               r.collate.pad_id);
        if (world > 1)
            printf("steps: %lld total, %lld warmup (per_device_train_batch_size %lld x %d ranks x "
                   "gradient_accumulation_steps %lld = %lld examples per update; zero_stage %lld)\n",
                   (long long)total, (long long)warmup, (long long)c.per_device_train_batch_size, world,
                   (long long)c.gradient_accumulation_steps,
                   (long long)(c.per_device_train_batch_size * world * c.gradient_accumulation_steps),
                   (long long)c.zero_stage);
        else
            printf("steps: %lld total, %lld warmup (per_device_train_batch_size %lld x "
                   "gradient_accumulation_steps "
                   "%lld = %lld examples per update)\n",
                   (long long)total, (long long)warmup, (long long)c.per_device_train_batch_size,
                   (long long)c.gradient_accumulation_steps,
                   (long long)(c.per_device_train_batch_size * c.gradient_accumulation_steps));
        struct stat st;
        printf("opponent: %s%s%s\n",
               !need_ref   ? "none ("
               : opp_model ? "model (a second copy of model_name_or_path)"
                           : "stored scores ",
               !need_ref   ? (c.reference_free ? "reference_free)" : "loss_type sft)")
               : opp_model ? ""
                           : r.scores_path,
               !need_ref || opp_model          ? ""
               : stat(r.scores_path, &st) == 0 ? " (present; checked against the model when training starts)"
                                               : " (missing: computed before training)");
        memory_estimate(&c, &r.mcfg, opp_model);
        train_rows_free(&r);
        train_config_free(&c);
        return cli_agree(0);
    }
    if (rc == 0 && rank == 0) { /* rank 0 alone looks at and clears output_dir */
        char what[1024];
        previous_run(c.output_dir, what, sizeof what);
        if (c.overwrite_output_dir && (same_dir(c.output_dir, c.model_name_or_path) ||
                                       (c.tokenizer && same_dir(c.output_dir, c.tokenizer)))) {
            fprintf(stderr,
                    "spin train: output_dir %s is the model's directory: --overwrite would delete it\n",
                    c.output_dir);
            rc = 2;
        } else if (what[0] && c.overwrite_output_dir) {
            fprintf(stderr, "spin train: --overwrite: removing the previous run in %s (%s)\n", c.output_dir,
                    what);
            rc = clear_previous_run(c.output_dir);
        } else if (what[0] && !c.resume_from_checkpoint) {
            fprintf(stderr,
                    "spin train: output_dir %s holds a previous run (%s): --resume continues it, --overwrite "
                    "replaces it\n",
                    c.output_dir, what);
            rc = 1;
        }
    }
    spin_llama *policy = NULL, *ref = NULL;
    float *sc = NULL, *sr = NULL, *pc = NULL, *pw = NULL, *pl = NULL;
    if (rc == 0)
        rc = train_cli_load_model("train", &c, &policy);
    if (rc == 0 && opp_model)
        rc = train_cli_load_model("train", &c, &ref);
    if (rc == 0 && need_ref && !opp_model) {
        sc = malloc((size_t)r.data.n * sizeof *sc);
        sr = malloc((size_t)r.data.n * sizeof *sr);
        rc = sc && sr ? 0 : 1;
    }
    rc = cli_agree(rc);
    if (rc == 0 && need_ref && !opp_model)
        rc = opponent_scores(&c, &r, policy, sc, sr); /* agreed */
    if (rc == 0 && r.data.kind == SPIN_DATA_SPPO) {
        pc = malloc((size_t)r.data.n * sizeof *pc);
        pw = malloc((size_t)r.data.n * sizeof *pw);
        pl = malloc((size_t)r.data.n * sizeof *pl);
        for (int64_t i = 0; pc && pw && pl && i < r.data.n; i++) {
            pc[i] = r.data.ex[i].probs_chosen;
            pw[i] = r.data.ex[i].probs_win;
            pl[i] = r.data.ex[i].probs_lose;
        }
        rc = pc && pw && pl ? 0 : 1;
    }
    spin_train_config tc;
    if (rc == 0)
        rc = build_train_config(&c, &r, &tc);
    if (rc == 0 && world > 1) {
        tc.comm = cli_comm();
        tc.zero_stage = (int)c.zero_stage;
    }
    rc = cli_agree(rc);
    spin_train_result res = {0};
    if (rc == 0 && rank == 0)
        fprintf(stderr,
                "spin train: %lld %s examples, %lld updates (%lld warmup), loss %s, opponent %s -> %s\n",
                (long long)r.data.n, spin_data_kind_name(r.data.kind), (long long)total, (long long)warmup,
                c.loss_type,
                !need_ref   ? "none"
                : opp_model ? "model"
                            : "stored scores",
                c.output_dir);
    if (rc == 0 && rank == 0 && world > 1)
        fprintf(stderr, "spin train: data parallel over %d ranks (%s), zero_stage %lld, global batch %lld\n",
                world, spin_comm_kind(tc.comm), (long long)c.zero_stage,
                (long long)(c.per_device_train_batch_size * world));
    if (rc == 0) {
        spin_train_data td = {.policy = policy,
                              .reference = ref,
                              .examples = r.rows,
                              .n = r.data.n,
                              .ref_chosen = sc,
                              .ref_rejected = sr,
                              .probs_chosen = pc,
                              .probs_win = pw,
                              .probs_lose = pl,
                              .collate = r.collate};
        /* under mpirun a failure is agreed inside: rank 0's message names a failing rank */
        if (spin_train_run(&tc, &td, &res) != SPIN_OK) {
            if (rank == 0)
                fprintf(stderr, "spin train: %s\n", spin_last_error());
            rc = 1;
        }
    }
    if (rc == 0 && res.interrupted && res.global_step < res.total_steps) {
        if (rank == 0)
            fprintf(stderr, "spin train: stopped at step %lld of %lld; checkpoint %s (--resume continues)\n",
                    (long long)res.global_step, (long long)res.total_steps, res.last_checkpoint);
        rc = c.stop_after > 0 ? 0 : 130;
    } else if (rc == 0 && rank == 0) {
        /* run_spin.py's save_model(output_dir): the final weights in HF layout beside the checkpoints */
        if (spin_llama_save_as(policy, c.output_dir, spin_llama_dtype(policy), c.resume_from_checkpoint) !=
            SPIN_OK) {
            fprintf(stderr, "spin train: saving the final model: %s\n", spin_last_error());
            rc = 1;
        } else {
            printf("spin train: %lld updates, last loss %.6g%s; final model in %s\n",
                   (long long)res.global_step, res.last_loss, res.skipped ? " (some updates skipped)" : "",
                   c.output_dir);
        }
    }
    if (world > 1)
        rc = cli_agree(rc); /* every rank returns once rank 0 has written the final model */
    free(sc);
    free(sr);
    free(pc);
    free(pw);
    free(pl);
    spin_llama_free(ref);
    spin_llama_free(policy);
    train_rows_free(&r);
    train_config_free(&c);
    return rc;
}
