#define _POSIX_C_SOURCE 200809L /* getline */
#include "train/pref_data.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* SPIN's assistant_prefix (uclaml/SPIN spin/alignment/data.py:apply_chat_template). */
#define ZEPHYR_HEADER "<|assistant|>\n"

typedef enum { FORM_NONE, FORM_STRINGS, FORM_MESSAGES } row_form;

typedef struct {
    const char *path;
    int64_t line;
    spin_chat_template tmpl;
    const char *bos, *eos;
} reader;

typedef struct {
    spin_chat_message *m; /* strings point into the row's JSON */
    int n;
} msg_list;

const char *spin_data_kind_name(spin_data_kind k) {
    switch (k) {
    case SPIN_DATA_SPIN: return "spin";
    case SPIN_DATA_DPO: return "dpo";
    case SPIN_DATA_SPPO: return "sppo";
    }
    return "?";
}

static spin_status row_fail(const reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static spin_status row_fail(const reader *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return spin_fail(SPIN_ERR_INVALID, "%s:%lld: %s", r->path, (long long)r->line, msg);
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static json_object *column(json_object *row, const char *key) {
    json_object *v = NULL;
    return json_object_object_get_ex(row, key, &v) ? v : NULL;
}

static bool has(json_object *row, const char *key) {
    json_object *v = NULL;
    return json_object_object_get_ex(row, key, &v);
}

/* A JSON string with no NUL inside (json-c keeps "\u0000"; C strings would silently cut it). */
static spin_status get_text(const reader *r, json_object *v, const char *what, const char **out) {
    if (!json_object_is_type(v, json_type_string))
        return row_fail(r, "%s is not a string (got %s)", what, json_type_to_name(json_object_get_type(v)));
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v))
        return row_fail(r, "%s contains a NUL character", what);
    *out = s;
    return SPIN_OK;
}

static spin_status read_messages(const reader *r, json_object *row, const char *key, msg_list *out) {
    out->m = NULL;
    out->n = 0;
    json_object *v = column(row, key);
    if (!has(row, key))
        return row_fail(r, "missing key \"%s\"", key);
    if (!json_object_is_type(v, json_type_array))
        return row_fail(r, "%s is not a list of messages (got %s)", key,
                        json_type_to_name(json_object_get_type(v)));
    size_t n = json_object_array_length(v);
    if (n > (size_t)1 << 30)
        return row_fail(r, "%s has %zu messages", key, n);
    out->m = calloc(n ? n : 1, sizeof *out->m);
    if (!out->m)
        return spin_fail(SPIN_ERR_OOM, "%s:%lld: out of host memory", r->path, (long long)r->line);
    out->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        char what[96];
        spin_status s = SPIN_OK;
        if (!json_object_is_type(e, json_type_object)) {
            s = row_fail(r, "%s[%zu] is not a message object (got %s)", key, i,
                         json_type_to_name(json_object_get_type(e)));
        } else if (!has(e, "role")) {
            s = row_fail(r, "%s[%zu] has no \"role\"", key, i);
        } else if (!has(e, "content")) {
            s = row_fail(r, "%s[%zu] has no \"content\"", key, i);
        } else {
            snprintf(what, sizeof what, "%s[%zu].role", key, i);
            s = get_text(r, column(e, "role"), what, &out->m[i].role);
            if (s == SPIN_OK) {
                snprintf(what, sizeof what, "%s[%zu].content", key, i);
                s = get_text(r, column(e, "content"), what, &out->m[i].content);
            }
            const char *role = out->m[i].role;
            if (s == SPIN_OK && strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
                s = row_fail(r, "%s[%zu].role \"%s\" is not system, user or assistant", key, i, role);
        }
        if (s != SPIN_OK) {
            free(out->m);
            out->m = NULL, out->n = 0;
            return s;
        }
    }
    return SPIN_OK;
}

/* spin_chat_render with the row's location put in front of its message. */
static spin_status render(const reader *r, const char *what, const spin_chat_message *m, int n, bool gen,
                          char **out) {
    spin_status s = spin_chat_render(r->tmpl, m, n, gen, r->bos, r->eos, out);
    if (s != SPIN_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", spin_last_error());
        return spin_fail(s, "%s:%lld: %s: %s", r->path, (long long)r->line, what, msg);
    }
    return SPIN_OK;
}

/* template(messages) without the leading generation-prompt header (see pref_data.h). */
static spin_status render_response(const reader *r, const char *what, const spin_chat_message *m, int n,
                                   char **out) {
    char *text = NULL, *header = NULL;
    spin_status s = render(r, what, m, n, false, &text);
    if (s != SPIN_OK)
        return s;
    size_t skip = 0;
    if (r->tmpl == SPIN_CHAT_ZEPHYR) {
        /* SPIN's re.sub("^" + prefix, ""): removed only when present */
        if (strncmp(text, ZEPHYR_HEADER, strlen(ZEPHYR_HEADER)) == 0)
            skip = strlen(ZEPHYR_HEADER);
    } else {
        const char *name = spin_chat_template_name(r->tmpl);
        if (spin_chat_render(r->tmpl, NULL, 0, true, r->bos, r->eos, &header) != SPIN_OK) {
            s = row_fail(r,
                         "%s: the %s template has no generation-prompt header to remove from a response "
                         "(rendering an empty conversation fails: %s)",
                         what, name, spin_last_error());
        } else if (!header[0] || strncmp(text, header, strlen(header)) != 0) {
            s = row_fail(r,
                         "%s: the %s template does not render a response as its generation prompt followed "
                         "by the text, so the response cannot be cut out as SPIN does (use zephyr, or DPO "
                         "rows of plain strings)",
                         what, name);
        } else {
            skip = strlen(header);
        }
        free(header);
        if (s != SPIN_OK) {
            free(text);
            return s;
        }
    }
    memmove(text, text + skip, strlen(text + skip) + 1);
    *out = text;
    return SPIN_OK;
}

static void example_free(spin_pref_example *e) {
    free(e->prompt);
    free(e->chosen);
    free(e->rejected);
    e->prompt = e->chosen = e->rejected = NULL;
}

/* ---- the row kinds ---------------------------------------------------------------------------- */

static spin_status spin_row(const reader *r, json_object *row, spin_pref_example *ex) {
    msg_list real = {0}, gen = {0};
    spin_status s = read_messages(r, row, "real", &real);
    if (s == SPIN_OK)
        s = read_messages(r, row, "generated", &gen);
    if (s == SPIN_OK && real.n < 2)
        s = row_fail(r,
                     "real has %d message(s); SPIN needs the prompt turn and at least one response message",
                     real.n);
    if (s == SPIN_OK && gen.n < 2)
        s = row_fail(r,
                     "generated has %d message(s); SPIN needs the prompt turn and at least one response "
                     "message",
                     gen.n);
    const spin_chat_message *user = NULL;
    for (int i = 0; s == SPIN_OK && i < real.n && !user; i++)
        if (!strcmp(real.m[i].role, "user"))
            user = &real.m[i];
    if (s == SPIN_OK && !user)
        s = row_fail(r, "real has no user message (SPIN's prompt is the first user message of real)");
    if (s == SPIN_OK) {
        spin_chat_message prompt[2] = {{"system", ""}, *user};
        if (!strcmp(real.m[0].role, "system"))
            prompt[0] = real.m[0];
        s = render(r, "prompt [system, first user message of real]", prompt, 2, true, &ex->prompt);
    }
    if (s == SPIN_OK)
        s = render_response(r, "real[1:]", real.m + 1, real.n - 1, &ex->chosen);
    if (s == SPIN_OK)
        s = render_response(r, "generated[1:]", gen.m + 1, gen.n - 1, &ex->rejected);
    free(real.m);
    free(gen.m);
    return s;
}

static spin_status dpo_string_row(const reader *r, json_object *row, spin_pref_example *ex) {
    static const char *const keys[3] = {"prompt", "chosen", "rejected"};
    char **dst[3] = {&ex->prompt, &ex->chosen, &ex->rejected};
    for (int k = 0; k < 3; k++) {
        const char *t = NULL;
        if (!has(row, keys[k]))
            return row_fail(r, "missing key \"%s\"", keys[k]);
        char what[64];
        snprintf(what, sizeof what, "%s (a string row: chosen is a string)", keys[k]);
        SPIN_TRY(get_text(r, column(row, keys[k]), what, &t));
        if (!(*dst[k] = dup_n(t, strlen(t))))
            return spin_fail(SPIN_ERR_OOM, "%s:%lld: out of host memory", r->path, (long long)r->line);
    }
    return SPIN_OK;
}

static bool same_message(const spin_chat_message *a, const spin_chat_message *b) {
    return !strcmp(a->role, b->role) && !strcmp(a->content, b->content);
}

static spin_status dpo_message_row(const reader *r, json_object *row, spin_pref_example *ex) {
    msg_list pr = {0}, ch = {0}, rj = {0};
    spin_status s = read_messages(r, row, "chosen", &ch);
    if (s == SPIN_OK)
        s = read_messages(r, row, "rejected", &rj);
    json_object *p = column(row, "prompt");
    bool explicit_prompt = p && json_object_is_type(p, json_type_array);
    if (s == SPIN_OK && has(row, "prompt") && !explicit_prompt && !json_object_is_type(p, json_type_string))
        s = row_fail(r, "prompt is neither a list of messages nor a string (got %s)",
                     json_type_to_name(json_object_get_type(p)));
    const spin_chat_message *pm = NULL, *cm = NULL, *rm = NULL;
    int np = 0, nc = 0, nr = 0;
    if (s == SPIN_OK && explicit_prompt) {
        s = read_messages(r, row, "prompt", &pr);
        if (s == SPIN_OK && pr.n == 0)
            s = row_fail(r, "prompt is an empty message list");
        const msg_list *resp[2] = {&ch, &rj};
        for (int k = 0; k < 2 && s == SPIN_OK; k++) {
            const char *key = k ? "rejected" : "chosen";
            if (resp[k]->n == 0)
                s = row_fail(r, "%s is an empty message list", key);
            else if (strcmp(resp[k]->m[0].role, "assistant"))
                s = row_fail(r,
                             "%s[0] is a %s message; with a prompt list the response must start with an "
                             "assistant message",
                             key, resp[k]->m[0].role);
        }
        pm = pr.m, np = pr.n, cm = ch.m, nc = ch.n, rm = rj.m, nr = rj.n;
    } else if (s == SPIN_OK) {
        const msg_list *side[2] = {&ch, &rj};
        for (int k = 0; k < 2 && s == SPIN_OK; k++) {
            const char *key = k ? "rejected" : "chosen";
            int n = side[k]->n;
            if (n < 2)
                s = row_fail(r,
                             "%s has %d message(s); without a prompt list it needs the prompt turns and the "
                             "final assistant response",
                             key, n);
            else if (strcmp(side[k]->m[n - 1].role, "assistant"))
                s = row_fail(r, "%s[%d] (the last message) is a %s message, not the assistant response", key,
                             n - 1, side[k]->m[n - 1].role);
        }
        if (s == SPIN_OK && ch.n != rj.n)
            s = row_fail(r,
                         "rejected has %d messages but chosen has %d (rejected[:-1] must equal chosen[:-1], "
                         "the prompt turns)",
                         rj.n, ch.n);
        for (int i = 0; s == SPIN_OK && i < ch.n - 1; i++)
            if (!same_message(&ch.m[i], &rj.m[i]))
                s = row_fail(r, "rejected[%d] differs from chosen[%d] (the prompt turns must be the same)", i,
                             i);
        pm = ch.m, np = ch.n - 1, cm = ch.m + ch.n - 1, nc = 1, rm = rj.m + rj.n - 1, nr = 1;
    }
    if (s == SPIN_OK)
        s = render(r, explicit_prompt ? "prompt" : "prompt (chosen[:-1])", pm, np, true, &ex->prompt);
    if (s == SPIN_OK)
        s = render_response(r, explicit_prompt ? "chosen" : "chosen[-1]", cm, nc, &ex->chosen);
    if (s == SPIN_OK)
        s = render_response(r, explicit_prompt ? "rejected" : "rejected[-1]", rm, nr, &ex->rejected);
    free(pr.m);
    free(ch.m);
    free(rj.m);
    return s;
}

static spin_status probability(const reader *r, json_object *row, const char *key, float *out) {
    if (!has(row, key))
        return row_fail(r, "missing key \"%s\"", key);
    json_object *v = column(row, key);
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return row_fail(r, "%s is not a number (got %s)", key, json_type_to_name(json_object_get_type(v)));
    double d = json_object_get_double(v);
    if (!(d >= 0.0 && d <= 1.0))
        return row_fail(r, "%s is %g, not a probability in [0, 1]", key, d);
    *out = (float)d;
    return SPIN_OK;
}

static const char *const SPPO_KEYS[3] = {"chosen_probs", "chosen_probs_win", "chosen_probs_lose"};

/* The kind from the columns; FORM_NONE for SPIN, else whether chosen is a string or a list. */
static spin_status detect(const reader *r, json_object *row, spin_data_kind *kind, row_form *form) {
    *form = FORM_NONE;
    if (has(row, "real") || has(row, "generated")) {
        *kind = SPIN_DATA_SPIN;
        return SPIN_OK;
    }
    if (has(row, SPPO_KEYS[0]) || has(row, SPPO_KEYS[1]) || has(row, SPPO_KEYS[2]))
        *kind = SPIN_DATA_SPPO;
    else if (has(row, "chosen") || has(row, "rejected"))
        *kind = SPIN_DATA_DPO;
    else
        return row_fail(r, "no known columns: expected \"real\" and \"generated\" (SPIN), or \"chosen\" and "
                           "\"rejected\" (DPO; SPPO adds chosen_probs, chosen_probs_win, chosen_probs_lose)");
    if (!has(row, "chosen"))
        return row_fail(r, "missing key \"chosen\"");
    json_object *c = column(row, "chosen");
    if (json_object_is_type(c, json_type_string))
        *form = FORM_STRINGS;
    else if (json_object_is_type(c, json_type_array))
        *form = FORM_MESSAGES;
    else
        return row_fail(r, "chosen is neither a string nor a list of messages (got %s)",
                        json_type_to_name(json_object_get_type(c)));
    return SPIN_OK;
}

static const char *form_name(row_form f) {
    return f == FORM_STRINGS ? "a string" : "a list of messages";
}

/* One parsed row -> *ex, checking it matches the first row's kind and form. */
static spin_status template_row(const reader *r, json_object *row, bool first, spin_data_kind *kind,
                                row_form *form, int64_t first_line, spin_pref_example *ex) {
    ex->probs_chosen = ex->probs_win = ex->probs_lose = NAN;
    if (!json_object_is_type(row, json_type_object))
        return row_fail(r, "the row is not a JSON object (got %s)",
                        json_type_to_name(json_object_get_type(row)));
    spin_data_kind k = SPIN_DATA_SPIN;
    row_form f = FORM_NONE;
    SPIN_TRY(detect(r, row, &k, &f));
    if (first) {
        *kind = k, *form = f;
    } else if (k != *kind) {
        return row_fail(r, "mixed kinds: this row is %s data but the first row (line %lld) is %s data",
                        spin_data_kind_name(k), (long long)first_line, spin_data_kind_name(*kind));
    } else if (f != *form) {
        return row_fail(r, "mixed forms: chosen is %s here but %s in the first row (line %lld)", form_name(f),
                        form_name(*form), (long long)first_line);
    }
    spin_status s;
    if (k == SPIN_DATA_SPIN)
        s = spin_row(r, row, ex);
    else if (f == FORM_STRINGS)
        s = dpo_string_row(r, row, ex);
    else
        s = dpo_message_row(r, row, ex);
    if (s == SPIN_OK && k == SPIN_DATA_SPPO) {
        float *dst[3] = {&ex->probs_chosen, &ex->probs_win, &ex->probs_lose};
        for (int i = 0; i < 3 && s == SPIN_OK; i++)
            s = probability(r, row, SPPO_KEYS[i], dst[i]);
    }
    if (s != SPIN_OK)
        example_free(ex);
    return s;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

spin_status spin_pref_data_read(const char *path, spin_chat_template tmpl, const char *bos, const char *eos,
                                spin_pref_data *out) {
    if (!out)
        return spin_fail(SPIN_ERR_INVALID, "spin_pref_data_read: out must not be NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return spin_fail(SPIN_ERR_INVALID, "spin_pref_data_read: path must not be NULL");
    if ((unsigned)tmpl >= SPIN_CHAT_N_TEMPLATES)
        return spin_fail(SPIN_ERR_INVALID, "%s: chat template %d is not a template", path, (int)tmpl);
    FILE *f = fopen(path, "rb");
    if (!f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open the preference data (%s)", path, strerror(errno));
    json_tokener *tk = json_tokener_new();
    if (!tk) {
        fclose(f);
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    }
    json_tokener_set_flags(tk, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    reader r = {path, 0, tmpl, bos, eos};
    spin_pref_data d = {0};
    int64_t cap = 0, first_line = 0;
    row_form form = FORM_NONE;
    char *line = NULL;
    size_t line_cap = 0;
    spin_status s = SPIN_OK;
    for (;;) {
        errno = 0;
        ssize_t got = getline(&line, &line_cap, f);
        if (got < 0) {
            if (ferror(f))
                s = spin_fail(SPIN_ERR_IO, "%s:%lld: read error (%s)", path, (long long)r.line + 1,
                              strerror(errno));
            break;
        }
        r.line++;
        size_t len = (size_t)got;
        if (blank(line, len))
            continue;
        if (len > 0x7ffffffe) {
            s = row_fail(&r, "the line is longer than 2 GiB");
            break;
        }
        json_tokener_reset(tk);
        /* the terminating NUL is passed too, so the tokener knows the value ends with the line */
        json_object *row = json_tokener_parse_ex(tk, line, (int)len + 1);
        enum json_tokener_error je = json_tokener_get_error(tk);
        if (!row) {
            s = row_fail(&r, "not valid JSON (%s at column %zu)", json_tokener_error_desc(je),
                         json_tokener_get_parse_end(tk) + 1);
            break;
        }
        if (d.n == cap) {
            int64_t nc = cap ? 2 * cap : 64;
            spin_pref_example *ex = realloc(d.ex, (size_t)nc * sizeof *ex);
            if (!ex) {
                json_object_put(row);
                s = spin_fail(SPIN_ERR_OOM, "%s:%lld: out of host memory", path, (long long)r.line);
                break;
            }
            d.ex = ex, cap = nc;
        }
        spin_pref_example *ex = &d.ex[d.n];
        memset(ex, 0, sizeof *ex);
        if (d.n == 0)
            first_line = r.line;
        s = template_row(&r, row, d.n == 0, &d.kind, &form, first_line, ex);
        json_object_put(row);
        if (s != SPIN_OK)
            break;
        d.n++;
    }
    free(line);
    json_tokener_free(tk);
    fclose(f);
    if (s == SPIN_OK && d.n == 0)
        s = spin_fail(SPIN_ERR_INVALID, "%s:1: empty file (no JSON rows; %lld blank line(s))", path,
                      (long long)r.line);
    if (s != SPIN_OK) {
        spin_pref_data_free(&d);
        return s;
    }
    *out = d;
    return SPIN_OK;
}

void spin_pref_data_free(spin_pref_data *d) {
    if (!d)
        return;
    for (int64_t i = 0; i < d->n; i++)
        example_free(&d->ex[i]);
    free(d->ex);
    memset(d, 0, sizeof *d);
}
