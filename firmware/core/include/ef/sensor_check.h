/* Is the sensor itself sane? The per-window check of the raw samples, before any feature, as the
 * Python reference edgefleet/runtime/sensor_check.py (docs/baseline.md, "Sensor faults"):
 *   sensor_dead       standard deviation under dead_rms, or half the consecutive pairs repeat a
 *                     value strictly inside the window's range (stuck / held output);
 *   sensor_saturated  >= n/200 (and >= 4) samples exactly at a piled-up max or min (one holding
 *                     more than EF_SENSOR_SAT_PILE times the samples of the next value inside the
 *                     range: clipping piles the tail onto one value, a smooth or periodic signal's
 *                     peak holds about as many as its neighbours), or at/over the known full scale
 *                     (rail > 0);
 *   sensor_dropout    a run of >= 16 equal samples strictly inside the range, or a non-finite sample.
 * First match wins in that order. Exact decisions: counts, comparisons, and one float32 variance
 * summed in sample order (mean, then squared deviations; build with -ffp-contract=off), so the
 * outcome and the figures equal Python's bit for bit. No buffers, one pass for the mean and one
 * for the rest. A window with an outcome gets it as its result state: no verdict, no drift, no
 * alarm change. */
#ifndef EF_SENSOR_CHECK_H
#define EF_SENSOR_CHECK_H
#include <stdint.h>

typedef enum {
    EF_SENSOR_OK = 0,
    EF_SENSOR_DEAD = 1,
    EF_SENSOR_SATURATED = 2,
    EF_SENSOR_DROPOUT = 3
} ef_sensor_outcome;

#define EF_SENSOR_DEAD_RMS 0.012f /* g: twice a MEMS sensor's noise floor (IIS3DWB: 6 mg RMS) */
#define EF_SENSOR_SAT_DEN 200u
#define EF_SENSOR_SAT_MIN 4u
#define EF_SENSOR_SAT_PILE 4u
#define EF_SENSOR_DROPOUT_RUN 16u

typedef struct {
    float dead_rms; /* the RMS under which the sensor reads nothing (sample units) */
    float rail;     /* full scale in sample units; 0: unknown (only flat tops count) */
} ef_sensor_limits;

/* The figures that decided the outcome (all 0 for a window with a non-finite sample). */
typedef struct {
    float rms;            /* standard deviation, float32, summed in sample order */
    uint32_t at_extreme;  /* samples exactly at a piled-up max or min (or at/over the rail, if more) */
    uint32_t longest_run; /* longest run of one value strictly inside the range (0: none) */
    uint32_t stuck_pairs; /* consecutive equal pairs strictly inside the range */
} ef_sensor_figures;

/* The outcome of n float32 samples (n < 2 or x NULL: EF_SENSOR_DEAD); fig may be NULL. */
ef_sensor_outcome ef_sensor_check(const float *x, uint32_t n, const ef_sensor_limits *lim, ef_sensor_figures *fig);

/* The result state an outcome reports: NULL for EF_SENSOR_OK, else EF_PROTO_SENSOR_* (ef/protocol.h). */
const char *ef_sensor_state(ef_sensor_outcome o);

#endif
