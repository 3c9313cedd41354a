/* Feature definition v2 (docs/features.md, "Feature definition v2"), streaming, in float32.
 *
 * ef_lf_plan_init() derives every size of a kind-2 front end at one sampling rate and
 * rejects what the contract rejects (EF_ERR_RATE). A window of N = (L + S) * D samples is
 * then fed as it arrives, in chunks of any size: each sample goes through the 8th-order
 * Butterworth low-pass (four float32 biquads, direct form I, zero state at the window's
 * start), every D-th output after the first S is kept (L floats); the high-frequency
 * segments (n samples, hop floor(n/2)) are processed as each one completes (shape, Hann,
 * FFT, band sums: a Welch average accumulated segment by segment). At the window's end
 * ef_lf_finish() takes the LF spectrum, bands, velocity RMS and running speed.
 * No buffer holds the full-rate window.
 *
 * Memory is the caller's, two float arrays:
 *   fft   >= nfft floats: the segment being collected, transformed in place;
 *   work  >= L + (n - floor(n/2)) floats: the decimated stream, then the overlap of the
 *         next segment.
 * The real FFTs are CMSIS-DSP's complex FFT with an in-place split step that computes
 * every output exactly as arm_rfft_fast_f32 does (it needs no second output buffer). */
#ifndef EF_LOWFREQ_H
#define EF_LOWFREQ_H
#include <stddef.h>
#include <stdint.h>

#include "ef/features.h"
#include "ef/model.h"
#include "ef/status.h"

#define EF_LF_SECTIONS 4u          /* biquads of the 8th-order Butterworth low-pass */
#define EF_LF_VRMS_FLOOR 0.01f     /* mm/s, added before log10 */
#define EF_LF_G_MM_S2 9806.65      /* 1 g in mm/s^2 */
#define EF_LF_WINDOW_MAX (1u << 26) /* a longer window (absurd decimation factor) is refused */

typedef struct {
    ef_feature_plan hf;   /* one HF segment: n_samples = n, nfft, its band bins and FFT (v1's plan) */
    uint32_t n_window;    /* N = (L + S) * D */
    uint32_t hop;         /* h = floor(n / 2) (at least 1) */
    uint32_t n_segments;  /* K = 1 + floor((N - n) / h) */
    uint32_t factor;      /* D */
    double fs_lf;         /* fs / D */
    arm_rfft_fast_instance_f32 lf_rfft; /* L points */
    float lpf[EF_LF_SECTIONS][3];       /* per section b0, c1 = -a1 - 2, c2 = 1 - a2 (the form ef_lowfreq.c runs) */
    float hf_step, lf_step;  /* 2 pi / n, 2 pi / L: the Hann phase steps */
    float hf_norm, lf_norm;  /* 2 / (nfft * S2), 2 / (L * S2_lf): sum |Y|^2 -> band power, g^2 */
    float hf_vel, lf_vel;    /* (G nfft / (2 pi fs))^2, (G L / (2 pi fs_lf))^2: velocity weight * k^2 */
    float hf_q;              /* 0.5 (nfft / n)^2: the Hann-lobe bias term of an HF bin's weight, / k^2 */
    float lf_psd;            /* 2 / (fs_lf * S2_lf): |Y|^2 -> P_lf, g^2/Hz */
    float bin_hf, bin_lf, res_hf; /* fs / nfft, fs_lf / L, fs / n (Hz) */
    float cos_phi, sin_phi;  /* phi = pi (n - 1) / n: the Hann kernel's side terms */
    uint16_t vel_hf_lo, vel_hf_hi; /* HF velocity bins [lo, hi): vel_split <= f <= fs/2 (E above 1e-20) */
    uint16_t flat_lo, flat_hi;     /* HF bins whose band-edge factor E is exactly 1 in float32 */
    uint16_t reach_hi;       /* HF velocity bins below it reach the LF lines (f < lf_top + 4 fs / n) */
    uint16_t vel_lf_hi;      /* LF bins [1, vel_lf_hi) have a weight (f < lf_top) */
    uint16_t k_min, k_max, k_top;                        /* running-speed search */
} ef_lf_plan;

/* The readings an operator sees, beside the model features. */
typedef struct {
    float vrms_mm_s; /* velocity RMS over [vel_lo, vel_hi), mm/s */
    float speed_hz;  /* running speed estimate, Hz (rpm = 60 x) */
    float kurtosis;  /* mean over the segments */
    float crest;
} ef_lf_readings;

typedef struct {
    const ef_lf_plan *p;
    const ef_features_view *f;
    float *seg, *lf, *half;  /* the caller's buffers (see above) */
    float *acc;              /* the HF band sums: the first n_bands floats of the features array */
    float ref;               /* the window's reference level: the mean of its first HF segment */
    float z[4 * EF_LF_SECTIONS]; /* filter state: per section x[n-1], x[n-2], y[n-1], y[n-2] */
    uint32_t i;              /* samples of this window so far */
    uint32_t fill;           /* samples in seg */
    uint32_t segs;           /* segments done */
    uint32_t dec;            /* samples since the last decimated one */
    uint32_t j;              /* decimated samples so far (the first S are dropped) */
    float vel_hf, kurt, crest; /* sums over the segments done */
    int finished;            /* ef_lf_finish ran: the next ef_lf_next starts a new window */
} ef_lf_state;

/* Sizes at rate fs of a kind-2 front end; EF_ERR_RATE for every rejection of docs/features.md
 * (and for an FFT above EF_FEATURES_NFFT_MAX or below 32, or a window above EF_LF_WINDOW_MAX
 * samples), EF_ERR_FEATURES for a kind-1 view. */
ef_status ef_lf_plan_init(ef_lf_plan *p, const ef_features_view *f, double fs);

/* Floats the two buffers need at this plan. */
uint32_t ef_lf_fft_floats(const ef_lf_plan *p);
uint32_t ef_lf_work_floats(const ef_lf_plan *p);

/* Bind the buffers (EF_ERR_CAPACITY when too small) and start a window; `features` (at least
 * f->n_features floats) receives the features at ef_lf_finish and holds running sums before. */
ef_status ef_lf_begin(ef_lf_state *s, const ef_lf_plan *p, const ef_features_view *f, float *fft, size_t fft_len,
                      float *work, size_t work_len, float *features);

/* Start the next window with the same buffers (filter state zeroed, sums cleared). */
void ef_lf_restart(ef_lf_state *s);

/* Zero-copy input: where the next samples go and how many fit there (> 0 until the window is
 * complete, then 0; after ef_lf_finish, the next window starts here). Write up to *room samples
 * at the pointer, then ef_lf_commit(count). */
float *ef_lf_next(ef_lf_state *s, uint32_t *room);

/* Take `count` samples written at ef_lf_next's pointer (count <= room); 1 when the window is
 * complete (N samples), else 0. */
int ef_lf_commit(ef_lf_state *s, uint32_t count);

/* Copy-in input: up to n samples from x; returns how many were taken (fewer only when the
 * window completed). */
uint32_t ef_lf_push(ef_lf_state *s, const float *x, uint32_t n);

/* 1 when N samples have been taken. */
int ef_lf_complete(const ef_lf_state *s);

/* At the window's end: the n_features features (HF bands, LF bands, extras) into the features
 * array given to ef_lf_begin, and the readings. The buffers are free afterwards. */
void ef_lf_finish(ef_lf_state *s, ef_lf_readings *r);

/* In-place real FFT of nfft = 2 * S->Sint.fftLen points: the output of arm_rfft_fast_f32
 * (packed: x[0] = DC, x[1] = Nyquist, then re/im pairs), bit for bit, without its output buffer. */
void ef_rfft_inplace(const arm_rfft_fast_instance_f32 *S, float *x);

#endif
