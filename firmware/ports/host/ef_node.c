/* ef_node ARTIFACT SAMPLES.f32 FS [--hop N] [--features F.f32] [--quantized Q.i8]
 *         [--outputs Y.i8] [--quiet] [--protocol BOOT [--serial] [--t0 MS]]
 * The node loop over a recording (raw little-endian float32 samples in g):
 * every window -> features -> quantize -> infer -> score vs threshold, one
 * JSON line per window on stdout; the optional files receive the
 * intermediate values for parity tests. With --protocol each window is
 * published as a protocol v1 `result` message instead (boot id BOOT,
 * timestamps from t0 at the sample clock), and with --serial those
 * messages leave COBS-framed on stdout as a node without a network stack
 * sends them to its gateway (summary on stderr).
 * Exit 2 when the artifact or the rate is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ef/pipeline.h"
#include "ef/protocol.h"
#include "ef/serial.h"
#include "ef_host.h"

static char g_msg[512];
static uint8_t g_frame[EF_SERIAL_ENCODED_MAX(512)];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One result message for one window, printed or framed. */
static int publish(const char *boot, const ef_model *m, float thr, uint32_t seq, uint64_t ts,
                   float score, uint32_t inf_us, int serial)
{
    ef_proto_result_head h;
    ef_proto_result_rec r;
    int n;
    memset(&h, 0, sizeof h);
    memset(&r, 0, sizeof r);
    h.boot = boot;
    h.model = m->model_version;
    h.thr = thr;
    h.dropped = 0;
    r.seq = seq;
    r.ts = ts;
    r.score = score;
    r.anom = score > thr;
    r.inf_us = inf_us;
    n = ef_proto_encode_result(g_msg, sizeof g_msg, &h, &r, 1);
    if (n < 0) {
        fprintf(stderr, "error: result message refused (%s)\n", ef_status_str(n));
        return -1;
    }
    if (serial) {
        size_t f = ef_serial_encode((const uint8_t *)g_msg, (size_t)n, g_frame, sizeof g_frame), done = 0;
        while (f && done < f) { /* the board's serial link (stdout on the host port) */
            int w = ef_platform_serial_write(g_frame + done, f - done);
            if (w <= 0)
                return -1;
            done += (size_t)w;
        }
        return f ? 0 : -1;
    }
    printf("%s\n", g_msg);
    return 0;
}

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
    ef_pipeline pipe;
    ef_pipeline_buffers bufs;
    ef_status st;
    double fs;
    int quiet = 0, serial = 0, i;
    const char *boot = NULL;
    uint64_t t0 = 1767225600000ull;
    FILE *ff, *fq, *fy;
    float feats[1024];
    int8_t q[1024], y[1024];
    if (argc < 4) {
        fprintf(stderr, "usage: ef_node ARTIFACT SAMPLES.f32 FS [--hop N] [--features F] "
                        "[--quantized Q] [--outputs Y] [--quiet] [--protocol BOOT [--serial] [--t0 MS]]\n");
        return 1;
    }
    for (i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0)
            quiet = 1;
        else if (strcmp(argv[i], "--serial") == 0)
            serial = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--protocol") == 0)
            boot = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--t0") == 0)
            t0 = strtoull(argv[++i], NULL, 10);
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
    bufs.window = g_window;
    bufs.scratch = g_scratch;
    bufs.fft_len = EF_FEATURES_NFFT_MAX;
    bufs.features = feats;
    bufs.q = q;
    bufs.y = y;
    bufs.io_len = sizeof q;
    bufs.arena = g_arena;
    bufs.arena_len = sizeof g_arena;
    if ((st = ef_pipeline_init(&pipe, &m, fs, &bufs)) != EF_OK) {
        if (st == EF_ERR_RATE)
            fprintf(stderr, "error: the model cannot run at %g Hz (%s)\n", fs, ef_status_str(st));
        else
            fprintf(stderr, "error: %s is not a node model for this build (%s: needs features, "
                            "scoring, n_in == n_out <= 1024)\n", argv[1], ef_status_str(st));
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
        hop = pipe.plan.n_samples;
    ff = open_opt(feat_path);
    fq = open_opt(q_path);
    fy = open_opt(y_path);
    if ((feat_path && !ff) || (q_path && !fq) || (y_path && !fy))
        return 1;
    for (start = 0; start + pipe.plan.n_samples <= n_total; start += hop) {
        ef_pipeline_result res;
        float score;
        uint64_t t_inf = now_ns();
        ef_pipeline_run(&pipe, samples + start, &res);
        t_inf = now_ns() - t_inf;
        score = res.score;
        if (ff)
            fwrite(feats, sizeof(float), m.n_inputs, ff);
        if (fq)
            fwrite(q, 1, m.n_inputs, fq);
        if (fy)
            fwrite(y, 1, m.n_outputs, fy);
        anomalous += res.anomalous != 0;
        if (boot) {
            uint64_t ts = t0 + (uint64_t)((double)start * 1000.0 / fs + 0.5);
            if (publish(boot, &m, pipe.scoring.threshold, (uint32_t)windows, ts, score,
                        (uint32_t)((t_inf + 500u) / 1000u), serial) != 0) {
                free(raw);
                free(art);
                return 2;
            }
        } else if (!quiet)
            printf("{\"window\":%zu,\"score\":%.9g,\"anom\":%s}\n", windows, (double)score,
                   res.anomalous ? "true" : "false");
        windows++;
    }
    fprintf(stderr, "ef_node: %zu windows of %u samples (nfft %u) at %g Hz, %zu anomalous, "
                    "threshold %.6g, RAM: arena %u B + 2 x %u floats FFT buffers\n",
            windows, (unsigned)pipe.plan.n_samples, (unsigned)pipe.plan.nfft, fs, anomalous,
            (double)pipe.scoring.threshold, m.arena_bytes, (unsigned)pipe.plan.nfft);
    fprintf(serial ? stderr : stdout, "{\"windows\":%zu,\"anomalous\":%zu,\"n_samples\":%u,\"nfft\":%u}\n",
            windows, anomalous, (unsigned)pipe.plan.n_samples, (unsigned)pipe.plan.nfft);
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
