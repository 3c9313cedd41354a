/* ef_node ARTIFACT SAMPLES.f32 FS [--hop N] [--features F.f32] [--quantized Q.i8]
 *         [--outputs Y.i8] [--quiet]
 * The node loop over a recording (raw little-endian float32 samples in g):
 * every window -> features -> quantize -> infer -> score vs threshold, one
 * JSON line per window on stdout; the optional files receive the
 * intermediate values for parity tests. Exit 2 when the artifact or the rate is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/engine.h"
#include "ef/features.h"
#include "ef_host.h"

static float g_window[EF_FEATURES_NFFT_MAX];
static float g_scratch[EF_FEATURES_NFFT_MAX];
static int8_t g_arena[65536];

static FILE *open_opt(const char *path)
{
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (path && !f)
        fprintf(stderr, "error: cannot write %s\n", path);
    return f;
}

int main(int argc, char **argv)
{
    const char *feat_path = NULL, *q_path = NULL, *y_path = NULL;
    size_t alen, slen, n_total, start, hop = 0, windows = 0, anomalous = 0;
    uint8_t *art, *raw;
    const float *samples;
    ef_model m;
    ef_features_view fv;
    ef_scoring_view sv;
    ef_feature_plan plan;
    ef_status st;
    double fs;
    int quiet = 0, i;
    FILE *ff, *fq, *fy;
    float feats[1024];
    int8_t q[1024], y[1024];
    if (argc < 4) {
        fprintf(stderr, "usage: ef_node ARTIFACT SAMPLES.f32 FS [--hop N] [--features F] "
                        "[--quantized Q] [--outputs Y] [--quiet]\n");
        return 1;
    }
    for (i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0)
            quiet = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--hop") == 0)
            hop = (size_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--features") == 0)
            feat_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--quantized") == 0)
            q_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--outputs") == 0)
            y_path = argv[++i];
        else {
            fprintf(stderr, "error: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    fs = strtod(argv[3], NULL);
    if (!(art = ef_host_read_file(argv[1], &alen)))
        return 1;
    if ((st = ef_model_open(&m, art, alen)) != EF_OK) {
        fprintf(stderr, "error: %s: artifact rejected (%s)\n", argv[1], ef_status_str(st));
        free(art);
        return 2;
    }
    if (!ef_model_features(&m, &fv) || !ef_model_scoring(&m, &sv) || m.n_inputs != m.n_outputs ||
        m.n_inputs > sizeof feats / sizeof feats[0]) {
        fprintf(stderr, "error: %s is not a node model (needs features, scoring, n_in == n_out <= 1024)\n",
                argv[1]);
        free(art);
        return 2;
    }
    if ((st = ef_features_plan(&plan, &fv, fs)) != EF_OK) {
        fprintf(stderr, "error: the model cannot run at %g Hz (%s)\n", fs, ef_status_str(st));
        free(art);
        return 2;
    }
    if (!(raw = ef_host_read_file(argv[2], &slen))) {
        free(art);
        return 1;
    }
    samples = (const float *)(const void *)raw;
    n_total = slen / sizeof(float);
    if (hop == 0)
        hop = plan.n_samples;
    ff = open_opt(feat_path);
    fq = open_opt(q_path);
    fy = open_opt(y_path);
    if ((feat_path && !ff) || (q_path && !fq) || (y_path && !fy))
        return 1;
    for (start = 0; start + plan.n_samples <= n_total; start += hop) {
        float score;
        memcpy(g_window, samples + start, plan.n_samples * sizeof(float));
        ef_features_compute(&plan, &fv, g_window, g_scratch, feats);
        ef_features_quantize(&fv, feats, m.input_scale, m.input_zero_point, q);
        ef_engine_infer(&m, q, y, g_arena, sizeof g_arena);
        score = ef_score_mse(q, y, m.n_inputs, m.input_scale, m.input_zero_point, m.output_scale,
                             m.output_zero_point);
        if (ff)
            fwrite(feats, sizeof(float), m.n_inputs, ff);
        if (fq)
            fwrite(q, 1, m.n_inputs, fq);
        if (fy)
            fwrite(y, 1, m.n_outputs, fy);
        anomalous += score > sv.threshold;
        if (!quiet)
            printf("{\"window\":%zu,\"score\":%.9g,\"anom\":%s}\n", windows, (double)score,
                   score > sv.threshold ? "true" : "false");
        windows++;
    }
    fprintf(stderr, "ef_node: %zu windows of %u samples (nfft %u) at %g Hz, %zu anomalous, "
                    "threshold %.6g, RAM: arena %u B + 2 x %u floats FFT buffers\n",
            windows, (unsigned)plan.n_samples, (unsigned)plan.nfft, fs, anomalous,
            (double)sv.threshold, m.arena_bytes, (unsigned)plan.nfft);
    printf("{\"windows\":%zu,\"anomalous\":%zu,\"n_samples\":%u,\"nfft\":%u}\n", windows, anomalous,
           (unsigned)plan.n_samples, (unsigned)plan.nfft);
    if (ff)
        fclose(ff);
    if (fq)
        fclose(fq);
    if (fy)
        fclose(fy);
    free(raw);
    free(art);
    return 0;
}
