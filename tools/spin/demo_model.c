/* The demo's model directory (tools/spin/demo_model.h). */
#define _POSIX_C_SOURCE 200809L
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backends.h"
#include "models/llama.h"
#include "tools/spin/demo_model.h"
#include "tools/spin/jsonl_io.h"

/* zephyr's template, as alignment-handbook's tokenizer_config.json has it (spin recognises it) */
static const char zephyr[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] "
    "+ "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + "
    "eos_token "
    "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token "
    "}}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% "
    "endfor "
    "%}";

static const char *const specials[] = {"<unk>", "<s>", "</s>"};
static const char *const markers[] = {"<|system|>", "<|user|>", "<|assistant|>"};
#define N_BYTES 256
#define VOCAB (3 + N_BYTES + 3)

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256 + n */
static void byte_char(int b, char out[4]) {
    int cp;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            n += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static json_object *added(int id, const char *content, bool special) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int(id));
    json_object_object_add(o, "content", json_object_new_string(content));
    json_object_object_add(o, "single_word", json_object_new_boolean(false));
    json_object_object_add(o, "lstrip", json_object_new_boolean(false));
    json_object_object_add(o, "rstrip", json_object_new_boolean(false));
    json_object_object_add(o, "normalized", json_object_new_boolean(false));
    json_object_object_add(o, "special", json_object_new_boolean(special));
    return o;
}

static json_object *byte_level(void) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string("ByteLevel"));
    json_object_object_add(o, "add_prefix_space", json_object_new_boolean(false));
    json_object_object_add(o, "trim_offsets", json_object_new_boolean(true));
    json_object_object_add(o, "use_regex", json_object_new_boolean(true));
    return o;
}

static json_object *tokenizer_json(void) {
    json_object *t = json_object_new_object(), *add = json_object_new_array(),
                *vocab = json_object_new_object();
    json_object_object_add(t, "version", json_object_new_string("1.0"));
    json_object_object_add(t, "truncation", NULL);
    json_object_object_add(t, "padding", NULL);
    for (int i = 0; i < 3; i++) {
        json_object_array_add(add, added(i, specials[i], true));
        json_object_object_add(vocab, specials[i], json_object_new_int(i));
    }
    for (int b = 0; b < N_BYTES; b++) {
        char c[4];
        byte_char(b, c);
        json_object_object_add(vocab, c, json_object_new_int(3 + b));
    }
    /* the role markers: whole tokens, not special (they are text of the template, and a decode that
     * skips special tokens keeps them) */
    for (int i = 0; i < 3; i++) {
        json_object_array_add(add, added(3 + N_BYTES + i, markers[i], false));
        json_object_object_add(vocab, markers[i], json_object_new_int(3 + N_BYTES + i));
    }
    json_object_object_add(t, "added_tokens", add);
    json_object_object_add(t, "normalizer", NULL);
    json_object_object_add(t, "pre_tokenizer", byte_level());
    json_object_object_add(t, "post_processor", NULL);
    json_object_object_add(t, "decoder", byte_level());
    json_object *m = json_object_new_object();
    json_object_object_add(m, "type", json_object_new_string("BPE"));
    json_object_object_add(m, "dropout", NULL);
    json_object_object_add(m, "unk_token", NULL);
    json_object_object_add(m, "continuing_subword_prefix", NULL);
    json_object_object_add(m, "end_of_word_suffix", NULL);
    json_object_object_add(m, "fuse_unk", json_object_new_boolean(false));
    json_object_object_add(m, "byte_fallback", json_object_new_boolean(false));
    json_object_object_add(m, "ignore_merges", json_object_new_boolean(false));
    json_object_object_add(m, "vocab", vocab);
    json_object_object_add(m, "merges", json_object_new_array());
    json_object_object_add(t, "model", m);
    return t;
}

static int write_json(const char *dir, const char *name, json_object *o) {
    char *path = jl_join(dir, name), *tmp = NULL;
    FILE *f = path ? jl_begin("demo", path, false, &tmp) : NULL;
    int rc = 1;
    if (f) {
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        rc = jl_commit("demo", f, tmp, path, false);
    }
    free(path);
    json_object_put(o);
    return rc;
}

int demo_model_write(const char *dir, const demo_model_size *sz) {
    if (jl_mkdir("demo", dir) != 0)
        return 1;
    char cfg[1024];
    snprintf(
        cfg, sizeof cfg,
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\", "
        "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": "
        "%d, "
        "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, "
        "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"rope_scaling\": null, \"attention_bias\": "
        "false, "
        "\"mlp_bias\": false, \"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2, "
        "\"pad_token_id\": 2, \"torch_dtype\": \"float32\"}",
        sz->hidden, sz->intermediate, sz->layers, sz->heads, sz->kv_heads, sz->hidden / sz->heads, VOCAB,
        sz->max_positions);
    spin_llama_config c;
    memset(&c, 0, sizeof c);
    spin_llama *m = NULL;
    spin_device *dev = spin_init();
    if (!dev || spin_llama_config_parse(cfg, "the demo's config.json", &c) != SPIN_OK ||
        spin_llama_init(&c, dev, sz->seed, &m) != SPIN_OK || spin_llama_save(m, dir, false) != SPIN_OK) {
        fprintf(stderr, "spin demo: %s: %s\n", dir, spin_last_error());
        spin_llama_free(m);
        spin_llama_config_free(&c);
        return 1;
    }
    spin_llama_free(m);
    spin_llama_config_free(&c);
    json_object *tc = json_object_new_object();
    json_object_object_add(tc, "bos_token", json_object_new_string("<s>"));
    json_object_object_add(tc, "eos_token", json_object_new_string("</s>"));
    json_object_object_add(tc, "pad_token", json_object_new_string("</s>"));
    json_object_object_add(tc, "unk_token", json_object_new_string("<unk>"));
    json_object_object_add(tc, "chat_template", json_object_new_string(zephyr));
    json_object_object_add(tc, "tokenizer_class", json_object_new_string("PreTrainedTokenizerFast"));
    if (write_json(dir, "tokenizer.json", tokenizer_json()) != 0 ||
        write_json(dir, "tokenizer_config.json", tc) != 0)
        return 1;
    return 0;
}
