/* The int8 engine: the layer walk over one ping-pong arena (ef/engine.h). Each layer
 * runs through ef_layer_run, the per-layer kernel the build links: ef_layer_ref.c
 * (portable, the host) or ef_layer_m4.c (Cortex-M4 DSP extension, the MCU images). */
#include "ef/engine.h"

size_t ef_engine_arena_bytes(const ef_model *m) { return m->arena_bytes; }

ef_status ef_engine_infer(const ef_model *m, const int8_t *input, int8_t *output,
                          int8_t *arena, size_t arena_len)
{
    uint16_t i;
    const int8_t *x = input;
    if (m == NULL || input == NULL || output == NULL)
        return EF_ERR_ARG;
    if (m->n_layers > 1 && (arena == NULL || arena_len < m->arena_bytes))
        return EF_ERR_CAPACITY;
    for (i = 0; i < m->n_layers; i++) {
        ef_layer l;
        int8_t *y;
        ef_model_layer(m, i, &l);
        if (i + 1u == m->n_layers)
            y = output;
        else
            y = (i & 1u) ? arena : arena + (m->arena_bytes - l.n_out);
        ef_layer_run(&l, m->requant_mode, x, y);
        x = y;
    }
    return EF_OK;
}
