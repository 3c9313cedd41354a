/* The node's per-window pipeline: features -> quantize -> infer -> score vs threshold.
 *
 * All memory is the caller's (ef_pipeline_buffers); a board sizes it once for
 * its largest supported model and rate. ef_pipeline_init() checks the model is
 * a node model (features + scoring sections, n_inputs == n_outputs) and that
 * the buffers fit the plan at this sampling rate. */
#ifndef EF_PIPELINE_H
#define EF_PIPELINE_H
#include <stddef.h>
#include <stdint.h>

#include "ef/features.h"
#include "ef/model.h"
#include "ef/status.h"

typedef struct {
    float *window, *scratch; size_t fft_len;  /* each >= plan.nfft floats */
    float *features; int8_t *q, *y; size_t io_len; /* each >= n_inputs elements */
    int8_t *arena; size_t arena_len;          /* >= model arena_bytes */
} ef_pipeline_buffers;

typedef struct {
    const ef_model *model;
    ef_features_view features;
    ef_scoring_view scoring;
    ef_feature_plan plan;
    ef_pipeline_buffers buf;
} ef_pipeline;

typedef struct {
    float score;
    int anomalous; /* score > threshold */
} ef_pipeline_result;

ef_status ef_pipeline_init(ef_pipeline *p, const ef_model *m, double fs, const ef_pipeline_buffers *b);

/* One window of plan.n_samples samples (g). After the call buf.features, buf.q and
 * buf.y hold the window's features, model input and output (for debug capture). */
ef_status ef_pipeline_run(ef_pipeline *p, const float *samples, ef_pipeline_result *out);

#endif
