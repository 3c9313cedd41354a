/* Per-window node pipeline over caller buffers (ef/pipeline.h). */
#include "ef/pipeline.h"

#include <math.h>
#include <string.h>

#include "ef/engine.h"

ef_status ef_pipeline_init(ef_pipeline *p, const ef_model *m, double fs, const ef_pipeline_buffers *b)
{
    ef_status st;
    if (p == NULL || m == NULL || b == NULL)
        return EF_ERR_ARG;
    memset(p, 0, sizeof *p);
    if (!ef_model_features(m, &p->features) || !ef_model_scoring(m, &p->scoring) ||
        m->n_inputs != m->n_outputs)
        return EF_ERR_FEATURES;
    if (p->features.kind == EF_FEATURE_KIND_V2)
        st = ef_lf_plan_init(&p->lf, &p->features, fs);
    else
        st = ef_features_plan(&p->lf.hf, &p->features, fs);
    if (st != EF_OK)
        return st;
    if (!b->window || !b->scratch || !b->features || !b->q || !b->y || !b->arena ||
        b->fft_len < p->lf.hf.nfft || b->io_len < m->n_inputs || b->arena_len < m->arena_bytes)
        return EF_ERR_CAPACITY;
    p->n_window = p->lf.hf.n_samples;
    if (p->features.kind == EF_FEATURE_KIND_V2) {
        if ((st = ef_lf_begin(&p->lfs, &p->lf, &p->features, b->window, b->fft_len, b->scratch, b->fft_len,
                              b->features)) != EF_OK)
            return st;
        p->n_window = p->lf.n_window;
    }
    p->readings.vrms_mm_s = p->readings.speed_hz = p->readings.kurtosis = p->readings.crest = NAN;
    p->model = m;
    p->buf = *b;
    return EF_OK;
}

int ef_pipeline_v2(const ef_pipeline *p) { return p->features.kind == EF_FEATURE_KIND_V2; }

void ef_pipeline_result_readings(const ef_pipeline *p, float rpm_in, int *has_vrms, double *vrms,
                                 int *has_rpm, double *rpm)
{
    const double v = (double)p->readings.vrms_mm_s;
    const double r = rpm_in > 0.0f ? (double)rpm_in : 60.0 * (double)p->readings.speed_hz;
    if (!ef_pipeline_v2(p))
        return;
    *has_vrms = v >= 0.0 && v <= 1000.0;
    *vrms = v;
    *has_rpm = r >= 30.0 && r <= 100000.0;
    *rpm = r;
}

float *ef_pipeline_next(ef_pipeline *p, uint32_t *room)
{
    if (ef_pipeline_v2(p))
        return ef_lf_next(&p->lfs, room);
    *room = p->n_window - p->fill;
    return p->buf.window + p->fill;
}

int ef_pipeline_commit(ef_pipeline *p, uint32_t count)
{
    if (ef_pipeline_v2(p))
        return ef_lf_commit(&p->lfs, count);
    p->fill += count;
    return p->fill == p->n_window;
}

void ef_pipeline_features(ef_pipeline *p)
{
    if (ef_pipeline_v2(p)) {
        ef_lf_finish(&p->lfs, &p->readings); /* the next ef_lf_next starts the next window */
    } else {
        ef_features_compute(&p->lf.hf, &p->features, p->buf.window, p->buf.scratch, p->buf.features);
        p->fill = 0;
    }
}

ef_status ef_pipeline_score(ef_pipeline *p, ef_pipeline_result *out)
{
    const ef_model *m = p->model;
    ef_status st;
    ef_features_quantize(&p->features, p->buf.features, m->input_scale, m->input_zero_point, p->buf.q);
    st = ef_engine_infer(m, p->buf.q, p->buf.y, p->buf.arena, p->buf.arena_len);
    if (st != EF_OK)
        return st;
    out->score = ef_score_mse(p->buf.q, p->buf.y, m->n_inputs, m->input_scale, m->input_zero_point,
                              m->output_scale, m->output_zero_point);
    out->anomalous = out->score > p->scoring.threshold;
    return EF_OK;
}

ef_status ef_pipeline_run(ef_pipeline *p, const float *samples, ef_pipeline_result *out)
{
    if (p == NULL || p->model == NULL || samples == NULL || out == NULL)
        return EF_ERR_ARG;
    if (ef_pipeline_v2(p)) {
        ef_lf_restart(&p->lfs);
        ef_lf_push(&p->lfs, samples, p->n_window);
    } else {
        memcpy(p->buf.window, samples, p->n_window * sizeof(float));
        p->fill = p->n_window;
    }
    ef_pipeline_features(p);
    return ef_pipeline_score(p, out);
}
