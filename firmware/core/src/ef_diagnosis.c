/* why/hint of an anomalous window (ef/diagnosis.h), operation for operation as
 * edgefleet/runtime/diagnosis.py: float64 excess of float32 z, numpy's pairwise sum where
 * Python sums an array, left-to-right sums where it uses sum(). */
#include "ef/diagnosis.h"

#include <math.h>
#include <string.h>

#include "ef/baseline.h"
#include "ef/bytes.h"

typedef struct {
    ef_features_view fv;
    const float *f;
    const uint8_t *center, *spread;
} ctx;

/* max(z, 0)^2 of input j, 0 where not finite; z = (F - c/Q) / (s/Q) in float32 as the judge's. */
static double excess(const ctx *x, uint32_t j)
{
    const float c = (float)(int16_t)ef_le16(x->center + 2u * j) / (float)EF_BASELINE_Q;
    const float s = (float)(int16_t)ef_le16(x->spread + 2u * j) / (float)EF_BASELINE_Q;
    const float z = (x->f[j] - c) / s;
    if (!(z > 0.0f) || !isfinite(z))
        return 0.0;
    return (double)z * (double)z; /* exact */
}

/* numpy's pairwise sum of excess[lo, lo + n) (np.add.reduce of a contiguous float64 array). */
static double pairwise(const ctx *x, uint32_t lo, uint32_t n)
{
    double r[8], res;
    uint32_t i, j;
    if (n < 8u) {
        res = -0.0;
        for (i = 0; i < n; i++)
            res += excess(x, lo + i);
        return res;
    }
    if (n <= 128u) {
        for (j = 0; j < 8u; j++)
            r[j] = excess(x, lo + j);
        for (i = 8; i < n - (n % 8u); i += 8u)
            for (j = 0; j < 8u; j++)
                r[j] += excess(x, lo + i + j);
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += excess(x, lo + i);
        return res;
    }
    i = n / 2u;
    i -= i % 8u;
    return pairwise(x, lo, i) + pairwise(x, lo + i, n - i);
}

static double edge(const uint8_t *edges, uint32_t i) { return (double)ef_lef32(edges + 4u * i); }

/* Sum of the LF bands' excess whose [lo - tol, hi + tol) holds order * speed (Python at_order). */
static double at_order(const ctx *x, double order, double speed_hz, double tol)
{
    const ef_features_view *fv = &x->fv;
    const double f = order * speed_hz;
    double s = 0.0;
    uint32_t i;
    for (i = 0; i < fv->n_lf; i++)
        if (edge(fv->lf_edges_hz, i) - tol <= f && f < edge(fv->lf_edges_hz, i + 1u) + tol)
            s += excess(x, fv->n_bands + i);
    return s;
}

/* The extras' names in the artifact's order (feature bits ascending). */
static const char *extra_name(uint16_t extras, uint32_t k)
{
    static const char *const names[] = {"vrms", "kurtosis", "crest"};
    uint32_t bit;
    for (bit = 0; bit < 3u; bit++)
        if (extras & (1u << bit)) {
            if (k == 0u)
                return names[bit];
            k--;
        }
    return NULL;
}

static const char *hint_of(const ctx *x, double total, double speed_hz, const ef_bearing *b)
{
    static const double k_others[] = {0.5, 1.5, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0};
    const ef_features_view *fv = &x->fv;
    const uint32_t nb = fv->n_bands, nl = fv->n_lf;
    double impact, tol, h1, h2, others[9], sum_others = 0.0, lf_total;
    uint32_t i, n_big = 0;
    if (!(speed_hz > 0.0) || !isfinite(speed_hz))
        return "unknown";
    impact = pairwise(x, 0, nb);
    for (i = 0; i < 3u; i++) {
        const char *nm = extra_name(fv->extras, i);
        if (nm && (strcmp(nm, "kurtosis") == 0 || strcmp(nm, "crest") == 0))
            impact += excess(x, nb + nl + i);
    }
    tol = 0.03 * speed_hz;
    h1 = at_order(x, 1.0, speed_hz, tol);
    h2 = at_order(x, 2.0, speed_hz, tol);
    for (i = 0; i < 9u; i++)
        others[i] = at_order(x, k_others[i], speed_hz, tol);
    lf_total = pairwise(x, nb, nl);
    if (b && b->n_balls) {
        static const char *const hints[] = {"bearing_outer_race", "bearing_inner_race", "bearing_ball"};
        const double ball = (double)b->ball_d_mm, pitch = (double)b->pitch_d_mm;
        const double c = ball / pitch * cos((double)b->contact_deg * (3.141592653589793 / 180.0));
        double o[3], best_v = 0.0;
        int k, best = -1;
        o[0] = (double)b->n_balls / 2.0 * (1.0 - c);
        o[1] = (double)b->n_balls / 2.0 * (1.0 + c);
        o[2] = pitch / (2.0 * ball) * (1.0 - c * c);
        for (k = 0; k < 3; k++) {
            double v = 0.0;
            int h;
            for (h = 1; h <= 3; h++)
                v += at_order(x, (double)h * o[k], speed_hz, tol);
            if (best < 0 || v > best_v) {
                best = k;
                best_v = v;
            }
        }
        if (best_v > 0.25 * total && best_v > h1 + h2)
            return hints[best];
    }
    if (impact >= 0.5 * total)
        return "bearing";
    if (lf_total < 0.3 * total)
        return "unknown";
    for (i = 0; i < 9u; i++) {
        n_big += others[i] > 0.05 * total;
        sum_others += others[i];
    }
    if (n_big >= 2u && sum_others > (h1 > h2 ? h1 : h2))
        return "looseness";
    if (h2 > h1 && h2 > 0.2 * total)
        return "misalignment";
    if (h1 > 0.2 * total)
        return "unbalance";
    return "unknown";
}

ef_status ef_bearing_set(ef_bearing *b, uint32_t n_balls, double ball_d_mm, double pitch_d_mm, double contact_deg)
{
    float ball, pitch, contact;
    if (b == NULL)
        return EF_ERR_ARG;
    if (n_balls == 0u && ball_d_mm == 0.0 && pitch_d_mm == 0.0 && contact_deg == 0.0) {
        memset(b, 0, sizeof *b);
        return EF_OK;
    }
    ball = (float)ball_d_mm;
    pitch = (float)pitch_d_mm;
    contact = (float)contact_deg;
    if (n_balls < 3u || n_balls > 60u || !(ball > 0.0f && pitch > 0.0f) || !isfinite((double)ball + (double)pitch) ||
        !((double)ball < 0.5 * (double)pitch) || !(contact >= 0.0f && contact < 60.0f))
        return EF_ERR_BEARING;
    b->n_balls = (uint8_t)n_balls;
    b->ball_d_mm = ball;
    b->pitch_d_mm = pitch;
    b->contact_deg = contact;
    return EF_OK;
}

size_t ef_diag_explain(const ef_model *m, const float *f, const uint8_t *center, const uint8_t *spread,
                       double speed_hz, const ef_bearing *bearing, ef_proto_why why[EF_DIAG_TOP], const char **hint)
{
    ctx x;
    const ef_features_view *fv;
    uint32_t n, j, k, top[EF_DIAG_TOP], n_top = 0;
    double total;
    *hint = NULL;
    if (m == NULL || f == NULL || center == NULL || spread == NULL || !ef_model_features(m, &x.fv) ||
        x.fv.kind != EF_FEATURE_KIND_V2)
        return 0;
    fv = &x.fv;
    x.f = f;
    x.center = center;
    x.spread = spread;
    n = m->n_inputs;
    total = pairwise(&x, 0, n);
    if (!(total > 0.0) || !isfinite(total))
        return 0;
    /* the top 3, largest first, ties to the lower index (a stable argsort of -err) */
    for (k = 0; k < EF_DIAG_TOP && k < n; k++) {
        double best_v = -1.0;
        uint32_t best = 0;
        for (j = 0; j < n; j++) {
            uint32_t t;
            double v;
            int taken = 0;
            for (t = 0; t < n_top; t++)
                taken |= top[t] == j;
            if (taken)
                continue;
            v = excess(&x, j);
            if (v > best_v) {
                best_v = v;
                best = j;
            }
        }
        top[n_top++] = best;
    }
    for (k = 0; k < n_top; k++) {
        const uint32_t i = top[k];
        ef_proto_why *w = &why[k];
        memset(w, 0, sizeof *w);
        w->share = rint(excess(&x, i) / total * 1000.0) / 1000.0;
        if (i < fv->n_bands) {
            w->lo = rint(edge(fv->edges_hz, i) * 10.0) / 10.0;
            w->hi = rint(edge(fv->edges_hz, i + 1u) * 10.0) / 10.0;
        } else if (i < (uint32_t)fv->n_bands + fv->n_lf) {
            w->lo = rint(edge(fv->lf_edges_hz, i - fv->n_bands) * 10.0) / 10.0;
            w->hi = rint(edge(fv->lf_edges_hz, i - fv->n_bands + 1u) * 10.0) / 10.0;
        } else
            w->name = extra_name(fv->extras, i - fv->n_bands - fv->n_lf);
    }
    *hint = hint_of(&x, total, speed_hz, bearing);
    return n_top;
}
