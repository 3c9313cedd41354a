/* The per-layer kernel (ef_layer_run, ef/engine.h) for the Cortex-M4 DSP extension: the
 * M4 images link it in place of the portable ef_layer_ref.c (app/app.mk); ef_engine.c's
 * layer walk is the same in every build.
 *
 * The portable inner loop costs 4 instructions per MAC even unrolled (two byte loads,
 * the input offset, MLA). Here four int8 weights and four int8 inputs come in one word
 * each; SXTB16 splits a word into two sign-extended halfwords (bytes 0,2 and, rotated,
 * 1,3), SADD16 adds the input offset to both (x + off stays in [-255, 255]), and SMLAD
 * multiplies and accumulates both pairs in one instruction. Four output rows share each
 * decoded input word (two, then one, for the rows left over): ~2 instructions per MAC. Sums are the same integers as the portable
 * loop (the artifact check bounds every accumulator below 2^31; SMLAD wraps modulo 2^32
 * like the C sum would), and requantization is the portable code's, so outputs are
 * bit-identical; tests/mcu checks them against LiteRT. */
#include <arm_acle.h>
#include <math.h>
#include <string.h>

#include "ef/engine.h"

static inline uint32_t ld32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one LDR: the M4 allows unaligned word loads */
    return v;
}

static inline uint32_t sxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* Mode 1: single rounding, (acc*M + 2^(t-1) - [acc*M < 0]) >> t; >> of a negative int64 is an
 * arithmetic shift in GCC (documented implementation-defined behaviour), i.e. the
 * floor division the portable code writes out. */
static int32_t requant_int(int32_t acc, int32_t multiplier, int32_t shift)
{
    int t = 31 - (int)shift;
    int64_t p = (int64_t)acc * (int64_t)multiplier;
    int64_t v = p + ((int64_t)1 << (t - 1)) - (p < 0); /* exact ties away from zero */
    return (int32_t)(v >> t);
}

/* Mode 0: as the portable requantize_fp32 (float product, clamp, rintf). VCVTR rounds
 * with the FPSCR mode, round-to-nearest-even after reset, which is rintf's default. */
static int32_t requant_fp32(int32_t acc, float scale, float lo, float hi)
{
    float v = (float)acc * scale;
    int32_t r;
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    __asm__("vcvtr.s32.f32 %0, %1" : "=t"(v) : "t"(v)); /* v now holds the int32 bits */
    memcpy(&r, &v, sizeof r);
    return r;
}

/* Artifact arrays are 4-aligned (ef_model_open checks it) and the M4 is little-endian:
 * one LDR each instead of the portable byte-wise loads. */
static inline int32_t i32_at(const uint8_t *a, uint32_t i)
{
    int32_t v;
    memcpy(&v, a + 4u * i, 4);
    return v;
}

static inline float f32_at(const uint8_t *a, uint32_t i)
{
    float v;
    memcpy(&v, a + 4u * i, 4);
    return v;
}

static int8_t finish(const ef_layer *l, uint16_t mode, uint32_t o, int32_t acc, float lo, float hi)
{
    uint32_t q = l->per_channel ? o : 0u;
    int32_t v;
    if (l->bias)
        acc += i32_at(l->bias, o);
    if (mode == EF_REQUANT_FP32)
        return (int8_t)(requant_fp32(acc, f32_at(l->scales, q), lo, hi) + l->output_zero_point);
    v = requant_int(acc, i32_at(l->multipliers, q), i32_at(l->shifts, q)) + l->output_zero_point;
    if (v < l->act_min)
        v = l->act_min;
    if (v > l->act_max)
        v = l->act_max;
    return (int8_t)v;
}

void ef_layer_run(const ef_layer *l, uint16_t mode, const int8_t *x, int8_t *y)
{
    const uint32_t n_in = l->n_in, n4 = n_in & ~3u;
    const int32_t in_off = -l->input_zero_point;
    const uint32_t off2 = ((uint32_t)in_off & 0xFFFFu) * 0x10001u;
    const float lo = (float)(l->act_min - l->output_zero_point);
    const float hi = (float)(l->act_max - l->output_zero_point);
    uint32_t o = 0, j;
    for (; o + 4u <= l->n_out; o += 4u) { /* four rows share each decoded input word */
        const int8_t *w0 = l->weights + (size_t)o * n_in, *xp = x, *end = x + n4;
        const size_t s = n_in;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        while (xp < end) {
            const uint32_t xv = ld32(xp);
            const uint32_t x02 = __sadd16(__sxtb16(xv), off2), x13 = __sadd16(sxtb16_ror8(xv), off2);
            uint32_t w = ld32(w0);
            a0 = __smlad(__sxtb16(w), x02, a0);
            a0 = __smlad(sxtb16_ror8(w), x13, a0);
            w = ld32(w0 + s);
            a1 = __smlad(__sxtb16(w), x02, a1);
            a1 = __smlad(sxtb16_ror8(w), x13, a1);
            w = ld32(w0 + 2 * s);
            a2 = __smlad(__sxtb16(w), x02, a2);
            a2 = __smlad(sxtb16_ror8(w), x13, a2);
            w = ld32(w0 + 3 * s);
            a3 = __smlad(__sxtb16(w), x02, a3);
            a3 = __smlad(sxtb16_ror8(w), x13, a3);
            xp += 4;
            w0 += 4;
        }
        w0 -= n4;
        for (j = n4; j < n_in; j++) {
            const int32_t xj = (int32_t)x[j] + in_off;
            a0 += (int32_t)w0[j] * xj;
            a1 += (int32_t)w0[s + j] * xj;
            a2 += (int32_t)w0[2 * s + j] * xj;
            a3 += (int32_t)w0[3 * s + j] * xj;
        }
        y[o] = finish(l, mode, o, a0, lo, hi);
        y[o + 1u] = finish(l, mode, o + 1u, a1, lo, hi);
        y[o + 2u] = finish(l, mode, o + 2u, a2, lo, hi);
        y[o + 3u] = finish(l, mode, o + 3u, a3, lo, hi);
    }
    for (; o + 2u <= l->n_out; o += 2u) {
        const int8_t *w0 = l->weights + (size_t)o * n_in, *w1 = w0 + n_in, *xp = x, *end = x + n4;
        int32_t a0 = 0, a1 = 0;
        while (xp < end) { /* pointers advance with the loads: no index registers */
            const uint32_t xv = ld32(xp), wa = ld32(w0), wb = ld32(w1);
            const uint32_t x02 = __sadd16(__sxtb16(xv), off2), x13 = __sadd16(sxtb16_ror8(xv), off2);
            xp += 4;
            w0 += 4;
            w1 += 4;
            a0 = __smlad(__sxtb16(wa), x02, a0);
            a0 = __smlad(sxtb16_ror8(wa), x13, a0);
            a1 = __smlad(__sxtb16(wb), x02, a1);
            a1 = __smlad(sxtb16_ror8(wb), x13, a1);
        }
        w0 -= n4;
        w1 -= n4;
        j = n4;
        for (; j < n_in; j++) {
            a0 += (int32_t)w0[j] * ((int32_t)x[j] + in_off);
            a1 += (int32_t)w1[j] * ((int32_t)x[j] + in_off);
        }
        y[o] = finish(l, mode, o, a0, lo, hi);
        y[o + 1u] = finish(l, mode, o + 1u, a1, lo, hi);
    }
    if (o < l->n_out) {
        const int8_t *w0 = l->weights + (size_t)o * n_in;
        int32_t a0 = 0;
        for (j = 0; j < n4; j += 4u) {
            const uint32_t xv = ld32(x + j), wa = ld32(w0 + j);
            a0 = __smlad(__sxtb16(wa), __sadd16(__sxtb16(xv), off2), a0);
            a0 = __smlad(sxtb16_ror8(wa), __sadd16(sxtb16_ror8(xv), off2), a0);
        }
        for (; j < n_in; j++)
            a0 += (int32_t)w0[j] * ((int32_t)x[j] + in_off);
        y[o] = finish(l, mode, o, a0, lo, hi);
    }
}
