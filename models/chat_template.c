#include "models/chat_template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* ---- the Jinja sources (recognition keys), byte for byte as tokenizer_config.json holds them ----
 * zephyr: uclaml/SPIN@a12ba80 spin/alignment/data.py:13 (note the two spaces before
 *   `+ message['content']` in the assistant branch).
 * chatml: HuggingFaceTB/SmolLM2-*-Instruct tokenizer_config.json (SmolLM2-1.7B-Instruct commit e4f7834).
 * llama-2: meta-llama/Llama-2-*-chat-hf tokenizer_config.json. Its newlines inside Jinja string
 *   literals are the two characters backslash, n (Jinja turns them into newlines).
 * mistral: mistralai/Mistral-7B-Instruct-v0.1 tokenizer_config.json (2023 template).
 * tests/ref/make_chat_golden.py holds the same strings; the C test checks they are equal. */
static const char JINJA_ZEPHYR[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}"
    "\n{{ '<|user|>\n' + message['content'] + eos_token }}"
    "\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_t"
    "oken }}\n{% elif message['role'] == 'assistant' %}"
    "\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}"
    "\n{% endif %}\n{% if loop.last and add_generation_prompt %}"
    "\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

static const char JINJA_CHATML[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['cont"
    "ent'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

static const char JINJA_LLAMA2[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop."
    "index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/"
    "user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'"
    "] %}{% else %}{% set content = message['content'] %}"
    "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() "
    "+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";

static const char JINJA_MISTRAL[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.i"
    "ndex0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/u"
    "ser/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' "
    "%}{{ message['content'] + eos_token + ' ' }}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}";

#define ALTERNATE_MSG "Conversation roles must alternate user/assistant/user/assistant/..."

static const struct {
    const char *name;
    const char *jinja;
} TEMPLATES[SPIN_CHAT_N_TEMPLATES] = {
    [SPIN_CHAT_ZEPHYR] = {"zephyr", JINJA_ZEPHYR},   [SPIN_CHAT_CHATML] = {"chatml", JINJA_CHATML},
    [SPIN_CHAT_LLAMA2] = {"llama-2", JINJA_LLAMA2},  [SPIN_CHAT_MISTRAL] = {"mistral", JINJA_MISTRAL},
    [SPIN_CHAT_INSTRUCTION] = {"instruction", NULL},
};

#define VALID_NAMES "zephyr, chatml, llama-2, mistral, instruction"

static const char SMOLLM_DEFAULT_SYSTEM[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

const char *spin_chat_template_name(spin_chat_template t) {
    return (unsigned)t < SPIN_CHAT_N_TEMPLATES ? TEMPLATES[t].name : "?";
}

const char *spin_chat_template_jinja(spin_chat_template t) {
    return (unsigned)t < SPIN_CHAT_N_TEMPLATES ? TEMPLATES[t].jinja : NULL;
}

spin_status spin_chat_template_from_name(const char *name, spin_chat_template *out) {
    if (!name || !out)
        return spin_fail(SPIN_ERR_INVALID, "chat template: name and out must not be NULL");
    for (int t = 0; t < SPIN_CHAT_N_TEMPLATES; t++)
        if (strcmp(name, TEMPLATES[t].name) == 0) {
            *out = (spin_chat_template)t;
            return SPIN_OK;
        }
    return spin_fail(SPIN_ERR_INVALID, "unknown chat template \"%s\" (valid names: " VALID_NAMES ")", name);
}

spin_status spin_chat_template_from_jinja(const char *jinja, spin_chat_template *out) {
    if (!jinja || !out)
        return spin_fail(SPIN_ERR_INVALID, "chat template: jinja and out must not be NULL");
    int best = -1;
    size_t best_prefix = 0;
    for (int t = 0; t < SPIN_CHAT_N_TEMPLATES; t++) {
        const char *key = TEMPLATES[t].jinja;
        if (!key)
            continue;
        if (strcmp(jinja, key) == 0) {
            *out = (spin_chat_template)t;
            return SPIN_OK;
        }
        size_t p = 0;
        while (jinja[p] && jinja[p] == key[p])
            p++;
        if (best < 0 || p > best_prefix)
            best = t, best_prefix = p;
    }
    return spin_fail(
        SPIN_ERR_INVALID,
        "the tokenizer's chat_template (%zu bytes) is not the exact text of a supported template "
        "(closest: %s, first difference at byte %zu); pass a template name instead (valid "
        "names: " VALID_NAMES ")",
        strlen(jinja), TEMPLATES[best].name, best_prefix);
}

/* A bos_token / eos_token entry: a string, an AddedToken object with "content", or null/absent. */
static spin_status special_token(json_object *root, const char *key, const char *path, char **out) {
    if (!out)
        return SPIN_OK;
    *out = NULL;
    json_object *v = NULL;
    if (!json_object_object_get_ex(root, key, &v) || !v)
        return SPIN_OK;
    if (json_object_is_type(v, json_type_object)) {
        json_object *c = NULL;
        if (!json_object_object_get_ex(v, "content", &c))
            return spin_fail(SPIN_ERR_INVALID, "%s: %s is an object without \"content\"", path, key);
        v = c;
    }
    if (!json_object_is_type(v, json_type_string))
        return spin_fail(SPIN_ERR_INVALID, "%s: %s is neither a string nor an AddedToken object", path, key);
    const char *t = json_object_get_string(v);
    size_t n = strlen(t) + 1;
    *out = malloc(n);
    if (*out)
        memcpy(*out, t, n);
    return *out ? SPIN_OK : spin_fail(SPIN_ERR_OOM, "%s: out of host memory copying %s", path, key);
}

spin_status spin_chat_template_from_tokenizer_config(const char *path, spin_chat_template *out, char **bos,
                                                     char **eos) {
    if (bos)
        *bos = NULL;
    if (eos)
        *eos = NULL;
    if (!path || !out)
        return spin_fail(SPIN_ERR_INVALID, "chat template: path and out must not be NULL");
    FILE *f = fopen(path, "rb");
    if (!f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open the tokenizer config", path);
    fclose(f);
    json_object *root = json_object_from_file(path);
    if (!root) {
        const char *why = json_util_get_last_err();
        return spin_fail(SPIN_ERR_INVALID, "%s: not valid JSON (%s)", path, why ? why : "parse error");
    }
    spin_status s = SPIN_OK;
    json_object *tmpl = NULL;
    if (!json_object_is_type(root, json_type_object)) {
        s = spin_fail(SPIN_ERR_INVALID, "%s: the top level is not a JSON object", path);
        goto done;
    }
    if (!json_object_object_get_ex(root, "chat_template", &tmpl) || !tmpl) {
        s = spin_fail(SPIN_ERR_INVALID,
                      "%s: no chat_template; pass a template name (valid names: " VALID_NAMES ")", path);
        goto done;
    }
    if (json_object_is_type(tmpl, json_type_array)) {
        /* transformers' named templates: [{"name": ..., "template": ...}, ...]; "default" is used */
        json_object *found = NULL;
        for (size_t i = 0; i < json_object_array_length(tmpl); i++) {
            json_object *e = json_object_array_get_idx(tmpl, i), *nm = NULL, *src = NULL;
            if (json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "name", &nm) &&
                json_object_is_type(nm, json_type_string) &&
                strcmp(json_object_get_string(nm), "default") == 0 &&
                json_object_object_get_ex(e, "template", &src))
                found = src;
        }
        if (!found) {
            s = spin_fail(SPIN_ERR_INVALID,
                          "%s: chat_template is a list without a \"default\" entry; pass a template name "
                          "(valid names: " VALID_NAMES ")",
                          path);
            goto done;
        }
        tmpl = found;
    }
    if (!json_object_is_type(tmpl, json_type_string)) {
        s = spin_fail(SPIN_ERR_INVALID, "%s: chat_template is not a string", path);
        goto done;
    }
    s = spin_chat_template_from_jinja(json_object_get_string(tmpl), out);
    if (s != SPIN_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", spin_last_error());
        s = spin_fail(s, "%s: %s", path, msg);
        goto done;
    }
    if ((s = special_token(root, "bos_token", path, bos)) != SPIN_OK ||
        (s = special_token(root, "eos_token", path, eos)) != SPIN_OK) {
        if (bos)
            free(*bos), *bos = NULL;
        if (eos)
            free(*eos), *eos = NULL;
    }
done:
    json_object_put(root);
    return s;
}

/* ---- rendering ---------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void put_n(strbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put(strbuf *b, const char *s) {
    put_n(b, s, strlen(s));
}

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid (overlong forms,
 * surrogates and code points past U+10FFFF are invalid, as for Python's decoder). */
static int utf8_len(const unsigned char *s, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (!n || c > 0xf4)
        return 0;
    uint32_t v = c & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

static bool valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    while (*p) {
        int n = utf8_len(p, &cp);
        if (!n)
            return false;
        p += n;
    }
    return true;
}

/* Python's str.isspace(), which str.strip() with no argument uses: bidirectional class WS, B or S,
 * or general category Zs. */
static bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* Appends Python's s.strip() of s[0..n) (valid UTF-8). */
static void put_py_strip(strbuf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t lo = 0, hi = n;
    uint32_t cp;
    while (lo < hi) {
        int k = utf8_len(p + lo, &cp);
        if (!py_isspace(cp))
            break;
        lo += (size_t)k;
    }
    while (hi > lo) {
        size_t start = hi - 1;
        while (start > lo && (p[start] & 0xc0) == 0x80)
            start--;
        utf8_len(p + start, &cp);
        if (!py_isspace(cp))
            break;
        hi = start;
    }
    put_n(b, s + lo, hi - lo);
}

static const char *ROLE_NAMES[] = {"system", "user", "assistant"};

static spin_status render_zephyr(strbuf *b, const spin_chat_message *m, const role *r, int n, bool gen,
                                 const char *eos) {
    for (int i = 0; i < n; i++) {
        put(b, r[i] == ROLE_USER ? "<|user|>\n" : r[i] == ROLE_SYSTEM ? "<|system|>\n" : "<|assistant|>\n");
        put(b, m[i].content);
        put(b, eos);
        put(b, "\n");
        if (i == n - 1 && gen)
            put(b, "<|assistant|>\n");
    }
    return SPIN_OK;
}

static spin_status render_chatml(strbuf *b, const spin_chat_message *m, const role *r, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        if (i == 0 && r[0] != ROLE_SYSTEM) {
            put(b, "<|im_start|>system\n");
            put(b, SMOLLM_DEFAULT_SYSTEM);
            put(b, "<|im_end|>\n");
        }
        put(b, "<|im_start|>");
        put(b, ROLE_NAMES[r[i]]);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    if (gen)
        put(b, "<|im_start|>assistant\n");
    return SPIN_OK;
}

static spin_status render_llama2(strbuf *b, const spin_chat_message *m, const role *r, int n, const char *bos,
                                 const char *eos) {
    if (n == 0) /* the template reads messages[0]['role']: jinja2 raises UndefinedError */
        return spin_fail(SPIN_ERR_INVALID, "chat template llama-2: the conversation is empty (the template "
                                           "reads messages[0], which raises in jinja2)");
    const char *sys = NULL;
    int first = 0;
    if (r[0] == ROLE_SYSTEM)
        sys = m[0].content, first = 1;
    for (int i = first; i < n; i++) {
        int k = i - first; /* loop.index0 */
        if ((r[i] == ROLE_USER) != (k % 2 == 0))
            return spin_fail(SPIN_ERR_INVALID, "chat template llama-2: message %d (role %s): " ALTERNATE_MSG,
                             i, ROLE_NAMES[r[i]]);
        if (r[i] == ROLE_SYSTEM) /* the real template silently drops it; we refuse */
            return spin_fail(SPIN_ERR_INVALID,
                             "chat template llama-2: message %d has role system; llama-2 can place a system "
                             "message only first (the Jinja template would silently drop it)",
                             i);
        /* content = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content on the first turn, then
         * content.strip() (so a system block with an empty user turn loses its trailing newlines) */
        strbuf c = {0};
        if (k == 0 && sys) {
            put(&c, "<<SYS>>\n");
            put(&c, sys);
            put(&c, "\n<</SYS>>\n\n");
        }
        put(&c, m[i].content);
        if (r[i] == ROLE_USER) {
            put(b, bos);
            put(b, "[INST] ");
            put_py_strip(b, c.p ? c.p : "", c.len);
            put(b, " [/INST]");
        } else {
            put(b, " ");
            put_py_strip(b, c.p ? c.p : "", c.len);
            put(b, " ");
            put(b, eos);
        }
        bool oom = c.oom;
        free(c.p);
        if (oom)
            b->oom = true;
    }
    return SPIN_OK;
}

static spin_status render_mistral(strbuf *b, const spin_chat_message *m, const role *r, int n,
                                  const char *bos, const char *eos) {
    put(b, bos);
    for (int i = 0; i < n; i++) {
        if ((r[i] == ROLE_USER) != (i % 2 == 0))
            return spin_fail(SPIN_ERR_INVALID, "chat template mistral: message %d (role %s): " ALTERNATE_MSG,
                             i, ROLE_NAMES[r[i]]);
        if (r[i] == ROLE_USER) {
            put(b, "[INST] ");
            put(b, m[i].content);
            put(b, " [/INST]");
        } else if (r[i] == ROLE_ASSISTANT) {
            put(b, m[i].content);
            put(b, eos);
            put(b, " ");
        } else {
            return spin_fail(
                SPIN_ERR_INVALID,
                "chat template mistral: message %d has role system: Only user and assistant roles "
                "are supported!",
                i);
        }
    }
    return SPIN_OK;
}

static spin_status render_instruction(strbuf *b, const spin_chat_message *m, const role *r, int n) {
    if (n != 1 || r[0] != ROLE_USER)
        return spin_fail(SPIN_ERR_INVALID,
                         "chat template instruction: takes exactly one user message (the prompt), got %d "
                         "message(s)%s%s",
                         n, n > 0 ? ", the first with role " : "", n > 0 ? ROLE_NAMES[r[0]] : "");
    put(b, "### Instruction: ");
    put(b, m[0].content);
    put(b, "\n\n### Response: ");
    return SPIN_OK;
}

spin_status spin_chat_render(spin_chat_template t, const spin_chat_message *messages, int n,
                             bool add_generation_prompt, const char *bos, const char *eos, char **out) {
    if (!out)
        return spin_fail(SPIN_ERR_INVALID, "chat template: out must not be NULL");
    *out = NULL;
    if ((unsigned)t >= SPIN_CHAT_N_TEMPLATES)
        return spin_fail(SPIN_ERR_INVALID, "chat template: no template with id %d", (int)t);
    const char *name = TEMPLATES[t].name;
    if (n < 0 || (n > 0 && !messages))
        return spin_fail(SPIN_ERR_INVALID, "chat template %s: bad message list (n = %d, messages %s)", name,
                         n, messages ? "set" : "NULL");
    bool needs_eos = t == SPIN_CHAT_ZEPHYR || t == SPIN_CHAT_LLAMA2 || t == SPIN_CHAT_MISTRAL;
    bool needs_bos = t == SPIN_CHAT_LLAMA2 || t == SPIN_CHAT_MISTRAL;
    if (needs_bos && !bos)
        return spin_fail(SPIN_ERR_INVALID, "chat template %s needs bos_token (got NULL)", name);
    if (needs_eos && !eos)
        return spin_fail(SPIN_ERR_INVALID, "chat template %s needs eos_token (got NULL)", name);
    if (bos && !valid_utf8(bos))
        return spin_fail(SPIN_ERR_INVALID, "chat template %s: bos_token is not valid UTF-8", name);
    if (eos && !valid_utf8(eos))
        return spin_fail(SPIN_ERR_INVALID, "chat template %s: eos_token is not valid UTF-8", name);

    role *roles = malloc(sizeof(role) * (size_t)(n > 0 ? n : 1));
    if (!roles)
        return spin_fail(SPIN_ERR_OOM, "chat template %s: out of host memory", name);
    spin_status s = SPIN_OK;
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        const char *rn = messages[i].role;
        if (!rn)
            s = spin_fail(SPIN_ERR_INVALID, "chat template %s: message %d has no role (NULL)", name, i);
        else if (strcmp(rn, "system") == 0)
            roles[i] = ROLE_SYSTEM;
        else if (strcmp(rn, "user") == 0)
            roles[i] = ROLE_USER;
        else if (strcmp(rn, "assistant") == 0)
            roles[i] = ROLE_ASSISTANT;
        else
            s = spin_fail(
                SPIN_ERR_INVALID,
                "chat template %s: message %d has unknown role \"%s\" (roles: system, user, assistant)", name,
                i, rn);
        if (s == SPIN_OK && !messages[i].content)
            s = spin_fail(SPIN_ERR_INVALID, "chat template %s: message %d (role %s) has no content (NULL)",
                          name, i, rn);
        if (s == SPIN_OK && !valid_utf8(messages[i].content))
            s = spin_fail(SPIN_ERR_INVALID,
                          "chat template %s: message %d (role %s): content is not valid UTF-8", name, i, rn);
    }
    strbuf b = {0};
    if (s == SPIN_OK) {
        switch (t) {
        case SPIN_CHAT_ZEPHYR: s = render_zephyr(&b, messages, roles, n, add_generation_prompt, eos); break;
        case SPIN_CHAT_CHATML: s = render_chatml(&b, messages, roles, n, add_generation_prompt); break;
        case SPIN_CHAT_LLAMA2: s = render_llama2(&b, messages, roles, n, bos, eos); break;
        case SPIN_CHAT_MISTRAL: s = render_mistral(&b, messages, roles, n, bos, eos); break;
        case SPIN_CHAT_INSTRUCTION: s = render_instruction(&b, messages, roles, n); break;
        default: break;
        }
    }
    free(roles);
    if (s == SPIN_OK && b.oom)
        s = spin_fail(SPIN_ERR_OOM, "chat template %s: out of host memory rendering %d message(s)", name, n);
    if (s == SPIN_OK && !b.p) { /* nothing rendered: an empty string */
        b.p = malloc(1);
        if (!b.p)
            s = spin_fail(SPIN_ERR_OOM, "chat template %s: out of host memory", name);
        else
            b.p[0] = '\0';
    }
    if (s != SPIN_OK) {
        free(b.p);
        return s;
    }
    *out = b.p;
    return SPIN_OK;
}
