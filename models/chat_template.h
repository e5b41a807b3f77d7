/* Chat templates rendered in C. There is no Jinja engine: each supported template is written out
 * directly and checked against the real Jinja source rendered by jinja2 the way transformers'
 * apply_chat_template renders it (tests/ref/make_chat_golden.py, tests/unit/test_chat_template.c).
 *
 *   zephyr       uclaml/SPIN's template: "<|role|>\n" + content + eos + "\n" per message, generation
 *                prompt "<|assistant|>\n"
 *   chatml       SmolLM2-Instruct's ChatML, with its default system message when none is first
 *   llama-2      Llama-2-chat: [INST] ... [/INST], <<SYS>> block in the first user turn, bos/eos
 *   mistral      Mistral-7B-Instruct-v0.1: [INST] ... [/INST], no system message
 *   instruction  uclaml/SPIN's generation prompt "### Instruction: " + prompt + "\n\n### Response: "
 *
 * A template is chosen by name, or recognised from a tokenizer_config.json "chat_template" only when
 * its text equals the stored Jinja source of a supported template byte for byte. docs/chat_templates.md
 * has the sources and the exact rules. */
#ifndef SPIN_MODELS_CHAT_TEMPLATE_H
#define SPIN_MODELS_CHAT_TEMPLATE_H

#include <stdbool.h>

#include "core/status.h"

typedef enum {
    SPIN_CHAT_ZEPHYR,
    SPIN_CHAT_CHATML,
    SPIN_CHAT_LLAMA2,
    SPIN_CHAT_MISTRAL,
    SPIN_CHAT_INSTRUCTION,
    SPIN_CHAT_N_TEMPLATES
} spin_chat_template;

/* One message; both strings are UTF-8. Roles are "system", "user" and "assistant". */
typedef struct {
    const char *role;
    const char *content;
} spin_chat_message;

/* "zephyr", "chatml", "llama-2", "mistral", "instruction". */
const char *spin_chat_template_name(spin_chat_template t);

/* The Jinja source this template implements, exactly as tokenizer_config.json holds it (the
 * recognition key); NULL for "instruction", which is a Python expression in uclaml/SPIN. */
const char *spin_chat_template_jinja(spin_chat_template t);

/* Name -> template. An unknown name is SPIN_ERR_INVALID with a message listing the valid names. */
spin_status spin_chat_template_from_name(const char *name, spin_chat_template *out);

/* Recognises a chat_template string by exact match against the stored Jinja sources. Anything
 * else is SPIN_ERR_INVALID with a message that says to pass a template name (and where the text
 * first differs from the closest supported template). */
spin_status spin_chat_template_from_jinja(const char *jinja, spin_chat_template *out);

/* Reads a tokenizer_config.json: recognises its "chat_template" (a string, or a list of
 * {"name", "template"} from which "default" is used) as spin_chat_template_from_jinja does, and
 * returns its bos_token / eos_token (a string, or an AddedToken object's "content") as malloc'd
 * strings, NULL where the file has none. bos and eos may be NULL when not wanted. The file
 * cannot be read: SPIN_ERR_IO; no or unknown template, bad JSON: SPIN_ERR_INVALID. */
spin_status spin_chat_template_from_tokenizer_config(const char *path, spin_chat_template *out, char **bos,
                                                     char **eos);

/* Renders messages[0..n) into *out (malloc'd, NUL-terminated UTF-8; free() it). bos and eos are
 * the tokenizer's special-token strings; a template that uses one requires it non-NULL (zephyr:
 * eos; llama-2 and mistral: both; chatml and instruction use neither). add_generation_prompt
 * appends the assistant header where the template has one (zephyr, chatml); llama-2 and mistral
 * ignore it as their Jinja sources do, and instruction is always a generation prompt.
 *
 * Errors (SPIN_ERR_INVALID, message naming the template, the 0-based message index, role or field; *out
 * is NULL): a role other than system/user/assistant, content that is not valid UTF-8, a system
 * message where the template cannot place it, and every case where the real template raises
 * (llama-2 and mistral: "Conversation roles must alternate user/assistant/user/assistant/...";
 * mistral: "Only user and assistant roles are supported!"; llama-2: an empty conversation).
 * instruction takes exactly one user message. */
spin_status spin_chat_render(spin_chat_template t, const spin_chat_message *messages, int n,
                             bool add_generation_prompt, const char *bos, const char *eos, char **out);

#endif
