/* Artifact v1 validation (feature kinds 1 and 2) and in-place accessors (docs/artifact-format.md).
 *
 * Everything is checked once in ef_model_open(); offsets are compared in
 * 64-bit so no sum can wrap, and every array must lie inside total_size. */
#include "ef/model.h"

#include <math.h>

#include "ef/bytes.h"
#include "ef/crc.h"

#define SCORING_RULE_MSE 1u
#define SCORING_SIZE 8u

/* 1 when [off, off+size) lies inside the artifact, after the header, 4-aligned. */
static int span_ok(uint32_t total, uint32_t off, uint64_t size)
{
    return off >= EF_MODEL_HEADER_SIZE && (off & 3u) == 0 && (uint64_t)off + size <= total;
}

static int zp_ok(int32_t zp) { return zp >= -128 && zp <= 127; }

/* n finite float32 edges at e: >= 0 (> 0 when `positive`), strictly ascending. */
static int edges_ok(const uint8_t *e, uint32_t n, int positive)
{
    uint32_t i;
    float prev = 0.0f;
    for (i = 0; i < n; i++) {
        float v = ef_lef32(e + 4 * i);
        if (!isfinite(v) || (i == 0 ? (positive ? !(v > 0.0f) : !(v >= 0.0f)) : !(v > prev)))
            return 0;
        prev = v;
    }
    return 1;
}

/* The kind-2 low-frequency parameters at p (EF_LOWFREQ_PARAMS_SIZE bytes), the checks of
 * the Python reader (LowFreqParams), in double as Python compares them. */
static int lowfreq_ok(const uint8_t *p)
{
    uint32_t length = ef_le16(p), settle = ef_le16(p + 2), n_lf = ef_le16(p + 4), extras = ef_le16(p + 6);
    double v[7];
    uint32_t i;
    for (i = 0; i < 7; i++) {
        float x = ef_lef32(p + 8 + 4 * i);
        if (!isfinite(x))
            return 0;
        v[i] = (double)x;
    }
    /* v: rate, cut, vel_lo, vel_split, vel_hi, speed_min, speed_max */
    if (n_lf < 1 || (length != 128u && length != 256u && length != 512u && length != 1024u) || settle > 256u ||
        (extras & ~(EF_EXTRA_VRMS | EF_EXTRA_KURTOSIS | EF_EXTRA_CREST)) != 0)
        return 0;
    if (!(v[1] > 0.0 && v[1] < v[0] / 2.0))
        return 0;
    if (!(v[2] > 0.0 && v[2] < v[3] && v[3] <= 0.75 * v[1] && v[3] < v[4]))
        return 0;
    return v[5] > 0.0 && v[5] < v[6];
}

static uint32_t n_extras(uint32_t extras) { return (extras & 1u) + ((extras >> 1) & 1u) + ((extras >> 2) & 1u); }

static ef_status check_features(const ef_model *m)
{
    const uint8_t *b = m->base;
    uint32_t off = m->features_offset, kind, n, nf, i;
    uint64_t at;
    if (!span_ok(m->total_size, off, 12u))
        return EF_ERR_OFFSET;
    kind = ef_le16(b + off);
    if (kind != EF_FEATURE_KIND_V1 && kind != EF_FEATURE_KIND_V2)
        return EF_ERR_FEATURES;
    n = ef_le16(b + off + 2);
    if (!span_ok(m->total_size, off, 12u + 4u * ((uint64_t)n + 1u)))
        return EF_ERR_OFFSET;
    {
        float window_s = ef_lef32(b + off + 4), floor_ = ef_lef32(b + off + 8);
        if (!(window_s > 0.0f) || !isfinite(window_s) || !(floor_ > 0.0f) || !isfinite(floor_))
            return EF_ERR_FEATURES;
    }
    if (n < 1 || !edges_ok(b + off + 12, n + 1u, 0)) /* HF edges finite, >= 0, strictly ascending */
        return EF_ERR_FEATURES;
    at = (uint64_t)off + 12u + 4u * ((uint64_t)n + 1u);
    nf = n;
    if (kind == EF_FEATURE_KIND_V2) {
        const uint8_t *lf = b + at;
        uint32_t n_lf;
        if (!span_ok(m->total_size, off, at - off + EF_LOWFREQ_PARAMS_SIZE))
            return EF_ERR_OFFSET;
        if (!lowfreq_ok(lf))
            return EF_ERR_FEATURES;
        n_lf = ef_le16(lf + 4);
        at += EF_LOWFREQ_PARAMS_SIZE;
        if (!span_ok(m->total_size, off, at - off + 4u * ((uint64_t)n_lf + 1u)))
            return EF_ERR_OFFSET;
        /* LF edges in (0, lf_cut_hz], strictly ascending */
        if (!edges_ok(b + at, n_lf + 1u, 1) || !(ef_lef32(b + at + 4u * n_lf) <= ef_lef32(lf + 12)))
            return EF_ERR_FEATURES;
        at += 4u * ((uint64_t)n_lf + 1u);
        nf = n + n_lf + n_extras(ef_le16(lf + 6));
    }
    if (nf != m->n_inputs)
        return EF_ERR_FEATURES;
    if (!span_ok(m->total_size, off, at - off + 8u * (uint64_t)nf))
        return EF_ERR_OFFSET;
    for (i = 0; i < 2 * nf; i++) { /* mean and inv_std finite */
        if (!isfinite(ef_lef32(b + at + 4 * i)))
            return EF_ERR_FEATURES;
    }
    return EF_OK;
}

static ef_status check_scoring(const ef_model *m)
{
    const uint8_t *b = m->base + m->scoring_offset;
    if (!span_ok(m->total_size, m->scoring_offset, SCORING_SIZE))
        return EF_ERR_OFFSET;
    if (ef_le16(b) != SCORING_RULE_MSE || ef_le16(b + 2) != 0 || !isfinite(ef_lef32(b + 4)))
        return EF_ERR_SCORING;
    return EF_OK;
}

static ef_status check_layer(const ef_model *m, const uint8_t *r, uint32_t *arena)
{
    uint32_t n_in = ef_le16(r), n_out = ef_le16(r + 2);
    uint32_t n_q = r[5] ? n_out : 1u, o;
    int32_t act_min = ef_le32s(r + 16), act_max = ef_le32s(r + 20);
    uint32_t w_off = ef_le32(r + 24), b_off = ef_le32(r + 28);
    uint32_t m_off = ef_le32(r + 32), s_off = ef_le32(r + 36), sc_off = ef_le32(r + 40);
    uint64_t worst = 0, bias_max = 0;
    if (n_in == 0 || n_out == 0 || r[4] > 3 || r[5] > 1 || ef_le16(r + 6) != 0)
        return EF_ERR_LAYER;
    if (!zp_ok(ef_le32s(r + 8)) || !zp_ok(ef_le32s(r + 12)))
        return EF_ERR_LAYER;
    if (act_min < -128 || act_max > 127 || act_min > act_max)
        return EF_ERR_LAYER;
    if (!span_ok(m->total_size, w_off, (uint64_t)n_in * n_out) ||
        (b_off != 0 && !span_ok(m->total_size, b_off, 4u * (uint64_t)n_out)) ||
        !span_ok(m->total_size, m_off, 4u * (uint64_t)n_q) ||
        !span_ok(m->total_size, s_off, 4u * (uint64_t)n_q) ||
        !span_ok(m->total_size, sc_off, 4u * (uint64_t)n_q))
        return EF_ERR_OFFSET;
    for (o = 0; o < n_q; o++) {
        /* QuantizeMultiplier gives M in [2^30, 2^31) (or 0) and a shift the
         * kernel can apply without overflow: reject anything else. */
        int32_t mult = ef_le32s(m->base + m_off + 4 * o);
        int32_t shift = ef_le32s(m->base + s_off + 4 * o);
        float scale = ef_lef32(m->base + sc_off + 4 * o);
        if (mult < 0 || shift < -31 || shift > 30)
            return EF_ERR_LAYER;
        if (!isfinite(scale) || !(scale > 0.0f) || !(scale < EF_MODEL_MAX_SCALE))
            return EF_ERR_LAYER;
    }
    /* the int32 accumulator must not overflow: 255 * max_o sum|W| + max|b| < 2^31 */
    for (o = 0; o < n_out; o++) {
        const int8_t *w = (const int8_t *)(m->base + w_off) + (size_t)o * n_in;
        uint64_t sum = 0;
        uint32_t j;
        for (j = 0; j < n_in; j++)
            sum += (uint64_t)(w[j] < 0 ? -(int32_t)w[j] : w[j]);
        if (sum > worst)
            worst = sum;
        if (b_off != 0) {
            int64_t b = ef_le32s(m->base + b_off + 4 * o);
            uint64_t ab = (uint64_t)(b < 0 ? -b : b);
            if (ab > bias_max)
                bias_max = ab;
        }
    }
    if (255u * worst + bias_max >= ((uint64_t)1 << 31))
        return EF_ERR_LAYER;
    if (n_in + n_out > *arena)
        *arena = n_in + n_out;
    return EF_OK;
}

static ef_status check_layers(const ef_model *m)
{
    uint32_t i, arena = 0;
    uint32_t prev_out = m->n_inputs;
    int32_t prev_zp = m->input_zero_point;
    if (!span_ok(m->total_size, m->layers_offset, (uint64_t)m->n_layers * EF_MODEL_LAYER_SIZE))
        return EF_ERR_OFFSET;
    for (i = 0; i < m->n_layers; i++) {
        const uint8_t *r = m->base + m->layers_offset + i * EF_MODEL_LAYER_SIZE;
        ef_status st = check_layer(m, r, &arena);
        if (st != EF_OK)
            return st;
        if (ef_le16(r) != prev_out || ef_le32s(r + 8) != prev_zp)
            return EF_ERR_CHAIN;
        prev_out = ef_le16(r + 2);
        prev_zp = ef_le32s(r + 12);
    }
    if (prev_out != m->n_outputs || prev_zp != m->output_zero_point)
        return EF_ERR_CHAIN;
    if (arena != m->arena_bytes)
        return EF_ERR_SIZE;
    return EF_OK;
}

ef_status ef_model_open(ef_model *m, const uint8_t *data, size_t len)
{
    const uint8_t *b = data;
    ef_status st;
    if (m == NULL || data == NULL)
        return EF_ERR_ARG;
    if (((uintptr_t)data & 3u) != 0)
        return EF_ERR_OFFSET;
    if (len < EF_MODEL_HEADER_SIZE)
        return EF_ERR_TRUNCATED;
    if (memcmp(b, "EFAM", 4) != 0)
        return EF_ERR_MAGIC;
    if (ef_le16(b + 4) != EF_MODEL_FORMAT_VERSION)
        return EF_ERR_VERSION;
    if (ef_le16(b + 6) != EF_MODEL_HEADER_SIZE)
        return EF_ERR_SIZE;
    m->base = b;
    m->total_size = ef_le32(b + 8);
    if (m->total_size < EF_MODEL_HEADER_SIZE || (m->total_size & 3u) != 0)
        return EF_ERR_SIZE;
    if (m->total_size > len)
        return EF_ERR_TRUNCATED;
    if (ef_crc32(0, b + 16, m->total_size - 16u) != ef_le32(b + 12))
        return EF_ERR_CRC;
    m->model_version = ef_le32(b + 16);
    m->min_firmware = ef_le32(b + 20);
    m->n_inputs = ef_le16(b + 24);
    m->n_outputs = ef_le16(b + 26);
    m->n_layers = ef_le16(b + 28);
    m->arena_bytes = ef_le16(b + 30);
    m->input_scale = ef_lef32(b + 32);
    m->input_zero_point = ef_le32s(b + 36);
    m->output_scale = ef_lef32(b + 40);
    m->output_zero_point = ef_le32s(b + 44);
    m->features_offset = ef_le32(b + 48);
    m->layers_offset = ef_le32(b + 52);
    m->scoring_offset = ef_le32(b + 56);
    m->requant_mode = ef_le16(b + 60);
    if (m->requant_mode > EF_REQUANT_INT || ef_le16(b + 62) != 0)
        return EF_ERR_VERSION;
    if (m->n_inputs == 0 || m->n_outputs == 0 || m->n_layers == 0)
        return EF_ERR_SIZE;
    if (!(m->input_scale > 0.0f) || !isfinite(m->input_scale) ||
        !(m->output_scale > 0.0f) || !isfinite(m->output_scale) ||
        !zp_ok(m->input_zero_point) || !zp_ok(m->output_zero_point))
        return EF_ERR_SIZE;
    if (m->features_offset != 0 && (st = check_features(m)) != EF_OK)
        return st;
    if (m->scoring_offset != 0 && (st = check_scoring(m)) != EF_OK)
        return st;
    return check_layers(m);
}

void ef_model_layer(const ef_model *m, uint16_t i, ef_layer *l)
{
    const uint8_t *r = m->base + m->layers_offset + (uint32_t)i * EF_MODEL_LAYER_SIZE;
    uint32_t b_off = ef_le32(r + 28);
    l->n_in = ef_le16(r);
    l->n_out = ef_le16(r + 2);
    l->activation = r[4];
    l->per_channel = r[5];
    l->input_zero_point = ef_le32s(r + 8);
    l->output_zero_point = ef_le32s(r + 12);
    l->act_min = ef_le32s(r + 16);
    l->act_max = ef_le32s(r + 20);
    l->weights = (const int8_t *)(m->base + ef_le32(r + 24));
    l->bias = b_off ? m->base + b_off : NULL;
    l->multipliers = m->base + ef_le32(r + 32);
    l->shifts = m->base + ef_le32(r + 36);
    l->scales = m->base + ef_le32(r + 40);
}

int ef_model_features(const ef_model *m, ef_features_view *v)
{
    const uint8_t *b;
    if (m->features_offset == 0)
        return 0;
    b = m->base + m->features_offset;
    memset(v, 0, sizeof *v);
    v->head = b;
    v->kind = ef_le16(b);
    v->n_bands = ef_le16(b + 2);
    v->window_s = ef_lef32(b + 4);
    v->log_floor = ef_lef32(b + 8);
    v->edges_hz = b + 12;
    v->mean = v->edges_hz + 4u * (v->n_bands + 1u);
    v->n_features = v->n_bands;
    if (v->kind == EF_FEATURE_KIND_V2) {
        const uint8_t *lf = v->mean;
        v->lf_length = ef_le16(lf);
        v->lf_settle = ef_le16(lf + 2);
        v->n_lf = ef_le16(lf + 4);
        v->extras = ef_le16(lf + 6);
        v->lf_rate_hz = ef_lef32(lf + 8);
        v->lf_cut_hz = ef_lef32(lf + 12);
        v->vel_lo_hz = ef_lef32(lf + 16);
        v->vel_split_hz = ef_lef32(lf + 20);
        v->vel_hi_hz = ef_lef32(lf + 24);
        v->speed_min_hz = ef_lef32(lf + 28);
        v->speed_max_hz = ef_lef32(lf + 32);
        v->lf_edges_hz = lf + EF_LOWFREQ_PARAMS_SIZE;
        v->mean = v->lf_edges_hz + 4u * (v->n_lf + 1u);
        v->n_features = (uint16_t)(v->n_bands + v->n_lf + n_extras(v->extras));
    }
    v->inv_std = v->mean + 4u * v->n_features;
    return 1;
}

int ef_model_scoring(const ef_model *m, ef_scoring_view *v)
{
    const uint8_t *b;
    if (m->scoring_offset == 0)
        return 0;
    b = m->base + m->scoring_offset;
    v->rule = ef_le16(b);
    v->threshold = ef_lef32(b + 4);
    return 1;
}

float ef_model_f32(const uint8_t *array, uint32_t i) { return ef_lef32(array + 4u * i); }
int32_t ef_model_i32(const uint8_t *array, uint32_t i) { return ef_le32s(array + 4u * i); }
