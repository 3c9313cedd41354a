/* Wire protocol v1 messages a node publishes (edgefleet/protocol/KIND.schema.json),
 * encoded in canonical form (edgefleet/protocol/canonical.py): keys in schema
 * order, optional keys omitted when absent, integers in decimal, numbers as
 * printf("%.6g") with zero written 0, no whitespace.
 *
 * Each encoder checks its values against the schema first (patterns, enums,
 * ranges, finite numbers) and writes nothing useful on failure. Returns the
 * message length (excluding the terminating NUL it also writes), or
 * EF_ERR_SCHEMA / EF_ERR_CAPACITY. Strings are NUL-terminated C strings;
 * optional string fields are NULL when absent. */
#ifndef EF_PROTOCOL_H
#define EF_PROTOCOL_H
#include <stddef.h>
#include <stdint.h>

#include "ef/status.h"

#define EF_PROTOCOL_VERSION 1

typedef struct {
    const char *boot; /* 8 lowercase hex digits */
    uint32_t model;
    double thr;       /* a commissioned node: the judging class's score threshold */
    uint32_t dropped;
    int has_cls; uint32_t cls;       /* optional: the class (0..7) that judged every result */
    int has_hi_thr; double hi_thr;   /* optional: its health-indicator threshold, > 0 */
} ef_proto_result_head;

/* The state of a result a commissioning node could not judge (anom is then false). */
#define EF_PROTO_COMMISSIONING "commissioning"
#define EF_PROTO_UNCOMMISSIONED "uncommissioned"
/* ... or whose raw samples show a sensor fault (ef/sensor_check.h; anom is then false too). */
#define EF_PROTO_SENSOR_DEAD "sensor_dead"
#define EF_PROTO_SENSOR_SATURATED "sensor_saturated"
#define EF_PROTO_SENSOR_DROPOUT "sensor_dropout"

/* One `why` item of an anomalous result (feature definition v2): a band or a single-number feature
 * and its share of the window's excess over normal. */
typedef struct {
    const char *name; /* "vrms", "kurtosis" or "crest"; NULL: the band [lo, hi) */
    double lo, hi;    /* a band, Hz: 0 <= lo < hi <= 50000 */
    double share;     /* 0..1; non-increasing along the list, the sum at most 1.01 */
} ef_proto_why;

typedef struct {
    uint32_t seq;
    uint64_t ts; /* ms since the Unix epoch */
    double score;
    int anom;
    uint32_t inf_us;
    int has_hi; double hi; /* optional: health indicator, >= 0 */
    const char *state;     /* NULL (judged), EF_PROTO_COMMISSIONING, EF_PROTO_UNCOMMISSIONED or EF_PROTO_SENSOR_* */
    int has_vrms; double vrms; /* optional (feature definition v2): velocity RMS, mm/s, 0..1000, %.4g */
    int has_rpm; double rpm;   /* optional: the running speed the node used, rev/min, 30..100000, %.5g */
    const ef_proto_why *why; size_t n_why; /* optional, anomalous only: 1..3 items, largest share first */
    const char *hint;          /* optional, anomalous only: a fault-type hint (the schema's enum), or NULL */
} ef_proto_result_rec;

/* Shadow mode (OTA): a candidate model scores every window beside the active one. */
typedef struct {
    uint32_t model; /* candidate version, not the active model */
    double thr;     /* candidate threshold, > 0 */
} ef_proto_shadow_head;

typedef struct {
    double score; /* candidate score of the same window, >= 0 */
    int anom;     /* score > candidate threshold */
} ef_proto_shadow_rec;

/* status `comm`: commissioning progress, or what the node learned (docs/baseline.md). */
typedef struct {
    double rpm;  /* centre speed of a class being learned; 0: no speed input */
    uint32_t n;  /* windows learned so far */
} ef_proto_comm_progress;

typedef struct {
    double rpm_lo, rpm_hi; /* speed band; 0, 0: any speed */
    uint32_t n;            /* commissioning windows */
    double thr, hi_thr;    /* > 0 */
} ef_proto_comm_class;

typedef struct {
    const char *state;                 /* commissioning | commissioned */
    int has_target; uint32_t target;   /* optional, 1..65535 */
    const ef_proto_comm_progress *progress; size_t n_progress; int has_progress; /* optional, <= 8 */
    const char *hash;                  /* optional: 16 lowercase hex digits */
    int has_learned; uint64_t learned; /* optional: ms since the epoch */
    const ef_proto_comm_class *classes; size_t n_classes; /* optional (n_classes 0: absent), 1..8 */
    /* optional: the newest drift move of a class centre (docs/baseline.md, "Drift after commissioning") */
    int has_drift; uint32_t drift_cls; double drift_shift; uint64_t drift_ts; /* cls 0..7, shift 0..1000 spreads */
} ef_proto_comm;

typedef struct {
    const char *boot;
    uint32_t seq;
    uint64_t ts;
    const char *state;             /* online | offline | lost */
    const char *fw;                /* optional: "X.Y.Z" */
    int has_model; uint32_t model; /* optional */
    const char *slot;              /* optional: "A" | "B" */
    int has_thr; double thr;       /* optional */
    int has_caps; const char *const *caps; size_t n_caps;
    const ef_proto_comm *comm;     /* optional */
    int has_res_seq; uint32_t res_seq; /* optional: the newest result seq this boot assigned (a goodbye) */
    const char *prev_boot;         /* optional: the boot before a warm reset (8 hex), with ... */
    uint32_t prev_res_seq;         /* ... the newest result seq it assigned: its lost tail is counted */
    const char *site, *line;       /* optional */
    int has_tags; const char *const *tags; size_t n_tags;
} ef_proto_status;

typedef struct {
    const char *boot;
    uint32_t seq;
    uint64_t ts;
    const char *campaign;
    uint32_t model;
    const char *state;           /* accepted ... failed (ef_ota_report_str), or shadow */
    int has_off; uint32_t off;   /* optional */
    const char *reason;          /* optional, printable ASCII <= 200 */
} ef_proto_ota_state;

typedef struct {
    const char *boot;
    uint32_t seq;
    const char *campaign;
    uint32_t model, off, len;
} ef_proto_ota_req;

typedef struct {
    const char *boot;
    uint32_t seq;
    uint64_t ts;
    const char *id; /* optional: the command id that asked for the capture */
    uint32_t model;
    double fs;
    const float *samples; size_t n_samples;
    const float *features; size_t n_features;
    const int8_t *q_in; size_t n_q_in;
    const int8_t *q_out; size_t n_q_out;
    double score, thr;
    int anom;
} ef_proto_debug;

/* A summary of a period's windows (summary mode: docs/protocol.md, "summary"). seq counts summaries per
 * boot from 0. The encoder checks what the service checks: n >= 1, anom <= n, n <= period / 10 ms,
 * min <= mean <= max, min <= p95 <= max, all four equal when n is 1, scores in [0, 1e6], vrms <= vrms_max. */
typedef struct {
    const char *boot;
    uint32_t seq;
    uint64_t ts;     /* end of the period, ms since the Unix epoch */
    uint32_t period; /* ms, 1000..3600000 */
    uint32_t model;
    double thr;      /* > 0 */
    uint32_t dropped;
    uint32_t n, anom;
    double min, mean, p95, max; /* p95: the ceil(0.95 n)-th smallest score */
    int has_vrms; double vrms, vrms_max; /* optional together: mean and highest velocity RMS, mm/s, %.4g */
} ef_proto_summary;

/* Summary mode on the node: fold each window's score in, then encode and reset at the period's end.
 * A period holds up to EF_SUMMARY_MAX_N windows. The nearest-rank p95 of n scores is the
 * (floor(n / 20) + 1)-th largest, so the accumulator keeps only the EF_SUMMARY_TOP largest scores (and the
 * smallest): the same p95 as sorting them all, in 208 B of scores instead of 4 KB. */
#define EF_SUMMARY_MAX_N 1024u
#define EF_SUMMARY_TOP (EF_SUMMARY_MAX_N / 20u + 1u)
typedef struct {
    uint32_t n;
    uint16_t anom, n_vrms; /* <= EF_SUMMARY_MAX_N */
    float min, vmax;       /* vmax: a node's velocity RMS is float32 anyway */
    double sum, vsum;
    float top[EF_SUMMARY_TOP]; /* the largest scores so far, ascending (min(n, EF_SUMMARY_TOP) of them) */
} ef_summary_acc;

void ef_summary_reset(ef_summary_acc *a);
/* Add one window; returns 0, or EF_ERR_CAPACITY when the accumulator is full (encode it first). vrms < 0: none. */
int ef_summary_add(ef_summary_acc *a, double score, int anom, double vrms);
/* Fill n, anom, min, mean, p95, max (and vrms when every window had one) of `s` from the accumulator. */
int ef_summary_fill(const ef_summary_acc *a, ef_proto_summary *s);

/* A node's summary mode (device_sim VirtualNode._summarize): a period holds the windows of one period
 * index (ts / every ms), one model and one threshold; the first window that differs in any of them
 * closes it. On the MCU a full accumulator (EF_SUMMARY_MAX_N windows) closes it too, early. seq counts
 * this boot's summaries; the open period lives in RAM only (a reset loses it, as the simulator's reboot). */
typedef struct {
    ef_summary_acc acc; /* acc.n == 0: no period open */
    uint64_t ts;        /* the newest window's ts: the summary's */
    uint32_t model, seq;
    float thr;
} ef_summary_period;

/* 1 when the open period must be closed (ef_summary_close) before the window (ts, model, thr) joins. */
int ef_summary_due(const ef_summary_period *p, uint32_t every_ms, uint64_t ts, uint32_t model, float thr);
/* The window into the open period (the first one opens it): score clamped at 0, vrms < 0: none. */
int ef_summary_window(ef_summary_period *p, uint64_t ts, uint32_t model, float thr, double score, int anom,
                      double vrms);
/* The open period as one summary message in buf (seq: the next one, counted even if the encoder refuses
 * it, so a refused summary is a gap); the period is emptied. The length, 0 when none was open, < 0 refused. */
int ef_summary_close(ef_summary_period *p, const char *boot, uint32_t every_ms, uint32_t dropped, char *buf,
                     size_t cap);
int ef_proto_encode_summary(char *buf, size_t cap, const ef_proto_summary *s);

int ef_proto_encode_result(char *buf, size_t cap, const ef_proto_result_head *h,
                    const ef_proto_result_rec *recs, size_t n);
/* As ef_proto_encode_result, plus the shadow fields: sh (NULL: none) and one
 * srecs entry per record. */
int ef_proto_encode_result_shadow(char *buf, size_t cap, const ef_proto_result_head *h,
                                  const ef_proto_result_rec *recs, size_t n,
                                  const ef_proto_shadow_head *sh, const ef_proto_shadow_rec *srecs);
int ef_proto_encode_status(char *buf, size_t cap, const ef_proto_status *s);
int ef_proto_encode_ota_state(char *buf, size_t cap, const ef_proto_ota_state *s);
int ef_proto_encode_ota_req(char *buf, size_t cap, const ef_proto_ota_req *r);
int ef_proto_encode_debug(char *buf, size_t cap, const ef_proto_debug *d);

#endif
