/* ef_mcu_infer.elf: the int8 engine on the emulated Cortex-M4F, driven through semihosting.
 *   infer ARTIFACT IN.bin OUT.bin   raw int8 rows in, raw int8 rows out (firmware/tools/qemu-infer)
 *   bench ARTIFACT N                N inferences of one fixed row (instruction counting)
 *   features ARTIFACT FS N [SAMPLES.f32 OUT.f32]
 *                                   N windows through the node pipeline's front end (v1 or v2, the
 *                                   node's buffers: 2 x EF_FEATURES_NFFT_MAX floats), fed in the pieces
 *                                   ef_pipeline_next asks for; from a fixed table of 1,024 samples
 *                                   (instruction counting), or from SAMPLES, writing each window's
 *                                   features and readings (vrms, speed, kurtosis, crest) to OUT
 * The artifact is copied into the model slot (the image's stand-in for flash)
 * and read in place from there, as a node does. Exit: 0 ok, 1 usage/I/O, 2 artifact rejected. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "ef/engine.h"
#include "ef/pipeline.h"
#include "semihost.h"

extern uint8_t _slot_start[], _slot_size[];

#define ROWS_MAX 64u
static int8_t g_in[ROWS_MAX * 1024u], g_out[ROWS_MAX * 1024u];
static int8_t g_arena[65536];
static char g_cmd[1024];

static void say(const char *a, const char *b)
{
    sh_puts(a);
    sh_puts(b);
    sh_puts("\n");
}

static int load(const char *path, ef_model *m)
{
    int fd = sh_open(path, SH_RB);
    long len;
    ef_status st;
    if (fd < 0) {
        say("error: cannot open ", path);
        return 1;
    }
    len = sh_flen(fd);
    if (len <= 0 || (uintptr_t)len > (uintptr_t)_slot_size || sh_read(fd, _slot_start, (size_t)len) != (size_t)len) {
        sh_close(fd);
        say("error: cannot read (or too large for the slot) ", path);
        return 1;
    }
    sh_close(fd);
    if ((st = ef_model_open(m, _slot_start, (size_t)len)) != EF_OK) {
        say("error: artifact rejected: ", ef_status_str(st));
        return 2;
    }
    if (m->n_inputs > 1024u || m->n_outputs > 1024u) {
        say("error: ", "rows wider than 1024 are not supported by this image");
        return 1;
    }
    return 0;
}

static int infer(const char *art, const char *in_path, const char *out_path)
{
    ef_model m;
    int rc = load(art, &m), fin, fout;
    size_t got;
    if (rc)
        return rc;
    if ((fin = sh_open(in_path, SH_RB)) < 0 || (fout = sh_open(out_path, SH_WB)) < 0) {
        say("error: cannot open input/output ", in_path);
        return 1;
    }
    if (sh_flen(fin) % m.n_inputs != 0) {
        say("error: input is not a whole number of rows: ", in_path);
        return 1;
    }
    while ((got = sh_read(fin, g_in, ROWS_MAX * m.n_inputs)) > 0) {
        size_t rows = got / m.n_inputs, r;
        for (r = 0; r < rows; r++) {
            ef_status st = ef_engine_infer(&m, g_in + r * m.n_inputs, g_out + r * m.n_outputs, g_arena,
                                           sizeof g_arena);
            if (st != EF_OK) {
                say("error: inference failed: ", ef_status_str(st));
                return 1;
            }
        }
        if (sh_write(fout, g_out, rows * m.n_outputs) != rows * m.n_outputs) {
            say("error: cannot write ", out_path);
            return 1;
        }
    }
    sh_close(fin);
    sh_close(fout);
    return 0;
}

static int bench(const char *art, long n)
{
    ef_model m;
    int rc = load(art, &m);
    long i;
    uint32_t k;
    if (rc)
        return rc;
    for (k = 0; k < m.n_inputs; k++)
        g_in[k] = (int8_t)((k * 37u) % 251u - 125u);
    for (i = 0; i < n; i++)
        if (ef_engine_infer(&m, g_in, g_out, g_arena, sizeof g_arena) != EF_OK)
            return 1;
    return 0;
}

static float g_win[EF_FEATURES_NFFT_MAX], g_scr[EF_FEATURES_NFFT_MAX], g_feat[1024], g_table[1024];
static ef_pipeline g_pipe;

static int features(const char *art, double fs, long n, const char *in_path, const char *out_path)
{
    ef_model m;
    ef_pipeline_buffers b;
    ef_status st;
    int rc = load(art, &m), fin = -1, fout = -1;
    uint32_t k, pos = 0, rng = 12345u;
    long w;
    if (rc)
        return rc;
    b.window = g_win;
    b.scratch = g_scr;
    b.fft_len = EF_FEATURES_NFFT_MAX;
    b.features = g_feat;
    b.q = g_in;
    b.y = g_out;
    b.io_len = 1024u;
    b.arena = g_arena;
    b.arena_len = sizeof g_arena;
    if ((st = ef_pipeline_init(&g_pipe, &m, fs, &b)) != EF_OK) {
        say("error: pipeline refused: ", ef_status_str(st));
        return 2;
    }
    for (k = 0; k < 1024u; k++) { /* a machine at 24.7 Hz with harmonics and noise, 1 g DC */
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        g_table[k] = 1.0f + 0.05f * sinf(0.0129f * (float)k) + 0.03f * sinf(0.0258f * (float)k + 0.6f) +
                     0.02f * ((float)(rng >> 8) * (1.0f / 16777216.0f) - 0.5f);
    }
    if (in_path && ((fin = sh_open(in_path, SH_RB)) < 0 || (fout = sh_open(out_path, SH_WB)) < 0)) {
        say("error: cannot open ", in_path);
        return 1;
    }
    for (w = 0; w < n; w++) {
        int done = 0;
        while (!done) {
            uint32_t room, got = 0;
            float *dst = ef_pipeline_next(&g_pipe, &room);
            if (fin >= 0) {
                if (sh_read(fin, dst, room * 4u) != room * 4u)
                    return 0; /* the recording ended */
            } else
                while (got < room) { /* the table, looped */
                    uint32_t c = room - got < 1024u - pos ? room - got : 1024u - pos;
                    memcpy(dst + got, g_table + pos, c * sizeof(float));
                    got += c;
                    pos = (pos + c) % 1024u;
                }
            done = ef_pipeline_commit(&g_pipe, room);
        }
        ef_pipeline_features(&g_pipe);
        if (fout >= 0) {
            const float r[4] = {g_pipe.readings.vrms_mm_s, g_pipe.readings.speed_hz, g_pipe.readings.kurtosis,
                                g_pipe.readings.crest};
            if (sh_write(fout, g_feat, 4u * m.n_inputs) != 4u * m.n_inputs || sh_write(fout, r, sizeof r) != sizeof r)
                return 1;
        }
    }
    if (fin >= 0) {
        sh_close(fin);
        sh_close(fout);
    }
    return 0;
}

int main(void)
{
    char *argv[8];
    int argc;
    board_init();
    if (sh_cmdline(g_cmd, sizeof g_cmd) != 0 || (argc = sh_argv(g_cmd, argv, 8)) < 0) {
        sh_puts("error: no semihosting command line\n");
        sh_exit(1);
    }
    if (argc == 5 && strcmp(argv[1], "infer") == 0)
        sh_exit(infer(argv[2], argv[3], argv[4]));
    if (argc == 4 && strcmp(argv[1], "bench") == 0)
        sh_exit(bench(argv[2], strtol(argv[3], NULL, 10)));
    if ((argc == 5 || argc == 7) && strcmp(argv[1], "features") == 0)
        sh_exit(features(argv[2], strtod(argv[3], NULL), strtol(argv[4], NULL, 10), argc == 7 ? argv[5] : NULL,
                         argc == 7 ? argv[6] : NULL));
    sh_puts("usage: infer ARTIFACT IN.bin OUT.bin | bench ARTIFACT N | features ARTIFACT FS N [SAMPLES OUT]\n");
    sh_exit(1);
}
