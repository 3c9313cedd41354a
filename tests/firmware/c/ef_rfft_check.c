/* ef_rfft_check: ef_rfft_inplace (core/src/ef_lowfreq.c) against CMSIS-DSP's arm_rfft_fast_f32, bit
 * for bit, for every real FFT length from 32 to 4096 on random, impulse, constant and sine inputs.
 * Prints one line per length: "nfft cases mismatches"; exit 1 on any mismatch. */
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "ef/lowfreq.h"

static float g_in[4096], g_a[4096], g_b[4096], g_out[4096];

static uint32_t g_rng = 0x12345678u;
static float rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return (float)(int32_t)(g_rng >> 8) / 8388608.0f - 1.0f;
}

int main(void)
{
    uint32_t nfft, c, i, bad_total = 0;
    for (nfft = 32; nfft <= 4096; nfft *= 2) {
        arm_rfft_fast_instance_f32 s;
        uint32_t bad = 0;
        if (ef_features_fft_init(&s, nfft) != EF_OK)
            return 2;
        for (c = 0; c < 40; c++) {
            for (i = 0; i < nfft; i++)
                g_in[i] = c == 0 ? (i == 0 ? 1.0f : 0.0f) : c == 1 ? 0.75f
                        : c == 2 ? (float)(i % 7) - 3.0f : rnd() * (c % 5 == 0 ? 1e-6f : 1.0f);
            memcpy(g_a, g_in, nfft * sizeof(float));
            memcpy(g_b, g_in, nfft * sizeof(float));
            arm_rfft_fast_f32(&s, g_a, g_out, 0);
            ef_rfft_inplace(&s, g_b);
            if (memcmp(g_out, g_b, nfft * sizeof(float)) != 0)
                bad++;
        }
        printf("%u 40 %u\n", (unsigned)nfft, (unsigned)bad);
        bad_total += bad;
    }
    return bad_total ? 1 : 0;
}
