/* ef_baseline: the commissioning baseline (core ef_baseline + ef_commission) on the host, for tests.
 *
 *   ef_baseline learn ARTIFACT FEATURES.f32 RPM.f32 OUT.rec [--target N] [--learned MS] [--min N]
 *                     [--only-rpm R] [--from OLD.rec]
 *       commission a node on feature rows (float32, n_inputs per row; RPM.f32 one float32 per
 *       row, 0 = no speed) exactly as a node does: rows into the fake flash's row scratch,
 *       outcome per row, the record into a flash copy (--from: the record in force before, for
 *       one-class commissioning with --only-rpm); then writes the record. Prints one JSON line:
 *       {"status", "outcomes", "size", "hash", "max_windows"}.
 *   ef_baseline check ARTIFACT [--any-model] RECORD...
 *       validate records for the model (or their structure only): one {"status": NAME} line per
 *       record; exit 3 if any is refused.
 *   ef_baseline judge ARTIFACT RECORD FEATURES.f32 RPM.f32
 *       one JSON line per window: {"cls", "score", "hi", "anom", "ratio"} (cls -1: uncommissioned).
 *   ef_baseline sweep ARTIFACT FEATURES.f32 RPM.f32 [--target N] [--torn]
 *       power-cut sweep: a node holding record A re-commissions on the same rows (another
 *       learned time: record B); for every k the power fails at the k-th write or erase of the
 *       records' flash, the node restarts; prints {"cuts", "old", "new", "none", "violations"}.
 * Exit codes: 0 ok, 1 usage / I/O, 2 the artifact is refused, 3 a check failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/commission.h"
#include "ef/engine.h"
#include "ef_host.h"

#define ERASE 4096u
#define LEARNED_DEFAULT 1765000000000ull

typedef struct {
    ef_model m;
    uint8_t *art;
    size_t art_len;
    const float *rows;
    const float *rpm;
    uint32_t n_rows;
    uint8_t *raw_rows, *raw_rpm;
} inputs;

/* The node's buffers for the model. */
static int8_t g_q[1024], g_y[1024], g_arena[65536];
static float g_features[1024];
static float g_settle[EF_BASELINE_MAX_WINDOWS]; /* the settle test's sort buffer (half a class) */

typedef struct {
    ef_fake_flash rec_ff, rows_ff;
    ef_flash rec, rows;
    uint8_t *rec_mem, *rows_mem, *work;
    size_t work_len;
} node_flash;

static ef_baseline_model scorer(const ef_model *m)
{
    ef_baseline_model sm;
    sm.model = m;
    sm.q = g_q;
    sm.y = g_y;
    sm.arena = g_arena;
    sm.arena_len = sizeof g_arena;
    return sm;
}

/* Areas sized for this model: two copies of the largest record, 8 classes of 4096 rows. */
static void flash_init(node_flash *nf, uint16_t n)
{
    const uint32_t copy = (EF_COMMISSION_COPY_HEAD + EF_BASELINE_RECORD_SIZE(n, 8) + ERASE - 1u) / ERASE * ERASE;
    const uint32_t region = (EF_BASELINE_MAX_WINDOWS * 2u * n + ERASE - 1u) / ERASE * ERASE;
    nf->rec_mem = malloc(2u * copy);
    nf->rows_mem = malloc(8u * region);
    nf->work_len = EF_BASELINE_MAX_WINDOWS * sizeof(float) + EF_BASELINE_CLASS_SIZE(n) + 4u;
    nf->work = malloc(nf->work_len);
    if (!nf->rec_mem || !nf->rows_mem || !nf->work) {
        fprintf(stderr, "error: out of memory\n");
        exit(1);
    }
    ef_fake_flash_init(&nf->rec_ff, nf->rec_mem, 2u * copy, ERASE);
    ef_fake_flash_init(&nf->rows_ff, nf->rows_mem, 8u * region, ERASE);
    nf->rec = ef_fake_flash_device(&nf->rec_ff);
    nf->rows = ef_fake_flash_device(&nf->rows_ff);
}

static void flash_free(node_flash *nf)
{
    free(nf->rec_mem);
    free(nf->rows_mem);
    free(nf->work);
}

static int load_inputs(inputs *in, const char *art, const char *rows, const char *rpm)
{
    size_t len_rows = 0, len_rpm = 0;
    ef_status st;
    memset(in, 0, sizeof *in);
    if (!(in->art = ef_host_read_file(art, &in->art_len)))
        return 1;
    if ((st = ef_model_open(&in->m, in->art, in->art_len)) != EF_OK) {
        fprintf(stderr, "error: %s: artifact rejected (%s)\n", art, ef_status_str(st));
        return 2;
    }
    if (in->m.n_inputs > 1024u) {
        fprintf(stderr, "error: model too large for this tool\n");
        return 2;
    }
    if (!rows)
        return 0;
    if (!(in->raw_rows = ef_host_read_file(rows, &len_rows)) || !(in->raw_rpm = ef_host_read_file(rpm, &len_rpm)))
        return 1;
    in->n_rows = (uint32_t)(len_rows / (4u * in->m.n_inputs));
    if (len_rows != (size_t)in->n_rows * 4u * in->m.n_inputs || len_rpm != (size_t)in->n_rows * 4u) {
        fprintf(stderr, "error: %u rows of %u features need %u rpm values\n", (unsigned)in->n_rows,
                (unsigned)in->m.n_inputs, (unsigned)in->n_rows);
        return 1;
    }
    in->rows = (const float *)(const void *)in->raw_rows;
    in->rpm = (const float *)(const void *)in->raw_rpm;
    return 0;
}

static void free_inputs(inputs *in)
{
    free(in->art);
    free(in->raw_rows);
    free(in->raw_rpm);
}

/* Put `rec` into copy 0 as a node would have written it (sequence 1). */
static int preload(node_flash *nf, const uint8_t *rec, size_t len)
{
    uint8_t head[EF_COMMISSION_COPY_HEAD];
    const uint32_t magic = 0x52424645u, size = (uint32_t)len;
    memcpy(head, &magic, 4);
    head[4] = 1; head[5] = head[6] = head[7] = 0;
    memcpy(head + 8, &size, 4);
    {
        const uint32_t inv = ~size;
        memcpy(head + 12, &inv, 4);
    }
    return nf->rec.write(nf->rec.ctx, EF_COMMISSION_COPY_HEAD, rec, size) != 0 ||
           nf->rec.write(nf->rec.ctx, 0, head, sizeof head) != 0;
}

/* Commission c on every row; outcomes printed as a JSON array when `print`. */
static void feed(ef_commission *c, const inputs *in, int print)
{
    uint32_t i;
    if (print)
        printf("\"outcomes\":[");
    for (i = 0; i < in->n_rows; i++) {
        ef_commission_outcome o = ef_commission_add(c, in->rows + (size_t)i * in->m.n_inputs, in->rpm[i],
                                                    g_settle, sizeof g_settle);
        if (print)
            printf("%s\"%s\"", i ? "," : "", ef_commission_outcome_str(o));
    }
    if (print)
        printf("],");
}

static int cmd_learn(int argc, char **argv)
{
    inputs in;
    node_flash nf;
    ef_commission c;
    ef_baseline_model sm;
    ef_status st;
    uint32_t target = 0, min_windows = EF_BASELINE_MIN_WINDOWS;
    uint64_t learned = LEARNED_DEFAULT;
    float only_rpm = 0.0f;
    const char *from = NULL;
    char hash[17];
    int i, rc;
    if (argc < 6)
        return 1;
    for (i = 6; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--target") == 0)
            target = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--learned") == 0)
            learned = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--min") == 0)
            min_windows = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--only-rpm") == 0)
            only_rpm = strtof(argv[++i], NULL);
        else if (i + 1 < argc && strcmp(argv[i], "--from") == 0)
            from = argv[++i];
        else {
            fprintf(stderr, "error: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if ((rc = load_inputs(&in, argv[2], argv[3], argv[4])) != 0)
        return rc;
    flash_init(&nf, in.m.n_inputs);
    if (from) {
        size_t len;
        uint8_t *rec = ef_host_read_file(from, &len);
        if (!rec || preload(&nf, rec, len) != 0)
            return 1;
        free(rec);
    }
    sm = scorer(&in.m);
    if ((st = ef_commission_init(&c, &nf.rec, &nf.rows, in.m.n_inputs, nf.work_len, &in.m)) != EF_OK ||
        (st = ef_commission_start(&c, target, only_rpm, 1)) != EF_OK) {
        printf("{\"status\":\"%s\"}\n", ef_status_str(st));
        return 3;
    }
    printf("{");
    feed(&c, &in, 1);
    st = ef_commission_finish(&c, &sm, learned, min_windows, g_features, nf.work, nf.work_len);
    ef_commission_hash(&c, hash);
    printf("\"status\":\"%s\",\"size\":%u,\"hash\":\"%s\",\"max_windows\":%u}\n", ef_status_str(st),
           st == EF_OK ? (unsigned)c.baseline.size : 0u, hash, (unsigned)c.max_windows);
    if (st == EF_OK && ef_host_write_file(argv[5], c.baseline.rec, c.baseline.size) != 0)
        return 1;
    flash_free(&nf);
    free_inputs(&in);
    return st == EF_OK ? 0 : 3;
}

static int cmd_check(int argc, char **argv)
{
    inputs in;
    ef_baseline b;
    ef_baseline_for want;
    ef_features_view f;
    int rc, i = 3, any_model = 0, refused = 0;
    if (argc < 4)
        return 1;
    if ((rc = load_inputs(&in, argv[2], NULL, NULL)) != 0)
        return rc;
    if (!ef_model_features(&in.m, &f))
        return 2;
    want.frontend_crc = ef_baseline_frontend_crc(&f);
    want.n_features = in.m.n_inputs;
    if (strcmp(argv[3], "--any-model") == 0) {
        any_model = 1;
        i++;
    }
    for (; i < argc; i++) { /* one line per record, in order */
        size_t len;
        uint8_t *rec = ef_host_read_file(argv[i], &len);
        ef_status st;
        if (!rec)
            return 1;
        st = ef_baseline_open(&b, rec, len, any_model ? NULL : &want);
        printf("{\"status\":\"%s\"}\n", ef_status_str(st));
        refused |= st != EF_OK;
        free(rec);
    }
    free_inputs(&in);
    return refused ? 3 : 0;
}

static int cmd_judge(int argc, char **argv)
{
    inputs in;
    ef_baseline b;
    ef_baseline_for want;
    ef_features_view f;
    ef_baseline_model sm;
    uint8_t *rec;
    size_t len;
    ef_status st;
    uint32_t i;
    int rc;
    if (argc < 6)
        return 1;
    if ((rc = load_inputs(&in, argv[2], argv[4], argv[5])) != 0)
        return rc;
    if (!ef_model_features(&in.m, &f) || !(rec = ef_host_read_file(argv[3], &len)))
        return 1;
    want.frontend_crc = ef_baseline_frontend_crc(&f);
    want.n_features = in.m.n_inputs;
    if ((st = ef_baseline_open(&b, rec, len, &want)) != EF_OK) {
        fprintf(stderr, "error: record refused (%s)\n", ef_status_str(st));
        return 3;
    }
    sm = scorer(&in.m);
    for (i = 0; i < in.n_rows; i++) {
        ef_baseline_verdict v;
        if (ef_baseline_judge(&b, &sm, in.rows + (size_t)i * in.m.n_inputs, in.rpm[i], &v) != EF_OK)
            return 3;
        if (v.cls < 0)
            printf("{\"cls\":-1}\n");
        else
            printf("{\"cls\":%d,\"score\":%.9g,\"hi\":%.9g,\"anom\":%s,\"ratio\":%.9g}\n", v.cls, (double)v.score,
                   (double)v.hi, v.anom ? "true" : "false", (double)v.ratio);
    }
    free(rec);
    free_inputs(&in);
    return 0;
}

/* Commission on every row and finish; power may fail on the way (then the status says so). */
static ef_status commission_once(ef_commission *c, node_flash *nf, const inputs *in, uint32_t target,
                                 uint64_t learned)
{
    ef_baseline_model sm = scorer(&in->m);
    ef_status st = ef_commission_init(c, &nf->rec, &nf->rows, in->m.n_inputs, nf->work_len, &in->m);
    if (st != EF_OK || (st = ef_commission_start(c, target, 0.0f, 1)) != EF_OK)
        return st;
    feed(c, in, 0);
    return ef_commission_finish(c, &sm, learned, EF_BASELINE_MIN_WINDOWS, g_features, nf->work, nf->work_len);
}

static int cmd_sweep(int argc, char **argv)
{
    inputs in;
    node_flash nf;
    ef_commission c;
    uint32_t target = 0, k, ops, cuts = 0, old = 0, fresh = 0, none = 0, violations = 0;
    int torn = 0, i, rc;
    char hash_a[17], hash_b[17], hash[17];
    if (argc < 5)
        return 1;
    for (i = 5; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--target") == 0)
            target = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--torn") == 0)
            torn = 1;
        else
            return 1;
    }
    if ((rc = load_inputs(&in, argv[2], argv[3], argv[4])) != 0)
        return rc;
    flash_init(&nf, in.m.n_inputs); /* the reference: record B written without a cut */
    if (commission_once(&c, &nf, &in, target, LEARNED_DEFAULT) != EF_OK)
        return 3;
    ef_commission_hash(&c, hash_a);
    ops = nf.rec_ff.writes + nf.rec_ff.erases;
    if (commission_once(&c, &nf, &in, target, LEARNED_DEFAULT + 1u) != EF_OK)
        return 3;
    ef_commission_hash(&c, hash_b);
    ops = nf.rec_ff.writes + nf.rec_ff.erases - ops; /* flash operations of the second commissioning */
    flash_free(&nf);
    for (k = 1; k <= ops; k++) {
        flash_init(&nf, in.m.n_inputs);
        if (commission_once(&c, &nf, &in, target, LEARNED_DEFAULT) != EF_OK)
            return 3;
        nf.rec_ff.cut_after = nf.rec_ff.writes + nf.rec_ff.erases + k;
        nf.rec_ff.torn = torn;
        commission_once(&c, &nf, &in, target, LEARNED_DEFAULT + 1u); /* fails at the cut */
        nf.rec_ff.dead = 0;                                           /* power back: the node restarts */
        nf.rec_ff.cut_after = 0;
        ef_commission_init(&c, &nf.rec, &nf.rows, in.m.n_inputs, nf.work_len, &in.m);
        ef_commission_hash(&c, hash);
        cuts++;
        old += strcmp(hash, hash_a) == 0;
        fresh += strcmp(hash, hash_b) == 0;
        none += hash[0] == '\0';
        violations += nf.rec_ff.violations;
        flash_free(&nf);
    }
    printf("{\"cuts\":%u,\"old\":%u,\"new\":%u,\"none\":%u,\"violations\":%u,\"old_hash\":\"%s\",\"new_hash\":\"%s\"}\n",
           (unsigned)cuts, (unsigned)old, (unsigned)fresh, (unsigned)none, (unsigned)violations, hash_a, hash_b);
    free_inputs(&in);
    return old + fresh == cuts && violations == 0 ? 0 : 3;
}

int main(int argc, char **argv)
{
    int rc = 1;
    if (argc >= 2 && strcmp(argv[1], "learn") == 0)
        rc = cmd_learn(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "check") == 0)
        rc = cmd_check(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "judge") == 0)
        rc = cmd_judge(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "sweep") == 0)
        rc = cmd_sweep(argc, argv);
    if (rc == 1)
        fprintf(stderr, "usage: ef_baseline learn|check|judge|sweep ... (see the header of ef_baseline.c)\n");
    return rc;
}
