/* The demo's model directory, made by the program itself (no downloads): a byte-level BPE
 * tokenizer.json (GPT-2's byte-to-unicode alphabet, <unk> <s> </s>, the zephyr role markers as
 * added tokens), tokenizer_config.json with the zephyr chat template, and a seeded random Llama
 * (config.json, generation_config.json, model.safetensors), so the real loaders read it. */
#ifndef SPIN_TOOLS_DEMO_MODEL_H
#define SPIN_TOOLS_DEMO_MODEL_H

#include <stdint.h>

typedef struct {
    int hidden, layers, heads, kv_heads, intermediate, max_positions;
    uint64_t seed;
} demo_model_size;

/* Writes the directory (created; an existing model.safetensors is an error). Returns 0, or 1 after
 * printing "spin demo: ...". */
int demo_model_write(const char *dir, const demo_model_size *sz);

#endif
