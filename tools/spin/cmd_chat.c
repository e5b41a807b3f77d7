/* spin chat: an interactive conversation with a model through its chat template. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/spin/commands.h"
#include "tools/spin/gen_cli.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin chat --model PATH [--tokenizer PATH] [--template NAME] [--system TEXT] [options]\n"
        "\n"
        "Reads one user message per line on stdin and answers it, keeping the conversation so far\n"
        "(rendered with the chat template each turn). Commands: /reset (forget the conversation),\n"
        "/quit (or end of input). Replies are printed as they are generated (at once with --stop).\n"
        "\n"
        "options:\n"
        "  --model PATH         model directory (config.json, safetensors weights) or .gguf file (required)\n"
        "  --tokenizer PATH     tokenizer.json, a directory holding it, or a GGUF file (default: the\n"
        "                       model's PATH)\n"
        "  --template NAME      zephyr | chatml | llama-2 | mistral | instruction (default: recognised\n"
        "                       from tokenizer_config.json next to the tokenizer, or the GGUF's\n"
        "                       tokenizer.chat_template; required otherwise)\n"
        "  --system TEXT        a system message at the start of the conversation (default: none)\n"
        "%s"
        "  (--batch-size is accepted and has no effect: one conversation)\n"
        "  --help, -h           this help\n",
        gen_cli_options_help);
}

/* The reply, printed as it is generated: after each token the text decoded so far is printed
 * beyond what was already shown, unless it ends in an incomplete UTF-8 sequence (U+FFFD). */
typedef struct {
    const spin_tokenizer *tok;
    bool stream;
    int32_t *toks;
    size_t n, cap, shown;
    char *text;
} reply;

static void on_token(void *ctx, int64_t index, int32_t token) {
    (void)index;
    reply *rp = ctx;
    if (rp->n == rp->cap) {
        size_t cap = rp->cap ? 2 * rp->cap : 64;
        int32_t *t = realloc(rp->toks, cap * sizeof *t);
        if (!t) {
            rp->stream = false;
            return;
        }
        rp->toks = t;
        rp->cap = cap;
    }
    rp->toks[rp->n++] = token;
    char *text;
    size_t len;
    if (spin_tokenizer_decode(rp->tok, rp->toks, rp->n, true, &text, &len) != SPIN_OK)
        return;
    bool partial = len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3);
    if (!partial && len > rp->shown) {
        fwrite(text + rp->shown, 1, len - rp->shown, stdout);
        fflush(stdout);
        rp->shown = len;
    }
    free(text);
}

static spin_status take_reply(void *ctx, const spin_gen_result *r) {
    reply *rp = ctx;
    rp->text = strdup(r->text ? r->text : "");
    if (!rp->text)
        return spin_fail(SPIN_ERR_OOM, "chat: out of memory");
    size_t len = strlen(rp->text);
    if (!rp->stream)
        fputs(rp->text, stdout);
    else if (len > rp->shown)
        fputs(rp->text + rp->shown, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    return SPIN_OK;
}

typedef struct {
    spin_chat_message *m;
    int n, cap;
} history;

static bool push(history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        spin_chat_message *m = realloc(h->m, (size_t)cap * sizeof *m);
        if (!m)
            return false;
        h->m = m;
        h->cap = cap;
    }
    char *c = strdup(content);
    if (!c)
        return false;
    h->m[h->n++] = (spin_chat_message){role, c};
    return true;
}

static void clear(history *h, int keep) {
    while (h->n > keep)
        free((void *)h->m[--h->n].content);
}

int cmd_chat(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *tpl = NULL, *system = NULL;
    spin_gen_opts o = spin_gen_opts_default();
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gen_cli_option("chat", argc, argv, &i, &o);
        if (r < 0) {
            rc = 2;
            goto out;
        }
        if (r > 0)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            goto out;
        } else if (i + 1 < argc && !strcmp(a, "--model")) {
            model = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--tokenizer")) {
            tokenizer = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--template")) {
            tpl = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--system")) {
            system = argv[++i];
        } else {
            fprintf(stderr, "spin chat: unknown or incomplete option '%s'\n", a);
            help(stderr);
            rc = 2;
            goto out;
        }
    }
    if (!model) {
        fprintf(stderr, "spin chat: --model PATH is required\n");
        help(stderr);
        rc = 2;
        goto out;
    }
    gen_cli_model g;
    rc = gen_cli_load("chat", model, tokenizer, tpl, &g);
    if (rc)
        goto out;
    gen_cli_apply_generation_config(g.m, &o);
    if (!g.have_template) {
        fprintf(stderr, "spin chat: no chat template: pass --template NAME (%s)\n",
                g.template_error ? g.template_error : "none recognised");
        gen_cli_free(&g);
        rc = 2;
        goto out;
    }
    o.batch_size = 1;
    bool tty = isatty(STDIN_FILENO);
    if (tty)
        fprintf(stderr, "spin chat: template %s; /reset forgets the conversation, /quit ends it\n",
                spin_chat_template_name(g.tpl));
    history h = {0};
    int base = 0;
    if (system) {
        if (!push(&h, "system", system)) {
            rc = 1;
            goto done;
        }
        base = 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    for (int turn = 0;; turn++) {
        if (tty) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        if ((got = getline(&line, &cap, stdin)) < 0)
            break;
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        line[n] = 0;
        if (!strcmp(line, "/quit"))
            break;
        if (!strcmp(line, "/reset")) {
            clear(&h, base);
            fprintf(stderr, "(conversation reset)\n");
            continue;
        }
        if (n == 0)
            continue;
        if (!push(&h, "user", line)) {
            rc = 1;
            break;
        }
        char *text = NULL;
        int32_t *ids = NULL;
        size_t k = 0;
        if (spin_chat_render(g.tpl, h.m, h.n, true, g.bos, g.eos, &text) != SPIN_OK ||
            spin_tokenizer_encode(g.tok, text, strlen(text), false, &ids, &k) != SPIN_OK) {
            fprintf(stderr, "spin chat: %s\n", spin_last_error());
            free(text);
            clear(&h, h.n - 1); /* drop the message that could not be rendered */
            continue;
        }
        free(text);
        /* streamed unless stop strings could cut text already shown */
        reply rp = {.tok = g.tok, .stream = o.n_stop == 0 && o.skip_special};
        const int32_t *pp[1] = {ids};
        int64_t pl[1] = {(int64_t)k};
        spin_gen_opts turn_opts = o;
        turn_opts.seed = o.seed + (uint64_t)turn;
        if (rp.stream) {
            turn_opts.on_token = on_token;
            turn_opts.on_token_ctx = &rp;
        }
        spin_status s = spin_generate(g.m, g.tok, pp, pl, 1, &turn_opts, take_reply, &rp, NULL);
        free(ids);
        free(rp.toks);
        if (s != SPIN_OK) {
            fprintf(stderr, "spin chat: %s\n", spin_last_error());
            free(rp.text);
            clear(&h, h.n - 1);
            continue;
        }
        bool ok = push(&h, "assistant", rp.text);
        free(rp.text);
        if (!ok) {
            rc = 1;
            break;
        }
    }
    free(line);
done:
    clear(&h, 0);
    free(h.m);
    gen_cli_free(&g);
out:
    free((void *)o.stop);
    return rc;
}
