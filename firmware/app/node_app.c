/* The MCU node loop (see node_app.h). Static RAM is sized for models up to
 * NODE_IO_MAX inputs and windows up to EF_FEATURES_NFFT_MAX samples. */
#include "node_app.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "ef/cmd.h"
#include "ef/commission.h"
#include "ef/crc.h"
#include "ef/engine.h"
#include "ef/pipeline.h"
#include "ef/platform.h"
#include "ef/protocol.h"
#include "ef/sensor_check.h"
#include "ef/version.h"
#include "node_link.h"

#ifndef NODE_IO_MAX
#define NODE_IO_MAX 64u
#endif
#ifndef NODE_ARENA_MAX
#define NODE_ARENA_MAX 256u
#endif
#define NODE_CALIB_K 4.0f     /* as device_sim: thr = exp(mean + k std) of log(score) */

/* What a birth's `comm` needs while it is encoded (about 500 B): off the stack, in the FFT window
 * buffer, which is free whenever a message is sent (between windows). */
typedef struct {
    ef_proto_comm pc;
    ef_proto_comm_progress prog[EF_BASELINE_MAX_CLASSES];
    ef_proto_comm_class cls[EF_BASELINE_MAX_CLASSES];
    char hash[17];
} comm_scratch;

static union {
    struct {
        float window[EF_FEATURES_NFFT_MAX], scratch[EF_FEATURES_NFFT_MAX];
    } fft;
    comm_scratch birth; /* overlays fft.window */
} g_buf;
#define g_fft g_buf.fft
static float g_features[NODE_IO_MAX];
static int8_t g_q[NODE_IO_MAX], g_y[NODE_IO_MAX], g_arena[NODE_ARENA_MAX];
/* A result or status message (a birth with 8 commissioned classes is about 900 B) is encoded
 * in the FFT scratch buffer, which is free whenever a message is sent (between windows). */
#define MSG_BUF ((char *)g_fft.scratch)
#define MSG_CAP sizeof g_fft.scratch

typedef struct {
    ef_model model;
    ef_pipeline pipe;
    char boot[9];
    uint8_t shadow_stale;    /* the record changed: a candidate's class thresholds are learned again (in boot's padding) */
    uint8_t synced;          /* the bridge said hello (or a fixed timeline) */
    uint8_t debug_pending;
    float thr;
    uint32_t result_seq, status_seq, debug_seq, dropped;
    uint32_t next_tick;      /* board ms of the next paced window */
    char debug_id[65];
    uint8_t seen_next;       /* (in debug_id's padding) */
    uint8_t debug_spoilt;    /* a sample could not be written (not finite): the debug frame is dropped */
    uint8_t baseline;        /* commissioning is on: windows are judged by the class of their speed */
    uint32_t calib_left, calib_n;
    float calib_mean, calib_m2;
    uint32_t seen[4];        /* CRC-32 of the last 4 cmd ids (QoS 1 duplicates), not the ids: 16 B, not 260;
                              * 0 until used (an id whose CRC is 0: odds of 1 in 2^32, as a collision) */
    uint32_t trial_windows, trial_anomalies; /* scored by a model on trial (by the candidate, in shadow) */
    uint32_t shadow_version; /* OTA shadow phase: the candidate followed (0: none) ... */
    float shadow_thr;        /* ... its threshold, > 0 when it scores windows here, else 0 */
    float shadow_cls_thr[EF_BASELINE_MAX_CLASSES]; /* ... its threshold per class of the record (0: none) */
    float cls_thr;           /* the threshold of the class that judged the last window (births) */
    uint32_t debug_head_crc; /* the debug frame's head as first encoded (debug_head) */
} node_state;

static node_state g_node;
/* Summary mode's open period (272 B: the p95 needs only the top 52 scores, ef/protocol.h); zeroed at boot,
 * so a reset loses it and seq starts at 0, as the simulated node's reboot. */
static ef_summary_period g_summary;

/* The boot before a warm reset: its id and the newest result seq it assigned, kept in the board's
 * retained RAM (board_retained: not cleared by the startup code, garbage after a power cut, which
 * the check word catches). The births of this boot carry it (status `prev`), so the fleet counts
 * the results the reset took from RAM. Written at every result: a few stores, no flash. A boot
 * that assigns none leaves the older record in place. */
typedef struct {
    uint32_t magic;
    char boot[12];
    uint32_t res_seq;
    uint32_t check;
} retained_boot;
#define RETAINED_MAGIC 0x45465242u /* "EFRB" */

static retained_boot *g_retained; /* NULL: the board keeps nothing across a reset */
static char g_prev_boot[9];       /* "" : no previous boot known */
static uint32_t g_prev_seq;

static uint32_t retained_check(const retained_boot *r)
{
    return ef_crc32(ef_crc32(RETAINED_MAGIC, r->boot, sizeof r->boot), &r->res_seq, sizeof r->res_seq);
}

static void retained_load(void)
{
    size_t len = 0, i;
    void *p = board_retained(&len);
    g_retained = p != NULL && len >= sizeof(retained_boot) ? (retained_boot *)p : NULL;
    g_prev_boot[0] = '\0';
    if (g_retained == NULL || g_retained->magic != RETAINED_MAGIC || g_retained->check != retained_check(g_retained))
        return;
    for (i = 0; i < 8; i++) { /* 8 lowercase hex digits, or the encoder would refuse every birth */
        const char ch = g_retained->boot[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return;
    }
    memcpy(g_prev_boot, g_retained->boot, 8);
    g_prev_boot[8] = '\0';
    g_prev_seq = g_retained->res_seq;
}

static void retained_note(uint32_t seq)
{
    if (g_retained == NULL)
        return;
    g_retained->magic = 0; /* a reset between these stores leaves a record the check refuses */
    memset(g_retained->boot, 0, sizeof g_retained->boot);
    memcpy(g_retained->boot, g_node.boot, 8);
    g_retained->res_seq = seq;
    g_retained->check = retained_check(g_retained);
    g_retained->magic = RETAINED_MAGIC;
}
static ef_commission g_comm; /* the baseline record and commissioning progress (ef/commission.h) */
static const ef_sensor_limits k_sensor_limits = {EF_SENSOR_DEAD_RMS, 0.0f}; /* as device_sim (SensorLimits()) */

/* One window's outcome: judged by a class (cls >= 0), or by the model's own threshold, or not at
 * all (state: commissioning or uncommissioned). */
typedef struct {
    float score, hi, thr, hi_thr;
    int anom, cls;
    const char *state;
    int has_vrms, has_rpm; /* feature definition v2: the window's readings (ef_pipeline_result_readings) */
    double vrms, rpm;
    ef_proto_why why[EF_DIAG_TOP]; /* an anomalous judged v2 window: why and hint (ef/diagnosis.h) */
    size_t n_why;
    const char *hint;
} verdict;

/* ---- messages ---- */
/* A message's ts: `fixed` on a fixed timeline (node_config.has_t0), else the bridge's clock. */
static uint64_t now_ms(const node_config *c, uint64_t fixed)
{
    return c->has_t0 ? fixed : node_link_now_ms();
}

static const node_config *g_cfg;

/* Judged by the baseline: every window but those of an all-class commissioning. */
static int judging(void)
{
    return g_node.baseline && g_comm.has_baseline && !(g_comm.learning && g_comm.only_rpm <= 0.0f);
}

static void send_status(const char *state, uint64_t ts, const char *kind)
{
    const char *caps[4];
    ef_proto_status s;
    comm_scratch *b = &g_buf.birth;
    int n;
    memset(&s, 0, sizeof s);
    s.boot = g_node.boot;
    s.seq = g_node.status_seq++;
    s.ts = ts;
    s.state = state;
    if (strcmp(state, "online") == 0) {
        s.fw = EF_FIRMWARE_VERSION_STR;
        s.has_model = 1;
        s.model = g_node.model.model_version;
        s.slot = g_cfg->ota ? node_ota_slot() : "A";
        s.has_thr = 1;
        s.thr = (double)(judging() ? g_node.cls_thr : g_node.thr);
        s.has_caps = 1;
        s.caps = caps;
        caps[s.n_caps++] = "debug";
        caps[s.n_caps++] = "calib";
        if (g_cfg->ota)
            caps[s.n_caps++] = "ota";
        if (g_node.baseline) {
            caps[s.n_caps++] = "commission";
            s.comm = ef_commission_summary(&g_comm, &b->pc, b->prog, b->cls, b->hash);
        }
        if (g_prev_boot[0] && strcmp(g_prev_boot, g_node.boot) != 0) { /* (a fixed --boot repeats) */
            s.prev_boot = g_prev_boot;
            s.prev_res_seq = g_prev_seq;
        }
    }
    if ((n = ef_proto_encode_status(MSG_BUF, MSG_CAP, &s)) > 0)
        node_link_send(kind, MSG_BUF, (size_t)n);
    else
        ef_platform_log("status refused by the encoder (schema)");
}

static void announce(uint64_t ts)
{
    send_status("lost", ts, "will");
    send_status("online", ts, "status");
}

/* A trial's health counts every window, whether results or summaries report it (device_sim's rule: a
 * shadow phase is judged on the candidate's outcomes). */
static void trial_count(int anom, const ef_proto_shadow_rec *sh)
{
    if (sh) {
        g_node.trial_windows++;
        g_node.trial_anomalies += (uint32_t)sh->anom;
    } else if (g_cfg->ota && node_ota_in_trial()) {
        g_node.trial_windows++;
        g_node.trial_anomalies += (uint32_t)anom;
    }
}

/* Summary mode (node_config.summary_every_ms): the window joins the open period; the first window of
 * another period, model or threshold (or of a full accumulator) sends the open one first, as device_sim's
 * _summarize. A summary the encoder refuses is counted in `dropped` (its seq is a gap), as a result is. */
static __attribute__((noinline)) void summary_window(uint64_t ts, const verdict *v)
{
    const uint32_t every = g_cfg->summary_every_ms, model = g_node.model.model_version;
    int n;
    if (ef_summary_due(&g_summary, every, ts, model, v->thr)) {
        if ((n = ef_summary_close(&g_summary, g_node.boot, every, g_node.dropped, MSG_BUF, MSG_CAP)) > 0)
            node_link_send("summary", MSG_BUF, (size_t)n);
        else {
            g_node.dropped++;
            ef_platform_log("summary refused by the encoder (schema)");
        }
    }
    if (ef_summary_window(&g_summary, ts, model, v->thr, (double)v->score, v->anom, v->has_vrms ? v->vrms : -1.0) !=
        EF_OK)
        ef_platform_log("window left out of the summary (score not finite)");
}

/* One window's result; with sh (a shadow phase), the candidate's outcome of the same window, judged
 * by sh_thr.
 * (The handlers marked noinline keep their locals out of node_run's frame, which is under
 * every path: the deepest, a birth's %g formatting, stays under 1.75 KB of stack.) */
static __attribute__((noinline)) void send_result(uint64_t ts, const verdict *v, uint32_t inf_us,
                                                  const ef_proto_shadow_rec *sh, float sh_thr)
{
    ef_proto_result_head h;
    ef_proto_result_rec r;
    ef_proto_shadow_head shh;
    int n = 0;
    memset(&h, 0, sizeof h);
    memset(&r, 0, sizeof r);
    h.boot = g_node.boot;
    h.model = g_node.model.model_version;
    h.thr = (double)v->thr;
    h.dropped = g_node.dropped;
    r.seq = g_node.result_seq++; /* a result that cannot be sent is a lost one: a gap, counted */
    retained_note(r.seq);
    r.ts = ts;
    r.score = (double)v->score;
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
    if (v->cls >= 0) { /* judged by a class of the baseline */
        h.has_cls = 1;
        h.cls = (uint32_t)v->cls;
        h.has_hi_thr = 1;
        h.hi_thr = (double)v->hi_thr;
        r.has_hi = 1;
        r.hi = (double)v->hi;
    }
    if (sh) {
        shh.model = g_node.shadow_version;
        shh.thr = (double)sh_thr;
        n = ef_proto_encode_result_shadow(MSG_BUF, MSG_CAP, &h, &r, 1, &shh, sh);
    }
    if (n > 0 || (n = ef_proto_encode_result(MSG_BUF, MSG_CAP, &h, &r, 1)) > 0)
        node_link_send("result", MSG_BUF, (size_t)n);
    else {
        g_node.dropped++;
        ef_platform_log("result refused by the encoder (schema)");
    }
}

/* The debug capture, streamed in two halves around the window's processing, so that
 * neither the ~11 KB of text nor a copy of the raw window needs RAM: before the FFT
 * overwrites the window, the node opens the frame and sends the message head and every
 * sample; after scoring it sends the rest. Both halves come from the core encoder
 * (called with the first sample only, which checks every field against the schema), and
 * each sample is formatted by the same canonical rule (%.6g, zero as 0), checked against
 * the encoder's own text for the first one. The head is encoded twice, with placeholder
 * and then real results; if the two heads differ (they cannot, unless a bug) the frame is
 * closed with a wrong CRC, so the bridge drops it rather than publish a wrong capture. */
static const char k_samples_key[] = "\"samples\":[";

static int canon(char *t, size_t cap, float x)
{
    if (!isfinite(x))
        return -1;
    if (x == 0.0f)
        return snprintf(t, cap, "0");
    return snprintf(t, cap, "%.6g", (double)x);
}

/* Encode the debug message with sample 0 only into the FFT scratch buffer; returns
 * the position of the samples array's first element, or NULL. */
static char *debug_text(const node_config *c, uint64_t ts, const float *window, const verdict *v, int *len)
{
    ef_proto_debug d;
    const ef_model *m = &g_node.model;
    char *text = (char *)g_fft.scratch, *at;
    d.boot = g_node.boot;
    d.seq = g_node.debug_seq;
    d.ts = ts;
    d.id = g_node.debug_id[0] ? g_node.debug_id : NULL;
    d.model = m->model_version;
    d.fs = c->fs;
    d.samples = window;
    d.n_samples = 1;
    d.features = g_features;
    d.n_features = m->n_inputs;
    d.q_in = g_q;
    d.n_q_in = m->n_inputs;
    d.q_out = g_y;
    d.n_q_out = m->n_outputs;
    d.score = (double)v->score;
    d.thr = (double)v->thr;
    d.anom = v->anom;
    *len = ef_proto_encode_debug(text, sizeof g_fft.scratch, &d);
    if (*len <= 0 || !(at = strstr(text, k_samples_key)))
        return NULL;
    return at + sizeof k_samples_key - 1;
}


/* The frame head, with a placeholder first sample (the head does not depend on it). 0 if started. */
static int debug_head(const node_config *c, uint64_t ts)
{
    const float zero = 0.0f;
    int len;
    char *first;
    verdict none;
    memset(&none, 0, sizeof none); /* placeholders: valid values, replaced later */
    none.thr = g_node.thr;
    memset(g_features, 0, sizeof g_features); /* placeholders: valid values, replaced later */
    memset(g_q, 0, sizeof g_q);
    memset(g_y, 0, sizeof g_y);
    if (!(first = debug_text(c, ts, &zero, &none, &len)))
        return -1;
    g_node.debug_head_crc = ef_crc32(0, (char *)g_fft.scratch, (size_t)(first - (char *)g_fft.scratch));
    g_node.debug_spoilt = 0;
    node_link_begin("debug");
    node_link_put(" ", 1);
    node_link_put(g_fft.scratch, (size_t)(first - (char *)g_fft.scratch));
    return 0;
}

/* Raw samples of the window, as they arrive (`first`: the window's first piece). */
static __attribute__((noinline)) void debug_samples(const float *x, uint32_t n, int first)
{
    char t[32];
    uint32_t i;
    int k;
    for (i = 0; i < n; i++) {
        if (!(first && i == 0))
            node_link_put(",", 1);
        if ((k = canon(t, sizeof t, x[i])) <= 0) {
            g_node.debug_spoilt = 1;
            k = snprintf(t, sizeof t, "0");
        }
        node_link_put(t, (size_t)k);
    }
}

/* Before processing (v1: the whole window is there, still raw): frame head + all samples. 0 if started. */
static __attribute__((noinline)) int debug_begin(const node_config *c, uint64_t ts, const float *window,
                                                 uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(window[i]))
            return -1;
    if (debug_head(c, ts) != 0)
        return -1;
    debug_samples(window, n, 1);
    return 0;
}

/* After scoring: the rest of the message; sample 0 re-encoded from the caller's copy. */
static __attribute__((noinline)) void debug_end(const node_config *c, uint64_t ts, float sample0,
                                                const verdict *v)
{
    char t[32], *first;
    int len, k = canon(t, sizeof t, sample0);
    uint32_t head_crc;
    if (g_node.debug_spoilt || !(first = debug_text(c, ts, &sample0, v, &len)) || k <= 0 ||
        strncmp(first, t, (size_t)k) != 0 || first[k] != ']') {
        node_link_spoil(); /* the receiver drops this frame */
        node_link_end();
        ef_platform_log("debug capture refused (schema or capacity)");
        return;
    }
    head_crc = ef_crc32(0, (char *)g_fft.scratch, (size_t)(first - (char *)g_fft.scratch));
    node_link_put(first + k, strlen(first + k));
    if (head_crc != g_node.debug_head_crc)
        node_link_spoil();
    node_link_end();
    g_node.debug_seq++;
}

/* Welford over log(score); at the end thr = exp(mean + k*std) and a new birth announces it. */
static void calibrate_add(float score, uint64_t ts)
{
    float x = logf(score > 1e-12f ? score : 1e-12f), d;
    g_node.calib_n++;
    d = x - g_node.calib_mean;
    g_node.calib_mean += d / (float)g_node.calib_n;
    g_node.calib_m2 += d * (x - g_node.calib_mean);
    if (--g_node.calib_left == 0) {
        float sd = g_node.calib_n > 1 ? sqrtf(g_node.calib_m2 / (float)(g_node.calib_n - 1u)) : 0.0f;
        float thr = expf(g_node.calib_mean + NODE_CALIB_K * sd);
        if (thr > 0.0f && isfinite(thr))
            g_node.thr = thr;
        send_status("online", ts, "status");
    }
}

/* Plan the pipeline for g_node.model at the node's rate; the threshold is the model's. */
static ef_status plan(const node_config *c)
{
    ef_pipeline_buffers b;
    ef_status st;
    b.window = g_fft.window;
    b.scratch = g_fft.scratch;
    b.fft_len = EF_FEATURES_NFFT_MAX;
    b.features = g_features;
    b.q = g_q;
    b.y = g_y;
    b.io_len = NODE_IO_MAX;
    b.arena = g_arena;
    b.arena_len = sizeof g_arena;
    if ((st = ef_pipeline_init(&g_node.pipe, &g_node.model, c->fs, &b)) == EF_OK)
        g_node.thr = g_node.pipe.scoring.threshold;
    return st;
}

/* ---- commissioning (docs/baseline.md, ef/commission.h) ---- */

/* The running model and the node's buffers, to score baseline-standardized windows. */
static ef_baseline_model scorer(void)
{
    ef_baseline_model sm;
    sm.model = &g_node.model;
    sm.q = g_q;
    sm.y = g_y;
    sm.arena = g_arena;
    sm.arena_len = sizeof g_arena;
    return sm;
}

static void log_status(const char *what, ef_status st)
{
    char line[96];
    snprintf(line, sizeof line, "%s (%s)", what, ef_status_str(st));
    ef_platform_log(line);
}

/* A new record or model: births say class 0's threshold until a window is judged. */
static void baseline_changed(void)
{
    ef_baseline_class k;
    g_node.shadow_stale = 1; /* a candidate's class thresholds come from the record's rows */
    if (!g_comm.has_baseline)
        return;
    ef_baseline_class_at(&g_comm.baseline, 0, &k);
    g_node.cls_thr = k.threshold;
}

/* The baseline's areas and the running model: its record if valid, else commissioning starts. */
static void baseline_init(const node_config *c)
{
    ef_status st;
    if (!c->baseline)
        return;
    if ((st = ef_commission_init(&g_comm, c->baseline->records, c->baseline->rows, NODE_IO_MAX, sizeof g_fft,
                                 &g_node.model)) != EF_OK) {
        log_status("commissioning off: the baseline areas do not fit", st);
        return;
    }
    g_node.baseline = 1;
    baseline_changed();
    if (!g_comm.has_baseline)
        log_status("no valid baseline: commissioning", g_comm.load_status);
}

/* The model changed (OTA): the baseline stays if it has the same feature front end, else the
 * node commissions again. The thresholds belong to the model: re-derived with it from the kept
 * commissioning rows (as device_sim's _rebaseline); a class whose rows are gone keeps the record's.
 * Between windows: g_features and the FFT buffers are scratch. */
static void baseline_model(void)
{
    const ef_baseline_model sm = scorer();
    ef_status st;
    if (!g_node.baseline)
        return;
    if ((st = ef_commission_model(&g_comm, &g_node.model)) != EF_OK) {
        g_node.baseline = 0; /* a model with more inputs than the areas were laid out for */
        log_status("commissioning off for this model", st);
        return;
    }
    if (g_comm.has_baseline &&
        (st = ef_commission_rederive(&g_comm, &sm, g_features, &g_fft, sizeof g_fft)) != EF_OK)
        log_status("the record's thresholds are kept for this model", st);
    baseline_changed();
    if (!g_comm.has_baseline)
        log_status("the baseline does not suit this model: commissioning", g_comm.load_status);
}

/* Learn the record from the stored rows (classes with at least min_windows); a birth announces it.
 * The FFT buffers are the sort buffer, g_features the row buffer: all free between windows. */
static void baseline_finish(uint64_t now, uint32_t min_windows)
{
    const ef_baseline_model sm = scorer();
    ef_status st;
    uint8_t k;
    for (k = 0; k < g_comm.n_classes; k++) /* Python Commissioner.unsettled: worth a look */
        if (g_comm.cls[k].restarts >= EF_BASELINE_MAX_RESTARTS)
            ef_platform_log("commissioning: a class never settled; it is learned as it is");
    st = ef_commission_finish(&g_comm, &sm, now, min_windows, g_features, &g_fft, sizeof g_fft);
    if (st != EF_OK) {
        log_status(st == EF_ERR_TOO_FEW ? "commission_end: too_few_windows, commissioning goes on"
                                        : "commissioning could not finish, it goes on", st);
        return;
    }
    baseline_changed();
    send_status("online", now, "status");
}

static __attribute__((noinline)) void commission_cmd(const node_config *c, const ef_cmd *cmd)
{
    static const char *const why[] = {"windows or rpm out of range", "windows above this node's capacity",
                                      "rpm given, but this node has no speed (input or estimate)"};
    ef_status st;
    char line[112];
    int k;
    if (!g_node.baseline) {
        ef_platform_log("commission refused: this node does not commission");
        return;
    }
    st = ef_commission_start(&g_comm, cmd->has_windows ? cmd->windows : 0u, cmd->has_rpm ? (float)cmd->rpm : 0.0f,
                             c->has_speed || ef_pipeline_v2(&g_node.pipe));
    if (st != EF_OK) { /* the node goes on as it was: its baseline (or commissioning) is kept */
        k = st == EF_ERR_CAPACITY ? 1 : st == EF_ERR_INCOMPATIBLE ? 2 : 0;
        snprintf(line, sizeof line, "commission refused (%s): %s (max %lu)", ef_status_str(st), why[k],
                 (unsigned long)g_comm.max_windows);
        ef_platform_log(line);
        return;
    }
    send_status("online", now_ms(c, c->t0), "status");
}

/* The OTA layer changed the running model (trial start or revert): run it, announce it. */
static void switch_model(const node_config *c)
{
    g_node.model = *node_ota_model();
    g_node.trial_windows = g_node.trial_anomalies = 0;
    g_node.calib_left = 0;
    if (plan(c) != EF_OK) { /* it cannot run here (rate, buffers): back to the previous one */
        if (node_ota_revert(now_ms(c, c->t0), ef_platform_ticks_ms(), "model cannot run on this node", NULL))
            g_node.model = *node_ota_model();
        if (plan(c) != EF_OK)
            board_fatal("no runnable model", 2);
    }
    baseline_model();
    send_status("online", now_ms(c, c->t0), "status");
}

/* A repeat of one of the last 4 cmd ids. By their CRC-32: a new id is taken for a repeat with odds of
 * 4 in 2^32; whoever can forge a colliding id can send the node any cmd anyway. */
static int seen_before(const char *id)
{
    const uint32_t h = ef_crc32(0, id, strlen(id));
    unsigned i;
    for (i = 0; i < 4u; i++)
        if (g_node.seen[i] == h)
            return 1;
    g_node.seen[g_node.seen_next] = h;
    g_node.seen_next = (uint8_t)((g_node.seen_next + 1u) % 4u);
    return 0;
}

/* Why a cmd was refused, in the log (its own frame: off the stack of every accepted cmd). */
static __attribute__((noinline)) void log_refused(const char *why)
{
    char line[96];
    snprintf(line, sizeof line, "cmd refused: %s", why ? why : "not a protocol v1 cmd");
    ef_platform_log(line);
}

static __attribute__((noinline)) void handle_cmd(const node_config *c, const char *json, size_t len)
{
    ef_cmd cmd;
    if (ef_cmd_decode(json, len, &cmd) != EF_OK) {
        log_refused(cmd.error);
        return;
    }
    if (seen_before(cmd.id)) /* QoS 1 may deliver twice */
        return;
    switch (cmd.op) {
    case EF_OP_CALIBRATE:
        g_node.calib_left = cmd.has_n ? cmd.n : 100u;
        g_node.calib_n = 0;
        g_node.calib_mean = g_node.calib_m2 = 0.0f;
        break;
    case EF_OP_DEBUG:
        g_node.debug_pending = 1;
        strcpy(g_node.debug_id, cmd.id);
        break;
    case EF_OP_SET_THRESHOLD:
        if (cmd.has_thr && (float)cmd.thr > 0.0f && isfinite((float)cmd.thr)) {
            g_node.thr = (float)cmd.thr;
            send_status("online", now_ms(c, c->t0), "status");
        }
        break;
    case EF_OP_PING:
        send_status("online", now_ms(c, c->t0), "status");
        break;
    case EF_OP_REBOOT:
        board_reset();
    case EF_OP_REVERT: /* server-ordered rollback (aborted campaign) */
        if (c->ota && node_ota_revert(now_ms(c, c->t0), ef_platform_ticks_ms(), "revert command",
                                      cmd.campaign[0] ? cmd.campaign : NULL))
            switch_model(c);
        break;
    case EF_OP_COMMISSION:
        commission_cmd(c, &cmd);
        break;
    case EF_OP_COMMISSION_END:
        if (g_node.baseline && g_comm.learning)
            baseline_finish(now_ms(c, c->t0), EF_BASELINE_MIN_WINDOWS);
        else
            ef_platform_log("commission_end ignored: not commissioning");
        break;
    }
}

static uint64_t parse_u64(const char *s, size_t n)
{
    uint64_t v = 0;
    size_t i;
    for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10u + (uint64_t)(s[i] - '0');
    return v;
}

static void handle_frame(const node_config *c, const uint8_t *p, size_t len)
{
    const char *s = (const char *)p;
    if (len > 6 && memcmp(s, "hello ", 6) == 0) {
        const uint64_t bridge_ms = parse_u64(s + 6, len - 6);
        const uint32_t tick = ef_platform_ticks_ms();
        uint32_t e;
        node_link_sync(bridge_ms, tick);
        if (!g_node.synced && !c->boot) { /* the boot id: board entropy mixed with the bridge clock */
            e = ef_crc32(board_entropy(), &bridge_ms, sizeof bridge_ms);
            snprintf(g_node.boot, sizeof g_node.boot, "%08lx", (unsigned long)e);
        }
        if (!g_node.synced)
            g_node.next_tick = tick; /* windows are paced from the first hello */
        g_node.synced = 1;
        announce(now_ms(c, 0));
        if (c->ota)
            node_ota_connected(now_ms(c, 0));
    } else if (len > 4 && memcmp(s, "cmd ", 4) == 0 && g_node.synced)
        handle_cmd(c, s + 4, len - 4);
    else if (c->ota && g_node.synced && len > 5) { /* offer / mdat / data (node_ota.h) */
        char kind[8];
        const char *sp = memchr(s, ' ', len < sizeof kind ? len : sizeof kind);
        if (sp == NULL)
            return;
        memcpy(kind, s, (size_t)(sp - s));
        kind[sp - s] = '\0';
        if (node_ota_link(kind, sp + 1, len - (size_t)(sp + 1 - s), now_ms(c, c->t0), ef_platform_ticks_ms()))
            switch_model(c);
    }
}

static void poll_link(const node_config *c)
{
    const uint8_t *payload;
    int n;
    while ((n = node_link_poll(&payload)) >= 0)
        if (n > 0)
            handle_frame(c, payload, (size_t)n);
}

/* The window's score under the model's own normalization (the artifact's mean and inv_std). */
static float model_score(void)
{
    ef_pipeline *p = &g_node.pipe;
    const ef_model *m = &g_node.model;
    ef_features_quantize(&p->features, g_features, m->input_scale, m->input_zero_point, g_q);
    if (ef_engine_infer(m, g_q, g_y, g_arena, sizeof g_arena) != EF_OK)
        board_fatal("inference failed", 1); /* cannot happen: the buffers were checked at init */
    return ef_score_mse(g_q, g_y, m->n_inputs, m->input_scale, m->input_zero_point, m->output_scale,
                        m->output_zero_point);
}

/* A commissioning node's part: the window's row to commissioning, or its class's verdict.
 * 1 when a class judged it (v filled, g_q and g_y hold its baseline input and output). */
static __attribute__((noinline)) int judge(float rpm, verdict *v)
{
    const ef_baseline_model sm = scorer();
    ef_baseline_verdict bv;
    ef_commission_outcome o;
    switch (ef_commission_window(&g_comm, &sm, g_features, rpm, &g_fft, sizeof g_fft, &bv, &o)) {
    case EF_WINDOW_JUDGED:
        v->score = bv.score;
        v->hi = bv.hi;
        v->thr = bv.threshold;
        v->hi_thr = bv.hi_threshold;
        v->anom = bv.anom;
        v->cls = bv.cls;
        g_node.cls_thr = bv.threshold;
        if (bv.anom) { /* why and hint (v2 only), by the speed the node used */
            ef_baseline_class k;
            ef_baseline_class_at(&g_comm.baseline, (uint16_t)bv.cls, &k);
            v->n_why = ef_diag_explain(&g_node.model, g_features, k.center, k.spread, (double)rpm / 60.0,
                                       g_cfg->bearing, v->why, &v->hint);
        }
        return 1;
    case EF_WINDOW_COMMISSIONING:
        v->state = EF_PROTO_COMMISSIONING;
        if (o == EF_COMM_FLASH_ERROR)
            ef_platform_log("commissioning: a row could not be stored");
        else if (o == EF_COMM_NOT_STATIONARY)
            ef_platform_log("commissioning: a class has not settled, its older half is dropped");
        else if (o == EF_COMM_SPEEDS_APART)
            ef_platform_log("commissioning: a class has not settled at other speeds, its newer half is dropped");
        return 0;
    default:
        v->state = EF_PROTO_UNCOMMISSIONED;
        return 0;
    }
}

/* One complete window in the pipeline: features (the FFT buffers are free afterwards:
 * commissioning's settle test sorts in them), then a class's verdict, or the model's own score
 * (with its verdict only on a node that does not commission: a commissioning node gives none to
 * windows it cannot judge). A window whose raw samples failed the sensor check (`sensor`, taken
 * before the FFT) gets that state, score 0 and no verdict: it neither commissions nor judges
 * (docs/baseline.md, "Sensor faults"; device_sim does the same). */
static void run_window(float rpm, ef_sensor_outcome sensor, verdict *v)
{
    ef_pipeline *p = &g_node.pipe;
    ef_pipeline_features(p);
    memset(v, 0, sizeof *v);
    v->cls = -1;
    v->thr = g_node.thr;
    ef_pipeline_result_readings(p, rpm, &v->has_vrms, &v->vrms, &v->has_rpm, &v->rpm);
    if (sensor != EF_SENSOR_OK) {
        v->state = ef_sensor_state(sensor);
        return;
    }
    /* no speed input: a v2 front end's estimate is the speed (0: none, one any-speed class) */
    g_comm.estimated = !g_cfg->has_speed && ef_pipeline_v2(p);
    if (g_comm.estimated) {
        const float est = (float)(60.0 * (double)p->readings.speed_hz);
        rpm = ef_baseline_rpm_known(est) ? est : 0.0f;
    }
    if (g_node.baseline && judge(rpm, v))
        return;
    v->score = model_score();
    v->anom = !g_node.baseline && v->score > g_node.thr;
}

/* The candidate as a baseline scorer: it runs in place from its slot in the running model's buffers. */
static ef_baseline_model shadow_scorer(const ef_model *m)
{
    ef_baseline_model sm = scorer();
    sm.model = m;
    return sm;
}

/* The candidate's threshold per class of the record, learned from the kept rows as it would be once
 * it runs (device_sim _shadow_thresholds); 0 for a class without indexed rows. Before a window:
 * g_features and the FFT buffers are scratch (as baseline_finish). */
static void shadow_class_thresholds(const ef_model *m)
{
    const ef_baseline_model sm = shadow_scorer(m);
    ef_status st;
    g_node.shadow_stale = 0;
    memset(g_node.shadow_cls_thr, 0, sizeof g_node.shadow_cls_thr);
    if (!g_node.baseline || !g_comm.has_baseline)
        return;
    st = ef_commission_class_thresholds(&g_comm, &sm, g_features, &g_fft, sizeof g_fft, g_node.shadow_cls_thr);
    if (st != EF_OK)
        log_status("shadow: the candidate's class thresholds could not be learned", st);
}

/* OTA shadow phase: follow the candidate node_ota_shadow() names (its start and end reset the
 * health counters, as in device_sim). It scores a window only if its feature front end (window,
 * bands, floor) is the running model's, so that the features already computed are its own: the
 * raw window is gone after the FFT and there is no RAM for a second copy. It runs in place from
 * its slot and borrows the running model's buffers (q, y, arena) once that window is done.
 * Called before a window (its class thresholds use the window's buffers as scratch). */
static __attribute__((noinline)) void shadow_follow(void)
{
    const ef_model *m = g_cfg->ota ? node_ota_shadow() : NULL;
    const uint32_t v = m ? m->model_version : 0u;
    ef_features_view a, b;
    ef_scoring_view sc;
    if (v == g_node.shadow_version) {
        if (g_node.shadow_thr > 0.0f && g_node.shadow_stale)
            shadow_class_thresholds(m);
        return;
    }
    g_node.shadow_version = v;
    g_node.shadow_thr = 0.0f;
    g_node.trial_windows = g_node.trial_anomalies = 0;
    if (m == NULL)
        return;
    if (ef_model_features(&g_node.model, &a) && ef_model_features(m, &b) && ef_model_scoring(m, &sc) &&
        sc.rule == 1u && sc.threshold > 0.0f && isfinite(sc.threshold) && a.mean - a.head == b.mean - b.head &&
        memcmp(a.head, b.head, (size_t)(a.mean - a.head)) == 0 && m->n_inputs == g_node.model.n_inputs &&
        m->n_outputs == m->n_inputs && m->arena_bytes <= NODE_ARENA_MAX) {
        g_node.shadow_thr = sc.threshold;
        shadow_class_thresholds(m);
    } else
        ef_platform_log("shadow candidate not scored here: its feature front end differs");
}

/* The candidate's outcome of the window whose features are in g_features (after the running
 * model's own run and any debug capture, which read g_q and g_y): a window a class judged is
 * scored on the same class-standardized input against the candidate's threshold for that class
 * (or the class's HI); any other by the candidate's own standardization and threshold. Returns the
 * threshold it was judged by (the message's shadow thr). */
static __attribute__((noinline)) float shadow_window(const verdict *v, ef_proto_shadow_rec *sh)
{
    const ef_model *m = node_ota_shadow();
    ef_features_view f;
    float score;
    if (v->cls >= 0 && g_node.shadow_cls_thr[v->cls] > 0.0f) {
        const ef_baseline_model sm = shadow_scorer(m);
        ef_baseline_verdict bv;
        memset(&bv, 0, sizeof bv);
        bv.cls = v->cls;
        bv.hi = v->hi;
        bv.hi_threshold = v->hi_thr;
        if (ef_commission_shadow(&g_comm, &sm, g_features, &bv, g_node.shadow_cls_thr[v->cls], &score, &sh->anom) !=
            EF_OK)
            board_fatal("shadow inference failed", 1); /* cannot happen: checked in shadow_follow */
        sh->score = score > 0.0f ? (double)score : 0.0;
        return g_node.shadow_cls_thr[v->cls];
    }
    ef_model_features(m, &f);
    ef_features_quantize(&f, g_features, m->input_scale, m->input_zero_point, g_q);
    if (ef_engine_infer(m, g_q, g_y, g_arena, sizeof g_arena) != EF_OK)
        board_fatal("shadow inference failed", 1); /* cannot happen: checked in shadow_follow */
    score = ef_score_mse(g_q, g_y, m->n_inputs, m->input_scale, m->input_zero_point, m->output_scale,
                         m->output_zero_point);
    sh->score = (double)score;
    sh->anom = sh->score > (double)g_node.shadow_thr;
    return g_node.shadow_thr;
}

/* Healthy unless more than half of at least 10 trial windows were anomalous (device_sim's rule). */
static int trial_healthy(void)
{
    return g_node.trial_windows < 10u || g_node.trial_anomalies <= g_node.trial_windows / 2u;
}

int node_run(const node_config *c)
{
    ef_status st;
    uint32_t windows = 0;
    uint64_t start = 0;
    memset(&g_node, 0, sizeof g_node);
    memset(&g_summary, 0, sizeof g_summary);
    g_cfg = c;
    if (c->summary_every_ms && (c->summary_every_ms < 1000u || c->summary_every_ms > 3600000u)) {
        ef_platform_log("summary period out of range (1000-3600000 ms)");
        return 2;
    }
    retained_load();
    if (c->ota) {
        node_ota_config oc = *c->ota; /* the scratch buffers are the FFT's, free between windows */
        oc.boot = g_node.boot;
        oc.work = (uint8_t *)g_fft.scratch;
        oc.work_len = sizeof g_fft.scratch;
        oc.text = (char *)g_fft.window;
        oc.text_cap = sizeof g_fft.window;
        st = node_ota_boot(&oc, c->artifact, (uint32_t)c->artifact_len);
        if (st == EF_OK)
            g_node.model = *node_ota_model();
    } else
        st = ef_model_open(&g_node.model, c->artifact, c->artifact_len);
    if (st != EF_OK) {
        ef_platform_log("model rejected");
        return 2;
    }
    if ((st = plan(c)) != EF_OK) {
        ef_platform_log(st == EF_ERR_RATE ? "model cannot run at this rate" : "model too large for this node");
        return 2;
    }
    baseline_init(c);
    node_link_init();
    if (c->boot) {
        strncpy(g_node.boot, c->boot, 8);
        g_node.boot[8] = '\0';
    }
    if (c->has_t0) {
        node_link_send("boot", NULL, 0);
        g_node.synced = 1;
        announce(c->t0);
    }
    g_node.next_tick = ef_platform_ticks_ms();
    for (;;) {
        const uint32_t n = g_node.pipe.n_window;
        float sample0 = 0.0f, rpm = 0.0f;
        ef_sensor_outcome sensor = EF_SENSOR_OK; /* v2 streams its window: not checked (no copy of it) */
        verdict v;
        ef_proto_shadow_rec sh;
        int debugging, was_learning;
        float sh_thr = 0.0f;
        uint32_t t_us;
        uint64_t ts;
        poll_link(c);
        if (c->ota && g_node.synced &&
            node_ota_tick(now_ms(c, c->t0), ef_platform_ticks_ms(), trial_healthy()))
            switch_model(c);
        if (!g_node.synced && (int32_t)(ef_platform_ticks_ms() - g_node.next_tick) >= 0) {
            node_link_send("boot", NULL, 0); /* every 500 ms until the bridge's hello: a bridge */
            g_node.next_tick += 500u;        /* talks only to a node it has heard, so never too early */
        }
        if (!g_node.synced || (c->paced && (int32_t)(ef_platform_ticks_ms() - g_node.next_tick) < 0)) {
            board_idle();
            continue;
        }
        shadow_follow(); /* before the window: learning its class thresholds uses the window's buffers */
        g_node.next_tick += (uint32_t)(1000.0 * (double)n / c->fs + 0.5);
        ts = c->has_t0 ? c->t0 + (uint64_t)((double)start * 1000.0 / c->fs + 0.5) : now_ms(c, 0);
        if (!ef_pipeline_v2(&g_node.pipe)) { /* v1: the whole window straight into the FFT input */
            uint32_t room;
            float *dst = ef_pipeline_next(&g_node.pipe, &room);
            if (c->source(c->source_ctx, dst, room, &rpm) != 0)
                return 0;
            ef_pipeline_commit(&g_node.pipe, room);
            sample0 = dst[0];
            sensor = ef_sensor_check(dst, room, &k_sensor_limits, NULL);
            debugging = g_node.debug_pending && debug_begin(c, ts, dst, n) == 0;
        } else { /* v2: streamed in pieces into the segment buffer; a debug capture follows them */
            int first = 1, done = 0;
            debugging = g_node.debug_pending && debug_head(c, ts) == 0;
            while (!done) {
                uint32_t room;
                float *dst = ef_pipeline_next(&g_node.pipe, &room);
                if (c->source(c->source_ctx, dst, room, first ? &rpm : NULL) != 0) {
                    if (debugging) { /* the frame is dropped by the receiver */
                        node_link_spoil();
                        node_link_end();
                    }
                    return 0;
                }
                if (first)
                    sample0 = dst[0];
                if (debugging)
                    debug_samples(dst, room, first);
                first = 0;
                done = ef_pipeline_commit(&g_node.pipe, room);
            }
        }
        if (!c->has_speed)
            rpm = 0.0f;
        g_node.debug_pending = 0;
        was_learning = g_comm.learning;
        t_us = board_us();
        run_window(rpm, sensor, &v);
        t_us = board_us() - t_us;
        if (debugging)
            debug_end(c, ts, sample0, &v);
        if (g_node.shadow_thr > 0.0f)
            sh_thr = shadow_window(&v, &sh);
        trial_count(v.anom, g_node.shadow_thr > 0.0f ? &sh : NULL);
        if (c->summary_every_ms)
            summary_window(ts, &v);
        else
            send_result(ts, &v, t_us, g_node.shadow_thr > 0.0f ? &sh : NULL, sh_thr);
        if (g_node.baseline && !was_learning && g_comm.learning) /* a speed in no class: learning it */
            send_status("online", now_ms(c, ts), "status");  /* (after the debug frame and the result) */
        if (g_node.calib_left && v.cls < 0 && sensor == EF_SENSOR_OK) /* the model's own threshold: its own scores */
            calibrate_add(v.score, ts);
        if (g_node.baseline && ef_commission_done(&g_comm))
            baseline_finish(now_ms(c, ts), EF_BASELINE_MIN_WINDOWS);
        start += n;
        if (c->max_windows && ++windows >= c->max_windows)
            return 0;
    }
}
