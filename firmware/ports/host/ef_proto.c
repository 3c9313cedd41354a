/* ef_proto: drive the protocol encoders from a line description on stdin, for tests.
 *   line 1: the kind (result | status | ota_state | ota_req | debug)
 *   then:   NAME TYPE VALUE, TYPE one of
 *           u (unsigned decimal)  f (number)  b (0/1)  s (string as hex bytes)
 *           S (comma-separated hex strings)  F (comma-separated numbers, float32)
 *           D (comma-separated numbers, double)  I (comma-separated ints)
 *           "rec" alone starts a new result record (its fields follow); a record's `why` by column:
 *           why.share D, why.lo D, why.hi D, why.name S (hex; "-" for a band item).
 *   status `comm`: comm.state, comm.target, comm.hash, comm.learned as above; its arrays by
 *           column: comm.progress.rpm D, comm.progress.n D, comm.classes.rpm D (lo,hi,lo,hi...),
 *           comm.classes.n D, comm.classes.thr D, comm.classes.hi_thr D; comm.drift.cls u,
 *           comm.drift.max_shift_spreads f, comm.drift.ts u.
 * Writes the canonical message to stdout; exit 2 with the reason on stderr when refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/manifest.h"
#include "ef/protocol.h"

#define MAX_FIELDS 32
#define MAX_ITEMS 4096
#define MAX_RECS 64

typedef struct {
    char name[32];
    char type;
    char text[512];           /* decoded string (s) */
    double num;               /* u, f, b */
    char items[16][72];       /* S */
    const char *item_ptr[16];
    size_t n_items;
    float floats[MAX_ITEMS];  /* F */
    double doubles[64];       /* D */
    int8_t ints[1024];        /* I */
    size_t n_arr;
} field;

static field g_top[MAX_FIELDS];
static size_t g_n_top;
#define REC_FIELDS 16
static field g_recs[MAX_RECS][REC_FIELDS];
static size_t g_n_recs, g_n_rec_fields[MAX_RECS];
static char g_line[1 << 18];
static char g_out[1 << 20];

static const field *find(const field *fs, size_t n, const char *name)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(fs[i].name, name) == 0)
            return &fs[i];
    return NULL;
}

static const char *s_of(const field *fs, size_t n, const char *name)
{
    const field *f = find(fs, n, name);
    return f ? f->text : NULL;
}
static double n_of(const field *fs, size_t n, const char *name)
{
    const field *f = find(fs, n, name);
    return f ? f->num : 0.0;
}
#define TOP_S(name) s_of(g_top, g_n_top, name)
#define TOP_N(name) n_of(g_top, g_n_top, name)
#define HAS(name) (find(g_top, g_n_top, name) != NULL)

static int hex_text(const char *hex, char *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    if (n + 1 > cap || ef_hex_decode(hex, n, (uint8_t *)out) != 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static int parse_field(field *f, char *line)
{
    char *name = strtok(line, " "), *type = strtok(NULL, " "), *val = strtok(NULL, "\n");
    char *tok;
    if (!name || !type || strlen(name) >= sizeof f->name)
        return -1;
    memset(f, 0, sizeof *f);
    strcpy(f->name, name);
    f->type = type[0];
    if (!val)
        val = (char *)"";
    switch (f->type) {
    case 'u': f->num = strtod(val, NULL); break;
    case 'f': f->num = strtod(val, NULL); break;
    case 'b': f->num = atoi(val); break;
    case 's': return hex_text(val, f->text, sizeof f->text);
    case 'S':
        for (tok = strtok(val, ","); tok && f->n_items < 16; tok = strtok(NULL, ",")) {
            if (hex_text(tok, f->items[f->n_items], sizeof f->items[0]) != 0)
                return -1;
            f->item_ptr[f->n_items] = f->items[f->n_items];
            f->n_items++;
        }
        break;
    case 'F':
        for (tok = strtok(val, ","); tok && f->n_arr < MAX_ITEMS; tok = strtok(NULL, ","))
            f->floats[f->n_arr++] = (float)strtod(tok, NULL);
        break;
    case 'D':
        for (tok = strtok(val, ","); tok && f->n_arr < 64; tok = strtok(NULL, ","))
            f->doubles[f->n_arr++] = strtod(tok, NULL);
        break;
    case 'I':
        for (tok = strtok(val, ","); tok && f->n_arr < 1024; tok = strtok(NULL, ","))
            f->ints[f->n_arr++] = (int8_t)atoi(tok);
        break;
    default: return -1;
    }
    return 0;
}

static uint64_t u(double v) { return (uint64_t)v; }

static ef_proto_why g_why[MAX_RECS][4];

static ef_proto_comm_progress g_progress[64];
static ef_proto_comm_class g_classes[64];

/* The status `comm` object from its comm.* lines; NULL when there are none. */
static const ef_proto_comm *comm_of(ef_proto_comm *c)
{
    const field *prpm = find(g_top, g_n_top, "comm.progress.rpm"), *pn = find(g_top, g_n_top, "comm.progress.n");
    const field *crpm = find(g_top, g_n_top, "comm.classes.rpm"), *cn = find(g_top, g_n_top, "comm.classes.n");
    const field *thr = find(g_top, g_n_top, "comm.classes.thr"), *hthr = find(g_top, g_n_top, "comm.classes.hi_thr");
    size_t i;
    if (!HAS("comm.state"))
        return NULL;
    memset(c, 0, sizeof *c);
    c->state = TOP_S("comm.state");
    c->has_target = HAS("comm.target");
    c->target = (uint32_t)u(TOP_N("comm.target"));
    if ((c->has_progress = pn != NULL)) {
        for (i = 0; i < pn->n_arr; i++) {
            g_progress[i].rpm = prpm && i < prpm->n_arr ? prpm->doubles[i] : 0.0;
            g_progress[i].n = (uint32_t)u(pn->doubles[i]);
        }
        c->progress = g_progress;
        c->n_progress = pn->n_arr;
    }
    c->hash = TOP_S("comm.hash");
    c->has_learned = HAS("comm.learned");
    c->learned = u(TOP_N("comm.learned"));
    for (i = 0; cn && i < cn->n_arr; i++) {
        g_classes[i].rpm_lo = crpm && 2 * i + 1 < crpm->n_arr ? crpm->doubles[2 * i] : 0.0;
        g_classes[i].rpm_hi = crpm && 2 * i + 1 < crpm->n_arr ? crpm->doubles[2 * i + 1] : 0.0;
        g_classes[i].n = (uint32_t)u(cn->doubles[i]);
        g_classes[i].thr = thr && i < thr->n_arr ? thr->doubles[i] : 0.0;
        g_classes[i].hi_thr = hthr && i < hthr->n_arr ? hthr->doubles[i] : 0.0;
    }
    c->classes = g_classes;
    c->n_classes = cn ? cn->n_arr : 0;
    if ((c->has_drift = HAS("comm.drift.cls"))) {
        c->drift_cls = (uint32_t)u(TOP_N("comm.drift.cls"));
        c->drift_shift = TOP_N("comm.drift.max_shift_spreads");
        c->drift_ts = u(TOP_N("comm.drift.ts"));
    }
    return c;
}

int main(void)
{
    char kind[32];
    int n = EF_ERR_ARG;
    if (!fgets(kind, sizeof kind, stdin))
        return 1;
    kind[strcspn(kind, "\n")] = '\0';
    while (fgets(g_line, sizeof g_line, stdin)) {
        if (strncmp(g_line, "rec", 3) == 0 && (g_line[3] == '\n' || g_line[3] == '\0')) {
            if (g_n_recs >= MAX_RECS)
                return 1;
            g_n_recs++;
            continue;
        }
        if (g_n_recs > 0) {
            size_t r = g_n_recs - 1;
            if (g_n_rec_fields[r] >= REC_FIELDS || parse_field(&g_recs[r][g_n_rec_fields[r]++], g_line) != 0)
                return 1;
        } else if (g_n_top >= MAX_FIELDS || parse_field(&g_top[g_n_top++], g_line) != 0) {
            fprintf(stderr, "error: bad line\n");
            return 1;
        }
    }
    if (strcmp(kind, "result") == 0) {
        ef_proto_result_head h;
        ef_proto_result_rec recs[MAX_RECS];
        size_t i;
        memset(&h, 0, sizeof h);
        memset(recs, 0, sizeof recs);
        h.boot = TOP_S("boot");
        h.model = (uint32_t)u(TOP_N("model"));
        h.thr = TOP_N("thr");
        h.dropped = (uint32_t)u(TOP_N("dropped"));
        h.has_cls = HAS("cls");
        h.cls = (uint32_t)u(TOP_N("cls"));
        h.has_hi_thr = HAS("hi_thr");
        h.hi_thr = TOP_N("hi_thr");
        for (i = 0; i < g_n_recs; i++) {
            const field *f = g_recs[i];
            size_t k = g_n_rec_fields[i];
            recs[i].seq = (uint32_t)u(n_of(f, k, "seq"));
            recs[i].ts = u(n_of(f, k, "ts"));
            recs[i].score = n_of(f, k, "score");
            recs[i].anom = (int)n_of(f, k, "anom");
            recs[i].inf_us = (uint32_t)u(n_of(f, k, "inf_us"));
            recs[i].has_hi = find(f, k, "hi") != NULL;
            recs[i].hi = n_of(f, k, "hi");
            recs[i].state = s_of(f, k, "state");
            recs[i].has_vrms = find(f, k, "vrms") != NULL;
            recs[i].vrms = n_of(f, k, "vrms");
            recs[i].has_rpm = find(f, k, "rpm") != NULL;
            recs[i].rpm = n_of(f, k, "rpm");
            recs[i].hint = s_of(f, k, "hint");
            if (find(f, k, "why.share")) { /* why: columns why.share D, why.lo D, why.hi D, why.name S ("-": a band) */
                const field *sh = find(f, k, "why.share"), *lo = find(f, k, "why.lo"), *hi = find(f, k, "why.hi");
                const field *nm = find(f, k, "why.name");
                size_t j;
                for (j = 0; j < sh->n_arr && j < 4u; j++) {
                    g_why[i][j].share = sh->doubles[j];
                    g_why[i][j].lo = lo && j < lo->n_arr ? lo->doubles[j] : 0.0;
                    g_why[i][j].hi = hi && j < hi->n_arr ? hi->doubles[j] : 0.0;
                    g_why[i][j].name = nm && j < nm->n_items && strcmp(nm->items[j], "-") != 0 ? nm->items[j] : NULL;
                }
                recs[i].why = g_why[i];
                recs[i].n_why = j;
            }
        }
        n = ef_proto_encode_result(g_out, sizeof g_out, &h, recs, g_n_recs);
    } else if (strcmp(kind, "status") == 0) {
        ef_proto_status s;
        ef_proto_comm comm;
        const field *caps = find(g_top, g_n_top, "caps"), *tags = find(g_top, g_n_top, "tags");
        memset(&s, 0, sizeof s);
        s.boot = TOP_S("boot");
        s.seq = (uint32_t)u(TOP_N("seq"));
        s.ts = u(TOP_N("ts"));
        s.state = TOP_S("state");
        s.fw = TOP_S("fw");
        s.has_model = HAS("model");
        s.model = (uint32_t)u(TOP_N("model"));
        s.slot = TOP_S("slot");
        s.has_thr = HAS("thr");
        s.thr = TOP_N("thr");
        s.has_caps = caps != NULL;
        s.caps = caps ? caps->item_ptr : NULL;
        s.n_caps = caps ? caps->n_items : 0;
        s.comm = comm_of(&comm);
        s.has_res_seq = HAS("res_seq");
        s.res_seq = (uint32_t)u(TOP_N("res_seq"));
        s.prev_boot = TOP_S("prev.boot");
        s.prev_res_seq = (uint32_t)u(TOP_N("prev.res_seq"));
        s.site = TOP_S("site");
        s.line = TOP_S("line");
        s.has_tags = tags != NULL;
        s.tags = tags ? tags->item_ptr : NULL;
        s.n_tags = tags ? tags->n_items : 0;
        n = ef_proto_encode_status(g_out, sizeof g_out, &s);
    } else if (strcmp(kind, "ota_state") == 0) {
        ef_proto_ota_state s;
        s.boot = TOP_S("boot");
        s.seq = (uint32_t)u(TOP_N("seq"));
        s.ts = u(TOP_N("ts"));
        s.campaign = TOP_S("campaign");
        s.model = (uint32_t)u(TOP_N("model"));
        s.state = TOP_S("state");
        s.has_off = HAS("off");
        s.off = (uint32_t)u(TOP_N("off"));
        s.reason = TOP_S("reason");
        n = ef_proto_encode_ota_state(g_out, sizeof g_out, &s);
    } else if (strcmp(kind, "ota_req") == 0) {
        ef_proto_ota_req r;
        r.boot = TOP_S("boot");
        r.seq = (uint32_t)u(TOP_N("seq"));
        r.campaign = TOP_S("campaign");
        r.model = (uint32_t)u(TOP_N("model"));
        r.off = (uint32_t)u(TOP_N("off"));
        r.len = (uint32_t)u(TOP_N("len"));
        n = ef_proto_encode_ota_req(g_out, sizeof g_out, &r);
    } else if (strcmp(kind, "debug") == 0) {
        ef_proto_debug d;
        const field *sm = find(g_top, g_n_top, "samples"), *ft = find(g_top, g_n_top, "features");
        const field *qi = find(g_top, g_n_top, "q_in"), *qo = find(g_top, g_n_top, "q_out");
        d.boot = TOP_S("boot");
        d.seq = (uint32_t)u(TOP_N("seq"));
        d.ts = u(TOP_N("ts"));
        d.id = TOP_S("id");
        d.model = (uint32_t)u(TOP_N("model"));
        d.fs = TOP_N("fs");
        d.samples = sm ? sm->floats : NULL;
        d.n_samples = sm ? sm->n_arr : 0;
        d.features = ft ? ft->floats : NULL;
        d.n_features = ft ? ft->n_arr : 0;
        d.q_in = qi ? qi->ints : NULL;
        d.n_q_in = qi ? qi->n_arr : 0;
        d.q_out = qo ? qo->ints : NULL;
        d.n_q_out = qo ? qo->n_arr : 0;
        d.score = TOP_N("score");
        d.thr = TOP_N("thr");
        d.anom = (int)TOP_N("anom");
        n = ef_proto_encode_debug(g_out, sizeof g_out, &d);
    } else {
        fprintf(stderr, "error: unknown kind %s\n", kind);
        return 1;
    }
    if (n < 0) {
        fprintf(stderr, "refused: %s\n", ef_status_str(n));
        return 2;
    }
    fwrite(g_out, 1, (size_t)n, stdout);
    return 0;
}
