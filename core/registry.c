/* The backend registry and the table of opened devices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/log.h"

#define MAX_BACKENDS 8
#define MAX_DEVICES 16

static const spin_backend *backends[MAX_BACKENDS];
static int n_backends;
static spin_device *devices[MAX_BACKENDS][MAX_DEVICES];

spin_status spin_backend_register(const spin_backend *b) {
    SPIN_ASSERT(b->api_version == SPIN_BACKEND_API_VERSION, "backend %s built for API %d, core is %d",
                b->name, b->api_version, SPIN_BACKEND_API_VERSION);
    for (int i = 0; i < n_backends; i++)
        if (backends[i] == b)
            return SPIN_OK;
    if (n_backends == MAX_BACKENDS)
        return spin_fail(SPIN_ERR_INVALID, "too many backends");
    backends[n_backends++] = b;
    return SPIN_OK;
}

int spin_backend_count(void) {
    return n_backends;
}

const spin_backend *spin_backend_at(int i) {
    return i >= 0 && i < n_backends ? backends[i] : NULL;
}

const spin_backend *spin_backend_find(const char *name) {
    for (int i = 0; i < n_backends; i++)
        if (!strcmp(backends[i]->name, name))
            return backends[i];
    return NULL;
}

static int backend_slot(const spin_backend *b) {
    for (int i = 0; i < n_backends; i++)
        if (backends[i] == b)
            return i;
    return -1;
}

spin_device *spin_device_get(const char *name, int index) {
    const spin_backend *b = spin_backend_find(name);
    if (!b) {
        char list[256] = "";
        for (int i = 0; i < n_backends; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, backends[i]->name, sizeof list - strlen(list) - 1);
        }
        spin_fail(SPIN_ERR_INVALID, "no backend named '%s' in this build (compiled: %s)", name, list);
        return NULL;
    }
    int n = b->device_count();
    if (index < 0 || index >= n || index >= MAX_DEVICES) {
        spin_fail(SPIN_ERR_INVALID, "backend '%s' has %d device(s); index %d does not exist", name, n, index);
        return NULL;
    }
    int slot = backend_slot(b);
    if (!devices[slot][index]) {
        spin_device *d = calloc(1, sizeof *d);
        SPIN_ASSERT(d, "out of host memory");
        d->backend = b;
        d->index = index;
        snprintf(d->name, sizeof d->name, "%s:%d", b->name, index);
        if (b->device_open(d, index) != SPIN_OK) {
            free(d);
            return NULL;
        }
        devices[slot][index] = d;
    }
    return devices[slot][index];
}

spin_device *spin_device_from_spec(const char *spec) {
    char name[64];
    int index = 0;
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (len == 0 || len >= sizeof name) {
        spin_fail(SPIN_ERR_INVALID, "bad device '%s' (expected NAME or NAME:INDEX)", spec);
        return NULL;
    }
    memcpy(name, spec, len);
    name[len] = '\0';
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || v < 0) {
            spin_fail(SPIN_ERR_INVALID, "bad device index in '%s'", spec);
            return NULL;
        }
        index = (int)v;
    }
    return spin_device_get(name, index);
}

spin_device *spin_cpu_device(void) {
    SPIN_ASSERT(n_backends > 0, "no backend registered: call spin_init() first");
    static spin_device *cpu;
    if (!cpu) {
        cpu = spin_device_get(backends[0]->name, 0);
        SPIN_ASSERT(cpu, "the CPU device failed to open: %s", spin_last_error());
    }
    return cpu;
}

void spin_devices_close(void) {
    for (int s = 0; s < n_backends; s++)
        for (int i = 0; i < MAX_DEVICES; i++) {
            spin_device *d = devices[s][i];
            if (!d)
                continue;
            spin_device_empty_cache(d);
            if (d->backend->device_close)
                d->backend->device_close(d);
        }
}
