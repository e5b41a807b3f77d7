/* Helpers shared by the gguf*.c files (not part of the public API). */
#ifndef SPIN_MODELS_GGUF_INTERNAL_H
#define SPIN_MODELS_GGUF_INTERNAL_H

#include "models/gguf.h"

/* Bytes of one scalar of type t (0 for STRING, ARRAY and unknown types). */
size_t gguf_vtype_size(spin_gguf_vtype t);
/* Decodes one little-endian scalar of type t at p into v. */
void gguf_decode_scalar(spin_gguf_vtype t, const uint8_t *p, spin_gguf_value *v);

#endif
