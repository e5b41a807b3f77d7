/* GGUF (llama.cpp's model file format), versions 2 and 3, little-endian.
 *
 * Reading: the file is memory-mapped and fully validated by spin_gguf_open (every count, length
 * and offset against the mapping, type ids, alignment, duplicate keys and tensor names, dims whose
 * product overflows), so later accessors never read past the mapping. Metadata of every value type
 * (nested arrays included) is parsed into spin_gguf_value trees; strings are NUL-terminated copies
 * that live as long as the spin_gguf. Tensors are dequantized to f32 on load (F32, F16, BF16,
 * Q8_0, Q4_0, Q4_1; other ggml types are listed but refused on load).
 *
 * Shapes: GGUF stores dims in ggml order (ne[0] is the fastest-varying dim). spin_gguf_tensor
 * gives both `ne` (file order) and `shape` (row-major, as our tensors use): an HF [out, in]
 * matrix is stored with ne = [in, out] and reported as shape = [out, in].
 *
 * Writing: GGUF v3 with metadata of the same value types and F32/F16 tensors, aligned data, written
 * atomically (FILE.tmp, fsync, rename) and never over an existing file unless asked.
 *
 * See docs/gguf.md. */
#ifndef SPIN_MODELS_GGUF_H
#define SPIN_MODELS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "ops/ops.h"

/* Metadata value types (numeric values as in the file). */
typedef enum {
    SPIN_GGUF_U8 = 0,
    SPIN_GGUF_I8 = 1,
    SPIN_GGUF_U16 = 2,
    SPIN_GGUF_I16 = 3,
    SPIN_GGUF_U32 = 4,
    SPIN_GGUF_I32 = 5,
    SPIN_GGUF_F32 = 6,
    SPIN_GGUF_BOOL = 7,
    SPIN_GGUF_STRING = 8,
    SPIN_GGUF_ARRAY = 9,
    SPIN_GGUF_U64 = 10,
    SPIN_GGUF_I64 = 11,
    SPIN_GGUF_F64 = 12,
    SPIN_GGUF_VTYPE_COUNT
} spin_gguf_vtype;

/* ggml tensor types this module names (ids as in ggml.h). Files may hold any known ggml type;
 * only the six below dequantize. */
typedef enum {
    SPIN_GGML_F32 = 0,
    SPIN_GGML_F16 = 1,
    SPIN_GGML_Q4_0 = 2,
    SPIN_GGML_Q4_1 = 3,
    SPIN_GGML_Q8_0 = 8,
    SPIN_GGML_BF16 = 30,
} spin_ggml_type;

/* Name ("Q4_1"), or NULL for an id ggml does not define. */
const char *spin_ggml_type_name(uint32_t type);
/* Elements per block and bytes per block; false for an unknown id. */
bool spin_ggml_type_block(uint32_t type, int64_t *block_elems, int64_t *block_bytes);
/* Dequantizes n elements (a multiple of the block size) of a supported type to f32. */
spin_status spin_ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

/* A string: NUL-terminated, `len` bytes (it may contain NULs). */
typedef struct {
    const char *s;
    uint64_t len;
} spin_gguf_str;

typedef struct spin_gguf_value {
    spin_gguf_vtype type;
    union {
        uint64_t u;        /* U8, U16, U32, U64 */
        int64_t i;         /* I8, I16, I32, I64 */
        double f;          /* F32 (exactly widened), F64 */
        bool b;            /* BOOL */
        spin_gguf_str str; /* STRING */
        struct {
            spin_gguf_vtype elem;
            uint64_t n;
            const void *raw;                    /* numeric/bool elements: little-endian, in the file */
            const spin_gguf_str *strs;          /* STRING elements */
            const struct spin_gguf_value *arrs; /* ARRAY elements (each an ARRAY value) */
        } arr;
    } v;
} spin_gguf_value;

typedef struct {
    const char *name;
    int n_dims;
    int64_t ne[4];    /* ggml order, ne[0] fastest; unused dims are 1 */
    int64_t shape[4]; /* row-major: shape[i] = ne[n_dims - 1 - i] */
    int64_t numel;
    uint32_t type;    /* ggml type id */
    uint64_t offset;  /* relative to the data section */
    uint64_t nbytes;  /* bytes in the file */
    const void *data; /* into the mapping */
} spin_gguf_tensor;

typedef struct spin_gguf spin_gguf;

/* NULL with spin_last_error naming the file and the problem. */
spin_gguf *spin_gguf_open(const char *path);
void spin_gguf_close(spin_gguf *g);

const char *spin_gguf_path(const spin_gguf *g);
uint32_t spin_gguf_version(const spin_gguf *g);
uint32_t spin_gguf_alignment(const spin_gguf *g);
uint64_t spin_gguf_data_offset(const spin_gguf *g); /* start of the tensor data in the file */

/* ---- metadata ---- */
int64_t spin_gguf_n_kv(const spin_gguf *g);
const char *spin_gguf_kv_key(const spin_gguf *g, int64_t i);
const spin_gguf_value *spin_gguf_kv_value(const spin_gguf *g, int64_t i);
/* Index of key, or -1. */
int64_t spin_gguf_find_key(const spin_gguf *g, const char *key);
/* NULL with an error naming the file and key when absent. */
const spin_gguf_value *spin_gguf_get(const spin_gguf *g, const char *key);
const char *spin_gguf_vtype_name(spin_gguf_vtype t);

/* Typed getters: SPIN_ERR_INVALID naming file and key when the key is missing or its type does
 * not fit. Integer getters accept any integer type whose value fits the result; f32 accepts
 * F32 and F64; bool only BOOL; string only STRING (the pointer lives as long as g). */
spin_status spin_gguf_get_u32(const spin_gguf *g, const char *key, uint32_t *out);
spin_status spin_gguf_get_i32(const spin_gguf *g, const char *key, int32_t *out);
spin_status spin_gguf_get_u64(const spin_gguf *g, const char *key, uint64_t *out);
spin_status spin_gguf_get_i64(const spin_gguf *g, const char *key, int64_t *out);
spin_status spin_gguf_get_f32(const spin_gguf *g, const char *key, float *out);
spin_status spin_gguf_get_f64(const spin_gguf *g, const char *key, double *out);
spin_status spin_gguf_get_bool(const spin_gguf *g, const char *key, bool *out);
spin_status spin_gguf_get_string(const spin_gguf *g, const char *key, const char **out);
/* Arrays: element count (any element type), strings (borrowed), and numeric arrays converted into
 * a caller buffer of n elements (n must equal the array length; integer elements must fit). */
spin_status spin_gguf_get_arr_len(const spin_gguf *g, const char *key, spin_gguf_vtype *elem, int64_t *n);
spin_status spin_gguf_get_arr_str(const spin_gguf *g, const char *key, const spin_gguf_str **items,
                                  int64_t *n);
spin_status spin_gguf_get_arr_i32(const spin_gguf *g, const char *key, int32_t *dst, int64_t n);
spin_status spin_gguf_get_arr_i64(const spin_gguf *g, const char *key, int64_t *dst, int64_t n);
spin_status spin_gguf_get_arr_f32(const spin_gguf *g, const char *key, float *dst, int64_t n);

/* ---- tensors ---- */
int64_t spin_gguf_n_tensors(const spin_gguf *g);
const spin_gguf_tensor *spin_gguf_tensor_at(const spin_gguf *g, int64_t i);
/* NULL with an error naming the file and tensor when absent. */
const spin_gguf_tensor *spin_gguf_find_tensor(const spin_gguf *g, const char *name);
/* Dequantizes a tensor into dst (n must equal numel). */
spin_status spin_gguf_tensor_to_f32(const spin_gguf *g, const spin_gguf_tensor *t, float *dst, int64_t n);
/* The named tensor as a new f32 tensor on dev, row-major shape. NULL with an error on failure. */
spin_tensor *spin_gguf_load_f32(const spin_gguf *g, spin_device *dev, const char *name);

/* ---- architecture parameters ("{arch}.*" keys, arch = general.architecture) ---- */
typedef struct {
    char architecture[32];
    int64_t context_length, embedding_length, block_count, feed_forward_length;
    int64_t head_count, head_count_kv; /* head_count_kv defaults to head_count */
    int64_t rope_dimension_count;      /* defaults to embedding_length / head_count */
    int64_t vocab_size;                /* {arch}.vocab_size, else the token count, else 0 */
    float rms_norm_eps;
    float rope_freq_base;          /* defaults to 10000 */
    char rope_scaling_type[32];    /* "" when absent ("none", "linear", "yarn", ...) */
    float rope_scaling_factor;     /* 0 when absent */
    int64_t rope_scaling_orig_ctx; /* 0 when absent */
} spin_gguf_llm_params;
/* Required: general.architecture, context_length, embedding_length, block_count,
 * feed_forward_length, attention.head_count, attention.layer_norm_rms_epsilon. */
spin_status spin_gguf_llm_params_read(const spin_gguf *g, spin_gguf_llm_params *p);

/* ---- tokenizer.ggml.* ---- */
typedef struct {
    const char *model; /* "llama" (SentencePiece), "gpt2" (byte-level BPE), ... */
    const char *pre;   /* pre-tokenizer name ("smollm", "llama-bpe", ...); NULL if absent */
    int64_t n_tokens;
    const spin_gguf_str *tokens; /* borrowed from the spin_gguf */
    float *scores;               /* n_tokens, owned; NULL if absent */
    int32_t *token_type;         /* n_tokens, owned; NULL if absent */
    int64_t n_merges;
    const spin_gguf_str *merges;            /* borrowed; NULL if absent */
    int64_t bos_id, eos_id, pad_id, unk_id; /* -1 when absent */
    int add_bos, add_eos;                   /* -1 when absent, else 0/1 */
    const char *chat_template;              /* tokenizer.chat_template; NULL if absent */
} spin_gguf_vocab;
/* Required: tokenizer.ggml.model and .tokens; arrays must have n_tokens entries. */
spin_status spin_gguf_vocab_read(const spin_gguf *g, spin_gguf_vocab *v);
void spin_gguf_vocab_free(spin_gguf_vocab *v);

/* ---- names and the Q/K permutation ---- */
/* GGUF llama tensor name -> Hugging Face name ("blk.3.attn_q.weight" ->
 * "model.layers.3.self_attn.q_proj.weight"), and back. SPIN_ERR_INVALID for unknown names. */
spin_status spin_gguf_name_to_hf(const char *gguf_name, char *out, size_t cap);
spin_status spin_gguf_name_from_hf(const char *hf_name, char *out, size_t cap);

/* convert_hf_to_gguf.py permutes the rows of attn_q (n_head = head_count) and attn_k
 * (n_head = head_count_kv) of a [rows, cols] row-major matrix: rows reshaped to
 * (n_head, 2, rows / n_head / 2) and the last two axes swapped. permute does that (HF -> GGUF),
 * unpermute restores the HF row order (GGUF -> HF). In place; rows must be divisible by
 * 2 * n_head. */
spin_status spin_gguf_permute_qk(float *w, int64_t rows, int64_t cols, int64_t n_head);
spin_status spin_gguf_unpermute_qk(float *w, int64_t rows, int64_t cols, int64_t n_head);
/* spin_gguf_load_f32, with blk.N.attn_q/attn_k rows un-permuted to the Hugging Face order (for
 * spin_rope's rotate-half layout; the file's own order pairs with SPIN_ROPE_INTERLEAVED). Other
 * tensors load unchanged. */
spin_tensor *spin_gguf_load_f32_hf_order(const spin_gguf *g, spin_device *dev, const char *name,
                                         const spin_gguf_llm_params *p);

/* ---- writer ---- */
typedef struct spin_gguf_writer spin_gguf_writer;

spin_gguf_writer *spin_gguf_writer_new(void);
void spin_gguf_writer_free(spin_gguf_writer *w);
/* Alignment of the data section (power of two, multiple of 8; default 32). A value other than 32
 * is also written as general.alignment. */
spin_status spin_gguf_writer_set_alignment(spin_gguf_writer *w, uint32_t alignment);
/* Setting a key again replaces its value. Keys keep their first insertion order. */
spin_status spin_gguf_writer_set_u32(spin_gguf_writer *w, const char *key, uint32_t v);
spin_status spin_gguf_writer_set_i32(spin_gguf_writer *w, const char *key, int32_t v);
spin_status spin_gguf_writer_set_u64(spin_gguf_writer *w, const char *key, uint64_t v);
spin_status spin_gguf_writer_set_i64(spin_gguf_writer *w, const char *key, int64_t v);
spin_status spin_gguf_writer_set_f32(spin_gguf_writer *w, const char *key, float v);
spin_status spin_gguf_writer_set_f64(spin_gguf_writer *w, const char *key, double v);
spin_status spin_gguf_writer_set_bool(spin_gguf_writer *w, const char *key, bool v);
spin_status spin_gguf_writer_set_string(spin_gguf_writer *w, const char *key, const char *s);
/* Numeric/bool array: n elements of type elem, little-endian as in the file format. */
spin_status spin_gguf_writer_set_arr(spin_gguf_writer *w, const char *key, spin_gguf_vtype elem, int64_t n,
                                     const void *data);
spin_status spin_gguf_writer_set_arr_str(spin_gguf_writer *w, const char *key, int64_t n,
                                         const char *const *strs);
/* Any value (nested arrays included), e.g. one read from a spin_gguf. Copied. */
spin_status spin_gguf_writer_set_value(spin_gguf_writer *w, const char *key, const spin_gguf_value *v);
/* A tensor from host f32 data in row-major shape, stored as type (SPIN_GGML_F32 or F16). The
 * data is borrowed until spin_gguf_writer_write returns. */
spin_status spin_gguf_writer_add_tensor(spin_gguf_writer *w, const char *name, spin_ggml_type type, int ndim,
                                        const int64_t *shape, const float *data);
/* The same from a device tensor (retained, read at write time). */
spin_status spin_gguf_writer_add_device_tensor(spin_gguf_writer *w, const char *name, spin_ggml_type type,
                                               spin_tensor *t);
/* Writes path atomically; an existing file is an error unless overwrite. */
spin_status spin_gguf_writer_write(spin_gguf_writer *w, const char *path, bool overwrite);

#endif
