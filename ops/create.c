/* Creation ops: constants, ranges, seeded random tensors, host data. None are recorded. */
#include "ops/op_util.h"

spin_status spin_fill_(spin_tensor *t, float value) {
    spin_kparams p = {.f = {value}};
    return spin_launch(SPIN_K_FILL, 0, NULL, 1, &t, &p);
}

spin_tensor *spin_full(spin_device *dev, spin_dtype dt, int ndim, const int64_t *shape, float value) {
    op_begin();
    spin_tensor *t = spin_tensor_new(dev, dt, ndim, shape);
    spin_kparams p = {.f = {value}};
    return op_end(op_launch(SPIN_K_FILL, 0, NULL, t, &p));
}

spin_tensor *spin_zeros(spin_device *dev, spin_dtype dt, int ndim, const int64_t *shape) {
    return spin_full(dev, dt, ndim, shape, 0.0f);
}

spin_tensor *spin_zeros_like(const spin_tensor *t) {
    return spin_zeros(spin_tensor_device(t), spin_tensor_dtype(t), spin_tensor_ndim(t), spin_tensor_shape(t));
}

spin_tensor *spin_arange(spin_device *dev, spin_dtype dt, int64_t n, float start, float step) {
    op_begin();
    spin_tensor *t = spin_tensor_new(dev, dt, 1, &n);
    spin_kparams p = {.f = {start, step}};
    return op_end(op_launch(SPIN_K_ARANGE, 0, NULL, t, &p));
}

static spin_tensor *rand_op(spin_kernel k, spin_device *dev, int ndim, const int64_t *shape, uint64_t seed,
                            uint64_t offset, float a, float b) {
    op_begin();
    spin_tensor *t = op_launch(k, 0, NULL, spin_tensor_new(dev, SPIN_F32, ndim, shape),
                               &(spin_kparams){.i = {(int64_t)seed, (int64_t)offset}});
    if (t && (a != 1.0f || b != 0.0f)) {
        spin_kparams p = {.f = {a, b}};
        if (spin_launch(SPIN_K_SCALE, 1, &t, 1, &t, &p) != SPIN_OK) {
            spin_tensor_release(t);
            t = NULL;
        }
    }
    return op_end(t);
}

spin_tensor *spin_rand_uniform(spin_device *dev, int ndim, const int64_t *shape, uint64_t seed,
                               uint64_t offset, float lo, float hi) {
    return rand_op(SPIN_K_RNG_UNIFORM, dev, ndim, shape, seed, offset, hi - lo, lo);
}

spin_tensor *spin_rand_normal(spin_device *dev, int ndim, const int64_t *shape, uint64_t seed,
                              uint64_t offset, float mean, float std) {
    return rand_op(SPIN_K_RNG_NORMAL, dev, ndim, shape, seed, offset, std, mean);
}

spin_tensor *spin_from_host(spin_device *dev, spin_dtype dt, int ndim, const int64_t *shape,
                            const void *data) {
    op_begin();
    spin_tensor *t = spin_tensor_new(dev, dt, ndim, shape);
    if (t && spin_tensor_write(t, data, (size_t)spin_tensor_numel(t) * spin_dtype_size(dt)) != SPIN_OK) {
        spin_tensor_release(t);
        t = NULL;
    }
    return op_end(t);
}
