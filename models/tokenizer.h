/* A Hugging Face tokenizer.json interpreter: added/special tokens, normalizers, pre-tokenizers, the
 * BPE model, post-processors and decoders, component by component as the `tokenizers` library
 * (PyPI) runs them, so that ids match it exactly (tests/unit/test_tokenizer.c checks parity on a
 * corpus; docs/tokenizer.md lists what is supported). A component type that is not implemented is
 * an error naming it and the file at load time, never a silently different tokenization.
 *
 * A tokenizer is read-only after loading except for its per-word BPE cache: encode and decode on
 * one tokenizer from several threads at once is not supported (load one per thread). */
#ifndef SPIN_MODELS_TOKENIZER_H
#define SPIN_MODELS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "models/gguf.h"

typedef struct spin_tokenizer spin_tokenizer;

/* Loads `path`: a tokenizer.json file, a model directory holding tokenizer.json (and optionally
 * tokenizer_config.json, whose bos_token/eos_token then name the BOS/EOS ids), or a GGUF file
 * (its tokenizer.ggml.* vocabulary, see spin_tokenizer_from_gguf). NULL with spin_last_error()
 * set on failure (missing file, bad JSON, unsupported component, ...). */
spin_tokenizer *spin_tokenizer_load(const char *path);
/* The same from tokenizer.json text in memory; `name` is used in error messages. */
spin_tokenizer *spin_tokenizer_load_json(const char *json, size_t len, const char *name);
/* A GGUF vocabulary mapped onto the pipeline Hugging Face uses for the same model: model "gpt2"
 * (byte-level BPE; tokenizer.ggml.pre default/gpt2/gpt-2, smollm (digits split one by one) or
 * llama-bpe/llama3) or "llama" (SentencePiece BPE: merges derived from the pieces and scores as
 * transformers does, legacy Llama/Mistral normalizer, byte fallback). UNKNOWN, CONTROL and
 * USER_DEFINED tokens are added tokens; add_bos/add_eos become the post-processor. */
spin_tokenizer *spin_tokenizer_from_gguf(const spin_gguf_vocab *v, const char *name);
void spin_tokenizer_free(spin_tokenizer *tok);
/* The inverse, as llama.cpp's convert_hf_to_gguf.py writes it: the tokenizer.ggml.* keys (and
 * tokenizer.chat_template) of a Hugging Face tokenizer (`path`: tokenizer.json, or a directory
 * holding it; tokenizer_config.json beside it is read when present) set on w. Byte-level BPE with a
 * pre-tokenizer llama.cpp names (gpt-2, smollm, llama-bpe) becomes model "gpt2" with its merges;
 * SentencePiece-style BPE (byte_fallback, Prepend/Replace ▁ normalizer or Metaspace) becomes model
 * "llama" with scores = -rank of the first merge producing each piece, which spin_tokenizer_from_gguf
 * turns back into the same merge priorities. Added tokens: CONTROL (special) or USER_DEFINED
 * (their lstrip/rstrip/single_word/normalized flags are lost); <unk> UNKNOWN and <0xNN> BYTE for
 * "llama". bos/eos/unk/pad ids and add_bos/add_eos from tokenizer_config.json, else from the
 * post-processor's template. n_vocab > 0 pads the tokens to that count with [PADn] (UNUSED); more ids
 * than n_vocab is an error. Other pipelines are errors naming the file. */
spin_status spin_tokenizer_to_gguf(const char *path, int64_t n_vocab, spin_gguf_writer *w);

/* UTF-8 text (len bytes; invalid UTF-8 is an error) -> ids. With add_special, the post-processor
 * (TemplateProcessing, Bert/Roberta) adds its special tokens; special tokens written in the text
 * are always recognised. *ids is malloc'ed (caller frees), *n its length. */
spin_status spin_tokenizer_encode(spin_tokenizer *tok, const char *text, size_t len, bool add_special,
                                  int32_t **ids, size_t *n);
/* ids -> UTF-8 text (malloc'ed, NUL-terminated; *len without the NUL if len is not NULL).
 * skip_special drops special added tokens. Unknown ids are skipped, as `tokenizers` does. */
spin_status spin_tokenizer_decode(const spin_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                                  char **text, size_t *len);

/* Total ids (model vocabulary and added tokens: the largest id + 1). */
int32_t spin_tokenizer_vocab_size(const spin_tokenizer *tok);
/* Token string -> id (added tokens included), -1 if absent. */
int32_t spin_tokenizer_token_to_id(const spin_tokenizer *tok, const char *token);
/* id -> token string (owned by the tokenizer), NULL if absent. */
const char *spin_tokenizer_id_to_token(const spin_tokenizer *tok, int32_t id);
/* True if `id` is an added token marked special. */
bool spin_tokenizer_is_special(const spin_tokenizer *tok, int32_t id);
/* BOS/EOS ids when known (tokenizer_config.json, else the first/last special token of a
 * TemplateProcessing single template), else -1. */
int32_t spin_tokenizer_bos_id(const spin_tokenizer *tok);
int32_t spin_tokenizer_eos_id(const spin_tokenizer *tok);

#endif
