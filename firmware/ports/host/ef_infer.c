/* ef_infer ARTIFACT INPUT.bin OUTPUT.bin: raw int8 rows in, raw int8 rows out.
 * ef_infer --info ARTIFACT: validation result and sizes as one JSON line (with a features section:
 * its kind, the model inputs it gives and the commissioning baseline's CRC of the front end).
 * Exit codes: 0 ok, 1 usage or I/O error, 2 artifact rejected. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/baseline.h"
#include "ef/engine.h"
#include "ef_host.h"

static int8_t g_arena[65536]; /* arena_bytes is a u16 */

static int info(const char *path)
{
    size_t len;
    ef_model m;
    ef_features_view f;
    uint8_t *data = ef_host_read_file(path, &len);
    ef_status st;
    if (!data)
        return 1;
    st = ef_model_open(&m, data, len);
    if (st != EF_OK) {
        printf("{\"status\":\"%s\",\"code\":%d}\n", ef_status_str(st), (int)st);
        free(data);
        return 2;
    }
    printf("{\"status\":\"ok\",\"model_version\":%u,\"n_inputs\":%u,\"n_outputs\":%u,"
           "\"n_layers\":%u,\"arena_bytes\":%u,\"requant_mode\":%u,\"total_size\":%u,"
           "\"features\":%s,\"scoring\":%s",
           (unsigned)m.model_version, m.n_inputs, m.n_outputs, m.n_layers, m.arena_bytes,
           m.requant_mode, (unsigned)m.total_size, m.features_offset ? "true" : "false",
           m.scoring_offset ? "true" : "false");
    if (ef_model_features(&m, &f)) /* the front end: kind, inputs, the baseline's CRC of it */
        printf(",\"feature_kind\":%u,\"n_features\":%u,\"frontend_crc\":%lu", f.kind, f.n_features,
               (unsigned long)ef_baseline_frontend_crc(&f));
    printf("}\n");
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    size_t alen, ilen, rows, r;
    uint8_t *art, *in;
    int8_t *out;
    ef_model m;
    ef_status st;
    int rc = 0;
    if (argc == 3 && strcmp(argv[1], "--info") == 0)
        return info(argv[2]);
    if (argc != 4) {
        fprintf(stderr, "usage: ef_infer ARTIFACT INPUT.bin OUTPUT.bin | ef_infer --info ARTIFACT\n");
        return 1;
    }
    if (!(art = ef_host_read_file(argv[1], &alen)))
        return 1;
    if ((st = ef_model_open(&m, art, alen)) != EF_OK) {
        fprintf(stderr, "error: %s: artifact rejected (%s)\n", argv[1], ef_status_str(st));
        free(art);
        return 2;
    }
    if (!(in = ef_host_read_file(argv[2], &ilen))) {
        free(art);
        return 1;
    }
    if (ilen % m.n_inputs != 0) {
        fprintf(stderr, "error: %s holds %zu bytes, not a whole number of %u-byte rows\n",
                argv[2], ilen, m.n_inputs);
        free(art);
        free(in);
        return 1;
    }
    rows = ilen / m.n_inputs;
    out = (int8_t *)malloc(rows * m.n_outputs + 1);
    for (r = 0; out && r < rows; r++) {
        st = ef_engine_infer(&m, (const int8_t *)in + r * m.n_inputs, out + r * m.n_outputs,
                             g_arena, sizeof g_arena);
        if (st != EF_OK) {
            fprintf(stderr, "error: inference failed (%s)\n", ef_status_str(st));
            rc = 1;
            break;
        }
    }
    if (!out || (rc == 0 && ef_host_write_file(argv[3], out, rows * m.n_outputs) != 0))
        rc = 1;
    if (rc == 0)
        fprintf(stderr, "ef_infer: %zu rows, working RAM %u B (activation arena)\n", rows,
                m.arena_bytes);
    free(out);
    free(in);
    free(art);
    return rc;
}
