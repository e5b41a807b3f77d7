#define _POSIX_C_SOURCE 200809L
#include "train/trainer.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/rng.h"
#include "models/safetensors.h"
#include "train/checkpoint.h"
#include "train/dist_train.h"
#include "train/pref_step.h"

bool spin_train_decays(spin_decay_rule rule, const spin_llama *m, int i) {
    if (rule == SPIN_DECAY_ALL)
        return true;
    const char *name = m->names[i];
    if (strstr(name, "bias"))
        return false;
    /* HF names: model.layers.N.{input,post_attention}_layernorm.weight and model.norm.weight */
    size_t n = strlen(name);
    bool norm = n >= 11 && strcmp(name + n - 11, "norm.weight") == 0;
    return !(norm && strcmp(m->cfg.architecture, "MistralForCausalLM") != 0);
}

spin_train_config spin_train_defaults(void) {
    spin_train_config c;
    memset(&c, 0, sizeof c);
    c.loss = (spin_pref_loss_opts){.type = SPIN_LOSS_SIGMOID, .beta = 0.1f};
    c.optim = spin_optim_defaults(SPIN_OPTIM_RMSPROP);
    c.scheduler = SPIN_SCHED_LINEAR;
    c.learning_rate = 5e-7;
    c.warmup_ratio = 0.1;
    c.num_train_epochs = 1;
    c.per_device_train_batch_size = 8;
    c.gradient_accumulation_steps = 1;
    c.seed = 42;
    c.shuffle = true;
    c.logging_steps = 10;
    c.save_each_epoch = true;
    c.nonfinite = SPIN_NONFINITE_STOP;
    c.spin_names = true;
    return c;
}

/* ---- signals: the loop polls the flag between updates ---- */
static volatile sig_atomic_t g_signal;
static void on_signal(int sig) {
    g_signal = sig;
}

/* ---- where the loop stands; everything a bit-exact resume needs besides weights and optimizer ---- */
typedef struct {
    int64_t global_step, epoch, micro, total_batched, skipped;
} position;

/* Epoch e's order of the n examples: Fisher-Yates over a Philox stream keyed by (seed, e), so the
 * order depends only on the seed and the epoch (a resumed run recomputes it). */
static void shuffle(int64_t *perm, int64_t n, bool on, uint64_t seed, int64_t epoch) {
    spin_rng r = {seed, (uint64_t)epoch << 40};
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    if (!on)
        return;
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t x = ((uint64_t)spin_rng_next_u32(&r) << 32) | spin_rng_next_u32(&r);
        int64_t j = (int64_t)(x % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static spin_status check_config(const spin_train_config *c, const spin_train_data *d) {
    if (!d->policy || !d->examples || d->n <= 0)
        return spin_fail(SPIN_ERR_INVALID, "train: no policy model or an empty dataset");
    if (c->per_device_train_batch_size <= 0)
        return spin_fail(SPIN_ERR_INVALID, "per_device_train_batch_size must be positive (got %lld)",
                         (long long)c->per_device_train_batch_size);
    if (c->gradient_accumulation_steps <= 0)
        return spin_fail(SPIN_ERR_INVALID, "gradient_accumulation_steps must be positive (got %lld)",
                         (long long)c->gradient_accumulation_steps);
    if (!(c->learning_rate >= 0))
        return spin_fail(SPIN_ERR_INVALID, "learning_rate must be >= 0 (got %g)", c->learning_rate);
    if (c->max_steps <= 0 && !(c->num_train_epochs > 0))
        return spin_fail(SPIN_ERR_INVALID, "num_train_epochs must be positive (got %g)", c->num_train_epochs);
    if (!(c->warmup_ratio >= 0 && c->warmup_ratio <= 1))
        return spin_fail(SPIN_ERR_INVALID, "warmup_ratio must be in [0, 1] (got %g)", c->warmup_ratio);
    if (c->logging_steps < 0 || c->save_steps < 0 || c->save_total_limit < 0)
        return spin_fail(SPIN_ERR_INVALID, "logging_steps, save_steps and save_total_limit must be >= 0");
    if (c->precision != SPIN_F32 && c->precision != SPIN_BF16)
        return spin_fail(SPIN_ERR_INVALID, "precision must be f32 or bf16 (got %s)",
                         spin_dtype_name(c->precision));
    if (c->resume && !c->output_dir)
        return spin_fail(SPIN_ERR_INVALID, "resume needs output_dir");
    bool sppo = c->loss.type == SPIN_LOSS_SPPO || c->loss.type == SPIN_LOSS_SPPO_SINGLE;
    if (sppo && !(c->loss.type == SPIN_LOSS_SPPO ? d->probs_win && d->probs_lose : d->probs_chosen != NULL))
        return spin_fail(SPIN_ERR_INVALID, "loss_type %s needs the SPPO columns (chosen_probs%s) in the data",
                         spin_loss_type_name(c->loss.type),
                         c->loss.type == SPIN_LOSS_SPPO ? "_win/_lose" : "");
    bool need_ref = c->loss.type != SPIN_LOSS_SFT && !c->loss.reference_free;
    if (need_ref && !d->reference && !(d->ref_chosen && d->ref_rejected))
        return spin_fail(SPIN_ERR_INVALID,
                         "loss_type %s needs a reference: a frozen reference model or stored opponent scores",
                         spin_loss_type_name(c->loss.type));
    return SPIN_OK;
}

/* ---- metrics: averaged over the micro-batches of a logging window ---- */
typedef struct {
    spin_pref_metrics sum;
    int64_t count;
    double grad_norm_sum;
    int64_t updates;
    double t0;
} window;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void window_add(window *w, const spin_pref_metrics *m) {
    w->sum.loss += m->loss;
    w->sum.rewards_chosen += m->rewards_chosen;
    w->sum.rewards_rejected += m->rewards_rejected;
    w->sum.accuracies += m->accuracies;
    w->sum.margins += m->margins;
    w->sum.logps_chosen += m->logps_chosen;
    w->sum.logps_rejected += m->logps_rejected;
    w->sum.logits_chosen += m->logits_chosen;
    w->sum.logits_rejected += m->logits_rejected;
    w->sum.tokens += m->tokens;
    w->count++;
}

static spin_status write_metrics_line(const char *path, const spin_train_config *c, const window *w,
                                      const position *p, double epoch, double lr, double tok_s) {
    if (!path || w->count == 0)
        return SPIN_OK;
    const char *cn = c->spin_names ? "real" : "chosen", *rn = c->spin_names ? "generated" : "rejected";
    double k = (double)w->count;
    char line[2048];
    int len =
        snprintf(line, sizeof line,
                 "{\"step\": %lld, \"epoch\": %.6g, \"loss\": %.9g, \"learning_rate\": %.9g, "
                 "\"grad_norm\": %.9g, \"rewards/%s\": %.9g, \"rewards/%s\": %.9g, "
                 "\"rewards/accuracies\": %.9g, \"rewards/margins\": %.9g, \"logps/%s\": %.9g, "
                 "\"logps/%s\": %.9g, \"logits/%s\": %.9g, \"logits/%s\": %.9g, \"tokens_per_s\": %.6g, "
                 "\"skipped\": %lld}\n",
                 (long long)p->global_step, epoch, w->sum.loss / k, lr,
                 w->updates ? w->grad_norm_sum / (double)w->updates : 0.0, cn, w->sum.rewards_chosen / k, rn,
                 w->sum.rewards_rejected / k, w->sum.accuracies / k, w->sum.margins / k, cn,
                 w->sum.logps_chosen / k, rn, w->sum.logps_rejected / k, cn, w->sum.logits_chosen / k, rn,
                 w->sum.logits_rejected / k, tok_s, (long long)p->skipped);
    FILE *f = fopen(path, "a");
    if (!f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot append metrics: %s", path, strerror(errno));
    /* one write per line, flushed: a kill leaves whole lines (a torn last line is dropped on resume) */
    size_t wr = fwrite(line, 1, (size_t)len, f);
    int bad = fflush(f) != 0 || wr != (size_t)len;
    bad |= fclose(f) != 0;
    return bad ? spin_fail(SPIN_ERR_IO, "%s: cannot append metrics", path) : SPIN_OK;
}

/* A resumed run drops the metrics lines written after its checkpoint (they will be written again)
 * and a torn last line, rewriting the file atomically. */
static spin_status trim_metrics(const char *path, int64_t step) {
    FILE *f = fopen(path, "r");
    if (!f)
        return SPIN_OK;
    char *line = NULL, *out = NULL;
    size_t cap = 0, n = 0, ocap = 0;
    ssize_t len;
    spin_status s = SPIN_OK;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len == 0 || line[len - 1] != '\n')
            break;
        json_object *o = json_tokener_parse(line), *v = NULL;
        bool keep = o && json_object_object_get_ex(o, "step", &v) && json_object_get_int64(v) <= step;
        json_object_put(o);
        if (!keep)
            continue;
        if (n + (size_t)len > ocap) {
            size_t nc = ocap ? ocap * 2 : 4096;
            while (nc < n + (size_t)len)
                nc *= 2;
            char *no = realloc(out, nc);
            if (!no) {
                s = spin_fail(SPIN_ERR_OOM, "%s: out of memory", path);
                break;
            }
            out = no;
            ocap = nc;
        }
        memcpy(out + n, line, (size_t)len);
        n += (size_t)len;
    }
    free(line);
    fclose(f);
    if (s == SPIN_OK)
        s = spin_write_file_atomic(path, out ? out : "", n, true);
    free(out);
    return s;
}

/* ---- trainer_state.json ---- */
static char *state_json(const spin_train_config *c, const spin_train_data *d, const position *p,
                        int64_t total, int64_t warmup, int64_t optim_steps, int world) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "global_step", json_object_new_int64(p->global_step));
    json_object_object_add(o, "epoch", json_object_new_int64(p->epoch));
    json_object_object_add(o, "micro_batch", json_object_new_int64(p->micro));
    json_object_object_add(o, "total_batched_samples", json_object_new_int64(p->total_batched));
    json_object_object_add(o, "skipped", json_object_new_int64(p->skipped));
    json_object_object_add(o, "optimizer_steps", json_object_new_int64(optim_steps));
    json_object_object_add(o, "max_steps", json_object_new_int64(total));
    json_object_object_add(o, "warmup_steps", json_object_new_int64(warmup));
    /* what must not change across a resume */
    json_object_object_add(o, "seed", json_object_new_int64((int64_t)c->seed));
    json_object_object_add(o, "num_examples", json_object_new_int64(d->n));
    json_object_object_add(o, "per_device_train_batch_size",
                           json_object_new_int64(c->per_device_train_batch_size));
    json_object_object_add(o, "world_size", json_object_new_int64(world));
    json_object_object_add(o, "gradient_accumulation_steps",
                           json_object_new_int64(c->gradient_accumulation_steps));
    json_object_object_add(o, "learning_rate", json_object_new_double(c->learning_rate));
    json_object_object_add(o, "loss_type", json_object_new_string(spin_loss_type_name(c->loss.type)));
    json_object_object_add(o, "precision", json_object_new_string(spin_dtype_name(c->precision)));
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
    return s;
}

static int64_t jint(json_object *o, const char *k, bool *ok) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int)) {
        *ok = false;
        return 0;
    }
    return json_object_get_int64(v);
}

static spin_status parse_state(const char *ckpt, const char *text, const spin_train_config *c,
                               const spin_train_data *d, position *p, int64_t *optim_steps, int world) {
    json_object *o = json_tokener_parse(text);
    if (!o)
        return spin_fail(SPIN_ERR_INVALID, "%s/trainer_state.json: not JSON", ckpt);
    bool ok = true;
    p->global_step = jint(o, "global_step", &ok);
    p->epoch = jint(o, "epoch", &ok);
    p->micro = jint(o, "micro_batch", &ok);
    p->total_batched = jint(o, "total_batched_samples", &ok);
    p->skipped = jint(o, "skipped", &ok);
    *optim_steps = jint(o, "optimizer_steps", &ok);
    struct {
        const char *key;
        int64_t want;
    } same[] = {{"seed", (int64_t)c->seed},
                {"num_examples", d->n},
                {"gradient_accumulation_steps", c->gradient_accumulation_steps}};
    spin_status s = SPIN_OK;
    if (!ok)
        s = spin_fail(SPIN_ERR_INVALID, "%s/trainer_state.json: a position field is missing", ckpt);
    /* the global batch must stay; the number of ranks may change (checkpoints before data
     * parallelism were of one process) */
    bool has_world = true;
    int64_t ck_world = jint(o, "world_size", &has_world), ck_b = jint(o, "per_device_train_batch_size", &ok);
    if (!has_world)
        ck_world = 1;
    if (s == SPIN_OK && (!ok || ck_b * ck_world != c->per_device_train_batch_size * world))
        s = spin_fail(SPIN_ERR_INVALID,
                      "%s/trainer_state.json: cannot resume: the global batch (per_device_train_batch_size x "
                      "ranks) was %lld x %lld, this run has %lld x %d (start a new output_dir or restore the "
                      "setting)",
                      ckpt, (long long)ck_b, (long long)ck_world, (long long)c->per_device_train_batch_size,
                      world);
    for (size_t i = 0; s == SPIN_OK && i < sizeof same / sizeof same[0]; i++) {
        int64_t have = jint(o, same[i].key, &ok);
        if (!ok || have != same[i].want)
            s = spin_fail(SPIN_ERR_INVALID,
                          "%s/trainer_state.json: cannot resume: %s was %lld, this run has %lld (start a new "
                          "output_dir or restore the setting)",
                          ckpt, same[i].key, (long long)have, (long long)same[i].want);
    }
    /* checkpoints from before mixed precision were f32 */
    json_object *pr = NULL;
    const char *have_pr = json_object_object_get_ex(o, "precision", &pr) ? json_object_get_string(pr) : "f32";
    if (s == SPIN_OK && strcmp(have_pr ? have_pr : "", spin_dtype_name(c->precision)))
        s = spin_fail(SPIN_ERR_INVALID,
                      "%s/trainer_state.json: cannot resume: precision was %s, this run has %s (start a new "
                      "output_dir or restore the setting)",
                      ckpt, have_pr ? have_pr : "?", spin_dtype_name(c->precision));
    json_object_put(o);
    return s;
}

/* ---- checkpoints ---- */
typedef struct {
    int n;
    const char **names;
    spin_tensor **tensors;
} state_list;

static spin_status optim_state(spin_optim *o, state_list *l) {
    l->n = spin_optim_state_count(o);
    l->names = calloc((size_t)(l->n ? l->n : 1), sizeof *l->names);
    l->tensors = calloc((size_t)(l->n ? l->n : 1), sizeof *l->tensors);
    if (!l->names || !l->tensors)
        return spin_fail(SPIN_ERR_OOM, "out of host memory");
    for (int i = 0; i < l->n; i++)
        SPIN_TRY(spin_optim_state_at(o, i, &l->names[i], &l->tensors[i]));
    return SPIN_OK;
}

static spin_status save_checkpoint(const spin_train_config *c, const spin_train_data *d, spin_optim *o,
                                   const state_list *sl, const position *p, int64_t total, int64_t warmup,
                                   spin_train_result *res, spin_dist *dt) {
    if (!c->output_dir)
        return SPIN_OK;
    char *js = state_json(c, d, p, total, warmup, spin_optim_steps(o), spin_dist_size(dt));
    if (!js)
        return spin_fail(SPIN_ERR_OOM, "out of host memory");
    char *path = NULL;
    spin_named_tensors st = {sl->n, sl->names, sl->tensors};
    /* data parallel: rank 0 writes the gathered state */
    spin_status s = dt ? spin_dist_ckpt_save(dt, c->output_dir, p->global_step, d->policy, js, &path)
                       : spin_ckpt_save(c->output_dir, p->global_step, d->policy, st, js, true, &path);
    free(js);
    if (s == SPIN_OK) {
        snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", path);
        spin_log_msg(SPIN_LOG_INFO, "checkpoint %s", path);
        if (c->save_total_limit > 0 && spin_dist_rank(dt) == 0)
            s = spin_ckpt_prune(c->output_dir, c->save_total_limit);
    }
    free(path);
    return spin_dist_agree(dt, s, NULL);
}

/* ---- the progress line ---- */
static void progress_line(const position *p, int64_t total, double loss, double tok_s, double elapsed,
                          int64_t done_here) {
    double eta = done_here > 0 ? elapsed / (double)done_here * (double)(total - p->global_step) : 0;
    fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %.0f tok/s  ETA %dm%02ds   ", (long long)p->global_step,
            (long long)total, loss, tok_s, (int)(eta / 60), (int)fmod(eta, 60));
    fflush(stderr);
}

typedef struct {
    const spin_train_config *c;
    const spin_train_data *d;
    int64_t *perm;
    float *buf; /* gathered per-example host columns: 5 x batch */
    const spin_pref_tokens **rows;
    spin_dist *dt; /* data parallel, or NULL */
} loop_ctx;

/* One micro-batch: collate examples perm[i0 .. i0+b), forward, backward (data parallel: this
 * rank's slice of them). */
static spin_status micro_batch(loop_ctx *L, int64_t i0, int64_t b, spin_pref_metrics *m, bool *finite) {
    const spin_train_config *c = L->c;
    const spin_train_data *d = L->d;
    int64_t B = c->per_device_train_batch_size, lo = 0;
    float scale = 1.0f / (float)c->gradient_accumulation_steps;
    if (L->dt) {
        spin_dist_slice(L->dt, b, c->gradient_accumulation_steps, &lo, &b, &scale);
        i0 += lo;
        memset(m, 0, sizeof *m);
        *finite = true;
        if (b == 0)
            return SPIN_OK;
    }
    float *rc = L->buf, *rr = L->buf + B, *pc = L->buf + 2 * B, *pw = L->buf + 3 * B, *pl = L->buf + 4 * B;
    for (int64_t j = 0; j < b; j++) {
        int64_t e = L->perm[i0 + j];
        L->rows[j] = &d->examples[e];
        rc[j] = d->ref_chosen ? d->ref_chosen[e] : 0;
        rr[j] = d->ref_rejected ? d->ref_rejected[e] : 0;
        pc[j] = d->probs_chosen ? d->probs_chosen[e] : 0;
        pw[j] = d->probs_win ? d->probs_win[e] : 0;
        pl[j] = d->probs_lose ? d->probs_lose[e] : 0;
    }
    spin_collated cb;
    SPIN_TRY(spin_collate_batch(L->rows, b, &d->collate, &cb));
    spin_pref_ref ref = {
        .model = d->reference, .chosen = d->ref_chosen ? rc : NULL, .rejected = d->ref_rejected ? rr : NULL};
    spin_pref_probs probs = {.chosen = d->probs_chosen ? pc : NULL,
                             .win = d->probs_win ? pw : NULL,
                             .lose = d->probs_lose ? pl : NULL};
    spin_status s;
    spin_scope_begin();
    spin_tensor *loss = NULL;
    s = spin_pref_forward(d->policy, &ref, &probs, &cb, &c->loss, c->average_logprob, scale, &loss, m);
    *finite = s == SPIN_OK && isfinite(m->loss);
    if (s == SPIN_OK && *finite)
        s = spin_backward(loss);
    spin_scope_end();
    spin_collated_free(&cb);
    return s;
}

static void zero_grads(spin_llama *m) {
    for (int i = 0; i < m->n_params; i++)
        spin_tensor_zero_grad(m->params[i]);
}

spin_status spin_train_run(const spin_train_config *c, const spin_train_data *d, spin_train_result *res) {
    memset(res, 0, sizeof *res);
    SPIN_TRY(check_config(c, d));
    /* the storage type for the run: the optimizer below takes f32 masters of bf16 parameters */
    if (spin_llama_dtype(d->policy) != c->precision)
        SPIN_TRY(spin_llama_set_dtype(d->policy, c->precision));
    if (d->reference && spin_llama_dtype(d->reference) != c->precision)
        SPIN_TRY(spin_llama_set_dtype(d->reference, c->precision));
    bool kept_recompute = d->policy->recompute;
    d->policy->recompute = c->gradient_checkpointing;
    spin_dist *dt = NULL;
    if (c->comm)
        SPIN_TRY(spin_dist_new(c->comm, c->zero_stage, &c->optim, d->policy, &dt));
    int rank = spin_dist_rank(dt), world = spin_dist_size(dt);
    /* B is per rank: a micro-batch of the loop is the global B x world examples */
    int64_t B = c->per_device_train_batch_size, A = c->gradient_accumulation_steps, BG = B * world;
    int64_t total = spin_sched_total_steps(c->num_train_epochs, d->n, B, world, A, c->max_steps);
    int64_t warmup = spin_sched_warmup_steps(c->warmup_ratio, c->warmup_steps, total);
    spin_schedule sched = {.kind = c->scheduler, .lr = c->learning_rate, .warmup = warmup, .total = total};
    int64_t steps_in_epoch = (d->n + BG - 1) / BG;
    res->total_steps = total;

    char metrics_buf[4096];
    const char *metrics = c->metrics_path;
    if (!metrics && c->output_dir && rank == 0) {
        if (mkdir(c->output_dir, 0777) != 0 && errno != EEXIST) {
            spin_dist_free(dt);
            return spin_fail(SPIN_ERR_IO, "%s: cannot create output directory: %s", c->output_dir,
                             strerror(errno));
        }
        snprintf(metrics_buf, sizeof metrics_buf, "%s/metrics.jsonl", c->output_dir);
        metrics = metrics_buf;
    }

    if (rank != 0)
        metrics = NULL; /* rank 0 logs the combined metrics */
    spin_optim *opt =
        dt ? spin_dist_optim(dt) : spin_optim_new(&c->optim, d->policy->params, d->policy->n_params);
    if (!opt)
        return SPIN_ERR_INVALID;
    spin_status decay_s = SPIN_OK; /* the HF no-decay group (spin_train_decays) */
    for (int i = 0; i < d->policy->n_params && c->optim.weight_decay > 0 && decay_s == SPIN_OK; i++) {
        int j = dt ? spin_dist_local_index(dt, i) : i;
        if (j >= 0 && !spin_train_decays(c->decay_rule, d->policy, i))
            decay_s = spin_optim_set_weight_decay(opt, j, 0.0);
    }
    state_list sl = {0};
    loop_ctx L = {.c = c, .d = d, .dt = dt};
    L.perm = malloc((size_t)d->n * sizeof *L.perm);
    L.buf = calloc((size_t)(5 * B), sizeof *L.buf);
    L.rows = malloc((size_t)B * sizeof *L.rows);
    spin_status s = decay_s != SPIN_OK          ? decay_s
                    : L.perm && L.buf && L.rows ? optim_state(opt, &sl)
                                                : spin_fail(SPIN_ERR_OOM, "out of host memory");

    position p = {0};
    if (s == SPIN_OK && c->resume) {
        char *ck = NULL, *js = NULL;
        spin_named_tensors st = {sl.n, sl.names, sl.tensors};
        s = dt ? spin_dist_ckpt_resume(dt, c->output_dir, d->policy, &ck, &js)
               : spin_ckpt_latest(c->output_dir, &ck);
        if (s == SPIN_OK && ck) {
            if (!dt)
                s = spin_ckpt_load(ck, d->policy, st, &js);
            int64_t osteps = 0;
            if (s == SPIN_OK)
                s = parse_state(ck, js, c, d, &p, &osteps, world);
            if (s == SPIN_OK) {
                spin_optim_set_steps(opt, osteps);
                spin_log_msg(SPIN_LOG_INFO, "resuming from %s (step %lld, epoch %lld)", ck,
                             (long long)p.global_step, (long long)p.epoch);
                snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", ck);
                if (metrics)
                    s = trim_metrics(metrics, p.global_step);
            }
        }
        free(js);
        free(ck);
    } else if (s == SPIN_OK && metrics && c->output_dir) {
        struct stat sb;
        if (stat(metrics, &sb) == 0 && !c->resume)
            s = spin_fail(SPIN_ERR_INVALID,
                          "%s exists: resume, or choose a new output_dir (nothing is overwritten)", metrics);
    }
    s = spin_dist_agree(dt, s, NULL);

    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    window w = {.t0 = now_s()};
    double t_start = now_s();
    int64_t start_step = p.global_step, pending = 0; /* micro-batches accumulated since the last update */
    bool poisoned = false, stop = false;
    while (s == SPIN_OK && !stop && p.global_step < total) {
        shuffle(L.perm, d->n, c->shuffle, c->seed, p.epoch);
        for (; s == SPIN_OK && !stop && p.micro < steps_in_epoch && p.global_step < total; p.micro++) {
            int64_t i0 = p.micro * BG, b = d->n - i0 < BG ? d->n - i0 : BG;
            spin_pref_metrics m;
            bool finite = true;
            bool last_small = steps_in_epoch <= A && p.micro + 1 == steps_in_epoch;
            /* the update's last micro-batch: its backward starts the gradient reduction */
            bool overlap = dt && !poisoned && ((p.total_batched + 1) % A == 0 || last_small);
            if (overlap)
                spin_dist_overlap_begin(dt);
            s = micro_batch(&L, i0, b, &m, &finite);
            if (overlap)
                s = spin_dist_overlap_end(dt, s);
            s = spin_dist_combine(dt, s, &m, &finite);
            if (s != SPIN_OK)
                break;
            p.total_batched++;
            pending++;
            if (finite)
                window_add(&w, &m);
            else if (c->nonfinite == SPIN_NONFINITE_STOP)
                s = spin_fail(
                    SPIN_ERR_INVALID, "non-finite loss at step %lld (epoch %lld, micro-batch %lld)%s%s",
                    (long long)p.global_step + 1, (long long)p.epoch, (long long)p.micro,
                    res->last_checkpoint[0] ? "; last good checkpoint: " : "; no checkpoint was written",
                    res->last_checkpoint);
            poisoned |= !finite;
            if (s != SPIN_OK || !(p.total_batched % A == 0 || last_small))
                continue;
            /* an update */
            double lr = spin_sched_lr(&sched, p.global_step);
            spin_optim_result r = {0, true};
            if (!poisoned)
                s = dt ? spin_dist_step(dt, lr, &r) : spin_optim_step(opt, lr, &r);
            else if (dt)
                s = spin_dist_drop(dt); /* the reduction the last micro-batch started */
            if (s == SPIN_OK && (poisoned || !r.finite)) {
                if (c->nonfinite == SPIN_NONFINITE_STOP) {
                    s = spin_fail(SPIN_ERR_INVALID, "non-finite gradient at step %lld (epoch %lld)%s%s",
                                  (long long)p.global_step + 1, (long long)p.epoch,
                                  res->last_checkpoint[0] ? "; last good checkpoint: "
                                                          : "; no checkpoint was written",
                                  res->last_checkpoint);
                    break;
                }
                p.skipped++;
                zero_grads(d->policy);
                spin_log_msg(SPIN_LOG_WARN,
                             "step %lld: non-finite loss or gradient, update skipped (%lld so far)",
                             (long long)p.global_step + 1, (long long)p.skipped);
            } else if (s == SPIN_OK) {
                w.grad_norm_sum += r.grad_norm;
                w.updates++;
            }
            poisoned = false;
            pending = 0;
            p.global_step++;
            res->global_step = p.global_step;
            res->skipped = p.skipped;
            if (w.count)
                res->last_loss = w.sum.loss / (double)w.count;
            double epoch_f = (double)p.epoch + (double)(p.micro + 1) / (double)steps_in_epoch;
            bool log_now = s == SPIN_OK && (p.global_step == 1 ||
                                            (c->logging_steps > 0 && p.global_step % c->logging_steps == 0) ||
                                            p.global_step == total);
            if (log_now) {
                double el = now_s() - w.t0;
                s = write_metrics_line(metrics, c, &w, &p, epoch_f, lr,
                                       el > 0 ? (double)w.sum.tokens / el : 0);
                if (c->progress && rank == 0 && isatty(2))
                    progress_line(&p, total, w.count ? w.sum.loss / (double)w.count : 0,
                                  el > 0 ? (double)w.sum.tokens / el : 0, now_s() - t_start,
                                  p.global_step - start_step);
                w = (window){.t0 = now_s()};
            }
            bool interrupted =
                g_signal != 0 || (c->stop_after > 0 && p.global_step - start_step >= c->stop_after);
            s = spin_dist_agree(dt, s, &interrupted); /* a signal on any rank stops every rank */
            bool epoch_end = p.micro + 1 == steps_in_epoch;
            bool save = (c->save_steps > 0 && p.global_step % c->save_steps == 0) || p.global_step == total ||
                        interrupted || (c->save_each_epoch && epoch_end);
            if (s == SPIN_OK && save) {
                position at = p;
                at.micro++;
                if (at.micro == steps_in_epoch) {
                    at.micro = 0;
                    at.epoch++;
                }
                s = save_checkpoint(c, d, opt, &sl, &at, total, warmup, res, dt);
            }
            if (interrupted) {
                res->interrupted = true;
                stop = true;
                if (g_signal)
                    spin_log_msg(SPIN_LOG_INFO, "signal %d: checkpoint written, stopping", (int)g_signal);
            }
        }
        if (s == SPIN_OK && !stop && p.micro >= steps_in_epoch) {
            if (pending > 0 && c->save_each_epoch)
                spin_log_msg(SPIN_LOG_INFO,
                             "epoch %lld ended with %lld accumulated micro-batches; they carry over",
                             (long long)p.epoch, (long long)pending);
            p.epoch++;
            p.micro = 0;
        }
    }
    if (c->progress && rank == 0 && isatty(2))
        fputc('\n', stderr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(sl.names);
    free(sl.tensors);
    free(L.perm);
    free(L.buf);
    free(L.rows);
    if (dt)
        spin_dist_free(dt); /* it owns opt */
    else
        spin_optim_free(opt);
    d->policy->recompute = kept_recompute;
    return s;
}
