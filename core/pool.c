#include "core/pool.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static _Thread_local uint64_t system_allocs;

void *spin_pool_get(spin_pool *p) {
    void *obj = p->free_list;
    if (obj) {
        memcpy(&p->free_list, obj, sizeof(void *));
    } else {
        obj = malloc(p->size < sizeof(void *) ? sizeof(void *) : p->size);
        SPIN_ASSERT(obj, "out of host memory");
        system_allocs++;
    }
    memset(obj, 0, p->size);
    return obj;
}

void spin_pool_put(spin_pool *p, void *obj) {
    if (!obj)
        return;
    memcpy(obj, &p->free_list, sizeof(void *));
    p->free_list = obj;
}

uint64_t spin_pool_system_allocs(void) {
    return system_allocs;
}
