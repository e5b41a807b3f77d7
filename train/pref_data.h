/* A preference dataset in memory: JSON-lines rows read and put through a chat template, giving the
 * three texts uclaml/SPIN's collator tokenises (prompt, chosen, rejected). train/collate.h turns
 * them into token rows.
 *
 * Input: one JSON object per line (UTF-8; blank lines are skipped but counted for line numbers;
 * a trailing "\r" is ignored). Columns other than the ones below are ignored. Messages are
 * {"role": "system"|"user"|"assistant", "content": string}. The kind is detected from the columns
 * of the first row and every row must be of the same kind and form:
 *
 *   SPIN  {"real": [msgs], "generated": [msgs]}  (uclaml/SPIN spin/alignment/data.py
 *         apply_chat_template, spin-reference.md §2.5.3):
 *           prompt   = template([S, first user message of real], add_generation_prompt), where S is
 *                      real[0] if it is a system message, else {"system", ""}
 *           chosen   = template(real[1:]) without its leading generation-prompt header
 *           rejected = template(generated[1:]) without its leading generation-prompt header
 *         As in SPIN, when real[0] is a system message real[1:] starts with the user turn, and the
 *         user turn of `generated` is never compared with real's.
 *   DPO, strings  {"prompt": str, "chosen": str, "rejected": str}: the texts as they are (TRL's
 *         non-conversational format); the template is not used.
 *   DPO, message lists  {"chosen": [msgs], "rejected": [msgs]} and optionally "prompt"
 *         (alignment-handbook / TRL conversational data):
 *           - "prompt" is a message list: P = prompt; the chosen/rejected responses are the whole
 *             chosen/rejected lists, which must start with an assistant message.
 *           - otherwise (absent, or a string, e.g. ultrafeedback_binarized's raw prompt, which is
 *             ignored): P = chosen[:-1], which must be non-empty and equal rejected[:-1] (role and
 *             content, message by message); the responses are [chosen[-1]] / [rejected[-1]], which
 *             must be assistant messages.
 *           prompt = template(P, add_generation_prompt); chosen / rejected = template(response
 *           messages) without the leading generation-prompt header, the same rendering as SPIN's.
 *           No system message is inserted (write one into the data to get one).
 *   SPPO  the DPO columns (either form) plus "chosen_probs", "chosen_probs_win", "chosen_probs_lose":
 *         numbers in [0, 1] (uclaml/SPPO's compute_prob.py, spin-reference.md §3.2). The texts are
 *         built as for DPO; SPPO's own pipeline (BOS prepended, joint prompt+answer tokenisation)
 *         is not reproduced: the rows go through SPIN's collator like every other kind.
 *
 * The generation-prompt header removed from responses: for zephyr "<|assistant|>\n", removed once
 * when the rendered text starts with it (SPIN's re.sub("^<\|assistant\|>\n", "")). For any other
 * template it is the rendering of an empty conversation with add_generation_prompt; it must be
 * non-empty and a prefix of the rendered response, otherwise the row is an error naming the
 * template (none of chatml, llama-2, mistral, instruction renders a lone response that way, so
 * message-list data needs zephyr; string DPO rows work with any template).
 *
 * Stricter than the Python sources (on purpose): an unknown role, a message that is not
 * {"role", "content"} strings, content holding a NUL character, real or generated with fewer than
 * two messages, real without a user message (an IndexError in SPIN), and message-list DPO rows
 * whose rejected[:-1] differs from chosen[:-1] (the handbook silently uses chosen's) are errors. */
#ifndef SPIN_TRAIN_PREF_DATA_H
#define SPIN_TRAIN_PREF_DATA_H

#include <stdint.h>

#include "core/status.h"
#include "models/chat_template.h"

typedef enum { SPIN_DATA_SPIN, SPIN_DATA_DPO, SPIN_DATA_SPPO } spin_data_kind; /* detected from the columns */

typedef struct {
    char *prompt, *chosen, *rejected; /* templated UTF-8 text; SPIN: prompt, real, generated */
    /* SPPO columns chosen_probs, chosen_probs_win, chosen_probs_lose (rounded to float); NAN for
     * SPIN and DPO data */
    float probs_chosen, probs_win, probs_lose;
} spin_pref_example;

typedef struct {
    spin_data_kind kind;
    int64_t n;
    spin_pref_example *ex; /* [n] */
} spin_pref_data;

/* Reads the JSONL file at `path` and templates every row as described above. `tmpl` is the chat
 * template, bos/eos its special-token strings (zephyr needs eos; see spin_chat_render). On success
 * *out holds n >= 1 examples in file order (free with spin_pref_data_free). On failure *out is
 * empty ({kind 0, n 0, ex NULL}) and nothing is left allocated:
 *   SPIN_ERR_IO       the file cannot be opened or read ("<path>: cannot open ...")
 *   SPIN_ERR_INVALID  "<path>:<line>: <what>" with the 1-based line of the offending row: bad JSON
 *                     or invalid UTF-8, a row that is not an object, no known columns, a missing
 *                     key, a wrong type, an unknown role, a bad message list, mixed kinds or forms,
 *                     a probability outside [0, 1], a template error; "<path>:1: empty file ..."
 *                     when there are no rows.
 *   SPIN_ERR_OOM      out of host memory. */
spin_status spin_pref_data_read(const char *path, spin_chat_template tmpl, const char *bos, const char *eos,
                                spin_pref_data *out);

/* Frees every string and the array; leaves *d empty. NULL and an empty *d are fine. */
void spin_pref_data_free(spin_pref_data *d);

/* "spin", "dpo", "sppo". */
const char *spin_data_kind_name(spin_data_kind k);

#endif
