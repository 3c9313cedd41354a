/* int8 FULLY_CONNECTED stack, bit-exact with LiteRT (both requant modes of the artifact).
 *
 * Weights are read in place from the artifact. Activations live in one
 * caller-owned arena of ef_engine_arena_bytes() bytes: layer i writes its
 * output at the end of the arena when i is even and at the start when i is
 * odd, so its input (the previous output) is always at the other end and
 * n_in + n_out <= arena_bytes keeps them apart. Layer 0 reads `input`
 * directly and the last layer writes `output` directly; `input` may be the
 * arena start (the node quantizes straight into it). Nothing is allocated. */
#ifndef EF_ENGINE_H
#define EF_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include "ef/model.h"

/* Arena bytes the model needs (the header's arena_bytes, checked on open). */
size_t ef_engine_arena_bytes(const ef_model *m);

/* Requant mode 1 (single-rounding MultiplyByQuantizedMultiplier), exposed for tests
 * (defined by the reference kernel, ef_layer_ref.c). */
int32_t ef_requantize_int(int32_t acc, int32_t multiplier, int32_t shift);

/* One inference: input[n_inputs] -> output[n_outputs]. `output` must not
 * overlap the arena. Returns EF_ERR_CAPACITY if arena_len is too small. */
ef_status ef_engine_infer(const ef_model *m, const int8_t *input, int8_t *output,
                          int8_t *arena, size_t arena_len);

/* The per-layer kernel ef_engine_infer calls for each layer: y[n_out] from x[n_in]
 * (FULLY_CONNECTED, then requantization in `requant_mode`, the model's). One strategy
 * per file, the build links exactly one: ef_layer_ref.c (portable C, the host) or
 * ef_layer_m4.c (Cortex-M4 DSP extension, the MCU images); both give the same bits. */
void ef_layer_run(const ef_layer *l, uint16_t requant_mode, const int8_t *x, int8_t *y);

#endif
