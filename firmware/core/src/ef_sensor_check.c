/* The per-window sensor check (ef/sensor_check.h), operation for operation as
 * edgefleet/runtime/sensor_check.py: float32 sums strictly in sample order (numpy's cumsum). */
#include "ef/sensor_check.h"

#include <math.h>
#include <stddef.h>

#include "ef/protocol.h"

ef_sensor_outcome ef_sensor_check(const float *x, uint32_t n, const ef_sensor_limits *lim, ef_sensor_figures *fig)
{
    ef_sensor_figures f = {0.0f, 0u, 0u, 0u};
    const float dead_rms = lim ? lim->dead_rms : EF_SENSOR_DEAD_RMS;
    const float rail = lim ? lim->rail : 0.0f;
    float sum = 0.0f, ss = 0.0f, mean, hi, lo;
    float hi2 = 0.0f, lo2 = 0.0f; /* the next values inside the range (valid once at_hi2 / at_lo2 > 0) */
    uint32_t i, at_hi = 0u, at_lo = 0u, at_hi2 = 0u, at_lo2 = 0u, at_rail = 0u, run = 1u;
    ef_sensor_outcome o;
    if (fig)
        *fig = f;
    if (x == NULL || n < 2u)
        return EF_SENSOR_DEAD;
    hi = lo = x[0];
    for (i = 0u; i < n; i++) {
        if (!isfinite(x[i]))
            return EF_SENSOR_DROPOUT; /* a lost sample; the figures stay 0 */
        sum += x[i];
        if (x[i] > hi)
            hi = x[i];
        if (x[i] < lo)
            lo = x[i];
    }
    mean = sum / (float)n;
    for (i = 0u; i < n; i++) {
        const float d = x[i] - mean;
        ss += d * d;
        at_hi += x[i] == hi;
        at_lo += x[i] == lo;
        if (x[i] > lo && x[i] < hi) { /* the largest and smallest value inside, and how often each occurs */
            if (at_hi2 == 0u || x[i] > hi2) {
                hi2 = x[i];
                at_hi2 = 1u;
            } else if (x[i] == hi2) {
                at_hi2++;
            }
            if (at_lo2 == 0u || x[i] < lo2) {
                lo2 = x[i];
                at_lo2 = 1u;
            } else if (x[i] == lo2) {
                at_lo2++;
            }
        }
        if (rail > 0.0f && fabsf(x[i]) >= rail)
            at_rail++;
        if (i > 0u && x[i] == x[i - 1u] && x[i] > lo && x[i] < hi) {
            f.stuck_pairs++;
            run++;
            if (run > f.longest_run)
                f.longest_run = run;
        } else {
            run = 1u;
        }
    }
    f.rms = sqrtf(ss / (float)n);
    /* an extreme counts when piled up: more than EF_SENSOR_SAT_PILE times the next inside value's samples */
    f.at_extreme = ((uint64_t)at_hi > (uint64_t)EF_SENSOR_SAT_PILE * at_hi2 ? at_hi : 0u) +
                   ((uint64_t)at_lo > (uint64_t)EF_SENSOR_SAT_PILE * at_lo2 ? at_lo : 0u);
    if (at_rail > f.at_extreme)
        f.at_extreme = at_rail;
    if (ss < dead_rms * dead_rms * (float)n || (uint64_t)f.stuck_pairs * 2u >= (uint64_t)n - 1u)
        o = EF_SENSOR_DEAD;
    else if (f.at_extreme >= EF_SENSOR_SAT_MIN && (uint64_t)f.at_extreme * EF_SENSOR_SAT_DEN >= n)
        o = EF_SENSOR_SATURATED;
    else if (f.longest_run >= EF_SENSOR_DROPOUT_RUN)
        o = EF_SENSOR_DROPOUT;
    else
        o = EF_SENSOR_OK;
    if (fig)
        *fig = f;
    return o;
}

const char *ef_sensor_state(ef_sensor_outcome o)
{
    switch (o) {
    case EF_SENSOR_DEAD:
        return EF_PROTO_SENSOR_DEAD;
    case EF_SENSOR_SATURATED:
        return EF_PROTO_SENSOR_SATURATED;
    case EF_SENSOR_DROPOUT:
        return EF_PROTO_SENSOR_DROPOUT;
    default:
        return NULL;
    }
}
