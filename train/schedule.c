#include "train/schedule.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

static const struct {
    const char *name;
    spin_sched_kind kind;
} sched_names[] = {
    {"linear", SPIN_SCHED_LINEAR},
    {"cosine", SPIN_SCHED_COSINE},
    {"constant", SPIN_SCHED_CONSTANT},
    {"constant_with_warmup", SPIN_SCHED_CONSTANT_WITH_WARMUP},
};

spin_status spin_sched_kind_from_name(const char *name, spin_sched_kind *out) {
    for (size_t i = 0; name && i < sizeof sched_names / sizeof sched_names[0]; i++)
        if (!strcmp(name, sched_names[i].name)) {
            *out = sched_names[i].kind;
            return SPIN_OK;
        }
    return spin_fail(SPIN_ERR_INVALID,
                     "lr_scheduler_type \"%s\" is not supported; supported: linear, cosine, constant, "
                     "constant_with_warmup",
                     name ? name : "(null)");
}

const char *spin_sched_kind_name(spin_sched_kind k) {
    for (size_t i = 0; i < sizeof sched_names / sizeof sched_names[0]; i++)
        if (sched_names[i].kind == k)
            return sched_names[i].name;
    return "?";
}

int64_t spin_sched_total_steps(double epochs, int64_t n_train, int64_t per_device_bs, int64_t world,
                               int64_t grad_accum, int64_t max_steps) {
    if (n_train < 1 || per_device_bs < 1 || world < 1 || grad_accum < 1) {
        spin_fail(SPIN_ERR_INVALID,
                  "schedule: n_train %lld, per_device_bs %lld, world %lld, grad_accum %lld must all be >= 1",
                  (long long)n_train, (long long)per_device_bs, (long long)world, (long long)grad_accum);
        return -1;
    }
    if (max_steps > 0)
        return max_steps;
    if (!(epochs > 0) || isinf(epochs)) {
        spin_fail(SPIN_ERR_INVALID, "schedule: num_train_epochs %g must be positive (or max_steps > 0)",
                  epochs);
        return -1;
    }
    int64_t per_step = per_device_bs * world;
    int64_t len_dataloader = (n_train + per_step - 1) / per_step;
    int64_t updates_per_epoch = len_dataloader / grad_accum;
    if (updates_per_epoch < 1)
        updates_per_epoch = 1;
    return (int64_t)ceil(epochs * (double)updates_per_epoch);
}

int64_t spin_sched_warmup_steps(double warmup_ratio, int64_t warmup_steps, int64_t total) {
    return warmup_steps > 0 ? warmup_steps : (int64_t)ceil((double)total * warmup_ratio);
}

static double max1(int64_t v) {
    return (double)(v > 1 ? v : 1);
}

double spin_sched_lr(const spin_schedule *s, int64_t step) {
    const double pi = 3.141592653589793; /* Python's math.pi (M_PI is not ISO C) */
    double factor = 1.0;
    if (s->kind != SPIN_SCHED_CONSTANT && step < s->warmup) {
        factor = (double)step / max1(s->warmup);
    } else if (s->kind == SPIN_SCHED_LINEAR) {
        factor = fmax(0.0, (double)(s->total - step) / max1(s->total - s->warmup));
    } else if (s->kind == SPIN_SCHED_COSINE) {
        double progress = (double)(step - s->warmup) / max1(s->total - s->warmup);
        factor = fmax(0.0, 0.5 * (1.0 + cos(pi * 0.5 * 2.0 * progress)));
    }
    return s->lr * factor;
}
