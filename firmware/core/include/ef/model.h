/* Model artifact v1 reader (feature kinds 1 and 2) (docs/artifact-format.md), in place, no copies.
 *
 * ef_model_open() validates the whole artifact (magic, version, sizes,
 * offsets, alignment, CRC32, feature/scoring sections, every layer and the
 * layer chain) before any accessor may be used; the accessors then read the
 * bytes where they lie (RAM or memory-mapped flash) without further checks. */
#ifndef EF_MODEL_H
#define EF_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "ef/status.h"

#define EF_MODEL_HEADER_SIZE 64u
#define EF_MODEL_LAYER_SIZE 44u
#define EF_MODEL_FORMAT_VERSION 1u

typedef struct {
    const uint8_t *base;   /* artifact start, 4-byte aligned */
    uint32_t total_size;
    uint32_t model_version;
    uint32_t min_firmware; /* major<<16 | minor<<8 | patch */
    uint16_t n_inputs, n_outputs, n_layers, arena_bytes;
    float input_scale, output_scale;
    int32_t input_zero_point, output_zero_point;
    uint32_t features_offset, layers_offset, scoring_offset;
    uint16_t requant_mode; /* EF_REQUANT_FP32 or EF_REQUANT_INT */
} ef_model;

#define EF_REQUANT_FP32 0u /* LiteRT default resolver (XNNPACK): float32 scale, rintf */
#define EF_REQUANT_INT 1u  /* LiteRT BUILTIN_REF: single-rounding int64 multiplier */
#define EF_MODEL_MAX_SCALE 256.0f

/* One layer record, decoded from the layer table (pointers into the artifact). */
typedef struct {
    uint16_t n_in, n_out;
    uint8_t activation, per_channel;
    int32_t input_zero_point, output_zero_point, act_min, act_max;
    const int8_t *weights;      /* [n_out][n_in] */
    const uint8_t *bias;        /* int32 LE [n_out], or NULL */
    const uint8_t *multipliers; /* int32 LE [n_out or 1] */
    const uint8_t *shifts;      /* int32 LE [n_out or 1] */
    const uint8_t *scales;      /* float32 LE [n_out or 1] (fp32 mode) */
} ef_layer;

/* Feature section view (docs/features.md); arrays are float32 LE.
 * Kind 1 (log band power v1): the model inputs are the n_bands bands. Kind 2 (v2): the
 * n_bands high-frequency bands, then n_lf low-frequency bands, then one input per bit
 * of `extras` (EF_EXTRA_*), n_features in all; the low-frequency fields are 0 in kind 1. */
#define EF_FEATURE_KIND_V1 1u
#define EF_FEATURE_KIND_V2 2u
#define EF_EXTRA_VRMS 1u     /* log10(vrms + 0.01), vrms in mm/s */
#define EF_EXTRA_KURTOSIS 2u /* log10(kurtosis + log_floor) */
#define EF_EXTRA_CREST 4u    /* log10(crest + log_floor) */
#define EF_LOWFREQ_PARAMS_SIZE 36u /* u16 length, settle, n_lf, extras; f32 x 7 */
typedef struct {
    uint16_t kind;       /* EF_FEATURE_KIND_V1 or _V2 */
    uint16_t n_bands;    /* high-frequency (v1) bands */
    uint16_t n_features; /* model inputs = n_inputs */
    float window_s, log_floor;
    const uint8_t *head;     /* the section's first byte: [head, mean) is the whole front end */
    const uint8_t *edges_hz; /* [n_bands+1] */
    const uint8_t *mean;     /* [n_features] */
    const uint8_t *inv_std;  /* [n_features] */
    /* kind 2 only (docs/features.md, "Parameters (artifact feature kind 2)") */
    uint16_t lf_length, lf_settle, n_lf, extras;
    float lf_rate_hz, lf_cut_hz, vel_lo_hz, vel_split_hz, vel_hi_hz, speed_min_hz, speed_max_hz;
    const uint8_t *lf_edges_hz; /* [n_lf+1] */
} ef_features_view;

typedef struct {
    uint16_t rule; /* 1: MSE between dequantized output and input */
    float threshold;
} ef_scoring_view;

/* Validate `len` bytes at `data` and fill `m`. Never reads outside [data, data+len). */
ef_status ef_model_open(ef_model *m, const uint8_t *data, size_t len);

/* Decode layer i (0 <= i < n_layers) of an opened model. */
void ef_model_layer(const ef_model *m, uint16_t i, ef_layer *out);

/* 1 and a filled view when the model has a features (scoring) section, else 0. */
int ef_model_features(const ef_model *m, ef_features_view *out);
int ef_model_scoring(const ef_model *m, ef_scoring_view *out);

/* Read element i of a float32 / int32 LE array held in the artifact. */
float ef_model_f32(const uint8_t *array, uint32_t i);
int32_t ef_model_i32(const uint8_t *array, uint32_t i);

#endif
