/* Why a judged window is anomalous, and a fault-type hint (docs/protocol.md `why`/`hint`), as the
 * Python reference edgefleet/runtime/diagnosis.py: each input's one-sided excess over its class's
 * normal, max(z, 0)^2 of the baseline-standardized input (the z the node quantizes), in float64;
 * the top 3 by share (ties: lower index first), named by band edges (HF, then LF) or the extras'
 * names; the hint by diagnosis.fault_hint's rules from the speed the node used and the optional
 * bearing geometry of the node's config. No buffers: z is recomputed per input (51 inputs). */
#ifndef EF_DIAGNOSIS_H
#define EF_DIAGNOSIS_H
#include <stddef.h>
#include <stdint.h>

#include "ef/model.h"
#include "ef/protocol.h"
#include "ef/status.h"

#define EF_DIAG_TOP 3u

/* A rolling-element bearing (rotating inner race), from the node's config; n_balls 0: none. */
typedef struct {
    uint8_t n_balls;
    float ball_d_mm, pitch_d_mm, contact_deg;
} ef_bearing;

/* Set b from a config (Python BearingGeometry's checks on the float32 values stored: 3-60 rolling
 * elements, diameters finite and > 0, ball below half the pitch, contact angle in [0, 60) degrees).
 * EF_ERR_BEARING and b unchanged on nonsense; n_balls 0 (all zero) clears it. */
ef_status ef_bearing_set(ef_bearing *b, uint32_t n_balls, double ball_d_mm, double pitch_d_mm,
                         double contact_deg);

/* The why items (0..3, largest share first, rounded as Contributor.to_message: lo/hi to 0.1 Hz,
 * share to 0.001) and *hint (a schema fault type; NULL when there are no items) of a window with
 * features f judged by the class (center, spread: int16 Q10 LE [n]). Feature kind 2 only (else 0).
 * speed_hz: the speed the node used (<= 0 or not finite: unknown, hint "unknown"). */
size_t ef_diag_explain(const ef_model *m, const float *f, const uint8_t *center, const uint8_t *spread,
                       double speed_hz, const ef_bearing *bearing, ef_proto_why why[EF_DIAG_TOP],
                       const char **hint);

#endif
