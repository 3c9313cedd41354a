/* Feature definition v1, log band power (docs/features.md), in float32.
 *
 * ef_features_plan() derives the window and FFT sizes for one sampling rate
 * and rejects rates that cannot serve the model; ef_features_compute() turns
 * one window into n_bands features with CMSIS-DSP's arm_rfft_fast_f32.
 * Buffers are the caller's: two float arrays of plan.nfft elements. */
#ifndef EF_FEATURES_H
#define EF_FEATURES_H
#include <stdint.h>

#include "dsp/transform_functions.h"
#include "ef/model.h"
#include "ef/status.h"

#define EF_FEATURES_FS_MIN 4000.0
#define EF_FEATURES_FS_MAX 50000.0
/* Largest FFT this build supports (a power of two, 32..4096, the contract's
 * maximum by default). A board that only needs, say, 12 kHz x 0.08 s builds
 * with -DEF_FEATURES_NFFT_MAX=1024 and links no twiddle tables above it. */
#ifndef EF_FEATURES_NFFT_MAX
#define EF_FEATURES_NFFT_MAX 4096u
#endif
#define EF_FEATURES_NFFT_MIN 32u /* smallest arm_rfft_fast_f32 length */

typedef struct {
    double fs;
    uint32_t n_samples; /* N = round_half_away(window_s * fs) */
    uint32_t nfft;      /* smallest power of two >= N */
    arm_rfft_fast_instance_f32 rfft;
} ef_feature_plan;

/* Sizes at rate fs; EF_ERR_RATE for every rejection listed in docs/features.md
 * (and for nfft < 32, which CMSIS-DSP's real FFT does not support). */
ef_status ef_features_plan(ef_feature_plan *p, const ef_features_view *f, double fs);

/* CMSIS-DSP real FFT of nfft points (a power of two, 32..EF_FEATURES_NFFT_MAX); EF_ERR_RATE
 * for any other length (only the twiddle tables up to EF_FEATURES_NFFT_MAX are linked). */
ef_status ef_features_fft_init(arm_rfft_fast_instance_f32 *s, uint32_t nfft);

/* Band bins of band i at this plan: k_lo <= k < k_hi. */
void ef_features_band(const ef_feature_plan *p, const ef_features_view *f, uint32_t i,
                      uint32_t *k_lo, uint32_t *k_hi);

/* F[i] = log10(band power + log_floor). `window` holds n_samples samples (g) and
 * must have room for nfft floats (it is overwritten); `scratch` holds nfft floats. */
void ef_features_compute(ef_feature_plan *p, const ef_features_view *f, float *window,
                         float *scratch, float *features);

/* One standardized feature z to the model's int8 input: clamp(roundf(z / scale) + zp, -128, 127)
 * (docs/features.md step 8; the commissioning baseline standardizes its own way, then this). */
int8_t ef_quantize_input(float z, float input_scale, int32_t input_zero_point);

/* z = (F - mean) * inv_std, then q = ef_quantize_input(z), for the f->n_features inputs. */
void ef_features_quantize(const ef_features_view *f, const float *features, float input_scale,
                          int32_t input_zero_point, int8_t *q);

/* Score rule 1: mean squared error between dequantized output and input (float32). */
float ef_score_mse(const int8_t *q_in, const int8_t *q_out, uint32_t n, float in_scale,
                   int32_t in_zp, float out_scale, int32_t out_zp);

#endif
