/* ef_mcu_node.elf on the emulated MPS2 AN386: the node loop with its serial link on UART0.
 *   node ARTIFACT FS [--samples F.f32 [--once]] [--rpm R.f32] [--fault A] [--boot B] [--t0 MS]
 *        [--nopace] [--windows N] [--key PUBKEY --device ID] [--no-commission] [--summary-every MS]
 * The artifact is copied through semihosting into the model slot (the stand-in for
 * flash programming) and read in place. With --key (a file of the 32-byte Ed25519
 * public key the node trusts at the factory, for models and campaign tickets) and
 * --device (the node's device id, which campaign tickets must name) the node has two
 * OTA slots (node_ota.h): the artifact is only the factory image, provisioned into
 * slot 0 when no slot holds a model, and updates arrive over the link. Samples come from a recording of float32 g
 * (looped, or once and then exit) or, without --samples, from an on-device
 * synthetic machine (shaft harmonics + noise, optional bearing-fault impulses).
 * --rpm is the board's speed input (a tachometer's stand-in): one float32 rev/min per
 * window, looped like the samples; without it the node has no speed input (one any-speed
 * class). The node commissions its baseline (docs/baseline.md) unless --no-commission.
 * --summary-every MS: summary mode, one `summary` per period of MS ms (1000-3600000) instead of a
 * `result` per window (node_app.h; out of range: exit 2).
 * "Flash" map (the SLOT region, 0x100000; QEMU keeps it across a system reset):
 *   +0       slot 0 (128 KB: 16 KB header + artifact)   +128 KB  slot 1
 *   +256 KB  staging (128 KB): the factory image at start, then an offer's manifest, ticket and keysets
 *   +384 KB  the trust set (node_ota.h): two 4 KB records, the newer in force
 *   +512 KB  baseline records: two 4 KB copies (ef/commission.h)
 *   +520 KB  commissioning rows: 2 MB, 8 classes x 2 banks of up to 1,024 windows of 64 features */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "flash_mps2.h"
#include "node_app.h"
#include "semihost.h"

extern uint8_t _slot_start[], _slot_size[];
static char g_cmd[256];

#define SLOT_SIZE (128u * 1024u)
#define STAGING_SIZE (128u * 1024u)
#define TRUST_SIZE (2u * 4096u) /* right after staging, in the same flash area */
#define BASELINE_OFF (512u * 1024u)
#define RECORDS_SIZE (8u * 1024u)
#define ROWS_SIZE (2048u * 1024u)
static ef_flash g_slots, g_staging, g_records, g_rows;
static mps2_flash g_slots_area, g_staging_area, g_records_area, g_rows_area;

typedef struct {
    int fd, once;
    uint32_t pos, len; /* bytes */
    int rpm_fd;        /* the speed input: one float32 per window, or -1 */
    uint32_t rpm_pos, rpm_len;
} file_source;

/* The speed of the window just read: the next value of the rpm file, looped. */
static float read_rpm(file_source *f)
{
    float rpm = 0.0f;
    if (f->rpm_fd < 0 || f->rpm_len < 4u)
        return 0.0f;
    if (f->rpm_pos + 4u > f->rpm_len)
        f->rpm_pos = 0;
    if (sh_seek(f->rpm_fd, f->rpm_pos) != 0 || sh_read(f->rpm_fd, &rpm, 4u) != 4u)
        return 0.0f;
    f->rpm_pos += 4u;
    return rpm;
}

static int read_file(void *ctx, float *dst, uint32_t n, float *rpm)
{
    file_source *f = (file_source *)ctx;
    uint32_t need = n * 4u;
    if (f->pos + need > f->len) {
        if (f->once || need > f->len)
            return -1;
        f->pos = 0; /* loop the recording */
    }
    if (sh_seek(f->fd, f->pos) != 0 || sh_read(f->fd, dst, need) != need)
        return -1;
    f->pos += need;
    if (rpm) /* the first piece of a window: its speed */
        *rpm = read_rpm(f);
    return 0;
}

typedef struct {
    uint32_t rng;
    double t, fs;
    float fault;
} synth_source;

static float uniform(uint32_t *s)
{
    *s ^= *s << 13; /* xorshift32 */
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)(*s >> 8) * (1.0f / 16777216.0f);
}

/* A healthy machine: 1x, 2x, 3x shaft harmonics at 29.95 Hz plus noise; `fault`
 * adds decaying 3 kHz ringing at the 107.4 Hz outer-race rate. */
static int synth(void *ctx, float *dst, uint32_t n, float *rpm)
{
    synth_source *s = (synth_source *)ctx;
    uint32_t i;
    if (rpm)
        *rpm = 0.0f; /* no speed input */
    for (i = 0; i < n; i++) {
        double t = s->t + (double)i / s->fs;
        float w = (float)(2.0 * 3.14159265358979 * 29.95 * t);
        float noise = (uniform(&s->rng) + uniform(&s->rng) + uniform(&s->rng) + uniform(&s->rng) - 2.0f) * 0.05f;
        float x = 0.08f * sinf(w) + 0.03f * sinf(2.0f * w + 0.4f) + 0.01f * sinf(3.0f * w + 1.1f) + noise;
        if (s->fault > 0.0f) {
            float ph = (float)fmod(t * 107.4, 1.0) / 107.4f;
            x += s->fault * expf(-ph * 800.0f) * sinf(2.0f * 3.14159265f * 3000.0f * ph);
        }
        dst[i] = x;
    }
    s->t += (double)n / s->fs;
    return 0;
}

static int load_file(const char *path, uint8_t *dst, size_t cap, size_t *len)
{
    int fd = sh_open(path, SH_RB);
    long l;
    if (fd < 0)
        return -1;
    l = sh_flen(fd);
    if (l <= 0 || (unsigned long)l > cap || sh_read(fd, dst, (size_t)l) != (size_t)l)
        return -1;
    sh_close(fd);
    *len = (size_t)l;
    return 0;
}

int main(void)
{
    char *argv[20];
    int argc, i;
    node_config c;
    file_source fsrc;
    synth_source ssrc;
    const char *samples = NULL, *key = NULL, *rpm = NULL;
    uint8_t pub[32]; /* the factory key: read by node_ota_boot only (main's frame outlives it) */
    node_ota_config ota;
    node_baseline_config baseline;
    ef_bearing bearing;
    int commission = 1;
    uint8_t *factory = _slot_start;
    size_t factory_cap = (size_t)(uintptr_t)_slot_size, n;
    board_init();
    memset(&c, 0, sizeof c);
    memset(&fsrc, 0, sizeof fsrc);
    memset(&ssrc, 0, sizeof ssrc);
    memset(&ota, 0, sizeof ota);
    if (sh_cmdline(g_cmd, sizeof g_cmd) != 0 || (argc = sh_argv(g_cmd, argv, 20)) < 4 ||
        strcmp(argv[1], "node") != 0) {
        sh_puts("usage: node ARTIFACT FS [--samples F.f32 [--once]] [--rpm R.f32] [--fault A] [--boot B] "
                "[--t0 MS] [--nopace] [--windows N] [--key PUBKEY --device ID] [--no-commission] "
                "[--bearing N,BALL,PITCH,DEG] [--summary-every MS]\n");
        sh_exit(1);
    }
    c.fs = strtod(argv[3], NULL);
    c.paced = 1;
    fsrc.rpm_fd = -1;
    ssrc.rng = 0x9E3779B9u;
    for (i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0)
            fsrc.once = 1;
        else if (strcmp(argv[i], "--nopace") == 0)
            c.paced = 0;
        else if (strcmp(argv[i], "--no-commission") == 0)
            commission = 0;
        else if (i + 1 < argc && strcmp(argv[i], "--rpm") == 0)
            rpm = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--samples") == 0)
            samples = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--fault") == 0)
            ssrc.fault = strtof(argv[++i], NULL);
        else if (i + 1 < argc && strcmp(argv[i], "--boot") == 0)
            c.boot = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--t0") == 0) {
            c.has_t0 = 1;
            c.t0 = strtoull(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--summary-every") == 0)
            c.summary_every_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--windows") == 0)
            c.max_windows = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--key") == 0)
            key = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--device") == 0)
            ota.device = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--bearing") == 0) { /* N,BALL_MM,PITCH_MM,CONTACT_DEG */
            char *e = argv[++i];
            const unsigned long nb = strtoul(e, &e, 10);
            double v[3] = {0.0, 0.0, 0.0};
            int k, ok = *e == ',';
            for (k = 0; ok && k < 3; k++) {
                v[k] = strtod(e + 1, &e);
                ok = *e == (k < 2 ? ',' : '\0');
            }
            if (!ok || ef_bearing_set(&bearing, (uint32_t)nb, v[0], v[1], v[2]) != EF_OK) {
                sh_puts("error: --bearing refused (bad-bearing): N,BALL_MM,PITCH_MM,CONTACT_DEG with 3-60 "
                        "elements, 0 < ball < pitch/2, contact 0-60\n");
                sh_exit(2);
            }
            c.bearing = &bearing;
        } else {
            sh_puts("error: unknown option\n");
            sh_exit(1);
        }
    }
    if (key) {
        if (load_file(key, pub, sizeof pub, &n) != 0 || n != sizeof pub) {
            sh_puts("error: --key needs a file of the 32-byte Ed25519 public key\n");
            sh_exit(1);
        }
        if (ota.device == NULL) {
            sh_puts("error: --key needs --device ID (the device id campaign tickets name)\n");
            sh_exit(1);
        }
        if ((uintptr_t)_slot_size < 2u * SLOT_SIZE + STAGING_SIZE + TRUST_SIZE)
            board_fatal("the SLOT region cannot hold two slots, the staging area and the trust set", 1);
        mps2_flash_init(&g_slots, &g_slots_area, _slot_start, 2u * SLOT_SIZE);
        mps2_flash_init(&g_staging, &g_staging_area, _slot_start + 2u * SLOT_SIZE, STAGING_SIZE + TRUST_SIZE);
        ota.slots = &g_slots;
        ota.slot_size = SLOT_SIZE;
        ota.staging = &g_staging;
        ota.trust_off = STAGING_SIZE;
        ota.public_key = pub;
        c.ota = &ota;
        factory = _slot_start + 2u * SLOT_SIZE; /* the factory image goes through staging */
        factory_cap = STAGING_SIZE;
    }
    if (commission) { /* the baseline's own areas, apart from the model slots */
        if ((uintptr_t)_slot_size < BASELINE_OFF + RECORDS_SIZE + ROWS_SIZE)
            board_fatal("the SLOT region cannot hold the baseline areas", 1);
        mps2_flash_init(&g_records, &g_records_area, _slot_start + BASELINE_OFF, RECORDS_SIZE);
        mps2_flash_init(&g_rows, &g_rows_area, _slot_start + BASELINE_OFF + RECORDS_SIZE, ROWS_SIZE);
        baseline.records = &g_records;
        baseline.rows = &g_rows;
        c.baseline = &baseline;
        if (!key)
            factory_cap = BASELINE_OFF; /* the artifact goes below the baseline */
    }
    if (load_file(argv[2], factory, factory_cap, &c.artifact_len) != 0) {
        sh_puts("error: cannot load the artifact into the model slot\n");
        sh_exit(1);
    }
    c.artifact = factory;
    if (samples) {
        if ((fsrc.fd = sh_open(samples, SH_RB)) < 0) {
            sh_puts("error: cannot open the samples file\n");
            sh_exit(1);
        }
        fsrc.len = (uint32_t)sh_flen(fsrc.fd);
        if (rpm) {
            if ((fsrc.rpm_fd = sh_open(rpm, SH_RB)) < 0) {
                sh_puts("error: cannot open the rpm file\n");
                sh_exit(1);
            }
            fsrc.rpm_len = (uint32_t)sh_flen(fsrc.rpm_fd);
            c.has_speed = 1;
        }
        c.source = read_file;
        c.source_ctx = &fsrc;
    } else {
        ssrc.fs = c.fs;
        c.source = synth;
        c.source_ctx = &ssrc;
    }
    {
        int rc = node_run(&c);
        char line[48];
        snprintf(line, sizeof line, "stack used: %lu B\n", (unsigned long)board_stack_used());
        sh_puts(line);
        sh_exit(rc);
    }
}
