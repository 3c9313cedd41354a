/* The node's per-window pipeline: features -> quantize -> infer -> score vs threshold.
 *
 * All memory is the caller's (ef_pipeline_buffers); a board sizes it once for
 * its largest supported model and rate. ef_pipeline_init() checks the model is
 * a node model (features + scoring sections, n_inputs == n_outputs) and that
 * the buffers fit the plan at this sampling rate.
 *
 * Both feature definitions run here (docs/features.md): v1 (kind 1) over a window of
 * plan.n_samples samples held in buf.window; v2 (kind 2) streaming over a window of
 * N samples that is never held whole (ef/lowfreq.h: buf.window is its segment and FFT
 * buffer, buf.scratch its decimated stream and segment overlap). A window is fed with
 * ef_pipeline_next/commit (zero-copy: a sensor or file writes where next() points) or
 * whole with ef_pipeline_run. The pipeline keeps pointers into itself: do not copy it
 * after init. */
#ifndef EF_PIPELINE_H
#define EF_PIPELINE_H
#include <stddef.h>
#include <stdint.h>

#include "ef/features.h"
#include "ef/lowfreq.h"
#include "ef/model.h"
#include "ef/status.h"

typedef struct {
    float *window, *scratch; size_t fft_len;  /* each >= plan.nfft floats (v2: scratch >= L + n - n/2) */
    float *features; int8_t *q, *y; size_t io_len; /* each >= n_inputs elements */
    int8_t *arena; size_t arena_len;          /* >= model arena_bytes */
} ef_pipeline_buffers;

typedef struct {
    const ef_model *model;
    ef_features_view features;
    ef_scoring_view scoring;
    ef_lf_plan lf;           /* lf.hf: v1's plan of the window (v1) or of one HF segment (v2) */
    ef_lf_state lfs;         /* v2 streaming state */
    uint32_t n_window;       /* samples per window: lf.hf.n_samples (v1), N (v2) */
    uint32_t fill;           /* v1: samples of the window so far */
    ef_lf_readings readings; /* the last window's (v2; NaN for v1) */
    ef_pipeline_buffers buf;
} ef_pipeline;

typedef struct {
    float score;
    int anomalous; /* score > threshold */
} ef_pipeline_result;

ef_status ef_pipeline_init(ef_pipeline *p, const ef_model *m, double fs, const ef_pipeline_buffers *b);

/* 1 for a v2 (streaming) front end. */
int ef_pipeline_v2(const ef_pipeline *p);

/* A v2 window's readings as its result carries them (docs/protocol.md): vrms (mm/s) when within the
 * schema's 0..1000, and the running speed the node used, its speed input `rpm_in` (> 0) else the
 * front end's estimate, when within 30..100000 rev/min. A v1 pipeline leaves the outputs as they are. */
void ef_pipeline_result_readings(const ef_pipeline *p, float rpm_in, int *has_vrms, double *vrms,
                                 int *has_rpm, double *rpm);

/* Zero-copy input of the current window: where the next samples go and how many fit (0 once
 * the window is complete); ef_pipeline_commit(count) takes them, 1 when the window is complete. */
float *ef_pipeline_next(ef_pipeline *p, uint32_t *room);
int ef_pipeline_commit(ef_pipeline *p, uint32_t count);

/* The complete window's features into buf.features (and, v2, `readings`); the next window starts.
 * The FFT buffers are free until the next ef_pipeline_next. */
void ef_pipeline_features(ef_pipeline *p);

/* buf.features -> buf.q (the model's standardization) -> buf.y -> score. */
ef_status ef_pipeline_score(ef_pipeline *p, ef_pipeline_result *out);

/* One whole window of n_window samples (g): input, features, score. After the call buf.features,
 * buf.q and buf.y hold the window's features, model input and output (for debug capture). */
ef_status ef_pipeline_run(ef_pipeline *p, const float *samples, ef_pipeline_result *out);

#endif
