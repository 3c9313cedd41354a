/* Commissioning on a node (ef/commission.h): the record's two flash copies, the row scratch,
 * the per-class progress. Mirrors the Python Commissioner (edgefleet/runtime/baseline.py). */
#include "ef/commission.h"

#include <math.h>
#include <string.h>

#include "ef/bytes.h"
#include "ef/crc.h"
#include "ef/crypto.h"

#define COPY_MAGIC 0x52424645u /* "EFBR" little-endian */
#define INDEX_MAGIC 0x59524645u /* "EFRY": the rows' index after the record in its copy (rows with
                                * their speeds; an "EFRX" index, of rows without, is not read) */
#define INDEX_ENTRY 12u        /* f32 rpm, u32 rows, u8 slot, u8 bank, u16 0 */
#define ROW_CHUNK 32u          /* features converted and written per flash write */

static uint32_t round_up(uint32_t v, uint32_t unit) { return (v + unit - 1u) / unit * unit; }

static uint32_t block_room(uint16_t n) { return round_up(EF_BASELINE_CLASS_SIZE(n), 4u); }

/* Bytes per stored row: n int16 Q10 features, then the window's speed (float32; 0: none). */
static uint32_t row_size(uint16_t n) { return 2u * n + 4u; }

/* ---- the record's copies ---- */

static uint32_t copy_off(const ef_commission *c, uint8_t copy) { return (uint32_t)copy * c->copy_size; }

/* The record of a copy whose head is complete and whose bytes pass every structural check
 * (any model), and its sequence number: EF_OK; else EF_ERR_NO_BASELINE (no head: never
 * written, erased, or cut before its head), EF_ERR_SIZE (a torn head) or the record's fault. */
static ef_status read_copy(const ef_commission *c, uint8_t copy, ef_baseline *b, uint32_t *seq)
{
    const ef_flash *f = c->records;
    const uint8_t *h = f->map(f->ctx, copy_off(c, copy), EF_COMMISSION_COPY_HEAD);
    uint32_t size;
    const uint8_t *rec;
    if (h == NULL || ef_le32(h) != COPY_MAGIC)
        return EF_ERR_NO_BASELINE;
    size = ef_le32(h + 8);
    if (size != ~ef_le32(h + 12) || size > c->copy_size - EF_COMMISSION_COPY_HEAD)
        return EF_ERR_SIZE;
    if ((rec = f->map(f->ctx, copy_off(c, copy) + EF_COMMISSION_COPY_HEAD, size)) == NULL)
        return EF_ERR_FLASH;
    *seq = ef_le32(h + 4);
    return ef_baseline_open(b, rec, size, NULL);
}

/* The newest valid copy (serial-number order, so the counter may wrap); the record in force if
 * it suits the model. Without one, load_status says why (a damaged copy's fault first). */
static void load(ef_commission *c)
{
    ef_baseline b[2];
    uint32_t seq[2];
    const ef_status s0 = read_copy(c, 0, &b[0], &seq[0]), s1 = read_copy(c, 1, &b[1], &seq[1]);
    uint8_t k;
    c->has_baseline = 0;
    c->seq = 0;
    if (s0 != EF_OK && s1 != EF_OK) {
        c->load_status = s0 != EF_ERR_NO_BASELINE ? s0 : s1;
        return;
    }
    k = (uint8_t)(s0 == EF_OK && s1 == EF_OK ? ((int32_t)(seq[1] - seq[0]) > 0) : s1 == EF_OK);
    c->copy = k;
    c->seq = seq[k];
    c->load_status = ef_baseline_open(&c->baseline, b[k].rec, b[k].size, &c->model);
    c->has_baseline = c->load_status == EF_OK;
}

/* ---- layout ---- */

/* Bytes per slot and bank: a fixed share of the scratch (8 slots x 2 banks), so that the rows a
 * record's classes were learned from stay where they are whatever a later commissioning's target. */
static uint32_t region_size(const ef_flash *rows)
{
    return rows->size / (2u * EF_BASELINE_MAX_CLASSES) / rows->erase_size * rows->erase_size;
}

/* Rows per class the scratch (8 slots x 2 banks) and the work buffer allow for models of
 * max_features inputs. */
static uint32_t capacity(const ef_flash *rows, uint16_t max_features, size_t work_len)
{
    const uint32_t region = region_size(rows);
    uint32_t by_rows = region / row_size(max_features), by_work = 0;
    if (work_len > block_room(max_features))
        by_work = (uint32_t)((work_len - block_room(max_features)) / sizeof(float));
    if (by_rows > by_work)
        by_rows = by_work;
    return by_rows < EF_BASELINE_MAX_WINDOWS ? by_rows : EF_BASELINE_MAX_WINDOWS;
}

static void restore_index(ef_commission *c);

ef_status ef_commission_init(ef_commission *c, const ef_flash *records, const ef_flash *rows,
                             uint16_t max_features, size_t work_len, const ef_model *m)
{
    ef_status st;
    if (c == NULL || records == NULL || rows == NULL || m == NULL || max_features == 0u ||
        records->erase_size == 0u || rows->erase_size == 0u)
        return EF_ERR_ARG;
    memset(c, 0, sizeof *c);
    if (records->map == NULL)
        return EF_ERR_FLASH;
    c->records = records;
    c->rows = rows;
    c->learn_new_classes = 1;
    c->max_features = max_features;
    c->copy_size = records->size / 2u / records->erase_size * records->erase_size;
    c->max_windows = capacity(rows, max_features, work_len);
    c->region = region_size(rows);
    if (c->copy_size < EF_COMMISSION_COPY_HEAD + EF_BASELINE_RECORD_SIZE(max_features, EF_BASELINE_MAX_CLASSES) ||
        c->max_windows < EF_BASELINE_DEFAULT_WINDOWS)
        return EF_ERR_CAPACITY;
    if ((st = ef_commission_model(c, m)) == EF_OK)
        restore_index(c); /* a record's rows are still in the scratch after a reset */
    return st;
}

ef_status ef_commission_model(ef_commission *c, const ef_model *m)
{
    ef_features_view f;
    ef_baseline_for was;
    if (c == NULL || m == NULL)
        return EF_ERR_ARG;
    if (!ef_model_features(m, &f))
        return EF_ERR_FEATURES;
    if (m->n_inputs > c->max_features)
        return EF_ERR_CAPACITY;
    was = c->model;
    c->model.frontend_crc = ef_baseline_frontend_crc(&f);
    c->model.n_features = m->n_inputs;
    load(c);
    if (c->learning && (was.frontend_crc != c->model.frontend_crc || was.n_features != c->model.n_features))
        c->learning = 0; /* its rows are features of another front end */
    if (!c->has_baseline && !c->learning)
        return ef_commission_start(c, 0, 0.0f, 0);
    return EF_OK;
}

/* ---- commissioning ---- */

static void keep_entries(ef_commission *c, int kept);

static int near(float rpm, float centre)
{
    return fabs((double)rpm - (double)centre) <= EF_BASELINE_RPM_TOLERANCE * (double)centre;
}

ef_status ef_commission_start(ef_commission *c, uint32_t windows, float rpm, int has_speed)
{
    if (c == NULL)
        return EF_ERR_ARG;
    if (windows == 0u)
        windows = EF_BASELINE_DEFAULT_WINDOWS;
    if (windows < EF_BASELINE_MIN_WINDOWS || windows > EF_BASELINE_MAX_WINDOWS || !(rpm >= 0.0f) || isinf(rpm))
        return EF_ERR_ARG;
    if (windows > c->max_windows)
        return EF_ERR_CAPACITY;
    if (rpm > 0.0f && !has_speed)
        return EF_ERR_INCOMPATIBLE;
    c->learning = 1;
    c->target = windows;
    c->only_rpm = rpm;
    c->region = region_size(c->rows);
    keep_entries(c, rpm > 0.0f); /* one class: the record's other classes keep their rows */
    return EF_OK;
}

/* The entry at k leaves the index (the others keep their order). */
static void drop_entry(ef_commission *c, uint8_t k)
{
    memmove(&c->cls[k], &c->cls[k + 1u], (size_t)(c->n_classes - k - 1u) * sizeof c->cls[0]);
    c->n_classes--;
}

static void keep_entries(ef_commission *c, int kept)
{
    uint8_t k = 0;
    while (k < c->n_classes)
        if (kept && c->cls[k].kept)
            k++;
        else
            drop_entry(c, k);
}

/* A slot no entry uses; with all 8 taken, the rows of a record class are given up: the one whose
 * band holds rpm (a new learning of it would replace it), else the lowest band (a record keeps
 * the 8 highest). -1 if none can be. */
static int free_slot(ef_commission *c, float rpm)
{
    uint8_t used = 0, k, victim = 0;
    for (k = 0; k < c->n_classes; k++)
        used |= (uint8_t)(1u << c->cls[k].slot);
    for (k = 0; k < EF_BASELINE_MAX_CLASSES; k++)
        if (!(used & (1u << k)))
            return k;
    for (k = 0; k < c->n_classes; k++) {
        if (!c->cls[k].kept)
            continue;
        if (rpm > 0.0f && near(rpm, c->cls[k].rpm)) {
            victim = k;
            break;
        }
        if (!c->cls[victim].kept || c->cls[k].rpm < c->cls[victim].rpm)
            victim = k;
    }
    if (!c->cls[victim].kept)
        return -1;
    k = c->cls[victim].slot;
    drop_entry(c, victim);
    return k;
}

/* The class of a window at rpm (0: no speed), opened if new; -1 beyond 8 classes. */
static int class_of(ef_commission *c, float rpm)
{
    int slot;
    uint8_t k;
    for (k = 0; k < c->n_classes; k++)
        if (!c->cls[k].kept && (c->cls[k].rpm == 0.0f) == (rpm == 0.0f) && (rpm == 0.0f || near(rpm, c->cls[k].rpm)))
            return k;
    if ((slot = free_slot(c, rpm)) < 0)
        return -1;
    memset(&c->cls[c->n_classes], 0, sizeof c->cls[0]);
    c->cls[c->n_classes].rpm = rpm;
    c->cls[c->n_classes].slot = (uint8_t)slot;
    return c->n_classes++;
}

/* Where row i of entry k's bank b begins in the rows' area. */
static uint32_t row_off(const ef_commission *c, int k, uint8_t bank, uint32_t i)
{
    return (2u * (uint32_t)c->cls[k].slot + bank) * c->region + i * row_size(c->model.n_features);
}

/* Program `len` bytes at off, first erasing every sector the bytes are the first to reach (the
 * bank's rows are written in order from its start, so no sector holding rows is erased). */
static int put_rows(const ef_commission *c, uint32_t off, const void *data, uint32_t len)
{
    const ef_flash *f = c->rows;
    uint32_t s;
    for (s = round_up(off, f->erase_size); s < off + len; s += f->erase_size)
        if (f->erase(f->ctx, s, f->erase_size) != 0)
            return -1;
    return f->write(f->ctx, off, data, len);
}

/* Append one row (Q10, then its speed) at the end of class k's bank. */
static int store_row(ef_commission *c, int k, const float *features, float rpm)
{
    const uint32_t n = c->model.n_features, off = row_off(c, k, c->cls[k].bank, c->cls[k].rows);
    uint8_t speed[4];
    uint32_t j;
    for (j = 0; j < n; j += ROW_CHUNK) {
        int16_t q[ROW_CHUNK];
        uint8_t b[2u * ROW_CHUNK];
        const uint16_t m = (uint16_t)(n - j < ROW_CHUNK ? n - j : ROW_CHUNK);
        uint16_t i;
        ef_baseline_to_q10(features + j, m, q); /* finite: checked by the caller */
        for (i = 0; i < m; i++) {
            b[2u * i] = (uint8_t)q[i];
            b[2u * i + 1u] = (uint8_t)((uint16_t)q[i] >> 8);
        }
        if (put_rows(c, off + 2u * j, b, 2u * m) != 0)
            return -1;
    }
    memcpy(&j, &rpm, sizeof j);
    ef_put_le32(speed, j);
    return put_rows(c, off + 2u * n, speed, 4u);
}

typedef struct {
    const ef_flash *f;
    uint32_t base;
} region_reader;

static int read_region(void *ctx, uint32_t off, void *dst, uint32_t len)
{
    const region_reader *r = (const region_reader *)ctx;
    return r->f->read(r->f->ctx, r->base + off, dst, len);
}

/* Class k's rows, as ef_baseline reads them. */
static ef_baseline_rows class_rows(const ef_commission *c, int k, region_reader *rr)
{
    ef_baseline_rows rows;
    rr->f = c->rows;
    rr->base = row_off(c, k, c->cls[k].bank, 0);
    rows.read = read_region;
    rows.ctx = rr;
    rows.count = c->cls[k].rows;
    rows.stride = row_size(c->model.n_features);
    return rows;
}

/* Have class k's rows [first, first + count) settled on their own (ef_baseline_settled, with
 * their speeds)? 1 or 0; -1 on a read error. `work` as for the whole class (a part needs less). */
static int part_settled(const ef_commission *c, int k, uint32_t first, uint32_t count, void *work, size_t work_len)
{
    region_reader rr;
    ef_baseline_rows rows = class_rows(c, k, &rr);
    int settled;
    rr.base += first * rows.stride;
    rows.count = count;
    return ef_baseline_settled(&rows, c->model.n_features, work, work_len, &settled) == EF_OK ? settled : -1;
}

/* Keep `count` rows of class k from row `first` on, the others dropped: they go to the start of
 * the other bank, through RAM (NOR flash cannot drop rows in place). */
static int keep_rows(ef_commission *c, int k, uint32_t first, uint32_t count)
{
    const uint32_t len = row_size(c->model.n_features);
    const uint8_t from = c->cls[k].bank, to = (uint8_t)(from ^ 1u);
    uint8_t b[2u * ROW_CHUNK];
    uint32_t i, j;
    for (i = 0; i < count; i++)
        for (j = 0; j < len; j += sizeof b) {
            const uint32_t m = len - j < sizeof b ? len - j : (uint32_t)sizeof b;
            if (c->rows->read(c->rows->ctx, row_off(c, k, from, first + i) + j, b, m) != 0 ||
                put_rows(c, row_off(c, k, to, i) + j, b, m) != 0)
                return -1;
        }
    c->cls[k].bank = to;
    c->cls[k].rows = count;
    return 0;
}

ef_commission_outcome ef_commission_add(ef_commission *c, const float *features, float rpm, void *work,
                                        size_t work_len)
{
    const int known = ef_baseline_rpm_known(rpm);
    const uint32_t half = c->target / 2u;
    region_reader rr;
    ef_baseline_rows rows;
    int k, settled = 1, apart = 0;
    uint16_t j;
    if (!c->learning)
        return EF_COMM_OTHER_CLASS;
    for (j = 0; j < c->model.n_features; j++)
        if (!isfinite(features[j]))
            return EF_COMM_NONFINITE;
    if (c->only_rpm > 0.0f && (!known || !near(rpm, c->only_rpm)))
        return EF_COMM_OTHER_CLASS;
    if ((k = class_of(c, known ? rpm : 0.0f)) < 0)
        return EF_COMM_CLASS_LIMIT;
    if (c->cls[k].rows >= c->target)
        return EF_COMM_CLASS_FULL;
    if (store_row(c, k, features, known ? rpm : 0.0f) != 0)
        return EF_COMM_FLASH_ERROR;
    if (++c->cls[k].rows < c->target || c->cls[k].restarts >= EF_BASELINE_MAX_RESTARTS)
        return EF_COMM_LEARNING;
    rows = class_rows(c, k, &rr); /* the target reached: has the class settled? */
    if (ef_baseline_settled(&rows, c->model.n_features, work, work_len, &settled) != EF_OK)
        return EF_COMM_FLASH_ERROR;
    if (settled)
        return EF_COMM_LEARNING;
    if (known && ef_baseline_speeds_apart(&rows, c->model.n_features, &apart) != EF_OK)
        return EF_COMM_FLASH_ERROR;
    if (apart) { /* halves at other speeds: each steady on its own, the class keeps both stints */
        if ((settled = part_settled(c, k, 0, half, work, work_len)) > 0)
            settled = part_settled(c, k, half, c->cls[k].rows - half, work, work_len);
        if (settled != 0)
            return settled > 0 ? EF_COMM_LEARNING : EF_COMM_FLASH_ERROR;
        if (c->cls[k].waits < EF_COMMISSION_MAX_WAITS) { /* else a run-in cannot be told: wait for the older speeds */
            c->cls[k].waits++;
            return keep_rows(c, k, 0, half) == 0 ? EF_COMM_SPEEDS_APART : EF_COMM_FLASH_ERROR;
        }
    }
    c->cls[k].restarts++;
    return keep_rows(c, k, half, c->cls[k].rows - half) == 0 ? EF_COMM_NOT_STATIONARY : EF_COMM_FLASH_ERROR;
}

ef_window_state ef_commission_window(ef_commission *c, const ef_baseline_model *sm, const float *features,
                                     float rpm, void *work, size_t work_len, ef_baseline_verdict *v,
                                     ef_commission_outcome *outcome)
{
    const int cls = !c->has_baseline ? -1
                    : c->estimated ? ef_baseline_class_for_estimate(&c->baseline, rpm)
                                   : ef_baseline_class_for(&c->baseline, rpm);
    int steady;
    memset(v, 0, sizeof *v);
    v->cls = -1;
    if (!c->learning && c->has_baseline && cls < 0 && c->learn_new_classes && ef_baseline_rpm_known(rpm) &&
        c->baseline.n_classes < EF_BASELINE_MAX_CLASSES)
        ef_commission_start(c, 0, rpm, 1); /* a speed never seen: learn its class too */
    steady = ef_baseline_steady_speed_tol(rpm, c->last_rpm, c->estimated ? EF_BASELINE_STEADY_SPEED_ESTIMATED
                                                                          : EF_BASELINE_STEADY_SPEED);
    c->last_rpm = rpm;
    if (c->learning && !(cls >= 0 && c->only_rpm > 0.0f && !near(rpm, c->only_rpm))) {
        *outcome = steady ? ef_commission_add(c, features, rpm, work, work_len) : EF_COMM_SPEED_CHANGING;
        return EF_WINDOW_COMMISSIONING;
    }
    if (cls < 0 || ef_baseline_judge_class(&c->baseline, sm, features, cls, v) != EF_OK || v->cls < 0) {
        v->cls = -1;
        return EF_WINDOW_UNCOMMISSIONED;
    }
    return EF_WINDOW_JUDGED;
}

int ef_commission_done(const ef_commission *c)
{
    uint8_t k;
    int any = 0;
    if (!c->learning)
        return 0;
    for (k = 0; k < c->n_classes; k++) {
        if (c->cls[k].kept)
            continue;
        if (c->cls[k].rows < c->target)
            return 0;
        any = 1;
    }
    return any;
}

/* ---- finishing: the new record ---- */

/* One class of the new record: learned now (a commissioning class) or kept (the record's). */
typedef struct {
    float lo;               /* its band's low end: the record's order */
    uint8_t fresh, index;
    int8_t same_as;         /* >= 0: re-learned for another model: must give this record class's centre
                             * and spread (else its rows are not that class's: the record's block is kept) */
} entry;

/* A new class's band, as learn_class stores it: centre * (1 -+ 0.05) in double, as float32. */
static float band_lo(float rpm) { return rpm == 0.0f ? 0.0f : (float)((double)rpm * (1.0 - EF_BASELINE_RPM_TOLERANCE)); }
static float band_hi(float rpm) { return rpm == 0.0f ? 0.0f : (float)((double)rpm * (1.0 + EF_BASELINE_RPM_TOLERANCE)); }

/* A kept class a new one replaces: its band holds the centre of a new class's band (an any-speed
 * class: a new any-speed class), as device_sim's merge_baseline. */
static int replaced(const ef_commission *c, const ef_baseline_class *cl, uint32_t min_windows)
{
    const int any = cl->rpm_lo == 0.0f && cl->rpm_hi == 0.0f;
    uint8_t k;
    for (k = 0; k < c->n_classes; k++) {
        const double x = 0.5 * ((double)band_lo(c->cls[k].rpm) + (double)band_hi(c->cls[k].rpm));
        if (!c->cls[k].kept && c->cls[k].rows >= min_windows &&
            (((double)cl->rpm_lo <= x && x <= (double)cl->rpm_hi) || (any && x == 0.0)))
            return 1;
    }
    return 0;
}

/* The classes of the new record, by the low end of their band (stable insertion sort: the kept
 * classes before the new ones at equal ends), the 8 highest if there are more. */
static int plan_classes(const ef_commission *c, uint32_t min_windows, entry *out)
{
    int n = 0, fresh = 0, i, j;
    uint16_t k;
    if (c->only_rpm > 0.0f && c->has_baseline)
        for (k = 0; k < c->baseline.n_classes; k++) {
            ef_baseline_class cl;
            ef_baseline_class_at(&c->baseline, k, &cl);
            if (replaced(c, &cl, min_windows))
                continue;
            out[n].lo = cl.rpm_lo;
            out[n].fresh = 0;
            out[n].same_as = -1;
            out[n++].index = (uint8_t)k;
        }
    for (k = 0; k < c->n_classes; k++)
        if (!c->cls[k].kept && c->cls[k].rows >= min_windows) {
            out[n].lo = band_lo(c->cls[k].rpm);
            out[n].fresh = 1;
            out[n].same_as = -1;
            out[n++].index = (uint8_t)k;
            fresh++;
        }
    if (fresh == 0)
        return 0;
    for (i = 1; i < n; i++)
        for (j = i; j > 0 && out[j].lo < out[j - 1].lo; j--) {
            entry t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    if (n > (int)EF_BASELINE_MAX_CLASSES) { /* keep the highest bands */
        memmove(out, out + (n - (int)EF_BASELINE_MAX_CLASSES), EF_BASELINE_MAX_CLASSES * sizeof *out);
        n = (int)EF_BASELINE_MAX_CLASSES;
    }
    return n;
}

/* Append bytes to the copy being written, and to its CRC. */
typedef struct {
    const ef_flash *f;
    uint32_t off;
    uint32_t crc;
    int err;
} writer;

static void put(writer *w, const void *data, uint32_t len)
{
    if (w->err || w->f->write(w->f->ctx, w->off, data, len) != 0) {
        w->err = 1;
        return;
    }
    w->crc = ef_crc32(w->crc, data, len);
    w->off += len;
}

/* Class k of the record in force, its block's bytes in place. */
static const uint8_t *record_block(const ef_commission *c, int k)
{
    return c->baseline.rec + EF_BASELINE_HEADER_SIZE + (uint32_t)k * EF_BASELINE_CLASS_SIZE(c->baseline.n);
}

/* A block learned again from rows said to be record class k's: the same centre and spread? */
static int same_normal(const ef_commission *c, int k, const uint8_t *block)
{
    return memcmp(block + EF_BASELINE_CLASS_HEAD, record_block(c, k) + EF_BASELINE_CLASS_HEAD,
                  4u * (uint32_t)c->baseline.n) == 0;
}

/* Class e's block into `block`: learned from its rows, or copied from the record in force. */
static ef_status class_block(const ef_commission *c, const entry *e, const ef_baseline_model *sm,
                             float *features, void *work, size_t work_len, uint8_t *block)
{
    region_reader rr;
    ef_baseline_rows rows;
    uint32_t floored;
    ef_status st;
    if (e->fresh) {
        rows = class_rows(c, e->index, &rr);
        st = ef_baseline_learn_class(&rows, c->model.n_features, c->cls[e->index].rpm, sm, features, work,
                                     work_len, block, &floored);
        if (st != EF_OK || e->same_as < 0 || same_normal(c, e->same_as, block))
            return st;
    }
    /* through RAM: not every flash programs from itself */
    memcpy(block, record_block(c, e->fresh ? e->same_as : e->index), EF_BASELINE_CLASS_SIZE(c->baseline.n));
    return EF_OK;
}

/* Write the record of `plan` into copy t after its head; the record's size, or 0. */
static uint32_t write_record(ef_commission *c, uint8_t t, const entry *plan, int n_plan, const ef_baseline_model *sm,
                             uint64_t learned_ms, float *features, void *work, size_t work_len, ef_status *st)
{
    const uint16_t n = c->model.n_features;
    uint8_t head[EF_BASELINE_HEADER_SIZE], crc[4], *block;
    uint32_t windows = 0;
    uint16_t flags = 0;
    writer w;
    int i;
    for (i = 0; i < n_plan; i++) {
        if (plan[i].fresh) {
            windows += c->cls[plan[i].index].rows;
            flags |= c->cls[plan[i].index].rpm > 0.0f ? EF_BASELINE_FLAG_RPM_KEYED : 0u;
        } else {
            ef_baseline_class cl;
            ef_baseline_class_at(&c->baseline, plan[i].index, &cl);
            windows += cl.windows;
            flags |= !(cl.rpm_lo == 0.0f && cl.rpm_hi == 0.0f) ? EF_BASELINE_FLAG_RPM_KEYED : 0u;
        }
    }
    block = (uint8_t *)work + (work_len - block_room(n)); /* the block at the end, the sort buffer before it */
    work_len -= block_room(n);
    w.f = c->records;
    w.off = copy_off(c, t) + EF_COMMISSION_COPY_HEAD;
    w.crc = 0;
    w.err = 0;
    ef_baseline_header(head, n, (uint16_t)n_plan, flags, c->model.frontend_crc, learned_ms, windows);
    put(&w, head, sizeof head);
    for (i = 0; i < n_plan && !w.err; i++) {
        if ((*st = class_block(c, &plan[i], sm, features, work, work_len, block)) != EF_OK)
            return 0;
        put(&w, block, EF_BASELINE_CLASS_SIZE(n));
    }
    ef_put_le32(crc, w.crc);
    put(&w, crc, sizeof crc);
    *st = w.err ? EF_ERR_FLASH : EF_OK;
    return w.err ? 0u : EF_BASELINE_RECORD_SIZE(n, n_plan);
}

/* Write the record of `plan` to the copy not in force, its head last; put it in force and retire
 * the old copy (ef_commission_finish's steps after the plan). */
static int rows_of(const ef_commission *c, uint16_t k);

/* The copy's tail after a record of `size` bytes: the rows' index of the record's classes, so that
 * it outlives a reset: "EFRY", u32 count, per class INDEX_ENTRY bytes, then the CRC-32 of all
 * before it. C-only (the Python record knows no rows' slots); written only if the copy has room. */
static uint32_t index_size(uint32_t n) { return 8u + n * INDEX_ENTRY + 4u; }

/* The entry holding the rows of a plan's class (learned now, or kept for a record class); -1: none. */
static int plan_rows(const ef_commission *c, const entry *e) { return e->fresh ? e->index : rows_of(c, e->index); }

static void write_index(ef_commission *c, uint8_t t, uint32_t size, const entry *plan, int n_plan)
{
    uint8_t b[INDEX_ENTRY];
    uint32_t n = 0, u;
    writer w;
    int i, k;
    for (i = 0; i < n_plan; i++)
        n += plan_rows(c, &plan[i]) >= 0;
    if (EF_COMMISSION_COPY_HEAD + size + index_size(n) > c->copy_size)
        return; /* no room: after a reset the record's thresholds stay */
    w.f = c->records;
    w.off = copy_off(c, t) + EF_COMMISSION_COPY_HEAD + size;
    w.crc = 0;
    w.err = 0;
    ef_put_le32(b, INDEX_MAGIC);
    ef_put_le32(b + 4, n);
    put(&w, b, 8u);
    for (i = 0; i < n_plan; i++) {
        if ((k = plan_rows(c, &plan[i])) < 0)
            continue;
        memcpy(&u, &c->cls[k].rpm, sizeof u);
        ef_put_le32(b, u);
        ef_put_le32(b + 4, c->cls[k].rows);
        b[8] = c->cls[k].slot;
        b[9] = c->cls[k].bank;
        b[10] = b[11] = 0;
        put(&w, b, INDEX_ENTRY);
    }
    ef_put_le32(b, w.crc);
    put(&w, b, 4u); /* a write error leaves a tail whose CRC fails: ignored after a reset */
}

static ef_status commit_record(ef_commission *c, const entry *plan, int n_plan, const ef_baseline_model *sm,
                               uint64_t learned_ms, float *features, void *work, size_t work_len)
{
    const ef_flash *f = c->records;
    const int had = c->seq != 0u; /* a valid copy exists (in force or not): the new record goes to the other */
    const uint8_t old = c->copy, t = (uint8_t)(had ? old ^ 1u : 0u);
    uint8_t head[EF_COMMISSION_COPY_HEAD];
    uint32_t size;
    ef_status st;
    if (f->erase(f->ctx, copy_off(c, t), c->copy_size) != 0)
        return EF_ERR_FLASH;
    size = write_record(c, t, plan, n_plan, sm, learned_ms, features, work, work_len, &st);
    if (size == 0u)
        return st;
    write_index(c, t, size, plan, n_plan);
    ef_put_le32(head, COPY_MAGIC); /* the head last: until it is whole, the copy does not count */
    ef_put_le32(head + 4, c->seq + 1u);
    ef_put_le32(head + 8, size);
    ef_put_le32(head + 12, ~size);
    if (f->write(f->ctx, copy_off(c, t), head, sizeof head) != 0)
        return EF_ERR_FLASH;
    load(c);
    if (!c->has_baseline || c->copy != t)
        return EF_ERR_FLASH; /* cannot happen unless the flash lies */
    if (had)
        f->erase(f->ctx, copy_off(c, old), c->copy_size); /* retire the old copy; if cut, the new one wins */
    return EF_OK;
}

static int scratch_ok(const ef_commission *c, const ef_baseline_model *sm, const float *features, const void *work,
                      size_t work_len)
{
    return sm != NULL && features != NULL && work != NULL && !((uintptr_t)work & 3u) &&
           work_len >= block_room(c->model.n_features) + 4u;
}

/* ---- the rows' index: which slot holds the rows of which class ---- */

/* The entry (kept or learning, as `kept` says) whose rows taught class k of the record in force:
 * the same band and as many windows; -1 if none. */
static int entry_of(const ef_commission *c, uint16_t k, int kept)
{
    ef_baseline_class cl;
    uint8_t i;
    if (!c->has_baseline || k >= c->baseline.n_classes)
        return -1;
    ef_baseline_class_at(&c->baseline, k, &cl);
    for (i = 0; i < c->n_classes; i++)
        if (!c->cls[i].kept == !kept && c->cls[i].rows == cl.windows && band_lo(c->cls[i].rpm) == cl.rpm_lo &&
            band_hi(c->cls[i].rpm) == cl.rpm_hi)
            return i;
    return -1;
}

/* The kept rows of record class k (the index is RAM: none after a reset); -1 if none. */
static int rows_of(const ef_commission *c, uint16_t k) { return entry_of(c, k, 1); }

/* A new record is in force: the entries of its classes (those just learned, else those kept from
 * before) are its index from now on; the others leave, their slots free. */
static void reindex(ef_commission *c)
{
    uint8_t pick = 0;
    uint16_t k;
    int i;
    for (k = 0; k < c->baseline.n_classes; k++)
        if ((i = entry_of(c, k, 0)) >= 0 || (i = entry_of(c, k, 1)) >= 0)
            pick |= (uint8_t)(1u << i);
    for (i = (int)c->n_classes - 1; i >= 0; i--)
        if (!(pick & (1u << i)))
            drop_entry(c, (uint8_t)i);
        else {
            c->cls[i].kept = 1;
            c->cls[i].restarts = 0;
            c->cls[i].waits = 0;
        }
}

/* After a reset: the rows' index the copy in force carries, when whole and sane (each entry in its
 * own slot, within the node's capacity); the entries matching no class of the record leave. */
static void restore_index(ef_commission *c)
{
    const ef_flash *f = c->records;
    const uint32_t at = copy_off(c, c->copy) + EF_COMMISSION_COPY_HEAD + c->baseline.size;
    const uint8_t *p;
    uint32_t n, k, used = 0;
    if (c->n_classes || c->learning || !c->has_baseline ||
        EF_COMMISSION_COPY_HEAD + c->baseline.size + index_size(0) > c->copy_size ||
        (p = f->map(f->ctx, at, 8u)) == NULL || ef_le32(p) != INDEX_MAGIC ||
        (n = ef_le32(p + 4)) > EF_BASELINE_MAX_CLASSES ||
        EF_COMMISSION_COPY_HEAD + c->baseline.size + index_size(n) > c->copy_size ||
        (p = f->map(f->ctx, at, index_size(n))) == NULL ||
        ef_crc32(0, p, 8u + n * INDEX_ENTRY) != ef_le32(p + 8u + n * INDEX_ENTRY))
        return;
    for (k = 0; k < n; k++) {
        const uint8_t *e = p + 8u + k * INDEX_ENTRY;
        ef_commission_class *cl = &c->cls[k];
        memset(cl, 0, sizeof *cl);
        cl->rpm = ef_lef32(e);
        cl->rows = ef_le32(e + 4);
        cl->slot = e[8];
        cl->bank = e[9];
        cl->kept = 1;
        if (cl->slot >= EF_BASELINE_MAX_CLASSES || cl->bank > 1u || (used & (1u << cl->slot)) ||
            cl->rows > c->max_windows || !(cl->rpm >= 0.0f))
            return; /* n_classes is still 0: no index */
        used |= 1u << cl->slot;
    }
    c->n_classes = (uint8_t)n;
    reindex(c);
}

ef_status ef_commission_finish(ef_commission *c, const ef_baseline_model *sm, uint64_t learned_ms,
                               uint32_t min_windows, float *features, void *work, size_t work_len)
{
    entry plan[2u * EF_BASELINE_MAX_CLASSES];
    ef_status st;
    int n_plan;
    if (c == NULL || sm == NULL || features == NULL || work == NULL || ((uintptr_t)work & 3u))
        return EF_ERR_ARG;
    if (!c->learning)
        return EF_ERR_STATE;
    if (!scratch_ok(c, sm, features, work, work_len))
        return EF_ERR_CAPACITY;
    if ((n_plan = plan_classes(c, min_windows, plan)) == 0)
        return EF_ERR_TOO_FEW;
    if ((st = commit_record(c, plan, n_plan, sm, learned_ms, features, work, work_len)) != EF_OK)
        return st;
    c->learning = 0;
    reindex(c);
    return EF_OK;
}

/* ---- another model on the same front end: its thresholds from the kept rows ---- */

int ef_commission_kept_rows(const ef_commission *c)
{
    uint16_t k;
    int n = 0;
    for (k = 0; c->has_baseline && k < c->baseline.n_classes; k++)
        n += rows_of(c, k) >= 0;
    return n;
}

ef_status ef_commission_rederive(ef_commission *c, const ef_baseline_model *sm, float *features, void *work,
                                 size_t work_len)
{
    entry plan[EF_BASELINE_MAX_CLASSES];
    uint16_t k;
    if (c == NULL || sm == NULL)
        return EF_ERR_ARG;
    if (!c->has_baseline)
        return EF_ERR_STATE;
    if (!scratch_ok(c, sm, features, work, work_len) || sm->model->n_inputs != c->baseline.n)
        return EF_ERR_ARG;
    if (ef_commission_kept_rows(c) == 0)
        return EF_ERR_TOO_FEW;
    for (k = 0; k < c->baseline.n_classes; k++) { /* the record's classes in its order: re-learned or kept */
        const int i = rows_of(c, k);
        plan[k].fresh = (uint8_t)(i >= 0);
        plan[k].index = (uint8_t)(i >= 0 ? i : k);
        plan[k].same_as = (int8_t)k;
    }
    return commit_record(c, plan, c->baseline.n_classes, sm, c->baseline.learned_ms, features, work, work_len);
}

ef_status ef_commission_class_thresholds(const ef_commission *c, const ef_baseline_model *sm, float *features,
                                         void *work, size_t work_len, float thr[EF_BASELINE_MAX_CLASSES])
{
    region_reader rr;
    ef_baseline_rows rows;
    uint8_t *block;
    uint32_t floored;
    uint16_t k;
    ef_status st;
    if (c == NULL || sm == NULL || thr == NULL)
        return EF_ERR_ARG;
    memset(thr, 0, EF_BASELINE_MAX_CLASSES * sizeof *thr);
    if (!c->has_baseline)
        return EF_ERR_NO_BASELINE;
    if (!scratch_ok(c, sm, features, work, work_len) || sm->model->n_inputs != c->baseline.n)
        return EF_ERR_ARG;
    block = (uint8_t *)work + (work_len - block_room(c->baseline.n)); /* as write_record: block last */
    for (k = 0; k < c->baseline.n_classes; k++) {
        const int i = rows_of(c, k);
        if (i < 0)
            continue;
        rows = class_rows(c, i, &rr);
        if ((st = ef_baseline_learn_class(&rows, c->baseline.n, c->cls[i].rpm, sm, features, work,
                                          work_len - block_room(c->baseline.n), block, &floored)) != EF_OK)
            return st;
        if (same_normal(c, k, block)) /* else the rows are not the class's: no threshold */
            thr[k] = ef_lef32(block + 12);
    }
    return EF_OK;
}

ef_status ef_commission_shadow(const ef_commission *c, const ef_baseline_model *cand, const float *features,
                               const ef_baseline_verdict *bv, float thr, float *score, int *anom)
{
    ef_baseline_class cl;
    float hi;
    ef_status st;
    if (c == NULL || cand == NULL || features == NULL || bv == NULL || score == NULL || anom == NULL ||
        !c->has_baseline || bv->cls < 0 || bv->cls >= (int)c->baseline.n_classes ||
        cand->model->n_inputs != c->baseline.n)
        return EF_ERR_ARG;
    ef_baseline_class_at(&c->baseline, (uint16_t)bv->cls, &cl);
    if ((st = ef_baseline_score(cand, cl.center, cl.spread, features, score, &hi)) != EF_OK)
        return st;
    *anom = *score > thr || bv->hi > bv->hi_threshold; /* HI belongs to the class, not the model */
    return EF_OK;
}

void ef_commission_hash(const ef_commission *c, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    int i;
    out[0] = '\0';
    if (!c->has_baseline)
        return;
    ef_sha256(c->baseline.rec, c->baseline.size, d);
    for (i = 0; i < 8; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15u];
    }
    out[16] = '\0';
}

/* Python's round(x, 1): x * 10 is exact in double for a float32 x, and rint rounds half to even. */
static double round1(float x) { return rint((double)x * 10.0) / 10.0; }

const ef_proto_comm *ef_commission_summary(const ef_commission *c, ef_proto_comm *pc, ef_proto_comm_progress *prog,
                                           ef_proto_comm_class *cls, char hash[17])
{
    uint16_t k;
    memset(pc, 0, sizeof *pc);
    if (!c->learning && !c->has_baseline)
        return NULL;
    pc->state = c->learning ? "commissioning" : "commissioned";
    if (c->learning) {
        pc->has_target = 1;
        pc->target = c->target;
        pc->has_progress = 1;
        pc->progress = prog;
        pc->n_progress = 0;
        for (k = 0; k < c->n_classes; k++)
            if (!c->cls[k].kept) {
                prog[pc->n_progress].rpm = (double)c->cls[k].rpm;
                prog[pc->n_progress++].n = c->cls[k].rows;
            }
    }
    if (!c->has_baseline)
        return pc;
    ef_commission_hash(c, hash);
    pc->hash = hash;
    pc->has_learned = 1;
    pc->learned = c->baseline.learned_ms;
    pc->classes = cls;
    pc->n_classes = c->baseline.n_classes;
    for (k = 0; k < c->baseline.n_classes; k++) {
        ef_baseline_class b;
        ef_baseline_class_at(&c->baseline, k, &b);
        cls[k].rpm_lo = round1(b.rpm_lo);
        cls[k].rpm_hi = round1(b.rpm_hi);
        cls[k].n = b.windows;
        cls[k].thr = (double)b.threshold;
        cls[k].hi_thr = (double)b.hi_threshold;
    }
    return pc;
}

const char *ef_commission_outcome_str(ef_commission_outcome o)
{
    switch (o) {
    case EF_COMM_LEARNING: return "learning";
    case EF_COMM_CLASS_FULL: return "class_full";
    case EF_COMM_NONFINITE: return "nonfinite";
    case EF_COMM_CLASS_LIMIT: return "class_limit";
    case EF_COMM_OTHER_CLASS: return "other_class";
    case EF_COMM_NOT_STATIONARY: return "not_stationary";
    case EF_COMM_SPEED_CHANGING: return "speed_changing";
    case EF_COMM_FLASH_ERROR: return "flash_error";
    case EF_COMM_SPEEDS_APART: return "speeds_apart";
    }
    return "unknown";
}
