#include "core/dispatch.h"

#include <string.h>

#include "core/log.h"
#include "core/scope.h"
#include "core/tensor_impl.h"

const char *spin_kernel_name(spin_kernel k) {
    static const char *names[] = {
#define SPIN_KERNEL_NAME_(name) #name,
        SPIN_KERNELS(SPIN_KERNEL_NAME_)
#undef SPIN_KERNEL_NAME_
    };
    _Static_assert(sizeof names / sizeof names[0] == SPIN_KERNEL_COUNT, "kernel name table");
    return (unsigned)k < SPIN_KERNEL_COUNT ? names[k] : "?";
}

static void build_call(spin_kcall *c, int n_in, spin_tensor *const *in, int n_out, spin_tensor *const *out,
                       const spin_kparams *p) {
    memset(c, 0, sizeof *c);
    c->n_in = n_in;
    c->n_out = n_out;
    for (int i = 0; i < n_in; i++)
        c->in[i] = spin_tensor_kview(in[i]);
    for (int i = 0; i < n_out; i++)
        c->out[i] = spin_tensor_kview(out[i]);
    if (p)
        c->p = *p;
}

static bool supported(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                      spin_tensor *const *out) {
    if (!dev->backend->kernels[k])
        return false;
    spin_dtype din[SPIN_KMAX_IN], dout[SPIN_KMAX_OUT];
    for (int i = 0; i < n_in; i++)
        din[i] = in[i]->dtype;
    for (int i = 0; i < n_out; i++)
        dout[i] = out[i]->dtype;
    return dev->backend->supports(dev, k, din, n_in, dout, n_out);
}

/* A CPU copy of t's whole storage, viewed the same way. */
static spin_status storage_to_cpu(spin_tensor *t, spin_device *cpu, spin_storage *st, spin_tensor *alias) {
    st->refcount = 1;
    st->dev = cpu;
    st->bytes = t->st->bytes;
    st->buf = spin_device_alloc(cpu, st->bytes);
    if (!st->buf)
        return spin_fail(SPIN_ERR_OOM, "CPU fallback: cannot allocate %zu bytes", st->bytes);
    *alias = *t;
    alias->st = st;
    alias->node = NULL;
    alias->grad = NULL;
    return t->st->dev->backend->to_host(t->st->dev, st->buf, t->st->buf, 0, st->bytes);
}

static bool is_reduced(spin_dtype t) {
    return t == SPIN_BF16 || t == SPIN_F16;
}

/* Whether dev's COPY converts between t and f32 both ways (the widening's two casts). */
static bool casts(spin_device *dev, spin_dtype t) {
    spin_dtype f = SPIN_F32;
    return dev->backend->supports(dev, SPIN_K_COPY, &t, 1, &f, 1) &&
           dev->backend->supports(dev, SPIN_K_COPY, &f, 1, &t, 1);
}

/* Whether dev runs k when every bf16/f16 slot is given f32 instead (and some slot is bf16/f16), the
 * casts included: then a device without bf16 kernels still keeps bf16 work on itself. */
static bool widenable(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                      spin_tensor *const *out) {
    if (!dev->backend->kernels[k] || !dev->backend->kernels[SPIN_K_COPY])
        return false;
    spin_dtype din[SPIN_KMAX_IN], dout[SPIN_KMAX_OUT];
    bool any = false;
    for (int i = 0; i < n_in; i++) {
        if (is_reduced(in[i]->dtype) && !casts(dev, in[i]->dtype))
            return false;
        any |= is_reduced(in[i]->dtype);
        din[i] = is_reduced(in[i]->dtype) ? SPIN_F32 : in[i]->dtype;
    }
    for (int i = 0; i < n_out; i++) {
        if (is_reduced(out[i]->dtype) && !casts(dev, out[i]->dtype))
            return false;
        any |= is_reduced(out[i]->dtype);
        dout[i] = is_reduced(out[i]->dtype) ? SPIN_F32 : out[i]->dtype;
    }
    return any && dev->backend->supports(dev, k, din, n_in, dout, n_out);
}

/* Kernels that read an output before writing it (its old value must reach the f32 copy). */
static bool reads_output(spin_kernel k, const spin_kparams *p) {
    switch (k) {
    case SPIN_K_MATMUL: return p && p->f[1] != 0.0f;
    case SPIN_K_GRAD_SUMSQ:
    case SPIN_K_RMSPROP_STEP:
    case SPIN_K_ADAMW_STEP: return true;
    default: return false;
    }
}

static spin_status native(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                          spin_tensor *const *out, const spin_kparams *p) {
    spin_kcall c;
    build_call(&c, n_in, in, n_out, out, p);
    return dev->backend->kernels[k](dev, &c);
}

/* Runs k in f32 on dev: each bf16/f16 input is widened (exactly) into a contiguous f32 copy, each
 * bf16/f16 output is computed into one and rounded back into the output's view (round to nearest
 * even, as torch). Contiguous copies keep every kernel's meaning: a strided or broadcast view
 * reads the same elements either way. */
static spin_status run_widened(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                               spin_tensor *const *out, const spin_kparams *p) {
    spin_scope_manual_begin();
    spin_tensor *win[SPIN_KMAX_IN] = {0}, *wout[SPIN_KMAX_OUT] = {0};
    spin_tensor *tmp[SPIN_KMAX_IN + SPIN_KMAX_OUT] = {0};
    int n_tmp = 0;
    spin_status s = SPIN_OK;
    for (int i = 0; i < n_in + n_out && s == SPIN_OK; i++) {
        bool is_in = i < n_in;
        spin_tensor *t = is_in ? in[i] : out[i - n_in];
        spin_tensor *w = t;
        if (is_reduced(t->dtype)) {
            w = tmp[n_tmp++] = spin_tensor_new(dev, SPIN_F32, t->ndim, t->shape);
            if (!w)
                s = SPIN_ERR_OOM;
            else if (is_in || reads_output(k, p))
                s = native(dev, SPIN_K_COPY, 1, &t, 1, &w, NULL);
        }
        if (is_in)
            win[i] = w;
        else
            wout[i - n_in] = w;
    }
    if (s == SPIN_OK)
        s = native(dev, k, n_in, win, n_out, wout, p);
    for (int i = 0; i < n_out && s == SPIN_OK; i++)
        if (wout[i] != out[i])
            s = native(dev, SPIN_K_COPY, 1, &wout[i], 1, &out[i], NULL);
    for (int i = 0; i < n_tmp; i++)
        spin_tensor_release(tmp[i]);
    spin_scope_manual_end();
    if (s == SPIN_OK)
        dev->widened[k]++;
    return s;
}

/* Natively when the backend can, else through f32 copies when it can in f32. */
static bool runnable(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                     spin_tensor *const *out) {
    return supported(dev, k, n_in, in, n_out, out) || widenable(dev, k, n_in, in, n_out, out);
}

static spin_status run_here(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                            spin_tensor *const *out, const spin_kparams *p) {
    if (supported(dev, k, n_in, in, n_out, out))
        return native(dev, k, n_in, in, n_out, out, p);
    return run_widened(dev, k, n_in, in, n_out, out, p);
}

static spin_status run_on_cpu(spin_device *dev, spin_kernel k, int n_in, spin_tensor *const *in, int n_out,
                              spin_tensor *const *out, const spin_kparams *p) {
    spin_device *cpu = spin_cpu_device();
    if (!runnable(cpu, k, n_in, in, n_out, out)) {
        char dts[128] = "";
        for (int i = 0; i < n_in + n_out; i++) {
            const spin_tensor *t = i < n_in ? in[i] : out[i - n_in];
            strncat(dts, i ? "," : "", sizeof dts - strlen(dts) - 1);
            strncat(dts, spin_dtype_name(t->dtype), sizeof dts - strlen(dts) - 1);
        }
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "kernel %s is not implemented for dtypes (%s) on %s or the CPU", spin_kernel_name(k),
                         dts, dev->name);
    }
    if (dev->fallbacks[k]++ == 0)
        spin_log_msg(SPIN_LOG_WARN, "%s cannot run kernel %s for these dtypes; running it on the CPU",
                     dev->name, spin_kernel_name(k));
    spin_storage st[SPIN_KMAX_IN + SPIN_KMAX_OUT];
    spin_tensor alias[SPIN_KMAX_IN + SPIN_KMAX_OUT];
    spin_tensor *ain[SPIN_KMAX_IN], *aout[SPIN_KMAX_OUT];
    int made = 0;
    spin_status s = SPIN_OK;
    for (int i = 0; i < n_in + n_out && s == SPIN_OK; i++, made++) {
        spin_tensor *t = i < n_in ? in[i] : out[i - n_in];
        s = storage_to_cpu(t, cpu, &st[i], &alias[i]);
        if (i < n_in)
            ain[i] = &alias[i];
        else
            aout[i - n_in] = &alias[i];
    }
    if (s == SPIN_OK)
        s = run_here(cpu, k, n_in, ain, n_out, aout, p);
    for (int i = 0; i < n_out && s == SPIN_OK; i++)
        s = dev->backend->from_host(dev, out[i]->st->buf, 0, st[n_in + i].buf, st[n_in + i].bytes);
    for (int i = 0; i < made; i++)
        spin_device_free(cpu, st[i].buf, st[i].bytes);
    return s;
}

spin_status spin_launch(spin_kernel k, int n_in, spin_tensor *const *in, int n_out, spin_tensor *const *out,
                        const spin_kparams *p) {
    SPIN_ASSERT((unsigned)k < SPIN_KERNEL_COUNT, "bad kernel %d", (int)k);
    SPIN_ASSERT(n_in >= 0 && n_in <= SPIN_KMAX_IN && n_out >= 1 && n_out <= SPIN_KMAX_OUT,
                "kernel %s: %d inputs, %d outputs", spin_kernel_name(k), n_in, n_out);
    spin_device *dev = out[0]->st->dev;
    for (int i = 0; i < n_in; i++)
        if (in[i]->st->dev != dev)
            return spin_fail(SPIN_ERR_INVALID, "kernel %s: input %d is on %s, output on %s",
                             spin_kernel_name(k), i, in[i]->st->dev->name, dev->name);
    for (int i = 1; i < n_out; i++)
        if (out[i]->st->dev != dev)
            return spin_fail(SPIN_ERR_INVALID, "kernel %s: outputs on different devices",
                             spin_kernel_name(k));
    if (supported(dev, k, n_in, in, n_out, out))
        return native(dev, k, n_in, in, n_out, out, p);
    /* f32 copies on the device itself when it has the casts; else the CPU runs the kernel */
    if (widenable(dev, k, n_in, in, n_out, out))
        return run_widened(dev, k, n_in, in, n_out, out, p);
    return run_on_cpu(dev, k, n_in, in, n_out, out, p);
}

uint64_t spin_widened_total(const spin_device *dev) {
    uint64_t n = 0;
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
        n += dev->widened[k];
    return n;
}

uint64_t spin_fallback_total(const spin_device *dev) {
    uint64_t n = 0;
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
        n += dev->fallbacks[k];
    return n;
}
