/* Shared by `spin complete` and `spin chat`: loading a model, its tokenizer and chat template, and
 * parsing the sampling options. */
#ifndef SPIN_TOOLS_GEN_CLI_H
#define SPIN_TOOLS_GEN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "models/chat_template.h"
#include "models/generate.h"

typedef struct {
    spin_llama *m;
    spin_tokenizer *tok;
    bool have_template;
    spin_chat_template tpl;
    const char *bos, *eos; /* the tokenizer's special-token strings (borrowed; NULL if unknown) */
    char *template_error;  /* why no template was recognised (malloc'd), when !have_template */
} gen_cli_model;

/* Loads the model directory, the tokenizer (tokenizer_path, or the model directory when NULL) and
 * the chat template (template_name, or recognised from tokenizer_config.json next to the
 * tokenizer). Prints "spin CMD: ..." and returns non-zero on failure. */
int gen_cli_load(const char *cmd, const char *model_dir, const char *tokenizer_path,
                 const char *template_name, gen_cli_model *out);
void gen_cli_free(gen_cli_model *g);

/* Sampling and length options shared by both commands. Returns 1 when argv[*i] was one of them
 * (consuming its value), 0 when it is not, -1 on a bad value (message printed). */
int gen_cli_option(const char *cmd, int argc, char **argv, int *i, spin_gen_opts *o);
/* With --generation-config: the model's generation_config.json sampling defaults (do_sample,
 * temperature, top_p, top_k, max_new_tokens) for every option not given on the command line. */
void gen_cli_apply_generation_config(const spin_llama *m, spin_gen_opts *o);
/* The help lines for those options, with their defaults. */
extern const char gen_cli_options_help[];

#endif
