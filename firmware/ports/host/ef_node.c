/* ef_node ARTIFACT SAMPLES.f32 FS [--hop N] [--features F.f32] [--quantized Q.i8]
 *         [--outputs Y.i8] [--scores S.f32] [--quiet]
 *         [--protocol BOOT [--serial] [--t0 MS] [--no-commission] [--rpm R.f32] [--flash F.bin]
 *          [--rows F.bin] [--cmd K JSON]... [--model-at K ARTIFACT] [--shadow-at K ARTIFACT]
 *          [--summary-every MS]]
 * The node loop over a recording (raw little-endian float32 samples in g): every window ->
 * features -> quantize -> infer -> score vs threshold, one JSON line per window on stdout;
 * the optional files receive the intermediate values for parity tests (--readings: vrms mm/s,
 * speed Hz, kurtosis, crest per window, float32; NaN for a v1 front end; --scores: the score each window
 * was judged by, float32, so a test can rebuild what the node summarized). A v2 front end
 * (feature kind 2) streams each window through ef_pipeline_run: N samples per window.
 *
 * With --protocol the node publishes protocol v1 messages instead (boot id BOOT, timestamps
 * from t0 at the sample clock), and with --serial the result messages leave COBS-framed on
 * stdout as a node without a network stack sends them to its gateway (summary on stderr).
 * A protocol node commissions its baseline as the MCU node does (docs/baseline.md, core
 * ef/commission.h, the QEMU node's flash layout: two 4 KB record copies, 2 MB of rows): births
 * (`status` with `comm`) at the start and whenever commissioning starts or ends, results with
 * `state` / `cls`, `hi_thr`, `hi`. --no-commission: the model's own threshold, results only.
 *   --rpm R.f32     the speed input: one float32 rev/min per window (looped); none: no speed
 *   --flash F.bin   the records' area, read at the start (if the file exists) and written at
 *                   the end: a second run is the node after a reset
 *   --rows F.bin    the same for the rows' area (else it starts erased, as if the rows were lost)
 *   --cmd K JSON    a protocol v1 cmd arriving before window K (commission, commission_end, ping)
 *   --model-at K A  before window K the node switches to artifact A (an OTA trial starting); with the
 *                   same front end the record's thresholds are re-derived for A from the kept rows
 *   --shadow-at K A from window K artifact A scores every window beside the running model (an OTA
 *                   shadow phase; A must have the running front end): a window judged by a class is
 *                   scored on the same class-standardized input against A's threshold for that class
 *                   (learned from the kept rows; ef_commission_shadow), any other by A's own
 *                   standardization and threshold; the results carry `shadow`
 *   --summary-every MS  summary mode (the MCU node's node_config.summary_every_ms): one `summary` per
 *                   period of MS ms (1000-3600000) instead of a `result` per window; the open period at the
 *                   recording's end is not sent (a node that stops loses it, as the simulated node)
 *   --bearing N,BALL,PITCH,DEG  the machine's bearing (rolling elements, ball and pitch diameters in mm,
 *                   contact angle): the fault hint names a bearing defect (refused: exit 2, bad-bearing)
 * A v2 node without --rpm classes its windows by the speed its front end estimates (octave slips
 * resolved by class, ef_baseline_class_for_estimate). An anomalous judged v2 result carries `why`
 * (the top 3 inputs by excess over the class's normal) and `hint` (ef/diagnosis.h).
 * Exit 2 when the artifact or the rate is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ef/cmd.h"
#include "ef/commission.h"
#include "ef/diagnosis.h"
#include "ef/engine.h"
#include "ef/pipeline.h"
#include "ef/protocol.h"
#include "ef/serial.h"
#include "ef/version.h"
#include "ef_host.h"

#define MAX_CMDS 16
#define RECORDS_SIZE (8u * 1024u)   /* the QEMU node's layout (ports/mps2-an386/main_node.c) */
#define ROWS_SIZE (2048u * 1024u)
#define LAYOUT_FEATURES 64u         /* ... laid out for models of up to 64 inputs */
#define WORK_BYTES 8192u            /* ... and its learning work buffer (its FFT buffers) */

static char g_msg[4096];
static uint8_t g_frame[EF_SERIAL_ENCODED_MAX(4096)];
static float g_window[EF_FEATURES_NFFT_MAX];
static float g_scratch[EF_FEATURES_NFFT_MAX];
static int8_t g_arena[65536];
static float g_feats[1024];
static int8_t g_q[1024], g_y[1024];
static float g_work[WORK_BYTES / sizeof(float)];

typedef struct {
    uint32_t at;
    const char *json;
} scheduled_cmd;

/* The protocol node: boot id, sequence numbers, commissioning. */
typedef struct {
    const char *boot;
    int serial, commission, has_speed;
    uint32_t result_seq, status_seq;
    float thr, cls_thr;
    ef_commission comm;
    ef_fake_flash rec_ff, rows_ff;
    ef_flash rec, rows;
    uint8_t *rec_mem, *rows_mem;
    ef_bearing bearing;
    ef_model cand;                          /* the shadow candidate (cand_on: scoring) */
    int cand_on, cand_stale;                /* cand_stale: the record changed, its class thresholds too */
    float cand_cls_thr[EF_BASELINE_MAX_CLASSES]; /* its threshold per class of the record (0: no rows) */
    uint32_t summary_every;                 /* summary mode: the period in ms (0: results) */
    ef_summary_period summary;              /* ... its open period */
} node;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One message out: a line, or one COBS frame on the serial link (stdout on the host port). */
static int emit(const node *nd, int n)
{
    if (n < 0) {
        fprintf(stderr, "error: message refused (%s)\n", ef_status_str(n));
        return -1;
    }
    if (nd->serial) {
        size_t f = ef_serial_encode((const uint8_t *)g_msg, (size_t)n, g_frame, sizeof g_frame), done = 0;
        while (f && done < f) {
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

/* A window's outcome (as the MCU node's): judged by a class, by the model's threshold, or not. */
typedef struct {
    float score, hi, thr, hi_thr;
    int anom, cls;
    const char *state;
    int has_vrms, has_rpm; /* feature definition v2: the window's readings (ef_pipeline_result_readings) */
    double vrms, rpm;
    ef_proto_why why[EF_DIAG_TOP]; /* an anomalous judged v2 window: why and hint */
    size_t n_why;
    const char *hint;
} verdict;

/* sh: the shadow candidate's outcome of the window (NULL: none) and shh its version and threshold. */
static int publish_result(node *nd, const ef_model *m, uint64_t ts, const verdict *v, uint32_t inf_us,
                          const ef_proto_shadow_head *shh, const ef_proto_shadow_rec *sh)
{
    ef_proto_result_head h;
    ef_proto_result_rec r;
    memset(&h, 0, sizeof h);
    memset(&r, 0, sizeof r);
    h.boot = nd->boot;
    h.model = m->model_version;
    h.thr = v->thr;
    r.seq = nd->result_seq++;
    r.ts = ts;
    r.score = v->score;
    r.anom = v->anom;
    r.inf_us = inf_us;
    r.state = v->state;
    r.has_vrms = v->has_vrms;
    r.vrms = v->vrms;
    r.has_rpm = v->has_rpm;
    r.rpm = v->rpm;
    if (v->n_why) {
        r.why = v->why;
        r.n_why = v->n_why;
        r.hint = v->hint;
    }
    if (v->cls >= 0) {
        h.has_cls = 1;
        h.cls = (uint32_t)v->cls;
        h.has_hi_thr = 1;
        h.hi_thr = v->hi_thr;
        r.has_hi = 1;
        r.hi = v->hi;
    }
    return emit(nd, ef_proto_encode_result_shadow(g_msg, sizeof g_msg, &h, &r, 1, sh ? shh : NULL, sh));
}

/* Summary mode: the window joins the open period; a window of another period, model or threshold
 * publishes the open one first (as the MCU node's summary_window). */
static int summary_window(node *nd, const ef_model *m, uint64_t ts, const verdict *v)
{
    if (ef_summary_due(&nd->summary, nd->summary_every, ts, m->model_version, v->thr) &&
        emit(nd, ef_summary_close(&nd->summary, nd->boot, nd->summary_every, 0u, g_msg, sizeof g_msg)) != 0)
        return -1;
    return ef_summary_window(&nd->summary, ts, m->model_version, v->thr, (double)v->score, v->anom,
                             v->has_vrms ? v->vrms : -1.0) == EF_OK ? 0 : -1;
}

/* A birth: what runs, and what commissioning learned (only a commissioning node sends them). */
static int publish_birth(node *nd, const ef_model *m, uint64_t ts)
{
    static const char *const caps[] = {"commission"};
    ef_proto_status s;
    ef_proto_comm pc;
    ef_proto_comm_progress prog[EF_BASELINE_MAX_CLASSES];
    ef_proto_comm_class cls[EF_BASELINE_MAX_CLASSES];
    char hash[17];
    const int judging = nd->comm.has_baseline && !(nd->comm.learning && nd->comm.only_rpm <= 0.0f);
    if (!nd->commission)
        return 0;
    memset(&s, 0, sizeof s);
    s.boot = nd->boot;
    s.seq = nd->status_seq++;
    s.ts = ts;
    s.state = "online";
    s.fw = EF_FIRMWARE_VERSION_STR;
    s.has_model = 1;
    s.model = m->model_version;
    s.slot = "A";
    s.has_thr = 1;
    s.thr = judging ? nd->cls_thr : nd->thr;
    s.has_caps = 1;
    s.caps = caps;
    s.n_caps = 1;
    s.comm = ef_commission_summary(&nd->comm, &pc, prog, cls, hash);
    return emit(nd, ef_proto_encode_status(g_msg, sizeof g_msg, &s));
}

static void class0_threshold(node *nd)
{
    ef_baseline_class k;
    nd->cand_stale = 1; /* called whenever the record may have changed */
    if (nd->comm.has_baseline) {
        ef_baseline_class_at(&nd->comm.baseline, 0, &k);
        nd->cls_thr = k.threshold;
    }
}

static ef_baseline_model scorer(const ef_model *m)
{
    ef_baseline_model sm;
    sm.model = m;
    sm.q = g_q;
    sm.y = g_y;
    sm.arena = g_arena;
    sm.arena_len = sizeof g_arena;
    return sm;
}

/* An area's bytes from `path` when that file exists (a node after a reset). */
static int read_area(const char *path, uint8_t *mem, size_t size)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    size_t got;
    if (!f)
        return 0;
    got = fread(mem, 1, size, f);
    fclose(f);
    if (got != size) {
        fprintf(stderr, "error: %s is not a %zu-byte area\n", path, size);
        return -1;
    }
    return 0;
}

/* The records' area from --flash and the rows' from --rows (a node after a reset), else erased. */
static int baseline_areas(node *nd, const char *flash_path, const char *rows_path)
{
    nd->rec_mem = malloc(RECORDS_SIZE);
    nd->rows_mem = malloc(ROWS_SIZE);
    if (!nd->rec_mem || !nd->rows_mem)
        return -1;
    ef_fake_flash_init(&nd->rec_ff, nd->rec_mem, RECORDS_SIZE, 4096u);
    ef_fake_flash_init(&nd->rows_ff, nd->rows_mem, ROWS_SIZE, 4096u);
    nd->rec = ef_fake_flash_device(&nd->rec_ff);
    nd->rows = ef_fake_flash_device(&nd->rows_ff);
    return read_area(flash_path, nd->rec_mem, RECORDS_SIZE) || read_area(rows_path, nd->rows_mem, ROWS_SIZE) ? -1 : 0;
}

static void log_status(const char *what, ef_status st) { fprintf(stderr, "ef_node: %s (%s)\n", what, ef_status_str(st)); }

/* A v2 front end estimates the running speed: a node without a speed input classes by it. */
static int estimates_speed(const ef_model *m)
{
    ef_features_view f;
    return ef_model_features(m, &f) && f.kind == EF_FEATURE_KIND_V2;
}

/* A cmd before a window: commission, commission_end, ping (a birth; the others concern the MCU node). */
static void handle_cmd(node *nd, const ef_model *m, const char *json, uint64_t ts)
{
    ef_cmd cmd;
    ef_status st;
    ef_baseline_model sm;
    if (ef_cmd_decode(json, strlen(json), &cmd) != EF_OK) {
        fprintf(stderr, "ef_node: cmd refused: %s\n", cmd.error);
        return;
    }
    if (nd->commission && cmd.op == EF_OP_PING) {
        publish_birth(nd, m, ts);
        return;
    }
    if (!nd->commission || (cmd.op != EF_OP_COMMISSION && cmd.op != EF_OP_COMMISSION_END)) {
        fprintf(stderr, "ef_node: cmd %s ignored\n", ef_cmd_op_str(cmd.op));
        return;
    }
    if (cmd.op == EF_OP_COMMISSION) {
        st = ef_commission_start(&nd->comm, cmd.has_windows ? cmd.windows : 0u,
                                 cmd.has_rpm ? (float)cmd.rpm : 0.0f, nd->has_speed || estimates_speed(m));
        if (st != EF_OK) {
            log_status("commission refused, the node goes on as it was", st);
            return;
        }
        publish_birth(nd, m, ts);
        return;
    }
    if (!nd->comm.learning) {
        fprintf(stderr, "ef_node: commission_end ignored: not commissioning\n");
        return;
    }
    sm = scorer(m);
    if ((st = ef_commission_finish(&nd->comm, &sm, ts, EF_BASELINE_MIN_WINDOWS, g_feats, g_work, sizeof g_work)) !=
        EF_OK) {
        log_status("commission_end: commissioning goes on", st);
        return;
    }
    class0_threshold(nd);
    publish_birth(nd, m, ts);
}

/* The window whose features are in g_feats (its model score already computed by the pipeline). */
static void judge(node *nd, const ef_model *m, float rpm, float model_score, verdict *v)
{
    ef_baseline_model sm = scorer(m);
    ef_baseline_verdict bv;
    ef_commission_outcome o;
    memset(v, 0, sizeof *v);
    v->cls = -1;
    v->thr = nd->thr;
    v->score = model_score;
    if (!nd->commission) {
        v->anom = model_score > nd->thr;
        return;
    }
    switch (ef_commission_window(&nd->comm, &sm, g_feats, rpm, g_work, sizeof g_work, &bv, &o)) {
    case EF_WINDOW_JUDGED:
        v->score = bv.score;
        v->hi = bv.hi;
        v->thr = bv.threshold;
        v->hi_thr = bv.hi_threshold;
        v->anom = bv.anom;
        v->cls = bv.cls;
        nd->cls_thr = bv.threshold;
        if (v->anom) { /* why and hint (v2 only), by the speed the node used */
            ef_baseline_class k;
            ef_baseline_class_at(&nd->comm.baseline, (uint16_t)bv.cls, &k);
            v->n_why = ef_diag_explain(m, g_feats, k.center, k.spread, (double)rpm / 60.0, &nd->bearing, v->why,
                                       &v->hint);
        }
        break;
    case EF_WINDOW_COMMISSIONING:
        v->state = EF_PROTO_COMMISSIONING;
        if (o == EF_COMM_NOT_STATIONARY || o == EF_COMM_SPEEDS_APART || o == EF_COMM_FLASH_ERROR)
            fprintf(stderr, "ef_node: commissioning: %s\n", ef_commission_outcome_str(o));
        break;
    default:
        v->state = EF_PROTO_UNCOMMISSIONED;
    }
}

/* The candidate scores windows here only if its features section up to the standardization is the
 * running model's (the features already computed are its own), as the MCU node's shadow_follow. */
static int same_front_end(const ef_model *a, const ef_model *b)
{
    ef_features_view fa, fb;
    return ef_model_features(a, &fa) && ef_model_features(b, &fb) && fa.mean - fa.head == fb.mean - fb.head &&
           memcmp(fa.head, fb.head, (size_t)(fa.mean - fa.head)) == 0 && a->n_inputs == b->n_inputs &&
           b->n_outputs == b->n_inputs;
}

/* The candidate's threshold per class, from the kept rows, once per record (g_feats is scratch:
 * called before the window's features are computed). */
static void shadow_thresholds(node *nd)
{
    ef_baseline_model sm = scorer(&nd->cand);
    ef_status st;
    if (!nd->cand_on || !nd->cand_stale)
        return;
    nd->cand_stale = 0;
    memset(nd->cand_cls_thr, 0, sizeof nd->cand_cls_thr);
    if (!nd->commission || !nd->comm.has_baseline)
        return;
    if ((st = ef_commission_class_thresholds(&nd->comm, &sm, g_feats, g_work, sizeof g_work, nd->cand_cls_thr)) !=
        EF_OK)
        log_status("shadow: the candidate's class thresholds could not be learned", st);
}

/* The candidate's outcome of the window in g_feats (after the running model's, whose q and y it
 * overwrites): by the class that judged it when it has a threshold for it, else by its own
 * standardization and threshold. *thr: the threshold it was judged by. */
static void shadow_window(node *nd, const verdict *v, ef_proto_shadow_rec *sh, double *thr)
{
    const ef_model *c = &nd->cand;
    ef_baseline_model sm = scorer(c);
    ef_features_view f;
    ef_scoring_view sc;
    float score;
    if (v->cls >= 0 && nd->cand_cls_thr[v->cls] > 0.0f) {
        ef_baseline_verdict bv;
        memset(&bv, 0, sizeof bv);
        bv.cls = v->cls;
        bv.hi = v->hi;
        bv.hi_threshold = v->hi_thr;
        if (ef_commission_shadow(&nd->comm, &sm, g_feats, &bv, nd->cand_cls_thr[v->cls], &score, &sh->anom) ==
            EF_OK) {
            sh->score = score > 0.0f ? (double)score : 0.0;
            *thr = (double)nd->cand_cls_thr[v->cls];
            return;
        }
    }
    ef_model_features(c, &f);
    ef_model_scoring(c, &sc);
    ef_features_quantize(&f, g_feats, c->input_scale, c->input_zero_point, g_q);
    if (ef_engine_infer(c, g_q, g_y, g_arena, sizeof g_arena) != EF_OK)
        score = 0.0f;
    else
        score = ef_score_mse(g_q, g_y, c->n_inputs, c->input_scale, c->input_zero_point, c->output_scale,
                             c->output_zero_point);
    sh->score = score > 0.0f ? (double)score : 0.0;
    sh->anom = score > sc.threshold;
    *thr = (double)sc.threshold;
}

static FILE *open_opt(const char *path)
{
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (path && !f)
        fprintf(stderr, "error: cannot write %s\n", path);
    return f;
}

/* Open and plan a model; 0, or the exit code. */
static int load_model(const char *path, double fs, uint8_t **art, ef_model *m, ef_pipeline *pipe)
{
    size_t alen;
    ef_pipeline_buffers bufs;
    ef_status st;
    if (!(*art = ef_host_read_file(path, &alen)))
        return 1;
    if ((st = ef_model_open(m, *art, alen)) != EF_OK) {
        fprintf(stderr, "error: %s: artifact rejected (%s)\n", path, ef_status_str(st));
        free(*art);
        return 2;
    }
    bufs.window = g_window;
    bufs.scratch = g_scratch;
    bufs.fft_len = EF_FEATURES_NFFT_MAX;
    bufs.features = g_feats;
    bufs.q = g_q;
    bufs.y = g_y;
    bufs.io_len = sizeof g_q;
    bufs.arena = g_arena;
    bufs.arena_len = sizeof g_arena;
    if ((st = ef_pipeline_init(pipe, m, fs, &bufs)) != EF_OK) {
        if (st == EF_ERR_RATE)
            fprintf(stderr, "error: the model cannot run at %g Hz (%s)\n", fs, ef_status_str(st));
        else
            fprintf(stderr, "error: %s is not a node model for this build (%s: needs features, "
                            "scoring, n_in == n_out <= 1024)\n", path, ef_status_str(st));
        free(*art);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *feat_path = NULL, *read_path = NULL, *q_path = NULL, *y_path = NULL, *rpm_path = NULL, *flash_path = NULL;
    const char *switch_path = NULL, *shadow_path = NULL, *rows_file = NULL, *score_path = NULL;
    size_t slen, rlen = 0, n_total, start, hop = 0, windows = 0, anomalous = 0, n_cmds = 0, n_rpm = 0, i_cmd;
    uint8_t *art, *raw, *raw_rpm = NULL;
    const float *samples, *rpms = NULL;
    ef_model m;
    ef_pipeline pipe;
    double fs;
    int quiet = 0, i, rc;
    uint32_t switch_at = 0, shadow_at = 0;
    uint8_t *cand_art = NULL;
    uint64_t t0 = 1767225600000ull;
    FILE *ff, *fr, *fq, *fy, *fs_out;
    scheduled_cmd cmds[MAX_CMDS];
    static node nd;
    if (argc < 4) {
        fprintf(stderr, "usage: ef_node ARTIFACT SAMPLES.f32 FS [--hop N] [--features F] [--quantized Q] "
                        "[--readings R] [--outputs Y] [--scores S] [--quiet] [--protocol BOOT [--serial] [--t0 MS] "
                        "[--no-commission] [--rpm R.f32] [--flash F.bin] [--rows F.bin] [--cmd K JSON]... "
                        "[--model-at K ARTIFACT] [--shadow-at K ARTIFACT] [--bearing N,BALL,PITCH,DEG] "
                        "[--summary-every MS]]\n");
        return 1;
    }
    nd.commission = 1;
    for (i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0)
            quiet = 1;
        else if (strcmp(argv[i], "--serial") == 0)
            nd.serial = 1;
        else if (strcmp(argv[i], "--no-commission") == 0)
            nd.commission = 0;
        else if (i + 1 < argc && strcmp(argv[i], "--protocol") == 0)
            nd.boot = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--t0") == 0)
            t0 = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--hop") == 0)
            hop = (size_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--features") == 0)
            feat_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--readings") == 0)
            read_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--quantized") == 0)
            q_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--outputs") == 0)
            y_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--scores") == 0)
            score_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--summary-every") == 0) {
            nd.summary_every = (uint32_t)strtoul(argv[++i], NULL, 10);
            if (nd.summary_every < 1000u || nd.summary_every > 3600000u) {
                fprintf(stderr, "error: --summary-every %s: a period of 1000-3600000 ms\n", argv[i]);
                return 2;
            }
        }
        else if (i + 1 < argc && strcmp(argv[i], "--rpm") == 0)
            rpm_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--flash") == 0)
            flash_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0)
            rows_file = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--bearing") == 0) {
            unsigned nb = 0;
            double ball = 0.0, pitch = 0.0, deg = 0.0;
            ef_status st = EF_ERR_BEARING;
            if (sscanf(argv[++i], "%u,%lf,%lf,%lf", &nb, &ball, &pitch, &deg) == 4)
                st = ef_bearing_set(&nd.bearing, nb, ball, pitch, deg);
            if (st != EF_OK) {
                fprintf(stderr, "error: --bearing %s refused (%s): N,BALL_MM,PITCH_MM,CONTACT_DEG with 3-60 "
                                "elements, 0 < ball < pitch/2, contact 0-60\n", argv[i], ef_status_str(st));
                return 2;
            }
        }
        else if (i + 2 < argc && strcmp(argv[i], "--cmd") == 0 && n_cmds < MAX_CMDS) {
            cmds[n_cmds].at = (uint32_t)strtoul(argv[++i], NULL, 10);
            cmds[n_cmds++].json = argv[++i];
        } else if (i + 2 < argc && strcmp(argv[i], "--model-at") == 0) {
            switch_at = (uint32_t)strtoul(argv[++i], NULL, 10);
            switch_path = argv[++i];
        } else if (i + 2 < argc && strcmp(argv[i], "--shadow-at") == 0) {
            shadow_at = (uint32_t)strtoul(argv[++i], NULL, 10);
            shadow_path = argv[++i];
        } else {
            fprintf(stderr, "error: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    fs = strtod(argv[3], NULL);
    if ((rc = load_model(argv[1], fs, &art, &m, &pipe)) != 0)
        return rc;
    if (!(raw = ef_host_read_file(argv[2], &slen)))
        return 1;
    if (rpm_path) {
        if (!(raw_rpm = ef_host_read_file(rpm_path, &rlen)) || rlen < 4)
            return 1;
        rpms = (const float *)(const void *)raw_rpm;
        n_rpm = rlen / 4u;
        nd.has_speed = 1;
    }
    nd.commission = nd.commission && nd.boot != NULL; /* the plain parity output never commissions */
    nd.thr = pipe.scoring.threshold;
    if (nd.commission) {
        ef_status st;
        if (baseline_areas(&nd, flash_path, rows_file) != 0)
            return 1;
        if ((st = ef_commission_init(&nd.comm, &nd.rec, &nd.rows, LAYOUT_FEATURES, WORK_BYTES, &m)) != EF_OK) {
            log_status("commissioning off: the model does not fit the baseline layout", st);
            nd.commission = 0;
        } else if (!nd.comm.has_baseline)
            log_status("no valid baseline: commissioning", nd.comm.load_status);
        class0_threshold(&nd);
    }
    samples = (const float *)(const void *)raw;
    n_total = slen / sizeof(float);
    const int hop_given = hop != 0; /* else windows back to back, whatever the model's window length */
    ff = open_opt(feat_path);
    fr = open_opt(read_path);
    fq = open_opt(q_path);
    fy = open_opt(y_path);
    fs_out = open_opt(score_path);
    if ((feat_path && !ff) || (read_path && !fr) || (q_path && !fq) || (y_path && !fy) || (score_path && !fs_out))
        return 1;
    if (nd.boot && publish_birth(&nd, &m, t0) != 0)
        return 2;
    for (start = 0; start + pipe.n_window <= n_total; start += hop_given ? hop : pipe.n_window) {
        const uint64_t ts = t0 + (uint64_t)((double)start * 1000.0 / fs + 0.5);
        float rpm = rpms ? rpms[windows % n_rpm] : 0.0f;
        ef_pipeline_result res;
        verdict v;
        uint64_t t_inf;
        if (switch_path && windows == switch_at) { /* an OTA trial starts: the new model runs */
            uint8_t *art2;
            if ((rc = load_model(switch_path, fs, &art2, &m, &pipe)) != 0)
                return rc;
            nd.thr = pipe.scoring.threshold;
            if (nd.commission) {
                ef_status st = ef_commission_model(&nd.comm, &m);
                if (st != EF_OK)
                    return 2;
                if (!nd.comm.has_baseline)
                    log_status("the baseline does not suit the new model: commissioning", nd.comm.load_status);
                else { /* the thresholds belong to the model: re-derived from the kept rows */
                    ef_baseline_model sm = scorer(&m);
                    st = ef_commission_rederive(&nd.comm, &sm, g_feats, g_work, sizeof g_work);
                    if (st != EF_OK)
                        log_status("the record's thresholds are kept for the new model", st);
                }
                class0_threshold(&nd);
            }
            publish_birth(&nd, &m, ts);
            free(art); /* nothing points into the old artifact any more: m and pipe are the new one's */
            art = art2;
        }
        if (shadow_path && windows == shadow_at) { /* an OTA shadow phase starts */
            size_t clen;
            ef_status st;
            if (!(cand_art = ef_host_read_file(shadow_path, &clen)))
                return 1;
            if ((st = ef_model_open(&nd.cand, cand_art, clen)) != EF_OK || !same_front_end(&m, &nd.cand)) {
                fprintf(stderr, "error: %s: not a shadow candidate for this model (%s)\n", shadow_path,
                        st != EF_OK ? ef_status_str(st) : "another front end");
                return 2;
            }
            nd.cand_on = nd.cand_stale = 1;
        }
        for (i_cmd = 0; i_cmd < n_cmds; i_cmd++)
            if (cmds[i_cmd].at == windows)
                handle_cmd(&nd, &m, cmds[i_cmd].json, ts);
        shadow_thresholds(&nd);
        const int was_learning = nd.comm.learning;
        t_inf = now_ns();
        ef_pipeline_run(&pipe, samples + start, &res);
        /* no speed input: a v2 front end's estimate is the speed (0: none, one any-speed class) */
        nd.comm.estimated = !nd.has_speed && ef_pipeline_v2(&pipe);
        if (nd.comm.estimated) {
            const float est = (float)(60.0 * (double)pipe.readings.speed_hz);
            rpm = ef_baseline_rpm_known(est) ? est : 0.0f;
        }
        judge(&nd, &m, nd.has_speed || nd.comm.estimated ? rpm : 0.0f, res.score, &v);
        ef_pipeline_result_readings(&pipe, nd.has_speed ? rpm : 0.0f, &v.has_vrms, &v.vrms, &v.has_rpm, &v.rpm);
        t_inf = now_ns() - t_inf;
        if (ff)
            fwrite(g_feats, sizeof(float), m.n_inputs, ff);
        if (fr) {
            const float rd[4] = {pipe.readings.vrms_mm_s, pipe.readings.speed_hz, pipe.readings.kurtosis,
                                 pipe.readings.crest};
            fwrite(rd, sizeof(float), 4, fr);
        }
        if (fq)
            fwrite(g_q, 1, m.n_inputs, fq);
        if (fy)
            fwrite(g_y, 1, m.n_outputs, fy);
        if (fs_out)
            fwrite(&v.score, sizeof(float), 1, fs_out);
        anomalous += v.anom != 0;
        if (nd.boot) {
            ef_proto_shadow_head shh;
            ef_proto_shadow_rec sh;
            if (nd.cand_on) {
                shh.model = nd.cand.model_version;
                shadow_window(&nd, &v, &sh, &shh.thr);
            }
            if (nd.summary_every ? summary_window(&nd, &m, ts, &v) != 0
                                 : publish_result(&nd, &m, ts, &v, (uint32_t)((t_inf + 500u) / 1000u), &shh,
                                                  nd.cand_on ? &sh : NULL) != 0)
                return 2;
        } else if (!quiet)
            printf("{\"window\":%zu,\"score\":%.9g,\"anom\":%s}\n", windows, (double)v.score,
                   v.anom ? "true" : "false");
        if (nd.commission && !was_learning && nd.comm.learning) /* a speed in no class: learning it */
            publish_birth(&nd, &m, ts);
        windows++;
        if (nd.commission && ef_commission_done(&nd.comm)) {
            ef_baseline_model sm = scorer(&m);
            ef_status st = ef_commission_finish(&nd.comm, &sm, ts, EF_BASELINE_MIN_WINDOWS, g_feats, g_work,
                                                sizeof g_work);
            if (st != EF_OK)
                log_status("commissioning could not finish", st);
            class0_threshold(&nd);
            publish_birth(&nd, &m, ts);
        }
    }
    fprintf(stderr, "ef_node: %zu windows of %u samples (nfft %u) at %g Hz, %zu anomalous, "
                    "threshold %.6g, RAM: arena %u B + 2 x %u floats FFT buffers\n",
            windows, (unsigned)pipe.n_window, (unsigned)pipe.lf.hf.nfft, fs, anomalous,
            (double)pipe.scoring.threshold, m.arena_bytes, (unsigned)pipe.lf.hf.nfft);
    fprintf(nd.serial ? stderr : stdout, "{\"windows\":%zu,\"anomalous\":%zu,\"n_samples\":%u,\"nfft\":%u}\n",
            windows, anomalous, (unsigned)pipe.n_window, (unsigned)pipe.lf.hf.nfft);
    if (nd.commission && flash_path && ef_host_write_file(flash_path, nd.rec_mem, RECORDS_SIZE) != 0)
        return 1;
    if (nd.commission && rows_file && ef_host_write_file(rows_file, nd.rows_mem, ROWS_SIZE) != 0)
        return 1;
    if (ff)
        fclose(ff);
    if (fr)
        fclose(fr);
    if (fq)
        fclose(fq);
    if (fy)
        fclose(fy);
    if (fs_out)
        fclose(fs_out);
    free(nd.rec_mem);
    free(nd.rows_mem);
    free(raw_rpm);
    free(raw);
    free(art);
    free(cand_art);
    return 0;
}
