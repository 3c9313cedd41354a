/* Per-window node pipeline over caller buffers (ef/pipeline.h). */
#include "ef/pipeline.h"

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
    if ((st = ef_features_plan(&p->plan, &p->features, fs)) != EF_OK)
        return st;
    if (!b->window || !b->scratch || !b->features || !b->q || !b->y || !b->arena ||
        b->fft_len < p->plan.nfft || b->io_len < m->n_inputs || b->arena_len < m->arena_bytes)
        return EF_ERR_CAPACITY;
    p->model = m;
    p->buf = *b;
    return EF_OK;
}

ef_status ef_pipeline_run(ef_pipeline *p, const float *samples, ef_pipeline_result *out)
{
    const ef_model *m;
    ef_status st;
    if (p == NULL || p->model == NULL || samples == NULL || out == NULL)
        return EF_ERR_ARG;
    m = p->model;
    memcpy(p->buf.window, samples, p->plan.n_samples * sizeof(float));
    ef_features_compute(&p->plan, &p->features, p->buf.window, p->buf.scratch, p->buf.features);
    ef_features_quantize(&p->features, p->buf.features, m->input_scale, m->input_zero_point, p->buf.q);
    st = ef_engine_infer(m, p->buf.q, p->buf.y, p->buf.arena, p->buf.arena_len);
    if (st != EF_OK)
        return st;
    out->score = ef_score_mse(p->buf.q, p->buf.y, m->n_inputs, m->input_scale, m->input_zero_point,
                              m->output_scale, m->output_zero_point);
    out->anomalous = out->score > p->scoring.threshold;
    return EF_OK;
}
