/* The commissioning baseline (ef/baseline.h, docs/baseline.md), bit for bit with
 * edgefleet/runtime/baseline.py. Built with -ffp-contract=off (no fused multiply-add): every
 * float32 and float64 operation rounds where the Python one does. No transcendental
 * functions except sqrtf, which IEEE 754 rounds correctly on every target. */
#include "ef/baseline.h"

#include <math.h>
#include <string.h>

#include "ef/bytes.h"
#include "ef/crc.h"
#include "ef/engine.h"
#include "ef/features.h"

static const uint8_t k_magic[4] = {'E', 'F', 'B', 'L'};

/* ---- little-endian fields ---- */

static int16_t le_i16(const uint8_t *p)
{
    const int32_t v = ef_le16(p);
    return (int16_t)(v >= 32768 ? v - 65536 : v);
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    ef_put_le32(p, u);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)ef_le32(p) | ((uint64_t)ef_le32(p + 4) << 32); }

/* ---- pure pieces ---- */

uint32_t ef_baseline_frontend_crc(const ef_features_view *f)
{
    uint8_t head[8];
    uint32_t crc;
    put_f32(head, f->window_s);
    put_f32(head + 4, f->log_floor);
    crc = ef_crc32(0, head, sizeof head);
    crc = ef_crc32(crc, f->edges_hz, 4u * ((uint32_t)f->n_bands + 1u)); /* already float32 LE */
    if (f->kind == EF_FEATURE_KIND_V2) { /* v2 appends its low-frequency parameters, as float32 */
        const float lf[10] = {f->lf_rate_hz, (float)f->lf_length, (float)f->lf_settle, f->lf_cut_hz, f->vel_lo_hz,
                              f->vel_split_hz, f->vel_hi_hz, f->speed_min_hz, f->speed_max_hz, (float)f->extras};
        uint8_t b[4];
        uint32_t i;
        for (i = 0; i < 10u; i++) {
            put_f32(b, lf[i]);
            crc = ef_crc32(crc, b, sizeof b);
        }
        crc = ef_crc32(crc, f->lf_edges_hz, 4u * ((uint32_t)f->n_lf + 1u));
    }
    return crc;
}

ef_status ef_baseline_to_q10(const float *f, uint16_t n, int16_t *q)
{
    uint16_t j;
    for (j = 0; j < n; j++)
        if (!isfinite(f[j]))
            return EF_ERR_NONFINITE;
    for (j = 0; j < n; j++) {
        const double x = (double)f[j] * EF_BASELINE_Q; /* exact: a float32 times a power of two */
        double r = floor(fabs(x) + 0.5);               /* half away from zero */
        if (x < 0.0)
            r = -r;
        q[j] = (int16_t)(r < -32768.0 ? -32768.0 : (r > 32767.0 ? 32767.0 : r));
    }
    return EF_OK;
}

int ef_baseline_rpm_known(float rpm) { return isfinite(rpm) && rpm > 0.0f; }

int ef_baseline_steady_speed_tol(float rpm, float last_rpm, double tolerance)
{
    if (rpm == 0.0f || last_rpm == 0.0f || !isfinite(rpm) || !isfinite(last_rpm))
        return 1;
    return fabs((double)rpm - (double)last_rpm) <= tolerance * (double)last_rpm;
}

int ef_baseline_steady_speed(float rpm, float last_rpm)
{
    return ef_baseline_steady_speed_tol(rpm, last_rpm, EF_BASELINE_STEADY_SPEED);
}

/* z = (F - center/Q) / (spread/Q) in float32, each z quantized into q; returns the HI,
 * sqrtf(sum max(z, 0)^2 / n) summed in feature order: faults add energy, so a band quieter than
 * its normal is no sign of damage (the model's score still sees the change of shape). */
static float standardize(const ef_model *m, const uint8_t *center, const uint8_t *spread, const float *f,
                         int8_t *q)
{
    const uint16_t n = m->n_inputs;
    float acc = 0.0f;
    uint16_t j;
    for (j = 0; j < n; j++) {
        const float c = (float)le_i16(center + 2u * j) / (float)EF_BASELINE_Q;
        const float s = (float)le_i16(spread + 2u * j) / (float)EF_BASELINE_Q;
        const float z = (f[j] - c) / s, p = z > 0.0f ? z : 0.0f;
        acc = acc + p * p;
        q[j] = ef_quantize_input(z, m->input_scale, m->input_zero_point);
    }
    return sqrtf(acc / (float)n);
}

ef_status ef_baseline_score(const ef_baseline_model *sm, const uint8_t *center, const uint8_t *spread,
                            const float *features, float *score, float *hi)
{
    const ef_model *m = sm->model;
    ef_status st;
    *hi = standardize(m, center, spread, features, sm->q);
    if ((st = ef_engine_infer(m, sm->q, sm->y, sm->arena, sm->arena_len)) != EF_OK)
        return st;
    *score = ef_score_mse(sm->q, sm->y, m->n_inputs, m->input_scale, m->input_zero_point, m->output_scale,
                          m->output_zero_point);
    return EF_OK;
}

/* ---- order statistics in the caller's work buffer ---- */

static void sift_down(float *a, uint32_t root, uint32_t end)
{
    for (;;) {
        uint32_t child = 2u * root + 1u;
        float t;
        if (child >= end)
            return;
        if (child + 1u < end && a[child] < a[child + 1u])
            child++;
        if (!(a[root] < a[child]))
            return;
        t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* Heapsort: in place, no recursion, O(m log m) whatever the data. */
static void sort_floats(float *a, uint32_t m)
{
    uint32_t i;
    float t;
    if (m < 2u)
        return;
    for (i = m / 2u; i-- > 0u;)
        sift_down(a, i, m);
    for (i = m - 1u; i > 0u; i--) {
        t = a[0];
        a[0] = a[i];
        a[i] = t;
        sift_down(a, 0, i);
    }
}

/* floor(v / 2), as Python's >> 1 on a negative integer (C's >> of a negative is not portable). */
static int32_t floor_half(int32_t v) { return (v - (v < 0 ? 1 : 0)) / 2; }

/* Median of integers held exactly as floats, sorted: even count -> floor of the mean of the middle two. */
static int32_t median_int(const float *s, uint32_t m)
{
    if (m % 2u)
        return (int32_t)s[m / 2u];
    return floor_half((int32_t)s[m / 2u - 1u] + (int32_t)s[m / 2u]);
}

/* The (k-1)-th and k-th smallest of |s[i] - med| (float64) over sorted s, with s[m/2-1] <= med
 * <= s[m/2]: the distances grow outwards on both sides of med, so merging the two sides yields
 * them in order without a second array. */
static void kth_distances(const float *s, uint32_t m, double med, uint32_t k, double *prev, double *kth)
{
    uint32_t right = m / 2u, left = m / 2u, step; /* left: one past the next left element */
    double d = 0.0;
    *prev = 0.0;
    for (step = 0; step <= k; step++) {
        const double dl = left > 0u ? fabs((double)s[left - 1u] - med) : INFINITY;
        const double dr = right < m ? fabs((double)s[right] - med) : INFINITY;
        *prev = d;
        if (dl <= dr) {
            d = dl;
            left--;
        } else {
            d = dr;
            right++;
        }
    }
    *kth = d;
}

/* float32(max(med + k * 1.4826 * mad, margin * max, floor)) of m float32 values (sorted here),
 * median and MAD in float64, even counts the mean of the middle two (threshold_from). */
static float threshold_of(float *v, uint32_t m, double k, double floor)
{
    double med, mad, prev, kth, thr, top;
    sort_floats(v, m);
    med = m % 2u ? (double)v[m / 2u] : ((double)v[m / 2u - 1u] + (double)v[m / 2u]) / 2.0;
    kth_distances(v, m, med, m / 2u, &prev, &kth);
    mad = m % 2u ? kth : (prev + kth) / 2.0;
    thr = med + k * 1.4826 * mad;
    top = EF_BASELINE_MARGIN * (double)v[m - 1u];
    if (top > thr)
        thr = top;
    if (floor > thr)
        thr = floor;
    return (float)thr;
}

/* ---- learning one class ---- */

static int read_q(const ef_baseline_rows *rows, uint16_t n, uint32_t i, uint16_t j, int16_t *v)
{
    uint8_t b[2];
    (void)n;
    if (rows->read(rows->ctx, i * rows->stride + 2u * j, b, 2u) != 0)
        return -1;
    *v = le_i16(b);
    return 0;
}

/* Row i as F = Fq / Q (exact in float32), as the reference standardizes commissioning rows. */
static int read_row(const ef_baseline_rows *rows, uint16_t n, uint32_t i, float *f)
{
    uint16_t j;
    int16_t v;
    for (j = 0; j < n; j++) {
        if (read_q(rows, n, i, j, &v) != 0)
            return -1;
        f[j] = (float)v / (float)EF_BASELINE_Q;
    }
    return 0;
}

/* ---- the settle test's speed line (Python speed_q, speed_slopes, line_q) ---- */

#define SPEED_Q_MAX 10000000.0f /* 100,000 rpm in hundredths: the sums below stay in int64 */
#define SPEED_SPAN_MAX 1000000  /* newer speeds at most 10,000 rpm from the first (a class: +-5 %) */
#define LINE_Q_MAX 8388608.0    /* 2^23: residuals stay exact in float32 */
#define LINE_FLOOR 16777216.0   /* 2^24 added before truncating: the floor of a positive number */

/* Row i's speed as an integer, float32 rpm * 100 + 0.5 truncated (in float32, as Python), within
 * [0, SPEED_Q_MAX]; -1 on a read error. */
static int32_t speed_q(const ef_baseline_rows *rows, uint16_t n, uint32_t i)
{
    uint8_t b[4];
    float y;
    if (rows->read(rows->ctx, i * rows->stride + 2u * n, b, 4u) != 0)
        return -1;
    y = ef_lef32(b) * 100.0f + 0.5f;
    return !(y >= 0.0f) ? 0 : y > SPEED_Q_MAX ? (int32_t)SPEED_Q_MAX : (int32_t)y;
}

/* Feature j over rows [first, first + m), less the speed line q - floor(d * slope + 0.5) when slope
 * is not 0 (d: the row's speed less r0; the line clamped to +-2^23): the median and floored
 * 1.4826 x MAD, rounded, at most int16. */
static ef_status column_stats(const ef_baseline_rows *rows, uint16_t n, uint16_t j, uint32_t first, uint32_t m,
                              double slope, int32_t r0, float *col, int32_t *center, int32_t *spread, int *floored)
{
    uint32_t i;
    int32_t c, mad, s, r, line = 0;
    int16_t v;
    for (i = 0; i < m; i++) {
        if (read_q(rows, n, first + i, j, &v) != 0 || (slope != 0.0 && (r = speed_q(rows, n, first + i)) < 0))
            return EF_ERR_FLASH;
        if (slope != 0.0) {
            double x = (double)(r - r0) * slope;
            x = (x > LINE_Q_MAX ? LINE_Q_MAX : x < -LINE_Q_MAX ? -LINE_Q_MAX : x) + 0.5 + LINE_FLOOR;
            line = (int32_t)x - (int32_t)LINE_FLOOR;
        }
        col[i] = (float)(v - line); /* integers below 2^24: exact as float */
    }
    sort_floats(col, m);
    c = median_int(col, m);
    for (i = 0; i < m; i++)
        col[i] = fabsf(col[i] - (float)c);
    sort_floats(col, m);
    mad = median_int(col, m);
    s = (mad * EF_BASELINE_MAD_TO_SIGMA_Q10 + 512) / 1024; /* mad >= 0: the division is a floor */
    *floored = s < EF_BASELINE_SPREAD_FLOOR_Q;
    if (*floored)
        s = EF_BASELINE_SPREAD_FLOOR_Q;
    *center = c;
    *spread = s > 32767 ? 32767 : s;
    return EF_OK;
}

/* center[j] and spread[j] of every feature into the block (robust_stats). */
static ef_status robust_stats(const ef_baseline_rows *rows, uint16_t n, float *col, uint8_t *block,
                              uint32_t *floored)
{
    uint8_t *center = block + EF_BASELINE_CLASS_HEAD, *spread = center + 2u * n;
    uint16_t j;
    for (j = 0; j < n; j++) {
        int32_t c, s;
        int low;
        ef_status st = column_stats(rows, n, j, 0, rows->count, 0.0, 0, col, &c, &s, &low);
        if (st != EF_OK)
            return st;
        *floored += (uint32_t)low;
        put_le16(center + 2u * j, (uint16_t)c);
        put_le16(spread + 2u * j, (uint16_t)s);
    }
    return EF_OK;
}

/* Feature j's line on the speed over the newer half (Q10 per 0.01 rpm, against r0, its first
 * speed): 0 without speeds, with too few rows, one speed, speeds over SPEED_SPAN_MAX apart, or
 * unless (h + 14) sxy^2 > 16 syy sxx, |slope| over four standard errors squared and multiplied
 * out. Exact int64 sums, then float64 in Python speed_slopes' order: the same bits. */
static ef_status speed_slope(const ef_baseline_rows *rows, uint16_t n, uint16_t j, double *slope, int32_t *r0)
{
    const uint32_t m = rows->count, half = m / 2u;
    const int64_t h = (int64_t)(m - half);
    int64_t sd = 0, sdd = 0, sy = 0, syy = 0, sdy = 0, sxx, sxy;
    uint32_t i;
    *slope = 0.0;
    if (rows->stride < 2u * n + 4u || half <= 2u)
        return EF_OK;
    for (i = half; i < m; i++) {
        const int32_t r = speed_q(rows, n, i);
        int32_t d;
        int16_t v;
        if (r < 0 || read_q(rows, n, i, j, &v) != 0)
            return EF_ERR_FLASH;
        if (i == half)
            *r0 = r;
        if ((d = r - *r0) > SPEED_SPAN_MAX || d < -SPEED_SPAN_MAX)
            return EF_OK;
        sd += d;
        sdd += (int64_t)d * d;
        sy += v;
        syy += (int64_t)v * v;
        sdy += (int64_t)d * v;
    }
    sxx = h * sdd - sd * sd;
    sxy = h * sdy - sd * sy;
    if (sxx > 0 && (double)(h + 14) * ((double)sxy * (double)sxy) > 16.0 * ((double)(h * syy - sy * sy) * (double)sxx))
        *slope = (double)sxy / (double)sxx;
    return EF_OK;
}

ef_status ef_baseline_settled(const ef_baseline_rows *rows, uint16_t n, void *work, size_t work_len, int *settled)
{
    const uint32_t m = rows ? rows->count : 0u, half = m / 2u;
    float *col = (float *)work;
    uint16_t j;
    if (rows == NULL || work == NULL || settled == NULL || ((uintptr_t)work & 3u) != 0u || half == 0u)
        return EF_ERR_ARG;
    if (work_len / sizeof(float) < m - half)
        return EF_ERR_CAPACITY;
    *settled = 1;
    for (j = 0; j < n; j++) {
        int32_t c_old, s_old, c_new, s_new, r0 = 0, t;
        int64_t d, s;
        double slope;
        int low;
        ef_status st;
        if ((st = speed_slope(rows, n, j, &slope, &r0)) != EF_OK ||
            (st = column_stats(rows, n, j, 0, half, 0.0, 0, col, &c_old, &s_old, &low)) != EF_OK ||
            (st = column_stats(rows, n, j, half, m - half, 0.0, 0, col, &c_new, &s_new, &low)) != EF_OK)
            return st;
        if (slope != 0.0 && /* the medians after the line; each half's own spread as it is */
            ((st = column_stats(rows, n, j, 0, half, slope, r0, col, &c_old, &t, &low)) != EF_OK ||
             (st = column_stats(rows, n, j, half, m - half, slope, r0, col, &c_new, &t, &low)) != EF_OK))
            return st;
        d = (int64_t)c_new - c_old;
        s = s_old > s_new ? s_old : s_new; /* each half's own spread: a drift inflates the whole's */
        if (d * d * (int64_t)m > (int64_t)EF_BASELINE_DRIFT_K2 * s * s) {
            *settled = 0; /* still moving: run-in, warm-up, or a fault that started meanwhile */
            return EF_OK;
        }
    }
    return EF_OK;
}

ef_status ef_baseline_speeds_apart(const ef_baseline_rows *rows, uint16_t n, int *apart)
{
    const uint32_t m = rows ? rows->count : 0u, half = m / 2u;
    int32_t lo[2] = {INT32_MAX, INT32_MAX}, hi[2] = {0, 0}, r; /* [0]: the older half, [1]: the newer */
    uint32_t i, k = 0;
    if (rows == NULL || apart == NULL || half == 0u)
        return EF_ERR_ARG;
    *apart = 0;
    if (rows->stride < 2u * n + 4u)
        return EF_OK; /* no speeds */
    for (i = 0; i < m; i++) {
        const int h = i >= half;
        if ((r = speed_q(rows, n, i)) < 0)
            return EF_ERR_FLASH;
        lo[h] = r < lo[h] ? r : lo[h];
        hi[h] = r > hi[h] ? r : hi[h];
    }
    for (i = 0; i < m; i++) {
        const int other = i < half; /* the other half's range */
        if ((r = speed_q(rows, n, i)) < 0)
            return EF_ERR_FLASH;
        k += r >= lo[other] && r <= hi[other];
    }
    *apart = 4u * k < m;
    return EF_OK;
}

ef_status ef_baseline_learn_class(const ef_baseline_rows *rows, uint16_t n, float rpm_center,
                                  const ef_baseline_model *sm, float *features, void *work,
                                  size_t work_len, uint8_t *block, uint32_t *floored)
{
    float *v = (float *)work;
    const uint32_t m = rows ? rows->count : 0u;
    const uint8_t *center = block + EF_BASELINE_CLASS_HEAD, *spread = center + 2u * n;
    uint32_t i;
    ef_status st;
    float hi, thr, hi_thr, lo = 0.0f, up = 0.0f;
    if (rows == NULL || sm == NULL || features == NULL || work == NULL || block == NULL || floored == NULL ||
        n != sm->model->n_inputs || ((uintptr_t)work & 3u) != 0u)
        return EF_ERR_ARG;
    if (m == 0u)
        return EF_ERR_TOO_FEW;
    if (work_len / sizeof(float) < m)
        return EF_ERR_CAPACITY;
    *floored = 0;
    if ((st = robust_stats(rows, n, v, block, floored)) != EF_OK)
        return st;
    for (i = 0; i < m; i++) /* the model's score of every row, standardized by this class */
        if (read_row(rows, n, i, features) != 0 ||
            (st = ef_baseline_score(sm, center, spread, features, &v[i], &hi)) != EF_OK)
            return st != EF_OK ? st : EF_ERR_FLASH;
    thr = threshold_of(v, m, EF_BASELINE_SCORE_K, 1e-12);
    for (i = 0; i < m; i++) { /* then the health indicator of every row */
        if (read_row(rows, n, i, features) != 0)
            return EF_ERR_FLASH;
        v[i] = standardize(sm->model, center, spread, features, sm->q);
    }
    hi_thr = threshold_of(v, m, EF_BASELINE_HI_K, EF_BASELINE_HI_FLOOR);
    if (rpm_center != 0.0f) {
        lo = (float)((double)rpm_center * (1.0 - EF_BASELINE_RPM_TOLERANCE));
        up = (float)((double)rpm_center * (1.0 + EF_BASELINE_RPM_TOLERANCE));
    }
    put_f32(block, lo);
    put_f32(block + 4, up);
    ef_put_le32(block + 8, m);
    put_f32(block + 12, thr);
    put_f32(block + 16, hi_thr);
    return EF_OK;
}

/* ---- the record ---- */

void ef_baseline_header(uint8_t out[EF_BASELINE_HEADER_SIZE], uint16_t n, uint16_t n_classes, uint16_t flags,
                        uint32_t frontend_crc, uint64_t learned_ms, uint32_t windows)
{
    memcpy(out, k_magic, 4);
    put_le16(out + 4, EF_BASELINE_VERSION);
    put_le16(out + 6, EF_BASELINE_HEADER_SIZE);
    put_le16(out + 8, n);
    put_le16(out + 10, n_classes);
    put_le16(out + 12, flags);
    put_le16(out + 14, 0);
    ef_put_le32(out + 16, frontend_crc);
    ef_put_le32(out + 20, (uint32_t)learned_ms);
    ef_put_le32(out + 24, (uint32_t)(learned_ms >> 32));
    ef_put_le32(out + 28, windows);
}

void ef_baseline_class_at(const ef_baseline *b, uint16_t k, ef_baseline_class *out)
{
    const uint8_t *p = b->rec + EF_BASELINE_HEADER_SIZE + (uint32_t)k * EF_BASELINE_CLASS_SIZE(b->n);
    out->rpm_lo = ef_lef32(p);
    out->rpm_hi = ef_lef32(p + 4);
    out->windows = ef_le32(p + 8);
    out->threshold = ef_lef32(p + 12);
    out->hi_threshold = ef_lef32(p + 16);
    out->center = p + EF_BASELINE_CLASS_HEAD;
    out->spread = out->center + 2u * b->n;
}

/* Thresholds positive and finite, no spread under the floor, class after class. */
static ef_status check_classes(const ef_baseline *b)
{
    ef_baseline_class c;
    uint16_t k, j;
    for (k = 0; k < b->n_classes; k++) {
        ef_baseline_class_at(b, k, &c);
        if (!(c.threshold > 0.0f && c.hi_threshold > 0.0f && isfinite(c.threshold) && isfinite(c.hi_threshold)))
            return EF_ERR_THRESHOLD;
        for (j = 0; j < b->n; j++)
            if (le_i16(c.spread + 2u * j) < EF_BASELINE_SPREAD_FLOOR_Q)
                return EF_ERR_SPREAD;
    }
    return EF_OK;
}

ef_status ef_baseline_open(ef_baseline *b, const uint8_t *rec, size_t len, const ef_baseline_for *want)
{
    uint64_t size;
    uint16_t n, k;
    if (b == NULL || rec == NULL)
        return EF_ERR_ARG;
    memset(b, 0, sizeof *b);
    if (len < EF_BASELINE_HEADER_SIZE + 4u)
        return EF_ERR_TRUNCATED;
    if (memcmp(rec, k_magic, 4) != 0)
        return EF_ERR_MAGIC;
    if (ef_le16(rec + 4) != EF_BASELINE_VERSION || ef_le16(rec + 6) != EF_BASELINE_HEADER_SIZE)
        return EF_ERR_VERSION;
    n = ef_le16(rec + 8);
    k = ef_le16(rec + 10);
    size = EF_BASELINE_HEADER_SIZE + (uint64_t)k * (EF_BASELINE_CLASS_HEAD + 4u * (uint64_t)n) + 4u;
    if ((uint64_t)len != size)
        return EF_ERR_SIZE;
    if (ef_crc32(0, rec, len - 4u) != ef_le32(rec + len - 4u))
        return EF_ERR_CRC;
    if (k < 1u || k > EF_BASELINE_MAX_CLASSES)
        return EF_ERR_CLASSES;
    if (want && ef_le32(rec + 16) != want->frontend_crc)
        return EF_ERR_FRONTEND;
    if (want && n != want->n_features)
        return EF_ERR_N_FEATURES;
    b->rec = rec;
    b->size = (uint32_t)len;
    b->n = n;
    b->n_classes = k;
    b->flags = ef_le16(rec + 12);
    b->frontend_crc = ef_le32(rec + 16);
    b->learned_ms = le64(rec + 20);
    b->windows = ef_le32(rec + 28);
    return check_classes(b);
}

int ef_baseline_class_for(const ef_baseline *b, float rpm)
{
    const int known = ef_baseline_rpm_known(rpm);
    int best = -1, keyed = 0;
    double best_d = INFINITY;
    ef_baseline_class c;
    uint16_t k;
    for (k = 0; k < b->n_classes; k++) {
        ef_baseline_class_at(b, k, &c);
        if (c.rpm_lo == 0.0f && c.rpm_hi == 0.0f) { /* any speed: a window without a speed */
            if (best < 0 && !known)
                best = k;
            continue;
        }
        keyed = 1;
        if (known && (double)c.rpm_lo <= (double)rpm && (double)rpm <= (double)c.rpm_hi) {
            const double d = fabs((double)rpm - 0.5 * ((double)c.rpm_lo + (double)c.rpm_hi));
            if (d < best_d) {
                best = k;
                best_d = d;
            }
        }
    }
    if (best < 0 && !keyed) /* only any-speed classes: they take every window */
        return b->n_classes ? 0 : -1;
    return best;
}

int ef_baseline_class_for_estimate(const ef_baseline *b, float rpm)
{
    const int k = ef_baseline_class_for(b, rpm);
    int keyed = 0, alt;
    uint16_t i;
    ef_baseline_class c;
    for (i = 0; i < b->n_classes; i++) {
        ef_baseline_class_at(b, i, &c);
        keyed |= !(c.rpm_lo == 0.0f && c.rpm_hi == 0.0f);
    }
    if (k >= 0 || !ef_baseline_rpm_known(rpm) || !keyed)
        return k;
    if ((alt = ef_baseline_class_for(b, 2.0f * rpm)) >= 0)
        return alt;
    return ef_baseline_class_for(b, 0.5f * rpm);
}

ef_status ef_baseline_judge(const ef_baseline *b, const ef_baseline_model *sm, const float *features,
                            float rpm, ef_baseline_verdict *out)
{
    if (b == NULL)
        return EF_ERR_ARG;
    return ef_baseline_judge_class(b, sm, features, ef_baseline_class_for(b, rpm), out);
}

ef_status ef_baseline_judge_class(const ef_baseline *b, const ef_baseline_model *sm, const float *features,
                                  int cls, ef_baseline_verdict *out)
{
    ef_baseline_class c;
    ef_status st;
    float r_score, r_hi;
    if (b == NULL || sm == NULL || features == NULL || out == NULL || b->n != sm->model->n_inputs ||
        cls >= (int)b->n_classes)
        return EF_ERR_ARG;
    memset(out, 0, sizeof *out);
    if ((out->cls = cls) < 0)
        return EF_OK;
    ef_baseline_class_at(b, (uint16_t)out->cls, &c);
    if ((st = ef_baseline_score(sm, c.center, c.spread, features, &out->score, &out->hi)) != EF_OK)
        return st;
    out->threshold = c.threshold;
    out->hi_threshold = c.hi_threshold;
    out->anom = out->score > c.threshold || out->hi > c.hi_threshold;
    r_score = out->score / c.threshold;
    r_hi = out->hi / c.hi_threshold;
    out->ratio = r_hi > r_score ? r_hi : r_score;
    return EF_OK;
}

/* ---- drift after commissioning ---- */

int ef_baseline_drift(const int16_t *center, const int16_t *origin, const int16_t *spread, uint16_t n,
                      const int16_t *rows, uint32_t m, double dt_s, int32_t *work, int16_t *out)
{
    double f = dt_s / EF_BASELINE_DRIFT_TAU_S;
    uint16_t j;
    int changed = 0;
    if (m == 0u || !(dt_s > 0.0)) {
        if (out != center)
            memcpy(out, center, (size_t)n * sizeof *out);
        return 0;
    }
    if (!(f < 1.0))
        f = 1.0;
    for (j = 0; j < n; j++) {
        uint32_t i, k;
        int32_t target;
        double v, lo, hi;
        const double cap = (double)(int64_t)(EF_BASELINE_DRIFT_CAP * (double)spread[j]);
        for (i = 0; i < m; i++) { /* insertion sort: m is a chunk (32) */
            const int32_t x = rows[(size_t)i * n + j];
            for (k = i; k > 0u && work[k - 1u] > x; k--)
                work[k] = work[k - 1u];
            work[k] = x;
        }
        target = m % 2u ? work[m / 2u] : floor_half(work[m / 2u - 1u] + work[m / 2u]);
        v = (double)center[j] + rint((double)(target - (int32_t)center[j]) * f);
        lo = (double)origin[j] - cap;
        hi = (double)origin[j] + cap;
        v = v < lo ? lo : v > hi ? hi : v;
        if ((int16_t)v != center[j])
            changed = 1;
        out[j] = (int16_t)v;
    }
    return changed;
}

int ef_baseline_drift_moved(const int16_t *center, const int16_t *noted, const int16_t *origin, const int16_t *spread,
                            uint16_t n, double *shift)
{
    double most = 0.0, total = 0.0;
    uint16_t j;
    for (j = 0; j < n; j++) {
        const double d = fabs((double)((int32_t)center[j] - (int32_t)noted[j])) / (double)spread[j];
        const double o = fabs((double)((int32_t)center[j] - (int32_t)origin[j])) / (double)spread[j];
        most = d > most ? d : most;
        total = o > total ? o : total;
    }
    if (!(most >= EF_BASELINE_DRIFT_NOTE))
        return 0;
    *shift = total;
    return 1;
}
