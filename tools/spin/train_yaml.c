/* uclaml/SPIN's YAML config and --key=value overrides for spin train / spin score (train_yaml.h). */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "tools/spin/train_yaml.h"
#include "train/optim.h"
#include "train/pref_loss.h"
#include "train/schedule.h"
#include "train/trainer.h"

typedef enum { K_STR, K_INT, K_FLOAT, K_BOOL, K_LIST, K_MIXER, K_ANY } ktype;
typedef enum {
    USED,    /* sets a field */
    IGNORED, /* no effect here; listed with the reason */
    ONLY     /* accepted (and ignored) only with one of the `accept` values; anything else is refused */
} kfate;

typedef struct {
    const char *name;
    ktype t;
    size_t off;
    kfate fate;
    const char *accept; /* ONLY: "|v1|v2|" of lower-cased values (null: absent, {} / []: empty) */
    const char *text;   /* USED: unused here; IGNORED / ONLY: why it has no effect / is refused */
} key_def;

#define F(x) offsetof(train_cli_config, x)
#define U(name, t) \
    { #name, t, F(name), USED, NULL, NULL }
#define IGN(name, why) \
    { #name, K_ANY, 0, IGNORED, NULL, why }
#define ONLY(name, acc, why) \
    { #name, K_ANY, 0, ONLY, acc, why }

static const char R_EVAL[] =
    "spin train does not evaluate while training (run `spin eval` on the checkpoints)";
static const char R_HUB[] = "nothing is uploaded to the Hugging Face Hub";
static const char R_DIST[] =
    "the processes come from the launcher (mpirun -np N, docs/distributed.md), one device each (--device / "
    "SPIN_DEVICE); the global batch is per_device_train_batch_size x ranks x gradient_accumulation_steps";
static const char R_LOG[] = "messages follow SPIN_LOG_LEVEL; metrics go to output_dir/metrics.jsonl";
static const char R_PEFT[] = "only used with use_peft, which is not supported";
static const char R_COMPILE[] = "a torch/CUDA execution setting with no counterpart here";

static const key_def keys[] = {
    /* ModelArguments */
    U(model_name_or_path, K_STR),
    U(torch_dtype, K_STR),
    ONLY(model_revision, "|main|null|", "Hub revisions: point model_name_or_path at a local directory"),
    IGN(model_code_revision, "Hub revisions: model_name_or_path is a local directory"),
    IGN(base_model_revision, R_PEFT),
    IGN(trust_remote_code, "no remote code is run; Llama and Mistral architectures load natively"),
    IGN(use_flash_attention_2, "an attention kernel choice in transformers; the math is the same"),
    ONLY(use_peft, "|false|null|", "LoRA/PEFT training is not supported (spin fine-tunes every weight)"),
    IGN(lora_r, R_PEFT),
    IGN(lora_alpha, R_PEFT),
    IGN(lora_dropout, R_PEFT),
    IGN(lora_target_modules, R_PEFT),
    IGN(lora_modules_to_save, R_PEFT),
    ONLY(load_in_8bit, "|false|null|", "bitsandbytes 8-bit training is not supported"),
    ONLY(load_in_4bit, "|false|null|", "bitsandbytes 4-bit training is not supported"),
    IGN(bnb_4bit_quant_type, "only used with load_in_4bit, which is not supported"),
    IGN(use_bnb_nested_quant, "only used with load_in_4bit, which is not supported"),
    /* DataArguments */
    U(chat_template, K_STR),
    {"dataset_mixer", K_MIXER, 0, USED, NULL, NULL},
    {"dataset_splits", K_LIST, 0, USED, NULL, NULL},
    IGN(preprocessing_num_workers, "datasets.map worker processes; spin uses --threads"),
    IGN(truncation_side,
        "run_spin.py sets it to left itself and the collator never asks the tokenizer to truncate"),
    IGN(max_train_samples, "run_spin.py only reports it and never applies it"),
    IGN(max_eval_samples, "run_spin.py only reports it and never applies it"),
    /* SPINConfig */
    U(beta, K_FLOAT),
    U(max_length, K_INT),
    U(max_prompt_length, K_INT),
    U(optim, K_STR),
    IGN(hub_model_revision, R_HUB),
    IGN(remove_unused_columns, "a datasets column filter; spin reads only the columns it needs"),
    ONLY(logging_first_step, "|true|null|", "the first update is always logged"),
    /* TrainingArguments (transformers 4.37): used */
    U(output_dir, K_STR),
    U(overwrite_output_dir, K_BOOL),
    U(per_device_train_batch_size, K_INT),
    U(gradient_accumulation_steps, K_INT),
    U(learning_rate, K_FLOAT),
    U(weight_decay, K_FLOAT),
    U(adam_beta1, K_FLOAT),
    U(adam_beta2, K_FLOAT),
    U(adam_epsilon, K_FLOAT),
    U(max_grad_norm, K_FLOAT),
    U(num_train_epochs, K_FLOAT),
    U(max_steps, K_INT),
    U(lr_scheduler_type, K_STR),
    U(warmup_ratio, K_FLOAT),
    U(warmup_steps, K_INT),
    U(logging_steps, K_INT),
    U(save_strategy, K_STR),
    U(save_steps, K_INT),
    U(save_total_limit, K_INT),
    U(seed, K_INT),
    U(data_seed, K_INT),
    U(bf16, K_BOOL),
    U(gradient_checkpointing, K_BOOL),
    U(resume_from_checkpoint, K_BOOL),
    /* spin's own keys (TRL DPOTrainer arguments uclaml/SPIN does not expose, and the opponent) */
    U(tokenizer, K_STR),
    U(loss_type, K_STR),
    U(label_smoothing, K_FLOAT),
    U(reference_free, K_BOOL),
    U(truncation_mode, K_STR),
    U(opponent, K_STR),
    U(opponent_scores, K_STR),
    U(on_nonfinite, K_STR),
    U(stop_after, K_INT),
    U(zero_stage, K_INT),
    /* TrainingArguments: evaluation */
    IGN(do_train, "spin train always trains"),
    ONLY(do_eval, "|false|null|", R_EVAL),
    ONLY(evaluation_strategy, "|no|false|null|", R_EVAL),
    ONLY(do_predict, "|false|null|", R_EVAL),
    ONLY(load_best_model_at_end, "|false|null|", R_EVAL),
    IGN(eval_steps, R_EVAL),
    IGN(per_device_eval_batch_size, R_EVAL),
    IGN(per_gpu_eval_batch_size, R_EVAL),
    IGN(eval_accumulation_steps, R_EVAL),
    IGN(eval_delay, R_EVAL),
    IGN(prediction_loss_only, R_EVAL),
    IGN(bf16_full_eval, R_EVAL),
    IGN(fp16_full_eval, R_EVAL),
    IGN(include_inputs_for_metrics, R_EVAL),
    IGN(metric_for_best_model, R_EVAL),
    IGN(greater_is_better, R_EVAL),
    IGN(jit_mode_eval, R_EVAL),
    IGN(use_legacy_prediction_loop, R_EVAL),
    IGN(label_names, R_EVAL),
    IGN(past_index, R_EVAL),
    /* the Hub */
    ONLY(push_to_hub, "|false|null|", "uploading to the Hugging Face Hub is not supported"),
    IGN(hub_model_id, R_HUB),
    IGN(hub_strategy, R_HUB),
    IGN(hub_token, R_HUB),
    IGN(hub_private_repo, R_HUB),
    IGN(hub_always_push, R_HUB),
    IGN(push_to_hub_model_id, R_HUB),
    IGN(push_to_hub_organization, R_HUB),
    IGN(push_to_hub_token, R_HUB),
    /* logging */
    IGN(log_level, R_LOG),
    IGN(log_level_replica, R_LOG),
    IGN(log_on_each_node, R_LOG),
    IGN(logging_dir, R_LOG),
    ONLY(logging_strategy, "|steps|null|", "metrics are logged every logging_steps updates"),
    IGN(logging_nan_inf_filter, "a non-finite loss stops the run or skips the update (on_nonfinite)"),
    IGN(disable_tqdm, "the progress line is shown when stderr is a terminal"),
    IGN(report_to, "no experiment trackers: metrics.jsonl (spin plot draws it)"),
    IGN(run_name, "no experiment trackers: metrics.jsonl (spin plot draws it)"),
    IGN(skip_memory_metrics, R_LOG),
    IGN(include_tokens_per_second, "tokens_per_s is always logged"),
    IGN(include_num_input_tokens_seen, R_LOG),
    /* processes, devices, data loading */
    IGN(local_rank, R_DIST),
    IGN(ddp_backend, R_DIST),
    IGN(ddp_find_unused_parameters, R_DIST),
    IGN(ddp_bucket_cap_mb, R_DIST),
    IGN(ddp_broadcast_buffers, R_DIST),
    IGN(ddp_timeout, R_DIST),
    IGN(tpu_num_cores, R_DIST),
    IGN(tpu_metrics_debug, R_DIST),
    IGN(fsdp, R_DIST),
    IGN(fsdp_min_num_params, R_DIST),
    IGN(fsdp_config, R_DIST),
    IGN(fsdp_transformer_layer_cls_to_wrap, R_DIST),
    IGN(deepspeed, R_DIST),
    IGN(no_cuda, R_DIST),
    IGN(use_cpu, R_DIST),
    IGN(use_mps_device, R_DIST),
    IGN(mp_parameters, R_DIST),
    IGN(dispatch_batches, R_DIST),
    IGN(split_batches, R_DIST),
    IGN(accelerator_config, R_DIST),
    ONLY(per_gpu_train_batch_size, "|null|", "a deprecated alias: use per_device_train_batch_size"),
    ONLY(dataloader_drop_last, "|false|null|", "the last partial batch is always used (HF's default)"),
    IGN(dataloader_num_workers, "batches are built in-process"),
    IGN(dataloader_pin_memory, "batches are built in-process"),
    IGN(dataloader_persistent_workers, "batches are built in-process"),
    IGN(dataloader_prefetch_factor, "batches are built in-process"),
    ONLY(group_by_length, "|false|null|", "batches are not grouped by length"),
    IGN(length_column_name, "only used with group_by_length"),
    ONLY(ignore_data_skip, "|false|null|", "a resumed run always continues at the saved data position"),
    ONLY(auto_find_batch_size, "|false|null|", "the batch size is never changed automatically"),
    /* precision and execution */
    ONLY(fp16, "|false|null|", "fp16 training is not supported"),
    IGN(fp16_opt_level, "apex mixed precision; fp16 is not supported"),
    IGN(fp16_backend, "apex mixed precision; fp16 is not supported"),
    IGN(half_precision_backend, R_COMPILE),
    IGN(tf32, R_COMPILE),
    IGN(torchdynamo, R_COMPILE),
    IGN(torch_compile, R_COMPILE),
    IGN(torch_compile_backend, R_COMPILE),
    IGN(torch_compile_mode, R_COMPILE),
    IGN(use_ipex, R_COMPILE),
    IGN(ray_scope, R_COMPILE),
    IGN(debug, R_COMPILE),
    IGN(full_determinism, "runs are deterministic for a given seed, device and thread count"),
    IGN(gradient_checkpointing_kwargs, "use_reentrant is a torch detail; recompute is per block"),
    ONLY(neftune_noise_alpha, "|null|", "NEFTune embedding noise is not supported"),
    /* optimizer extras */
    ONLY(optim_args, "|null||", "optimizer arguments beyond the named keys are not supported"),
    ONLY(adafactor, "|false|null|", "Adafactor is not supported (optim: rmsprop or adamw_torch)"),
    ONLY(lr_scheduler_kwargs, "|null|{}|", "scheduler arguments beyond the named keys are not supported"),
    ONLY(label_smoothing_factor, "|0|0.0|null|",
         "HF's classification label smoothing; the preference loss takes label_smoothing"),
    /* checkpoints */
    ONLY(save_safetensors, "|true|null|", "checkpoints are always safetensors"),
    ONLY(save_only_model, "|false|null|", "checkpoints always hold the optimizer state, so they resume"),
    IGN(save_on_each_node, R_DIST),
};
#define N_KEYS ((int)(sizeof keys / sizeof *keys))

const char train_config_help[] =
    "config keys (YAML file, or --key=value / --key value; dashes read as underscores):\n"
    "  model_name_or_path DIR   model directory (alias --model; required)\n"
    "  tokenizer PATH           tokenizer.json or its directory (default: the model directory)\n"
    "  chat_template NAME|TEXT  zephyr | chatml | llama-2 | mistral | instruction, or the Jinja text of\n"
    "                           one (alias --template; default: tokenizer_config.json's, else zephyr,\n"
    "                           uclaml/SPIN's DEFAULT_CHAT_TEMPLATE)\n"
    "  dataset_mixer {P: F}     datasets and the prefix fraction of each train split; P is a JSONL file\n"
    "                           or a directory of <split>*.jsonl (alias --data P[:F][,P[:F]...]; required)\n"
    "  dataset_splits LIST      split names; those containing \"train\" are trained on, \"test\" ones are\n"
    "                           not read (default train,test)\n"
    "  torch_dtype T            auto | float32 | bfloat16 (= bf16: true) (default null: f32)\n"
    "  loss_type NAME           sigmoid | hinge | ipo | robust | sppo | sppo_single | sppo_hard | sft\n"
    "                           (alias --loss; default sigmoid, SPIN's loss)\n"
    "  beta B                   (default 0.1)\n"
    "  label_smoothing E        sigmoid (cDPO) and robust (alias --label-smoothing; default 0)\n"
    "  reference_free BOOL      reference log-probs taken as 0 (alias --reference-free; default false)\n"
    "  opponent scores|model    (b) stored opponent scores from `spin score` (computed first when the\n"
    "                           file is missing) or (a) the opponent model in memory (default scores)\n"
    "  opponent_scores PATH     the scores file (alias --scores; default: <dir>/opponent_scores.jsonl\n"
    "                           for a dataset directory, <file>.opponent_scores.jsonl for a JSONL file,\n"
    "                           output_dir/opponent_scores.jsonl for several datasets)\n"
    "  max_length N             prompt + response tokens kept (default 1024)\n"
    "  max_prompt_length N      prompt tokens kept when too long (default 512)\n"
    "  truncation_mode M        keep_end | keep_start (default keep_end)\n"
    "  optim NAME               rmsprop | adamw_torch | adamw_torch_fused | adamw_hf (default rmsprop)\n"
    "  learning_rate LR         (default 5e-7)\n"
    "  lr_scheduler_type NAME   linear | cosine | constant | constant_with_warmup (default linear)\n"
    "  warmup_ratio R           (default 0.1)   warmup_steps N  (default 0: use warmup_ratio)\n"
    "  num_train_epochs E       (default 1)     max_steps N     (default 0: use the epochs)\n"
    "  per_device_train_batch_size B (default 8)  gradient_accumulation_steps A (default 1)\n"
    "  weight_decay W (default 0; HF's groups: biases and Llama's norm weights are not decayed)\n"
    "  max_grad_norm G          (default 1.0)\n"
    "  adam_beta1 / adam_beta2 / adam_epsilon  (defaults 0.9 / 0.999 / 1e-8)\n"
    "  seed S                   (default 42)    data_seed S     shuffle seed (default: seed)\n"
    "  gradient_checkpointing BOOL  recompute each block in backward (default false)\n"
    "  bf16 BOOL                bf16 weights (default false)\n"
    "  output_dir DIR           checkpoints, metrics.jsonl, final model (alias --output; required)\n"
    "  overwrite_output_dir BOOL  replace a previous run in output_dir (alias --overwrite; default false)\n"
    "  resume_from_checkpoint BOOL  continue from output_dir's newest checkpoint (alias --resume;\n"
    "                           default false)\n"
    "  logging_steps N          a metrics line every N updates (default 10)\n"
    "  save_strategy S          epoch | steps | no (default epoch; a checkpoint is always written at the "
    "end)\n"
    "  save_steps N (default 500, with save_strategy steps)  save_total_limit N (default null: keep all)\n"
    "  on_nonfinite stop|skip   a NaN/Inf loss or gradient stops the run or skips the update (default stop)\n"
    "  stop_after N             stop with a checkpoint after N updates of this run (default 0: never)\n"
    "  zero_stage N             under mpirun: 0 = every rank keeps the whole optimizer, 1 = ZeRO-1 (the\n"
    "                           optimizer state and f32 masters sharded); 2 and 3 (DeepSpeed's gradient\n"
    "                           and parameter sharding) are refused (default 0; docs/distributed.md)\n"
    "Other keys of uclaml/SPIN's ModelArguments, DataArguments and SPINConfig/TrainingArguments are\n"
    "accepted and listed as ignored with the reason, or refused when they ask for something spin does\n"
    "not do (use_peft: true, fp16: true, do_eval: true, push_to_hub: true, ...). docs/spin.md has the "
    "table.\n";

void train_config_defaults(train_cli_config *c) {
    memset(c, 0, sizeof *c);
    spin_train_config d = spin_train_defaults();
    c->beta = d.loss.beta;
    c->learning_rate = d.learning_rate;
    c->num_train_epochs = d.num_train_epochs;
    c->warmup_ratio = d.warmup_ratio;
    c->weight_decay = 0;
    spin_optim_config a = spin_optim_defaults(SPIN_OPTIM_ADAMW);
    c->adam_beta1 = a.beta1;
    c->adam_beta2 = a.beta2;
    c->adam_epsilon = a.eps;
    c->max_grad_norm = a.max_grad_norm;
    c->per_device_train_batch_size = d.per_device_train_batch_size;
    c->gradient_accumulation_steps = d.gradient_accumulation_steps;
    c->max_length = 1024;
    c->max_prompt_length = 512;
    c->seed = (int64_t)d.seed;
    c->data_seed = -1;
    c->logging_steps = d.logging_steps;
    c->save_steps = 500;
    c->where = calloc(N_KEYS, sizeof *c->where);
    for (int i = 0; c->where && i < N_KEYS; i++)
        strcpy(c->where[i], "default");
    static const struct {
        size_t off;
        const char *v;
    } strs[] = {{F(loss_type), "sigmoid"}, {F(truncation_mode), "keep_end"}, {F(opponent), "scores"},
                {F(optim), "rmsprop"},     {F(lr_scheduler_type), "linear"}, {F(save_strategy), "epoch"},
                {F(on_nonfinite), "stop"}};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        *(char **)((char *)c + strs[i].off) = strdup(strs[i].v);
    c->dataset_splits = malloc(2 * sizeof *c->dataset_splits);
    if (c->dataset_splits) {
        c->dataset_splits[0] = strdup("train");
        c->dataset_splits[1] = strdup("test");
        c->n_splits = 2;
    }
}

static void free_list(char **l, int n) {
    for (int i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void free_mixer(train_cli_config *c) {
    for (int i = 0; i < c->n_datasets; i++)
        free(c->datasets[i].path);
    free(c->datasets);
    c->datasets = NULL;
    c->n_datasets = 0;
}

void train_config_free(train_cli_config *c) {
    for (int i = 0; i < N_KEYS; i++)
        if (keys[i].fate == USED && keys[i].t == K_STR)
            free(*(char **)((char *)c + keys[i].off));
    free_list(c->dataset_splits, c->n_splits);
    free_mixer(c);
    free_list(c->ignored, c->n_ignored);
    free(c->where);
    memset(c, 0, sizeof *c);
}

static int find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].name, name))
            return i;
    return -1;
}

const char *train_config_where(const train_cli_config *c, const char *name) {
    int k = find_key(name);
    return k >= 0 && c->where ? c->where[k] : "default";
}

/* ---- one value, from a scalar text (YAML or command line) ---- */

static bool is_null_text(const char *s) {
    return !*s || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL") || !strcmp(s, "~");
}

static int parse_bool(const char *s, bool *out) {
    static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
    static const char *const f[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (!strcmp(s, t[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(s, f[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int add_dataset(train_cli_config *c, const char *path, double frac) {
    train_dataset *d = realloc(c->datasets, (size_t)(c->n_datasets + 1) * sizeof *d);
    if (!d)
        return -1;
    c->datasets = d;
    d[c->n_datasets].path = strdup(path);
    d[c->n_datasets].frac = frac;
    return d[c->n_datasets++].path ? 0 : -1;
}

static int parse_frac(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Sets key k from scalar text s (null: is_null). Returns 0 or prints "<where>: ..." and returns -1. */
static int set_scalar(const char *cmd, train_cli_config *c, int k, const char *s, bool is_null,
                      const char *where) {
    const key_def *d = &keys[k];
    void *p = (char *)c + d->off;
    switch (d->t) {
    case K_STR:
        free(*(char **)p);
        *(char **)p = is_null ? NULL : strdup(s);
        return 0;
    case K_INT: {
        if (is_null)
            return 0; /* null keeps the default (save_total_limit: keep all) */
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end) {
            fprintf(stderr, "spin %s: %s: %s: expected an integer, got '%s'\n", cmd, where, d->name, s);
            return -1;
        }
        *(int64_t *)p = v;
        return 0;
    }
    case K_FLOAT: {
        if (is_null)
            return 0;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end) {
            fprintf(stderr, "spin %s: %s: %s: expected a number, got '%s'\n", cmd, where, d->name, s);
            return -1;
        }
        *(double *)p = v;
        return 0;
    }
    case K_BOOL:
        if (is_null)
            return 0;
        if (parse_bool(s, (bool *)p) != 0) {
            fprintf(stderr, "spin %s: %s: %s: expected true or false, got '%s'\n", cmd, where, d->name, s);
            return -1;
        }
        return 0;
    case K_LIST: {
        free_list(c->dataset_splits, c->n_splits);
        c->dataset_splits = NULL;
        c->n_splits = 0;
        if (is_null)
            return 0;
        const char *q = s;
        for (;;) { /* comma-split, as H4ArgumentParser does for List[str] */
            const char *e = strchr(q, ',');
            size_t n = e ? (size_t)(e - q) : strlen(q);
            char **l = realloc(c->dataset_splits, (size_t)(c->n_splits + 1) * sizeof *l);
            if (!l)
                return -1;
            c->dataset_splits = l;
            l[c->n_splits++] = strndup(q, n);
            if (!e)
                break;
            q = e + 1;
        }
        return 0;
    }
    case K_MIXER: {
        free_mixer(c);
        if (is_null)
            return 0;
        const char *q = s; /* P[:F][,P[:F]...] */
        for (;;) {
            const char *e = strchr(q, ',');
            size_t n = e ? (size_t)(e - q) : strlen(q);
            char *item = strndup(q, n);
            char *colon = item ? strrchr(item, ':') : NULL;
            double frac = 1.0;
            if (colon && parse_frac(colon + 1, &frac) == 0)
                *colon = 0;
            else
                frac = 1.0;
            int r = item && *item ? add_dataset(c, item, frac) : -1;
            if (r != 0)
                fprintf(
                    stderr,
                    "spin %s: %s: dataset_mixer: expected PATH[:FRACTION][,PATH[:FRACTION]...], got '%s'\n",
                    cmd, where, s);
            free(item);
            if (r != 0)
                return -1;
            if (!e)
                break;
            q = e + 1;
        }
        return 0;
    }
    case K_ANY: return 0;
    }
    return 0;
}

/* An ignored or restricted key: checks ONLY values (norm: the value as compared, lower-cased) and
 * records the reason once. */
static int note_other(const char *cmd, train_cli_config *c, int k, const char *norm, const char *where) {
    const key_def *d = &keys[k];
    if (d->fate == ONLY) {
        char want[64];
        snprintf(want, sizeof want, "|%s|", norm);
        if (!strstr(d->accept, want)) {
            fprintf(stderr, "spin %s: %s: %s: %s is not supported: %s\n", cmd, where, d->name, norm, d->text);
            return -1;
        }
    }
    for (int i = 0; i < c->n_ignored; i++)
        if (!strncmp(c->ignored[i], d->name, strlen(d->name)) && c->ignored[i][strlen(d->name)] == ':')
            return 0;
    char **l = realloc(c->ignored, (size_t)(c->n_ignored + 1) * sizeof *l);
    if (!l)
        return -1;
    c->ignored = l;
    size_t n = strlen(d->name) + strlen(d->text) + 4;
    l[c->n_ignored] = malloc(n);
    if (!l[c->n_ignored])
        return -1;
    snprintf(l[c->n_ignored++], n, "%s: %s", d->name, d->text);
    return 0;
}

static void lower(char *s) {
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* ---- YAML ---- */

static bool plain_null(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           is_null_text((const char *)n->data.scalar.value);
}

static int set_from_node(const char *cmd, train_cli_config *c, int k, yaml_document_t *doc, yaml_node_t *v,
                         const char *where) {
    const key_def *d = &keys[k];
    if (d->fate != USED) {
        char norm[64] = "<value>";
        if (plain_null(v))
            strcpy(norm, "null");
        else if (v->type == YAML_SCALAR_NODE)
            snprintf(norm, sizeof norm, "%s", (const char *)v->data.scalar.value);
        else if (v->type == YAML_MAPPING_NODE && v->data.mapping.pairs.top == v->data.mapping.pairs.start)
            strcpy(norm, "{}");
        else if (v->type == YAML_SEQUENCE_NODE && v->data.sequence.items.top == v->data.sequence.items.start)
            strcpy(norm, "[]");
        lower(norm);
        return note_other(cmd, c, k, norm, where);
    }
    if (d->t == K_MIXER && v->type == YAML_MAPPING_NODE) {
        free_mixer(c);
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(doc, p->key),
                        *vn = yaml_document_get_node(doc, p->value);
            double frac;
            if (!kn || kn->type != YAML_SCALAR_NODE || !vn || vn->type != YAML_SCALAR_NODE ||
                parse_frac((const char *)vn->data.scalar.value, &frac) != 0) {
                fprintf(stderr, "spin %s: %s:%lu: dataset_mixer: expected 'dataset: fraction' entries\n", cmd,
                        where, (unsigned long)(kn ? kn->start_mark.line + 1 : 0));
                return -1;
            }
            for (int i = 0; i < c->n_datasets; i++)
                if (!strcmp(c->datasets[i].path, (const char *)kn->data.scalar.value)) {
                    fprintf(stderr, "spin %s: %s: dataset_mixer: %s is listed twice\n", cmd, where,
                            c->datasets[i].path);
                    return -1;
                }
            if (add_dataset(c, (const char *)kn->data.scalar.value, frac) != 0)
                return -1;
        }
        return 0;
    }
    if (d->t == K_LIST && v->type == YAML_SEQUENCE_NODE) {
        free_list(c->dataset_splits, c->n_splits);
        c->dataset_splits = NULL;
        c->n_splits = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(doc, *it);
            if (!e || e->type != YAML_SCALAR_NODE) {
                fprintf(stderr, "spin %s: %s: %s: expected a list of names\n", cmd, where, d->name);
                return -1;
            }
            char **l = realloc(c->dataset_splits, (size_t)(c->n_splits + 1) * sizeof *l);
            if (!l)
                return -1;
            c->dataset_splits = l;
            l[c->n_splits++] = strdup((const char *)e->data.scalar.value);
        }
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE) {
        fprintf(stderr, "spin %s: %s: %s: expected a single value, got a %s\n", cmd, where, d->name,
                v->type == YAML_MAPPING_NODE ? "mapping" : "list");
        return -1;
    }
    return set_scalar(cmd, c, k, (const char *)v->data.scalar.value, plain_null(v), where);
}

int train_config_read_yaml(const char *cmd, const char *path, train_cli_config *c) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "spin %s: %s: cannot open the config: %s\n", cmd, path, strerror(errno));
        return 2;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return 2;
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        fprintf(stderr, "spin %s: %s:%lu: YAML error: %s%s%s\n", cmd, path,
                (unsigned long)(parser.problem_mark.line + 1), parser.problem ? parser.problem : "unknown",
                parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(f);
        return 2;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type != YAML_MAPPING_NODE) {
        fprintf(stderr, "spin %s: %s:%lu: the config must be a mapping of keys to values\n", cmd, path,
                (unsigned long)(root->start_mark.line + 1));
        rc = 2;
    }
    unsigned long *first_line = calloc(N_KEYS, sizeof *first_line);
    for (yaml_node_pair_t *p = root && !rc ? root->data.mapping.pairs.start : NULL;
         p && p < root->data.mapping.pairs.top && !rc; p++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, p->key), *vn = yaml_document_get_node(&doc, p->value);
        unsigned long line = kn ? (unsigned long)kn->start_mark.line + 1 : 0;
        if (!kn || kn->type != YAML_SCALAR_NODE || !vn) {
            fprintf(stderr, "spin %s: %s:%lu: a key must be a plain name\n", cmd, path, line);
            rc = 2;
            break;
        }
        const char *name = (const char *)kn->data.scalar.value;
        int k = find_key(name);
        if (k < 0) {
            fprintf(stderr,
                    "spin %s: %s:%lu: unknown key '%s' (not a key of uclaml/SPIN's config nor of spin's; see "
                    "spin %s --help)\n",
                    cmd, path, line, name, cmd);
            rc = 2;
            break;
        }
        if (!first_line) {
            rc = 2;
            break;
        }
        if (first_line[k]) {
            fprintf(stderr, "spin %s: %s:%lu: key '%s' is given twice (first at line %lu); remove one\n", cmd,
                    path, line, name, first_line[k]);
            rc = 2;
            break;
        }
        first_line[k] = line;
        char where[TRAIN_WHERE_LEN];
        snprintf(where, sizeof where, "%s:%lu", path, line);
        if (set_from_node(cmd, c, k, &doc, vn, where) != 0)
            rc = 2;
        else if (c->where)
            snprintf(c->where[k], TRAIN_WHERE_LEN, "%s", where);
    }
    free(first_line);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

/* ---- the command line ---- */

static const struct {
    const char *alias, *key;
} aliases[] = {{"model", "model_name_or_path"},
               {"data", "dataset_mixer"},
               {"output", "output_dir"},
               {"loss", "loss_type"},
               {"template", "chat_template"},
               {"scores", "opponent_scores"},
               {"overwrite", "overwrite_output_dir"},
               {"resume", "resume_from_checkpoint"}};

int train_config_set_cli(const char *cmd, train_cli_config *c, const char *name, const char *eq_value,
                         const char *next, int *consumed) {
    *consumed = 0;
    char key[128];
    snprintf(key, sizeof key, "%s", name);
    for (char *q = key; *q; q++)
        if (*q == '-')
            *q = '_';
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (!strcmp(key, aliases[i].alias))
            snprintf(key, sizeof key, "%s", aliases[i].key);
    int k = find_key(key);
    if (k < 0)
        return -2;
    if (c->where && strncmp(c->where[k], "--", 2) == 0) {
        fprintf(stderr, "spin %s: --%s is given twice on the command line (also as %s)\n", cmd, name,
                c->where[k]);
        return -1;
    }
    const char *v = eq_value;
    if (!v && keys[k].t == K_BOOL) {
        v = "true";
    } else if (!v) {
        if (!next) {
            fprintf(stderr, "spin %s: --%s needs a value\n", cmd, name);
            return -1;
        }
        v = next;
        *consumed = 1;
    }
    char where[TRAIN_WHERE_LEN];
    snprintf(where, sizeof where, "--%s=%s", name, v);
    int r;
    if (keys[k].fate != USED) {
        char norm[64];
        snprintf(norm, sizeof norm, "%s", is_null_text(v) ? "null" : v);
        lower(norm);
        r = note_other(cmd, c, k, norm, where);
    } else {
        r = set_scalar(cmd, c, k, v, is_null_text(v), where);
    }
    if (r != 0)
        return -1;
    if (c->where)
        snprintf(c->where[k], TRAIN_WHERE_LEN, "%s", where);
    return 0;
}

/* ---- checks ---- */

static int bad(const char *cmd, const train_cli_config *c, const char *key, const char *fmt, const char *v) {
    fprintf(stderr, "spin %s: %s: %s: ", cmd, train_config_where(c, key), key);
    fprintf(stderr, fmt, v);
    fputc('\n', stderr);
    return 2;
}

static bool one_of(const char *s, const char *const *l, int n) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, l[i]))
            return true;
    return false;
}

int train_config_check(const char *cmd, const train_cli_config *c) {
    char num[64];
#define NUM(x) (snprintf(num, sizeof num, "%g", (double)(x)), num)
    if (!c->model_name_or_path)
        return bad(cmd, c, "model_name_or_path", "%s", "required (the model directory; --model DIR)");
    if (c->n_datasets == 0)
        return bad(cmd, c, "dataset_mixer", "%s", "required (--data FILE.jsonl, or a dataset_mixer mapping)");
    for (int i = 0; i < c->n_datasets; i++)
        if (!(c->datasets[i].frac >= 0 && c->datasets[i].frac <= 1))
            return bad(cmd, c, "dataset_mixer", "the fraction of each dataset must be in [0, 1] (got %s)",
                       NUM(c->datasets[i].frac));
    bool train_split = false;
    for (int i = 0; i < c->n_splits; i++) {
        if (!strstr(c->dataset_splits[i], "train") && !strstr(c->dataset_splits[i], "test"))
            return bad(cmd, c, "dataset_splits", "split '%s' is neither a train nor a test split",
                       c->dataset_splits[i]);
        train_split |= strstr(c->dataset_splits[i], "train") != NULL;
    }
    if (!train_split)
        return bad(cmd, c, "dataset_splits", "%s", "no train split");
    spin_loss_type lt;
    if (spin_loss_type_from_name(c->loss_type, &lt) != SPIN_OK)
        return bad(cmd, c, "loss_type", "%s", spin_last_error());
    if (!(c->beta > 0))
        return bad(cmd, c, "beta", "must be > 0 (got %s)", NUM(c->beta));
    if (!(c->label_smoothing >= 0 && c->label_smoothing < 1))
        return bad(cmd, c, "label_smoothing", "must be in [0, 1) (got %s)", NUM(c->label_smoothing));
    if (c->label_smoothing > 0 && lt != SPIN_LOSS_SIGMOID && lt != SPIN_LOSS_ROBUST)
        return bad(cmd, c, "label_smoothing", "%s",
                   "only the sigmoid and robust losses take label smoothing");
    if (lt == SPIN_LOSS_ROBUST && !(c->label_smoothing < 0.5))
        return bad(cmd, c, "label_smoothing", "robust needs < 0.5 (got %s)", NUM(c->label_smoothing));
    if (c->max_length < 2)
        return bad(cmd, c, "max_length", "must be >= 2 (got %s)", NUM(c->max_length));
    if (c->max_prompt_length < 1 || c->max_prompt_length >= c->max_length)
        return bad(cmd, c, "max_prompt_length", "must be in [1, max_length) (got %s)",
                   NUM(c->max_prompt_length));
    static const char *const trunc[] = {"keep_end", "keep_start"}, *const opp[] = {"scores", "model"},
                             *const save[] = {"epoch", "steps", "no"}, *const nf[] = {"stop", "skip"};
    if (!one_of(c->truncation_mode, trunc, 2))
        return bad(cmd, c, "truncation_mode", "expected keep_end or keep_start, got '%s'",
                   c->truncation_mode ? c->truncation_mode : "null");
    if (!one_of(c->opponent, opp, 2))
        return bad(cmd, c, "opponent", "expected scores or model, got '%s'",
                   c->opponent ? c->opponent : "null");
    if (!one_of(c->save_strategy, save, 3))
        return bad(cmd, c, "save_strategy", "expected epoch, steps or no, got '%s'",
                   c->save_strategy ? c->save_strategy : "null");
    if (!one_of(c->on_nonfinite, nf, 2))
        return bad(cmd, c, "on_nonfinite", "expected stop or skip, got '%s'",
                   c->on_nonfinite ? c->on_nonfinite : "null");
    spin_optim_kind ok;
    if (spin_optim_kind_from_name(c->optim ? c->optim : "null", &ok) != SPIN_OK)
        return bad(cmd, c, "optim", "%s", spin_last_error());
    spin_sched_kind sk;
    if (spin_sched_kind_from_name(c->lr_scheduler_type ? c->lr_scheduler_type : "null", &sk) != SPIN_OK)
        return bad(cmd, c, "lr_scheduler_type", "%s", spin_last_error());
    if (!(c->learning_rate >= 0))
        return bad(cmd, c, "learning_rate", "must be >= 0 (got %s)", NUM(c->learning_rate));
    if (c->max_steps <= 0 && !(c->num_train_epochs > 0))
        return bad(cmd, c, "num_train_epochs", "must be > 0 (got %s)", NUM(c->num_train_epochs));
    if (!(c->warmup_ratio >= 0 && c->warmup_ratio <= 1))
        return bad(cmd, c, "warmup_ratio", "must be in [0, 1] (got %s)", NUM(c->warmup_ratio));
    if (c->warmup_steps < 0)
        return bad(cmd, c, "warmup_steps", "must be >= 0 (got %s)", NUM(c->warmup_steps));
    if (c->per_device_train_batch_size < 1)
        return bad(cmd, c, "per_device_train_batch_size", "must be >= 1 (got %s)",
                   NUM(c->per_device_train_batch_size));
    if (c->gradient_accumulation_steps < 1)
        return bad(cmd, c, "gradient_accumulation_steps", "must be >= 1 (got %s)",
                   NUM(c->gradient_accumulation_steps));
    if (!(c->weight_decay >= 0))
        return bad(cmd, c, "weight_decay", "must be >= 0 (got %s)", NUM(c->weight_decay));
    if (c->logging_steps < 0)
        return bad(cmd, c, "logging_steps", "must be >= 0 (got %s)", NUM(c->logging_steps));
    if (c->save_steps < 0 || (c->save_steps == 0 && !strcmp(c->save_strategy, "steps")))
        return bad(cmd, c, "save_steps", "must be >= 1 with save_strategy steps (got %s)",
                   NUM(c->save_steps));
    if (c->save_total_limit < 0)
        return bad(cmd, c, "save_total_limit", "must be >= 0 or null (got %s)", NUM(c->save_total_limit));
    if (c->seed < 0)
        return bad(cmd, c, "seed", "must be >= 0 (got %s)", NUM(c->seed));
    if (c->stop_after < 0)
        return bad(cmd, c, "stop_after", "must be >= 0 (got %s)", NUM(c->stop_after));
    if (c->zero_stage == 2 || c->zero_stage == 3)
        return bad(cmd, c, "zero_stage",
                   "%s is not implemented: spin shards the optimizer state (1, ZeRO-1) but not the gradients "
                   "(2) or the parameters (3); use 1",
                   NUM(c->zero_stage));
    if (c->zero_stage != 0 && c->zero_stage != 1)
        return bad(cmd, c, "zero_stage", "must be 0 or 1 (got %s)", NUM(c->zero_stage));
    if (c->overwrite_output_dir && c->resume_from_checkpoint)
        return bad(cmd, c, "resume_from_checkpoint", "%s", "cannot be combined with overwrite_output_dir");
    static const char *const dtypes[] = {"auto", "float32", "bfloat16"};
    if (c->torch_dtype && !one_of(c->torch_dtype, dtypes, 3))
        return bad(cmd, c, "torch_dtype", "'%s' is not supported (auto, float32, bfloat16)", c->torch_dtype);
    return 0;
#undef NUM
}

/* ---- printing ---- */

void train_config_print(FILE *f, const train_cli_config *c) {
    for (int k = 0; k < N_KEYS; k++) {
        const key_def *d = &keys[k];
        if (d->fate != USED)
            continue;
        const void *p = (const char *)c + d->off;
        switch (d->t) {
        case K_STR: fprintf(f, "%s: %s", d->name, *(char *const *)p ? *(char *const *)p : "null"); break;
        case K_INT: fprintf(f, "%s: %lld", d->name, (long long)*(const int64_t *)p); break;
        case K_FLOAT: fprintf(f, "%s: %.9g", d->name, *(const double *)p); break;
        case K_BOOL: fprintf(f, "%s: %s", d->name, *(const bool *)p ? "true" : "false"); break;
        case K_LIST:
            fprintf(f, "%s: [", d->name);
            for (int i = 0; i < c->n_splits; i++)
                fprintf(f, i ? ", %s" : "%s", c->dataset_splits[i]);
            fputc(']', f);
            break;
        case K_MIXER:
            fprintf(f, "%s:", d->name);
            for (int i = 0; i < c->n_datasets; i++)
                fprintf(f, "\n  %s: %.9g", c->datasets[i].path, c->datasets[i].frac);
            break;
        case K_ANY: break;
        }
        fprintf(f, "  # %s\n", c->where ? c->where[k] : "default");
    }
}

void train_config_print_ignored(const char *cmd, const train_cli_config *c) {
    if (c->n_ignored == 0)
        return;
    fprintf(stderr, "spin %s: %d config key%s without effect here:\n", cmd, c->n_ignored,
            c->n_ignored == 1 ? "" : "s");
    for (int i = 0; i < c->n_ignored; i++)
        fprintf(stderr, "  %s\n", c->ignored[i]);
}
