/* Log band power in float32 (docs/features.md, steps 1-8), plus scoring rule 1. */
#include "ef/features.h"

#include <math.h>

#define EF_TWO_PI 6.283185307179586

static uint32_t round_half_away(double x) { return (uint32_t)floor(x + 0.5); } /* x >= 0 */

static uint32_t bin_ceil(float edge_hz, uint32_t nfft, double fs)
{
    double k = ceil((double)edge_hz * (double)nfft / fs);
    double cap = (double)(nfft / 2u + 1u);
    return (uint32_t)(k < cap ? k : cap);
}

void ef_features_band(const ef_feature_plan *p, const ef_features_view *f, uint32_t i,
                      uint32_t *k_lo, uint32_t *k_hi)
{
    *k_lo = bin_ceil(ef_model_f32(f->edges_hz, i), p->nfft, p->fs);
    *k_hi = bin_ceil(ef_model_f32(f->edges_hz, i + 1u), p->nfft, p->fs);
}

/* Length-specific CMSIS-DSP init: only the tables up to EF_FEATURES_NFFT_MAX get linked. */
static arm_status rfft_init(arm_rfft_fast_instance_f32 *s, uint32_t nfft)
{
    switch (nfft) {
    case 32u: return arm_rfft_fast_init_32_f32(s);
    case 64u: return arm_rfft_fast_init_64_f32(s);
    case 128u: return arm_rfft_fast_init_128_f32(s);
    case 256u: return arm_rfft_fast_init_256_f32(s);
#if EF_FEATURES_NFFT_MAX >= 512
    case 512u: return arm_rfft_fast_init_512_f32(s);
#endif
#if EF_FEATURES_NFFT_MAX >= 1024
    case 1024u: return arm_rfft_fast_init_1024_f32(s);
#endif
#if EF_FEATURES_NFFT_MAX >= 2048
    case 2048u: return arm_rfft_fast_init_2048_f32(s);
#endif
#if EF_FEATURES_NFFT_MAX >= 4096
    case 4096u: return arm_rfft_fast_init_4096_f32(s);
#endif
    default: return ARM_MATH_ARGUMENT_ERROR;
    }
}

ef_status ef_features_fft_init(arm_rfft_fast_instance_f32 *s, uint32_t nfft)
{
    return rfft_init(s, nfft) == ARM_MATH_SUCCESS ? EF_OK : EF_ERR_RATE;
}

ef_status ef_features_plan(ef_feature_plan *p, const ef_features_view *f, double fs)
{
    double n;
    uint32_t i, nfft = 1;
    if (p == NULL || f == NULL)
        return EF_ERR_ARG;
    if (!(fs >= EF_FEATURES_FS_MIN && fs <= EF_FEATURES_FS_MAX))
        return EF_ERR_RATE;
    if ((double)ef_model_f32(f->edges_hz, f->n_bands) > fs / 2.0)
        return EF_ERR_RATE;
    n = (double)f->window_s * fs;
    if (!(n >= 1.0 && n < 2.0 * (double)EF_FEATURES_NFFT_MAX)) /* keeps the conversion defined */
        return EF_ERR_RATE;
    p->fs = fs;
    p->n_samples = round_half_away(n);
    while (nfft < p->n_samples)
        nfft <<= 1;
    if (nfft > EF_FEATURES_NFFT_MAX || nfft < EF_FEATURES_NFFT_MIN)
        return EF_ERR_RATE;
    p->nfft = nfft;
    for (i = 0; i < f->n_bands; i++) {
        uint32_t lo, hi;
        ef_features_band(p, f, i, &lo, &hi);
        if (hi <= lo)
            return EF_ERR_RATE;
    }
    if (rfft_init(&p->rfft, nfft) != ARM_MATH_SUCCESS)
        return EF_ERR_RATE;
    return EF_OK;
}

/* |Y[k]|^2 from arm_rfft_fast_f32's packed output (out[1] holds the Nyquist bin). */
static float bin_power(const float *y, uint32_t k, uint32_t nfft)
{
    if (k == 0)
        return y[0] * y[0];
    if (k == nfft / 2u)
        return y[1] * y[1];
    return y[2 * k] * y[2 * k] + y[2 * k + 1] * y[2 * k + 1];
}

void ef_features_compute(ef_feature_plan *p, const ef_features_view *f, float *x, float *y,
                         float *features)
{
    const uint32_t n = p->n_samples;
    float mean = 0.0f, s2 = 0.0f, norm;
    uint32_t i, k;
    for (i = 0; i < n; i++)
        mean += x[i];
    mean /= (float)n;
    for (i = 0; i < n; i++) { /* periodic Hann window */
        float w = 0.5f - 0.5f * cosf((float)(EF_TWO_PI * (double)i / (double)n));
        x[i] = (x[i] - mean) * w;
        s2 += w * w;
    }
    for (i = n; i < p->nfft; i++)
        x[i] = 0.0f;
    arm_rfft_fast_f32(&p->rfft, x, y, 0);
    /* B = (fs/nfft) * sum 2|Y|^2 / (fs*S2) = sum |Y|^2 * 2 / (nfft*S2) */
    norm = 2.0f / ((float)p->nfft * s2);
    for (i = 0; i < f->n_bands; i++) {
        uint32_t lo, hi;
        float acc = 0.0f;
        ef_features_band(p, f, i, &lo, &hi);
        for (k = lo; k < hi; k++)
            acc += bin_power(y, k, p->nfft);
        features[i] = log10f(acc * norm + f->log_floor);
    }
}

int8_t ef_quantize_input(float z, float input_scale, int32_t input_zero_point)
{
    float v = roundf(z / input_scale);
    int32_t r;
    if (isnan(v))
        v = 0.0f;
    if (v > 1000.0f) /* keep the float->int conversion defined */
        v = 1000.0f;
    if (v < -1000.0f)
        v = -1000.0f;
    r = (int32_t)v + input_zero_point;
    return (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
}

void ef_features_quantize(const ef_features_view *f, const float *features, float input_scale,
                          int32_t input_zero_point, int8_t *q)
{
    uint32_t i;
    for (i = 0; i < f->n_features; i++) {
        float z = (features[i] - ef_model_f32(f->mean, i)) * ef_model_f32(f->inv_std, i);
        q[i] = ef_quantize_input(z, input_scale, input_zero_point);
    }
}

float ef_score_mse(const int8_t *q_in, const int8_t *q_out, uint32_t n, float in_scale,
                   int32_t in_zp, float out_scale, int32_t out_zp)
{
    float acc = 0.0f;
    uint32_t i;
    for (i = 0; i < n; i++) {
        float d = out_scale * (float)(q_out[i] - out_zp) - in_scale * (float)(q_in[i] - in_zp);
        acc += d * d;
    }
    return acc / (float)n;
}
