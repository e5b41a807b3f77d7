/* Free lists for the small host structs every op creates (tensor, storage, autograd node), so a
 * steady-state training step makes no host allocations either. Per thread; objects may be
 * returned on another thread than the one that took them. */
#ifndef SPIN_CORE_POOL_H
#define SPIN_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t size;
    void *free_list;
} spin_pool;

/* A zeroed object of p->size bytes. */
void *spin_pool_get(spin_pool *p);
void spin_pool_put(spin_pool *p, void *obj);
/* System allocations made by all pools of this thread since start. */
uint64_t spin_pool_system_allocs(void);

#endif
