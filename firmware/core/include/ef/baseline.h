/* The commissioning baseline (docs/baseline.md): a machine's own normal, per operating class.
 *
 * A node standardizes its features by the statistics of its own machine instead of the
 * artifact's training-set statistics: per class (a speed band), the median (`center`) and
 * 1.4826 x MAD (`spread`, floored) of each feature in Q10, and score and health-indicator
 * thresholds from the class's own commissioning windows. Mirrors
 * edgefleet/runtime/baseline.py so that both write the same record bytes from the same
 * feature rows (firmware/testdata/baseline/golden.json): integer statistics on Q10 rows,
 * float32 standardization and scores (built with -ffp-contract=off), float64 thresholds.
 *
 * Nothing here allocates or keeps rows: learning reads a class's rows through a callback
 * (RAM on the host, the flash scratch area on a node: ef/commission.h) and sorts in a
 * caller's work buffer of 4 bytes per row; a record is read in place (flash or RAM). */
#ifndef EF_BASELINE_H
#define EF_BASELINE_H
#include <stddef.h>
#include <stdint.h>

#include "ef/model.h"
#include "ef/status.h"

#define EF_BASELINE_VERSION 1u
#define EF_BASELINE_HEADER_SIZE 32u
#define EF_BASELINE_CLASS_HEAD 20u     /* rpm_lo, rpm_hi, windows, threshold, hi_threshold */
#define EF_BASELINE_Q 1024              /* features are stored as round(F * Q): Q10, log10 units */
#define EF_BASELINE_SPREAD_FLOOR_Q 20   /* 0.02 log10 units: no band is trusted more than ~5 % in power */
#define EF_BASELINE_MAD_TO_SIGMA_Q10 1518 /* 1.4826 (a normal's sigma per MAD) in Q10 */
#define EF_BASELINE_MAX_CLASSES 8u
#define EF_BASELINE_RPM_TOLERANCE 0.05  /* a class is a speed band of +-5 % around the speed that opened it */
#define EF_BASELINE_DEFAULT_WINDOWS 64u /* windows per class that end commissioning */
#define EF_BASELINE_MIN_WINDOWS 16u     /* fewest windows a class may be finished with */
#define EF_BASELINE_MAX_WINDOWS 4096u   /* the cmd schema's bound on `windows` */
#define EF_BASELINE_SCORE_K 6.0         /* threshold: median + K * 1.4826 * MAD of the class's scores ... */
#define EF_BASELINE_MARGIN 1.25         /* ... and at least this times the largest one (score and HI) */
#define EF_BASELINE_HI_K 6.0
#define EF_BASELINE_HI_FLOOR 1.5        /* HI threshold at least 1.5 spreads (6 sigma of the one-sided RMS of 32 bands) */
#define EF_BASELINE_DRIFT_K2 100        /* settled: (c_new - c_old)^2 * m <= 100 * spread^2 for every feature */
#define EF_BASELINE_MAX_RESTARTS 8      /* a class that never settles is finished anyway after this many restarts */
#define EF_BASELINE_STEADY_SPEED 0.01   /* a window whose speed moved more than 1 % is not learned from (a ramp) */
#define EF_BASELINE_STEADY_SPEED_ESTIMATED 0.05 /* ... 5 % (a class's own width) for a speed the v2 front end estimated (it jitters) */
#define EF_BASELINE_FLAG_RPM_KEYED 1u

/* Bytes of one class block and of a whole record (header + classes + CRC-32). */
#define EF_BASELINE_CLASS_SIZE(n) (EF_BASELINE_CLASS_HEAD + 4u * (uint32_t)(n))
#define EF_BASELINE_RECORD_SIZE(n, k) (EF_BASELINE_HEADER_SIZE + (uint32_t)(k) * EF_BASELINE_CLASS_SIZE(n) + 4u)

/* A record, validated and read in place. */
typedef struct {
    const uint8_t *rec;
    uint32_t size;
    uint16_t n, n_classes, flags;
    uint32_t frontend_crc, windows;
    uint64_t learned_ms;
} ef_baseline;

/* One class of a record; center and spread are int16 LE [n] in place. */
typedef struct {
    float rpm_lo, rpm_hi;   /* 0, 0: any speed (a node without a speed input) */
    uint32_t windows;
    float threshold, hi_threshold;
    const uint8_t *center, *spread;
} ef_baseline_class;

/* What a record must match to be used: the running model's front end and input count. */
typedef struct {
    uint32_t frontend_crc;
    uint16_t n_features;
} ef_baseline_for;

/* The running model and its buffers, to score standardized rows (q, y: n_inputs bytes). */
typedef struct {
    const ef_model *model;
    int8_t *q, *y, *arena;
    size_t arena_len;
} ef_baseline_model;

/* A class's commissioning rows: `count` rows of n int16 LE Q10 features, `stride` bytes apart
 * (2n, or 2n + 4 when each row's speed follows its features as float32 LE, 0: none), read back
 * through `read` (offsets in bytes from the first row; 0 or a negative error). */
typedef struct {
    int (*read)(void *ctx, uint32_t off, void *dst, uint32_t len);
    void *ctx;
    uint32_t count;
    uint32_t stride;
} ef_baseline_rows;

/* A window's verdict under a baseline; cls -1: uncommissioned (no class, no verdict). */
typedef struct {
    int cls;
    float score, hi;     /* model score of the baseline-standardized input; health indicator */
    float threshold, hi_threshold;
    int anom;            /* score > threshold or hi > hi_threshold */
    float ratio;         /* max(score / threshold, hi / hi_threshold): severity */
} ef_baseline_verdict;

/* ---- pure pieces ---- */

/* CRC-32 of window_s, log_floor and edges_hz[] as float32 LE: a baseline holds only for them. */
uint32_t ef_baseline_frontend_crc(const ef_features_view *f);

/* F -> int16 Q10, half away from zero, clamped; EF_ERR_NONFINITE if any F is NaN or infinite. */
ef_status ef_baseline_to_q10(const float *f, uint16_t n, int16_t *q);

/* Speed known: finite and > 0 (0 or NaN: the node has no reading for this window). */
int ef_baseline_rpm_known(float rpm);

/* A speed that moved at most 1 % since the previous window's (unknown speeds count as steady):
 * commissioning does not learn from a window on a ramp (Python steady_speed). */
int ef_baseline_steady_speed(float rpm, float last_rpm);

/* The same with another tolerance (Python steady_speed(rpm, last, tolerance)): a node without a
 * speed input holds its estimated speeds to EF_BASELINE_STEADY_SPEED_ESTIMATED. */
int ef_baseline_steady_speed_tol(float rpm, float last_rpm, double tolerance);

/* Standardize F by (center, spread) Q10 in float32, quantize with the model's input scale
 * into sm->q, run the model and score it as ef_score_mse; *hi = sqrtf(mean max(z, 0)^2): the
 * one-sided health indicator (only an excess of vibration over the class's normal counts). */
ef_status ef_baseline_score(const ef_baseline_model *sm, const uint8_t *center, const uint8_t *spread,
                            const float *features, float *score, float *hi);

/* One class learned from its rows into `block` (EF_BASELINE_CLASS_SIZE(n) bytes, the
 * record's class layout): median and floored 1.4826 x MAD per feature, then the score and
 * HI thresholds over the rows themselves. rpm_center 0: any speed. `work` holds 4 bytes per
 * row (EF_ERR_CAPACITY otherwise); `features` n floats of scratch. *floored counts bands
 * whose spread was raised to the floor. EF_ERR_TOO_FEW without rows, EF_ERR_FLASH on a read error. */
ef_status ef_baseline_learn_class(const ef_baseline_rows *rows, uint16_t n, float rpm_center,
                                  const ef_baseline_model *sm, float *features, void *work,
                                  size_t work_len, uint8_t *block, uint32_t *floored);

/* Has a class settled (Python stationary)? The median of the newer half of its rows [m/2, m)
 * against the older half [0, m/2), per feature, each half with its own floored 1.4826 x MAD:
 * settled unless some d = c_new - c_old has d*d*m > 100 * max(s_old, s_new)^2 (run-in, warm-up,
 * a fault starting). Rows with their speeds (stride 2n + 4): a feature whose straight line on the
 * speed, fitted on the newer half, passes four standard errors has its medians taken after the
 * line is subtracted from every row (Python speed_slopes: integer sums, float64 in a fixed order,
 * the same bits). *settled 1 or 0; `work` holds 4 bytes per row of a half. */
ef_status ef_baseline_settled(const ef_baseline_rows *rows, uint16_t n, void *work, size_t work_len, int *settled);

/* Did the two halves of a class's rows run at different speeds (Python speeds_apart)? Fewer than a
 * quarter of its m rows have a speed (speed_q, as the settle test's) within the other half's
 * [min, max]: 4 k < m, k the newer half's rows in the older half's range plus the older half's in
 * the newer's. Two passes over the rows, no buffer. *apart 0 for rows without speeds. */
ef_status ef_baseline_speeds_apart(const ef_baseline_rows *rows, uint16_t n, int *apart);

/* ---- drift after commissioning (docs/baseline.md, "Drift after commissioning") ---- */

#define EF_BASELINE_DRIFT_TAU_S (3.0 * 86400.0) /* the centre follows healthy windows with this time constant */
#define EF_BASELINE_DRIFT_CAP 1.0              /* ... never further than this many spreads from `origin` */
#define EF_BASELINE_DRIFT_HEALTHY 0.5f         /* ... from windows whose ratio (score and HI) is under this */
#define EF_BASELINE_DRIFT_CHUNK 32u            /* windows per step on the nodes (device_sim DRIFT_CHUNK) */

/* One class's centre after a drift step (Python baseline.drift, integer for integer): per feature
 * target = median of the m healthy rows (int16 Q10 [m][n], even m: floor of the middle two's mean),
 * step = rint((target - center) * min(1, dt_s / TAU)) in double (ties to even), the centre plus the
 * step clipped to origin +- floor(DRIFT_CAP * spread). `out` (n) may be `center`; `work` holds m
 * int32. Returns 1 if a centre value changed, 0 if not (m 0 or dt_s <= 0: out = center). */
int ef_baseline_drift(const int16_t *center, const int16_t *origin, const int16_t *spread, uint16_t n,
                      const int16_t *rows, uint32_t m, double dt_s, int32_t *work, int16_t *out);

#define EF_BASELINE_DRIFT_NOTE 0.1 /* a centre moved this many spreads since its last report: report it */

/* After a step: 1 if some feature's centre moved EF_BASELINE_DRIFT_NOTE spreads or more from `noted`
 * (the centre at the last report), each |center - noted| / spread in double as Python's; *shift is
 * then the largest |center - origin| / spread (the report's max_shift_spreads, before rounding to 3
 * decimals). 0 (and *shift untouched) otherwise. */
int ef_baseline_drift_moved(const int16_t *center, const int16_t *noted, const int16_t *origin, const int16_t *spread,
                            uint16_t n, double *shift);

/* ---- the record ---- */

/* The 32-byte header; the caller appends the class blocks and the CRC-32 of all before it. */
void ef_baseline_header(uint8_t out[EF_BASELINE_HEADER_SIZE], uint16_t n, uint16_t n_classes, uint16_t flags,
                        uint32_t frontend_crc, uint64_t learned_ms, uint32_t windows);

/* Validate `len` bytes as a record, in the order of docs/baseline.md (and the Python reader):
 * EF_ERR_TRUNCATED (shorter than a header), EF_ERR_MAGIC, EF_ERR_VERSION (version or header
 * size), EF_ERR_SIZE (length differs from the header's), EF_ERR_CRC, EF_ERR_CLASSES (not 1..8),
 * EF_ERR_FRONTEND, EF_ERR_N_FEATURES (only when `want` is given), EF_ERR_THRESHOLD,
 * EF_ERR_SPREAD. On EF_OK `b` views the record in place. */
ef_status ef_baseline_open(ef_baseline *b, const uint8_t *rec, size_t len, const ef_baseline_for *want);

/* Class k (< n_classes) of an opened record. */
void ef_baseline_class_at(const ef_baseline *b, uint16_t k, ef_baseline_class *out);

/* The class a window at `rpm` belongs to (its band; the nearest centre if bands overlap;
 * the any-speed class for a window without a speed), or -1: uncommissioned. */
int ef_baseline_class_for(const ef_baseline *b, float rpm);

/* ef_baseline_class_for of a speed the node estimated from its own spectrum (Python
 * Baseline.class_for_estimate): when no class holds it and the record is keyed by speed, twice
 * and then half of it are tried (an octave slip). */
int ef_baseline_class_for_estimate(const ef_baseline *b, float rpm);

/* ef_baseline_judge with the class already chosen (cls < n_classes; -1 leaves the rest unset). */
ef_status ef_baseline_judge_class(const ef_baseline *b, const ef_baseline_model *sm, const float *features,
                                  int cls, ef_baseline_verdict *out);

/* Judge one window's features (n floats) under its class; cls -1 leaves the rest unset. */
ef_status ef_baseline_judge(const ef_baseline *b, const ef_baseline_model *sm, const float *features,
                            float rpm, ef_baseline_verdict *out);

#endif
