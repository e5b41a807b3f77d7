/* spin complete: prompts in (JSON lines or plain text), completions out (JSON lines), through the
 * batched generation engine (models/generate.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/spin/commands.h"
#include "tools/spin/gen_cli.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin complete --model PATH [--tokenizer PATH] [--template NAME] [--input FILE|-]\n"
        "                     [--output FILE|-] [--text] [options]\n"
        "\n"
        "Generates a completion for every prompt, batch by batch with a KV cache (a finished\n"
        "sequence's slot takes the next prompt at once), and writes one JSON object per prompt in\n"
        "order of completion:\n"
        "  {\"index\": N, \"prompt\": ..., \"completion\": ..., \"finish_reason\": "
        "\"eos\"|\"stop\"|\"length\",\n"
        "   \"completion_tokens\": N[, \"logprobs\": [...]]}\n"
        "index is the prompt's 0-based position among the input's non-blank lines.\n"
        "\n"
        "input (one per line; blank lines are skipped):\n"
        "  JSON lines (default)  {\"prompt\": \"text\"} or {\"messages\": [{\"role\": \"user\", \"content\": "
        "...}]}\n"
        "                        messages are rendered with the chat template (generation prompt added);\n"
        "                        a prompt string is used as is unless --template is given, in which\n"
        "                        case it becomes one user message of that template\n"
        "  --text                each line is a prompt string (default: off, JSON lines)\n"
        "\n"
        "options:\n"
        "  --model PATH         model directory (config.json, safetensors weights) or .gguf file (required)\n"
        "  --tokenizer PATH     tokenizer.json, a directory holding it, or a GGUF file (default: the\n"
        "                       model's PATH)\n"
        "  --template NAME      zephyr | chatml | llama-2 | mistral | instruction (default: recognised\n"
        "                       from tokenizer_config.json next to the tokenizer, or the GGUF's\n"
        "                       tokenizer.chat_template; needed for messages)\n"
        "  --input FILE|-       prompts (default: - = stdin)\n"
        "  --output FILE|-      completions (default: - = stdout); a file is written to FILE.tmp and\n"
        "                       renamed when complete, and is never overwritten unless --force\n"
        "  --force              overwrite an existing --output FILE (default: off)\n"
        "  --add-special        encode prompts with the tokenizer's special tokens (e.g. BOS)\n"
        "                       (default: off, as apply_chat_template and uclaml/SPIN do)\n"
        "  --logprobs           add each generated token's log-prob under the unmodified softmax\n"
        "                       (default: off)\n"
        "  --keep-special       keep special tokens in the completion text (default: skipped)\n"
        "%s"
        "  --help, -h           this help\n",
        gen_cli_options_help);
}

typedef struct {
    char *text; /* the prompt as the model sees it */
    long line;
} prompt_info;

typedef struct {
    FILE *out;
    prompt_info *info;
    bool logprobs;
} sink;

static spin_status write_result(void *ctx, const spin_gen_result *r) {
    sink *s = ctx;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "index", json_object_new_int64(r->index));
    json_object_object_add(o, "prompt", json_object_new_string(s->info[r->index].text));
    json_object_object_add(o, "completion", json_object_new_string(r->text ? r->text : ""));
    json_object_object_add(o, "finish_reason", json_object_new_string(spin_finish_reason_name(r->finish)));
    json_object_object_add(o, "completion_tokens", json_object_new_int64(r->n_tokens));
    if (s->logprobs && r->logprobs) {
        json_object *a = json_object_new_array_ext((int)r->n_tokens);
        for (int64_t i = 0; i < r->n_tokens; i++)
            json_object_array_add(a, json_object_new_double((double)r->logprobs[i]));
        json_object_object_add(o, "logprobs", a);
    }
    const char *line =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    int rc = fprintf(s->out, "%s\n", line);
    json_object_put(o);
    if (rc < 0)
        return spin_fail(SPIN_ERR_IO, "writing the completion of prompt %lld failed: %s", (long long)r->index,
                         strerror(errno));
    return SPIN_OK;
}

/* The prompt text of one input line (malloc'd), or NULL after printing an error naming the line. */
static char *prompt_of_line(const gen_cli_model *g, const char *input, long lineno, const char *line,
                            size_t n, bool text_mode, bool named_template) {
    if (text_mode) {
        char *t = malloc(n + 1);
        if (t) {
            memcpy(t, line, n);
            t[n] = 0;
        }
        return t;
    }
    json_tokener *jt = json_tokener_new();
    json_object *v = json_tokener_parse_ex(jt, line, (int)n);
    bool whole =
        v && json_tokener_get_error(jt) == json_tokener_success && json_tokener_get_parse_end(jt) == n;
    json_tokener_free(jt);
    char *out = NULL;
    json_object *p = NULL, *msgs = NULL;
    if (!whole || !json_object_is_type(v, json_type_object)) {
        fprintf(stderr, "spin complete: %s line %ld: not a JSON object (use --text for plain text lines)\n",
                input, lineno);
    } else if (json_object_object_get_ex(v, "prompt", &p)) {
        if (!json_object_is_type(p, json_type_string)) {
            fprintf(stderr, "spin complete: %s line %ld: \"prompt\" must be a string\n", input, lineno);
        } else if (named_template) {
            spin_chat_message m = {"user", json_object_get_string(p)};
            if (spin_chat_render(g->tpl, &m, 1, true, g->bos, g->eos, &out) != SPIN_OK)
                fprintf(stderr, "spin complete: %s line %ld: %s\n", input, lineno, spin_last_error());
        } else {
            out = strdup(json_object_get_string(p));
        }
    } else if (json_object_object_get_ex(v, "messages", &msgs)) {
        size_t k = json_object_is_type(msgs, json_type_array) ? json_object_array_length(msgs) : 0;
        spin_chat_message *m = calloc(k + 1, sizeof *m);
        bool ok = json_object_is_type(msgs, json_type_array) && m;
        for (size_t i = 0; ok && i < k; i++) {
            json_object *e = json_object_array_get_idx(msgs, i), *role, *content;
            ok = json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "role", &role) &&
                 json_object_object_get_ex(e, "content", &content) &&
                 json_object_is_type(role, json_type_string) &&
                 json_object_is_type(content, json_type_string);
            if (ok) {
                m[i].role = json_object_get_string(role);
                m[i].content = json_object_get_string(content);
            } else {
                fprintf(
                    stderr,
                    "spin complete: %s line %ld: messages[%zu] must be an object with string \"role\" and "
                    "\"content\"\n",
                    input, lineno, i);
            }
        }
        if (!json_object_is_type(msgs, json_type_array))
            fprintf(stderr, "spin complete: %s line %ld: \"messages\" must be a list\n", input, lineno);
        else if (ok && !g->have_template)
            fprintf(
                stderr,
                "spin complete: %s line %ld: \"messages\" need a chat template: pass --template NAME (%s)\n",
                input, lineno, g->template_error ? g->template_error : "none recognised");
        else if (ok && spin_chat_render(g->tpl, m, (int)k, true, g->bos, g->eos, &out) != SPIN_OK)
            fprintf(stderr, "spin complete: %s line %ld: %s\n", input, lineno, spin_last_error());
        free(m);
    } else {
        fprintf(stderr, "spin complete: %s line %ld: expected a \"prompt\" string or a \"messages\" list\n",
                input, lineno);
    }
    json_object_put(v);
    return out;
}

/* Moves tmp to path: rename with --force, otherwise link + unlink (fails if path appeared). */
static int publish(const char *tmp, const char *path, bool force) {
    if (force ? rename(tmp, path) != 0 : link(tmp, path) != 0) {
        fprintf(stderr, "spin complete: cannot create %s: %s (results are in %s)\n", path, strerror(errno),
                tmp);
        return 1;
    }
    if (!force)
        unlink(tmp);
    return 0;
}

int cmd_complete(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *tpl = NULL, *input = "-", *output = "-";
    bool text_mode = false, force = false, add_special = false;
    spin_gen_opts o = spin_gen_opts_default();
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_cli_option("complete", argc, argv, &i, &o);
        if (r < 0) {
            rc = 2;
            goto out;
        }
        if (r > 0)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            goto out;
        } else if (!strcmp(a, "--text")) {
            text_mode = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (!strcmp(a, "--add-special")) {
            add_special = true;
        } else if (!strcmp(a, "--logprobs")) {
            o.logprobs = true;
        } else if (!strcmp(a, "--keep-special")) {
            o.skip_special = false;
        } else if (i + 1 < argc && !strcmp(a, "--model")) {
            model = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--tokenizer")) {
            tokenizer = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--template")) {
            tpl = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--input")) {
            input = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--output")) {
            output = argv[++i];
        } else {
            fprintf(stderr, "spin complete: unknown or incomplete option '%s'\n", a);
            help(stderr);
            rc = 2;
            goto out;
        }
    }
    if (!model) {
        fprintf(stderr, "spin complete: --model PATH is required\n");
        help(stderr);
        rc = 2;
        goto out;
    }
    bool to_file = strcmp(output, "-") != 0;
    if (to_file && !force && access(output, F_OK) == 0) {
        fprintf(stderr, "spin complete: %s exists (use --force to overwrite)\n", output);
        rc = 1;
        goto out;
    }
    FILE *in = strcmp(input, "-") ? fopen(input, "r") : stdin;
    if (!in) {
        fprintf(stderr, "spin complete: cannot read %s: %s\n", input, strerror(errno));
        rc = 1;
        goto out;
    }
    const char *in_name = strcmp(input, "-") ? input : "stdin";
    gen_cli_model g;
    rc = gen_cli_load("complete", model, tokenizer, tpl, &g);
    if (rc) {
        if (in != stdin)
            fclose(in);
        goto out;
    }
    gen_cli_apply_generation_config(g.m, &o);
    /* read every prompt first: the queue is the whole input */
    prompt_info *info = NULL;
    int32_t **ids = NULL;
    int64_t *lens = NULL, n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    long lineno = 0;
    while (rc == 0 && (got = getline(&line, &lcap, in)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        size_t blank = 0;
        while (blank < len && (line[blank] == ' ' || line[blank] == '\t'))
            blank++;
        if (blank == len)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            prompt_info *ni = realloc(info, (size_t)cap * sizeof *ni);
            info = ni ? ni : info;
            int32_t **nd = realloc(ids, (size_t)cap * sizeof *nd);
            ids = nd ? nd : ids;
            int64_t *nl = realloc(lens, (size_t)cap * sizeof *nl);
            lens = nl ? nl : lens;
            if (!ni || !nd || !nl) {
                fprintf(stderr, "spin complete: out of memory\n");
                rc = 1;
                break;
            }
        }
        char *text = prompt_of_line(&g, in_name, lineno, line, len, text_mode, tpl != NULL);
        if (!text) {
            rc = 1;
            break;
        }
        size_t k = 0;
        int32_t *t = NULL;
        if (spin_tokenizer_encode(g.tok, text, strlen(text), add_special, &t, &k) != SPIN_OK) {
            fprintf(stderr, "spin complete: %s line %ld: %s\n", in_name, lineno, spin_last_error());
            free(text);
            rc = 1;
            break;
        }
        for (size_t j = 0; j < k && rc == 0; j++)
            if (t[j] >= g.m->cfg.vocab_size) {
                fprintf(stderr,
                        "spin complete: %s line %ld: token id %d is outside the model's vocabulary of %lld\n",
                        in_name, lineno, t[j], (long long)g.m->cfg.vocab_size);
                rc = 1;
            }
        if (rc == 0 && k == 0) {
            fprintf(stderr, "spin complete: %s line %ld: the prompt encodes to no tokens\n", in_name, lineno);
            rc = 1;
        }
        if (rc) {
            free(t);
            free(text);
            break;
        }
        info[n] = (prompt_info){text, lineno};
        ids[n] = t;
        lens[n] = (int64_t)k;
        n++;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    char *tmp = NULL;
    FILE *out = stdout;
    if (rc == 0 && to_file) {
        size_t tl = strlen(output) + 8;
        tmp = malloc(tl);
        snprintf(tmp, tl, "%s.tmp", output);
        out = fopen(tmp, "w");
        if (!out) {
            fprintf(stderr, "spin complete: cannot write %s: %s\n", tmp, strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0) {
        sink s = {out, info, o.logprobs};
        spin_gen_stats st;
        spin_status gs =
            spin_generate(g.m, g.tok, (const int32_t *const *)ids, lens, n, &o, write_result, &s, &st);
        if (gs != SPIN_OK) {
            fprintf(stderr, "spin complete: %s\n", spin_last_error());
            rc = 1;
        } else {
            fprintf(
                stderr,
                "spin complete: %lld prompts, %lld prompt tokens (prefill %.1f tok/s), %lld generated tokens "
                "(decode %.1f tok/s)\n",
                (long long)n, (long long)st.prefill_tokens,
                st.prefill_s > 0 ? (double)st.prefill_tokens / st.prefill_s : 0.0,
                (long long)st.decode_tokens, st.decode_s > 0 ? (double)st.decode_tokens / st.decode_s : 0.0);
        }
        bool bad = fflush(out) != 0 || ferror(out);
        if (to_file) {
            bad = bad || fsync(fileno(out)) != 0;
            bad = fclose(out) != 0 || bad;
            if (bad) {
                fprintf(stderr, "spin complete: writing %s failed: %s\n", tmp, strerror(errno));
                rc = 1;
            } else if (rc) {
                fprintf(stderr, "spin complete: the completions finished so far are in %s\n", tmp);
            } else {
                rc = publish(tmp, output, force);
            }
        } else if (bad) {
            fprintf(stderr, "spin complete: writing stdout failed\n");
            rc = 1;
        }
    }
    free(tmp);
    for (int64_t i = 0; i < n; i++) {
        free(info[i].text);
        free(ids[i]);
    }
    free(info);
    free(ids);
    free(lens);
    gen_cli_free(&g);
out:
    free((void *)o.stop);
    return rc;
}
