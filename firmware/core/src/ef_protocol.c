/* Canonical JSON encoders for the device-side protocol v1 messages. */
#include "ef/protocol.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TS_MAX 4102444800000ull

typedef struct {
    char *buf;
    size_t cap, len;
    int err; /* EF_ERR_SCHEMA or EF_ERR_CAPACITY once anything failed */
} jw;

static void put(jw *w, const char *s, size_t n)
{
    if (w->err)
        return;
    if (w->len + n + 1 > w->cap) {
        w->err = EF_ERR_CAPACITY;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}
static void puts_(jw *w, const char *s) { put(w, s, strlen(s)); }
static void bad(jw *w)
{
    if (!w->err)
        w->err = EF_ERR_SCHEMA;
}

static void key(jw *w, const char *k, int first)
{
    if (!first)
        puts_(w, ",");
    puts_(w, "\"");
    puts_(w, k);
    puts_(w, "\":");
}

static void u64(jw *w, uint64_t v)
{
    char t[24];
    int i = 23;
    t[i] = '\0';
    do {
        t[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    puts_(w, t + i);
}

static void i32(jw *w, int32_t v)
{
    if (v < 0) {
        puts_(w, "-");
        u64(w, (uint64_t)(-(int64_t)v));
    } else {
        u64(w, (uint64_t)v);
    }
}

/* canonical number: %.6g (or the schema's x-canonical precision, %.4g / %.5g), zero (either sign) as 0 */
static void num_g(jw *w, double v, int digits)
{
    char t[32];
    if (!isfinite(v)) {
        bad(w);
        return;
    }
    if (v == 0.0) {
        puts_(w, "0");
        return;
    }
    snprintf(t, sizeof t, "%.*g", digits, v);
    puts_(w, t);
}

static void num(jw *w, double v) { num_g(w, v, 6); }

static void boolean(jw *w, int b) { puts_(w, b ? "true" : "false"); }

/* strings are printable ASCII by schema: escape only \ and " */
static void str(jw *w, const char *s)
{
    puts_(w, "\"");
    for (; s && *s; s++) {
        if (*s < 0x20 || *s > 0x7E) {
            bad(w);
            return;
        }
        if (*s == '\\' || *s == '"')
            puts_(w, "\\");
        put(w, s, 1);
    }
    puts_(w, "\"");
}

static int is_boot(const char *s)
{
    size_t i;
    if (s == NULL || strlen(s) != 8)
        return 0;
    for (i = 0; i < 8; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ^[A-Za-z0-9._-]{1,64}$ */
static int is_ident(const char *s)
{
    size_t n = s ? strlen(s) : 0, i;
    if (n < 1 || n > 64)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int one_of(const char *s, const char *const *set, size_t n)
{
    size_t i;
    for (i = 0; s && i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return 1;
    return 0;
}

/* ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ */
static int is_fw(const char *s)
{
    int part = 0, digits = 0;
    for (; s && *s; s++) {
        if (*s == '.') {
            if (digits == 0 || ++part > 2)
                return 0;
            digits = 0;
        } else if (*s >= '0' && *s <= '9' && digits < 3) {
            digits++;
        } else {
            return 0;
        }
    }
    return s && part == 2 && digits > 0;
}

static void head(jw *w, char *buf, size_t cap, const char *boot)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
    if (cap == 0) {
        w->err = EF_ERR_CAPACITY;
        return;
    }
    buf[0] = '\0';
    puts_(w, "{\"v\":1");
    if (!is_boot(boot))
        bad(w);
    key(w, "boot", 0);
    str(w, boot);
}

static int finish(jw *w)
{
    puts_(w, "}");
    return w->err ? w->err : (int)w->len;
}

static void ts_field(jw *w, uint64_t ts)
{
    if (ts > TS_MAX)
        bad(w);
    key(w, "ts", 0);
    u64(w, ts);
}

static const char *const k_result_states[] = {EF_PROTO_COMMISSIONING, EF_PROTO_UNCOMMISSIONED, EF_PROTO_SENSOR_DEAD,
                                              EF_PROTO_SENSOR_SATURATED, EF_PROTO_SENSOR_DROPOUT};
static const char *const k_why_names[] = {"vrms", "kurtosis", "crest"};
static const char *const k_hints[] = {"unbalance", "misalignment", "looseness", "bearing_outer_race",
                                      "bearing_inner_race", "bearing_ball", "bearing", "unknown"};

/* An anomalous result's `why` (docs/protocol.md): 1-3 items, a band (lo < hi) or a name, shares in
 * [0, 1], largest first, adding up to at most 1.01 (the node rounds them). */
static void why_items(jw *w, const ef_proto_why *why, size_t n)
{
    double last = 2.0, total = 0.0;
    size_t i;
    if (n < 1 || n > 3 || !why)
        bad(w);
    puts_(w, "[");
    for (i = 0; !w->err && i < n; i++) {
        const ef_proto_why *it = &why[i];
        if (!(it->share >= 0.0 && it->share <= 1.0) || it->share > last)
            bad(w);
        last = it->share;
        total += it->share;
        puts_(w, i ? ",{" : "{");
        if (it->name) {
            if (!one_of(it->name, k_why_names, 3))
                bad(w);
            key(w, "name", 1);
            str(w, it->name);
        } else {
            if (!(it->lo >= 0.0 && it->lo < it->hi && it->hi <= 50000.0))
                bad(w);
            key(w, "lo", 1);
            num(w, it->lo);
            key(w, "hi", 0);
            num(w, it->hi);
        }
        key(w, "share", 0);
        num(w, it->share);
        puts_(w, "}");
    }
    if (total > 1.01)
        bad(w);
    puts_(w, "]");
}

/* A result's health indicator and, when the node could not judge it, its state (no verdict then). */
static void result_commissioning(jw *w, const ef_proto_result_rec *r)
{
    if (r->has_hi) {
        if (!(r->hi >= 0.0))
            bad(w);
        key(w, "hi", 0);
        num(w, r->hi);
    }
    if (r->state) {
        if (!one_of(r->state, k_result_states, 5) || r->anom)
            bad(w);
        key(w, "state", 0);
        str(w, r->state);
    }
    if (r->has_vrms) { /* the readings of feature definition v2 */
        if (!(r->vrms >= 0.0 && r->vrms <= 1000.0))
            bad(w);
        key(w, "vrms", 0);
        num_g(w, r->vrms, 4);
    }
    if (r->has_rpm) {
        if (!(r->rpm >= 30.0 && r->rpm <= 100000.0))
            bad(w);
        key(w, "rpm", 0);
        num_g(w, r->rpm, 5);
    }
    if (r->why || r->n_why) { /* only an anomalous result explains itself */
        if (!r->anom)
            bad(w);
        key(w, "why", 0);
        why_items(w, r->why, r->n_why);
    }
    if (r->hint) {
        if (!r->anom || !one_of(r->hint, k_hints, 8))
            bad(w);
        key(w, "hint", 0);
        str(w, r->hint);
    }
}

int ef_proto_encode_result(char *buf, size_t cap, const ef_proto_result_head *h,
                    const ef_proto_result_rec *recs, size_t n)
{
    return ef_proto_encode_result_shadow(buf, cap, h, recs, n, NULL, NULL);
}

int ef_proto_encode_result_shadow(char *buf, size_t cap, const ef_proto_result_head *h,
                                  const ef_proto_result_rec *recs, size_t n,
                                  const ef_proto_shadow_head *sh, const ef_proto_shadow_rec *srecs)
{
    jw w;
    size_t i;
    head(&w, buf, cap, h ? h->boot : NULL);
    if (!h || (n > 0 && !recs) || !(h->thr > 0.0))
        bad(&w);
    /* shadow: candidate model and threshold for the whole message, one outcome per record */
    if (sh && ((n > 0 && !srecs) || !(sh->thr > 0.0) || (h && sh->model == h->model)))
        bad(&w);
    if (w.err)
        return w.err;
    key(&w, "model", 0);
    u64(&w, h->model);
    key(&w, "thr", 0);
    num(&w, h->thr);
    key(&w, "dropped", 0);
    u64(&w, h->dropped);
    if (sh) {
        key(&w, "shadow", 0);
        puts_(&w, "{");
        key(&w, "model", 1);
        u64(&w, sh->model);
        key(&w, "thr", 0);
        num(&w, sh->thr);
        puts_(&w, "}");
    }
    if (h->has_cls) { /* a commissioned node: the class whose thresholds judged every result */
        if (h->cls > 7u)
            bad(&w);
        key(&w, "cls", 0);
        u64(&w, h->cls);
    }
    if (h->has_hi_thr) {
        if (!(h->hi_thr > 0.0))
            bad(&w);
        key(&w, "hi_thr", 0);
        num(&w, h->hi_thr);
    }
    key(&w, "res", 0);
    puts_(&w, "[");
    for (i = 0; i < n; i++) {
        const ef_proto_result_rec *r = &recs[i];
        if (r->ts > TS_MAX || !(r->score >= 0.0) || r->inf_us > 1000000000u)
            bad(&w);
        puts_(&w, i ? ",{" : "{");
        key(&w, "seq", 1);
        u64(&w, r->seq);
        key(&w, "ts", 0);
        u64(&w, r->ts);
        key(&w, "score", 0);
        num(&w, r->score);
        key(&w, "anom", 0);
        boolean(&w, r->anom);
        key(&w, "inf_us", 0);
        u64(&w, r->inf_us);
        if (sh) {
            if (!(srecs[i].score >= 0.0))
                bad(&w);
            key(&w, "shadow", 0);
            puts_(&w, "{");
            key(&w, "score", 1);
            num(&w, srecs[i].score);
            key(&w, "anom", 0);
            boolean(&w, srecs[i].anom);
            puts_(&w, "}");
        }
        result_commissioning(&w, r);
        puts_(&w, "}");
    }
    puts_(&w, "]");
    return finish(&w);
}

static const char *const k_status_states[] = {"online", "offline", "lost"};
static const char *const k_caps[] = {"ota", "debug", "calib", "shadow", "commission"};
static const char *const k_slots[] = {"A", "B"};

static void str_array(jw *w, const char *const *items, size_t n, int caps)
{
    size_t i;
    if (n > 16 || (n && !items))
        bad(w);
    puts_(w, "[");
    for (i = 0; !w->err && i < n; i++) {
        if (caps ? !one_of(items[i], k_caps, 5) : !is_ident(items[i]))
            bad(w);
        if (i)
            puts_(w, ",");
        str(w, items[i]);
    }
    puts_(w, "]");
}

static const char *const k_comm_states[] = {"commissioning", "commissioned"};

static int is_hash16(const char *s)
{
    size_t i;
    if (s == NULL || strlen(s) != 16)
        return 0;
    for (i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void rpm_num(jw *w, double rpm)
{
    if (!(rpm >= 0.0 && rpm <= 1e6))
        bad(w);
    num(w, rpm);
}

static void comm_progress(jw *w, const ef_proto_comm *c)
{
    size_t i;
    if (c->n_progress > 8 || (c->n_progress && !c->progress))
        bad(w);
    key(w, "progress", 0);
    puts_(w, "[");
    for (i = 0; !w->err && i < c->n_progress; i++) {
        puts_(w, i ? ",{" : "{");
        key(w, "rpm", 1);
        rpm_num(w, c->progress[i].rpm);
        key(w, "n", 0);
        u64(w, c->progress[i].n);
        puts_(w, "}");
    }
    puts_(w, "]");
}

static void comm_classes(jw *w, const ef_proto_comm *c)
{
    size_t i;
    if (c->n_classes > 8 || !c->classes)
        bad(w);
    key(w, "classes", 0);
    puts_(w, "[");
    for (i = 0; !w->err && i < c->n_classes; i++) {
        const ef_proto_comm_class *k = &c->classes[i];
        if (!(k->thr > 0.0) || !(k->hi_thr > 0.0))
            bad(w);
        puts_(w, i ? ",{" : "{");
        key(w, "rpm", 1);
        puts_(w, "[");
        rpm_num(w, k->rpm_lo);
        puts_(w, ",");
        rpm_num(w, k->rpm_hi);
        puts_(w, "]");
        key(w, "n", 0);
        u64(w, k->n);
        key(w, "thr", 0);
        num(w, k->thr);
        key(w, "hi_thr", 0);
        num(w, k->hi_thr);
        puts_(w, "}");
    }
    puts_(w, "]");
}

/* status `comm`: what commissioning has learned so far, or what the node learned. */
static void comm(jw *w, const ef_proto_comm *c)
{
    if (!one_of(c->state, k_comm_states, 2))
        bad(w);
    key(w, "comm", 0);
    puts_(w, "{");
    key(w, "state", 1);
    str(w, c->state);
    if (c->has_target) {
        if (c->target < 1u || c->target > 65535u)
            bad(w);
        key(w, "target", 0);
        u64(w, c->target);
    }
    if (c->has_progress)
        comm_progress(w, c);
    if (c->hash) {
        if (!is_hash16(c->hash))
            bad(w);
        key(w, "hash", 0);
        str(w, c->hash);
    }
    if (c->has_learned) {
        if (c->learned > TS_MAX)
            bad(w);
        key(w, "learned", 0);
        u64(w, c->learned);
    }
    if (c->n_classes)
        comm_classes(w, c);
    if (c->has_drift) { /* {cls, max_shift_spreads, ts} */
        if (c->drift_cls > 7u || !(c->drift_shift >= 0.0 && c->drift_shift <= 1000.0) || c->drift_ts > TS_MAX)
            bad(w);
        key(w, "drift", 0);
        puts_(w, "{");
        key(w, "cls", 1);
        u64(w, c->drift_cls);
        key(w, "max_shift_spreads", 0);
        num(w, c->drift_shift);
        key(w, "ts", 0);
        u64(w, c->drift_ts);
        puts_(w, "}");
    }
    puts_(w, "}");
}

int ef_proto_encode_status(char *buf, size_t cap, const ef_proto_status *s)
{
    jw w;
    head(&w, buf, cap, s ? s->boot : NULL);
    if (!s || !one_of(s->state, k_status_states, 3))
        bad(&w);
    if (w.err)
        return w.err;
    /* birth messages must say what runs (schema if/then) */
    if (strcmp(s->state, "online") == 0 &&
        !(s->fw && s->has_model && s->slot && s->has_thr && s->has_caps))
        bad(&w);
    key(&w, "seq", 0);
    u64(&w, s->seq);
    ts_field(&w, s->ts);
    key(&w, "state", 0);
    str(&w, s->state);
    if (s->fw) {
        if (!is_fw(s->fw))
            bad(&w);
        key(&w, "fw", 0);
        str(&w, s->fw);
    }
    if (s->has_model) {
        key(&w, "model", 0);
        u64(&w, s->model);
    }
    if (s->slot) {
        if (!one_of(s->slot, k_slots, 2))
            bad(&w);
        key(&w, "slot", 0);
        str(&w, s->slot);
    }
    if (s->has_thr) {
        if (!(s->thr > 0.0))
            bad(&w);
        key(&w, "thr", 0);
        num(&w, s->thr);
    }
    if (s->has_caps) {
        key(&w, "caps", 0);
        str_array(&w, s->caps, s->n_caps, 1);
    }
    if (s->comm)
        comm(&w, s->comm);
    if (s->has_res_seq) {
        key(&w, "res_seq", 0);
        u64(&w, s->res_seq);
    }
    if (s->prev_boot) { /* schema order: res_seq, prev {boot, res_seq}, site */
        if (!is_boot(s->prev_boot))
            bad(&w);
        key(&w, "prev", 0);
        puts_(&w, "{");
        key(&w, "boot", 1);
        str(&w, s->prev_boot);
        key(&w, "res_seq", 0);
        u64(&w, s->prev_res_seq);
        puts_(&w, "}");
    }
    if (s->site) {
        if (!is_ident(s->site))
            bad(&w);
        key(&w, "site", 0);
        str(&w, s->site);
    }
    if (s->line) {
        if (!is_ident(s->line))
            bad(&w);
        key(&w, "line", 0);
        str(&w, s->line);
    }
    if (s->has_tags) {
        key(&w, "tags", 0);
        str_array(&w, s->tags, s->n_tags, 0);
    }
    return finish(&w);
}

static const char *const k_ota_states[] = {"accepted", "downloading", "verifying", "shadow", "trial",
                                           "confirmed", "reverted", "rejected", "failed"};

int ef_proto_encode_ota_state(char *buf, size_t cap, const ef_proto_ota_state *s)
{
    jw w;
    head(&w, buf, cap, s ? s->boot : NULL);
    if (!s || !is_ident(s->campaign) || !one_of(s->state, k_ota_states, 9))
        bad(&w);
    if (w.err)
        return w.err;
    key(&w, "seq", 0);
    u64(&w, s->seq);
    ts_field(&w, s->ts);
    key(&w, "campaign", 0);
    str(&w, s->campaign);
    key(&w, "model", 0);
    u64(&w, s->model);
    key(&w, "state", 0);
    str(&w, s->state);
    if (s->has_off) {
        if (s->off > 16777216u)
            bad(&w);
        key(&w, "off", 0);
        u64(&w, s->off);
    }
    if (s->reason) {
        if (strlen(s->reason) > 200)
            bad(&w);
        key(&w, "reason", 0);
        str(&w, s->reason);
    }
    return finish(&w);
}

int ef_proto_encode_ota_req(char *buf, size_t cap, const ef_proto_ota_req *r)
{
    jw w;
    head(&w, buf, cap, r ? r->boot : NULL);
    if (!r || !is_ident(r->campaign) || r->off > 16777216u || r->len < 1 || r->len > 4096)
        bad(&w);
    if (w.err)
        return w.err;
    key(&w, "seq", 0);
    u64(&w, r->seq);
    key(&w, "campaign", 0);
    str(&w, r->campaign);
    key(&w, "model", 0);
    u64(&w, r->model);
    key(&w, "off", 0);
    u64(&w, r->off);
    key(&w, "len", 0);
    u64(&w, r->len);
    return finish(&w);
}

static void float_array(jw *w, const float *v, size_t n)
{
    size_t i;
    puts_(w, "[");
    for (i = 0; i < n; i++) {
        if (i)
            puts_(w, ",");
        num(w, (double)v[i]);
    }
    puts_(w, "]");
}

static void int8_array(jw *w, const int8_t *v, size_t n)
{
    size_t i;
    puts_(w, "[");
    for (i = 0; i < n; i++) {
        if (i)
            puts_(w, ",");
        i32(w, v[i]);
    }
    puts_(w, "]");
}

int ef_proto_encode_debug(char *buf, size_t cap, const ef_proto_debug *d)
{
    jw w;
    head(&w, buf, cap, d ? d->boot : NULL);
    if (!d || (d->id && !is_ident(d->id)) || !(d->fs > 0.0 && d->fs <= 1e6) ||
        d->n_samples < 1 || d->n_samples > 65536 || d->n_features > 1024 || d->n_q_in > 1024 ||
        d->n_q_out > 1024 || !d->samples || (d->n_features && !d->features) ||
        (d->n_q_in && !d->q_in) || (d->n_q_out && !d->q_out) || !(d->score >= 0.0) || !(d->thr > 0.0))
        bad(&w);
    if (w.err)
        return w.err;
    key(&w, "seq", 0);
    u64(&w, d->seq);
    ts_field(&w, d->ts);
    if (d->id) {
        key(&w, "id", 0);
        str(&w, d->id);
    }
    key(&w, "model", 0);
    u64(&w, d->model);
    key(&w, "fs", 0);
    num(&w, d->fs);
    key(&w, "samples", 0);
    float_array(&w, d->samples, d->n_samples);
    key(&w, "features", 0);
    float_array(&w, d->features, d->n_features);
    key(&w, "q_in", 0);
    int8_array(&w, d->q_in, d->n_q_in);
    key(&w, "q_out", 0);
    int8_array(&w, d->q_out, d->n_q_out);
    key(&w, "score", 0);
    num(&w, d->score);
    key(&w, "thr", 0);
    num(&w, d->thr);
    key(&w, "anom", 0);
    boolean(&w, d->anom);
    return finish(&w);
}

/* ---------- summary mode ---------- */

#define SUMMARY_SCORE_MAX 1000000.0

int ef_proto_encode_summary(char *buf, size_t cap, const ef_proto_summary *s)
{
    jw w;
    head(&w, buf, cap, s ? s->boot : NULL);
    if (!s || s->period < 1000u || s->period > 3600000u || s->n < 1u || s->n > 360000u || s->anom > s->n ||
        s->n > s->period / 10u || !(s->thr > 0.0))
        bad(&w);
    if (!w.err && !(s->min >= 0.0 && s->min <= s->mean && s->mean <= s->max && s->min <= s->p95 &&
                    s->p95 <= s->max && s->max <= SUMMARY_SCORE_MAX))
        bad(&w); /* also refuses NaN: every comparison with it is false */
    if (!w.err && s->n == 1u && !(s->min == s->max && s->mean == s->max && s->p95 == s->max))
        bad(&w);
    if (!w.err && s->has_vrms && !(s->vrms >= 0.0 && s->vrms <= s->vrms_max && s->vrms_max <= 1000.0))
        bad(&w);
    if (w.err)
        return w.err;
    key(&w, "seq", 0);
    u64(&w, s->seq);
    ts_field(&w, s->ts);
    key(&w, "period", 0);
    u64(&w, s->period);
    key(&w, "model", 0);
    u64(&w, s->model);
    key(&w, "thr", 0);
    num(&w, s->thr);
    key(&w, "dropped", 0);
    u64(&w, s->dropped);
    key(&w, "n", 0);
    u64(&w, s->n);
    key(&w, "anom", 0);
    u64(&w, s->anom);
    key(&w, "min", 0);
    num(&w, s->min);
    key(&w, "mean", 0);
    num(&w, s->mean);
    key(&w, "p95", 0);
    num(&w, s->p95);
    key(&w, "max", 0);
    num(&w, s->max);
    if (s->has_vrms) {
        key(&w, "vrms", 0);
        num_g(&w, s->vrms, 4);
        key(&w, "vrms_max", 0);
        num_g(&w, s->vrms_max, 4);
    }
    return finish(&w);
}

void ef_summary_reset(ef_summary_acc *a)
{
    a->n = 0u;
    a->anom = a->n_vrms = 0u;
    a->min = a->vmax = 0.0f;
    a->sum = a->vsum = 0.0;
}

/* x into the ascending top list of k entries, kept at most EF_SUMMARY_TOP long (the smallest leaves) */
static void top_insert(float *top, uint32_t k, float x)
{
    uint32_t j;
    if (k == EF_SUMMARY_TOP) {
        if (!(x > top[0]))
            return;
        for (j = 1; j < k && top[j] < x; j++)
            top[j - 1] = top[j];
        top[j - 1] = x;
        return;
    }
    for (j = k; j > 0 && top[j - 1] > x; j--)
        top[j] = top[j - 1];
    top[j] = x;
}

int ef_summary_add(ef_summary_acc *a, double score, int anom, double vrms)
{
    const uint32_t k = a->n < EF_SUMMARY_TOP ? a->n : EF_SUMMARY_TOP;
    float x;
    if (a->n >= EF_SUMMARY_MAX_N)
        return EF_ERR_CAPACITY;
    if (!isfinite(score) || score < 0.0)
        return EF_ERR_SCHEMA;
    x = (float)score;
    top_insert(a->top, k, x);
    if (a->n == 0u || x < a->min)
        a->min = x;
    a->n++;
    a->sum += (double)x;
    if (anom)
        a->anom++;
    if (vrms >= 0.0 && isfinite(vrms)) {
        a->n_vrms++;
        a->vsum += vrms;
        if ((float)vrms > a->vmax)
            a->vmax = (float)vrms;
    }
    return 0;
}

int ef_summary_fill(const ef_summary_acc *a, ef_proto_summary *s)
{
    const uint32_t k = a->n < EF_SUMMARY_TOP ? a->n : EF_SUMMARY_TOP;
    uint32_t rank;
    double mean;
    if (a->n == 0u)
        return EF_ERR_SCHEMA;
    rank = (a->n * 95u + 99u) / 100u; /* ceil(0.95 n), exact in integers; n - rank < EF_SUMMARY_TOP */
    if (rank < 1u)
        rank = 1u;
    s->n = a->n;
    s->anom = a->anom;
    s->min = (double)a->min;
    s->max = (double)a->top[k - 1u];
    s->p95 = (double)a->top[k - 1u - (a->n - rank)]; /* the (n - rank + 1)-th largest */
    mean = a->sum / (double)a->n;
    s->mean = mean < s->min ? s->min : mean > s->max ? s->max : mean; /* rounding must not pass an extreme */
    s->has_vrms = a->n_vrms == a->n;
    if (s->has_vrms) {
        s->vrms = a->vsum / (double)a->n;
        s->vrms_max = (double)a->vmax;
        if (s->vrms > s->vrms_max)
            s->vrms = s->vrms_max;
    }
    return 0;
}

int ef_summary_due(const ef_summary_period *p, uint32_t every_ms, uint64_t ts, uint32_t model, float thr)
{
    if (p->acc.n == 0u || every_ms == 0u)
        return 0;
    return ts / every_ms != p->ts / every_ms || model != p->model || thr != p->thr || p->acc.n >= EF_SUMMARY_MAX_N;
}

int ef_summary_window(ef_summary_period *p, uint64_t ts, uint32_t model, float thr, double score, int anom,
                      double vrms)
{
    if (p->acc.n == 0u) {
        ef_summary_reset(&p->acc);
        p->model = model;
        p->thr = thr;
    }
    if (p->acc.n == 0u || ts > p->ts)
        p->ts = ts;
    return ef_summary_add(&p->acc, score > 0.0 ? score : 0.0, anom, vrms);
}

int ef_summary_close(ef_summary_period *p, const char *boot, uint32_t every_ms, uint32_t dropped, char *buf,
                     size_t cap)
{
    ef_proto_summary s;
    if (p->acc.n == 0u)
        return 0;
    memset(&s, 0, sizeof s);
    s.boot = boot;
    s.seq = p->seq++;
    s.ts = p->ts;
    s.period = every_ms;
    s.model = p->model;
    s.thr = (double)p->thr;
    s.dropped = dropped;
    ef_summary_fill(&p->acc, &s);
    ef_summary_reset(&p->acc);
    return ef_proto_encode_summary(buf, cap, &s);
}
