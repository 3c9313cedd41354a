/* The reference per-layer kernel (ef_layer_run, ef/engine.h): portable C, int8
 * FULLY_CONNECTED bit-exact with LiteRT (docs/artifact-format.md, "Requantization:
 * two modes"). Prepare-free: the artifact already holds the per-channel multipliers,
 * shifts and float32 scales, read where they lie. The host build links this file;
 * the Cortex-M4 images link ef_layer_m4.c instead (app/app.mk). */
#include "ef/engine.h"

#include <math.h>
#include <string.h>

static int32_t wrap_i32(uint32_t u)
{
    int32_t s;
    memcpy(&s, &u, sizeof s);
    return s;
}

/* Mode 1: single-rounding MultiplyByQuantizedMultiplier, nearest with exact ties
 * away from zero (what LiteRT's BUILTIN_REF kernels give). t = 31 - s in [1, 62];
 * |acc| < 2^31 and M < 2^31 keep acc*M + 2^(t-1) below 2^63. */
int32_t ef_requantize_int(int32_t acc, int32_t multiplier, int32_t shift)
{
    int t = 31 - (int)shift;
    int64_t p = (int64_t)acc * (int64_t)multiplier;
    int64_t v = p + ((int64_t)1 << (t - 1)) - (p < 0);
    /* floor division by 2^t == arithmetic shift, written without relying on it */
    int64_t q = v >= 0 ? v / ((int64_t)1 << t) : -((-v + ((int64_t)1 << t) - 1) / ((int64_t)1 << t));
    return wrap_i32((uint32_t)(uint64_t)q); /* static_cast<int32_t> */
}

/* Mode 0: XNNPACK's float32 path; returns the value before + out_zp. */
static int32_t requantize_fp32(int32_t acc, float scale, float lo, float hi)
{
    float v = (float)acc * scale;
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    return (int32_t)rintf(v); /* round to nearest even (default rounding mode) */
}

void ef_layer_run(const ef_layer *l, uint16_t mode, const int8_t *x, int8_t *y)
{
    uint32_t o, j;
    const int32_t in_off = -l->input_zero_point;
    const float lo = (float)(l->act_min - l->output_zero_point);
    const float hi = (float)(l->act_max - l->output_zero_point);
    for (o = 0; o < l->n_out; o++) {
        const int8_t *w = l->weights + (size_t)o * l->n_in;
        uint32_t q = l->per_channel ? o : 0u;
        int32_t acc = 0, v;
        /* cannot overflow: ef_model_open bounds 255 * sum|W| + |b| below 2^31 */
        for (j = 0; j < l->n_in; j++)
            acc += (int32_t)w[j] * ((int32_t)x[j] + in_off);
        if (l->bias)
            acc += ef_model_i32(l->bias, o);
        if (mode == EF_REQUANT_FP32) {
            v = requantize_fp32(acc, ef_model_f32(l->scales, q), lo, hi) + l->output_zero_point;
        } else {
            v = ef_requantize_int(acc, ef_model_i32(l->multipliers, q), ef_model_i32(l->shifts, q));
            v += l->output_zero_point;
            if (v < l->act_min)
                v = l->act_min;
            if (v > l->act_max)
                v = l->act_max;
        }
        y[o] = (int8_t)v;
    }
}
