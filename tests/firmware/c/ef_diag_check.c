/* ef_diag_check ARTIFACT ROWS.f32: the node's why/hint (ef_diag_explain) on crafted inputs. Each row is
 * float32 [speed_hz, n_balls, ball_mm, pitch_mm, contact_deg, z_0 .. z_{n-1}]; the class is centre 0,
 * spread 1.0 (Q10 1024), so the node's z is the row's z. One JSON line per row: the bearing status, the
 * why items (%.17g) and the hint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/diagnosis.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        return NULL;
    buf = malloc((size_t)n + 1u);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        return NULL;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    size_t alen, rlen, i, k, n_why, per;
    unsigned char *art, *raw;
    uint8_t center[2048], spread[2048];
    ef_model m;
    const float *rows;
    if (argc != 3 || !(art = slurp(argv[1], &alen)) || !(raw = slurp(argv[2], &rlen)) ||
        ef_model_open(&m, art, alen) != EF_OK || m.n_inputs > 1024u)
        return 1;
    for (i = 0; i < m.n_inputs; i++) {
        center[2 * i] = 0u;
        center[2 * i + 1] = 0u;
        spread[2 * i] = 0u; /* 1024 LE */
        spread[2 * i + 1] = 4u;
    }
    per = 5u + m.n_inputs;
    rows = (const float *)(const void *)raw;
    for (i = 0; i + 1 <= rlen / 4u / per; i++) {
        const float *r = rows + i * per;
        ef_bearing b;
        ef_proto_why why[EF_DIAG_TOP];
        const char *hint;
        ef_status st;
        memset(&b, 0, sizeof b);
        st = ef_bearing_set(&b, (uint32_t)r[1], (double)r[2], (double)r[3], (double)r[4]);
        n_why = ef_diag_explain(&m, r + 5, center, spread, (double)r[0], &b, why, &hint);
        printf("{\"st\":\"%s\",\"why\":[", ef_status_str(st));
        for (k = 0; k < n_why; k++) {
            if (why[k].name)
                printf("%s{\"name\":\"%s\",\"share\":%.17g}", k ? "," : "", why[k].name, why[k].share);
            else
                printf("%s{\"lo\":%.17g,\"hi\":%.17g,\"share\":%.17g}", k ? "," : "", why[k].lo, why[k].hi,
                       why[k].share);
        }
        printf("],\"hint\":%s%s%s}\n", hint ? "\"" : "", hint ? hint : "null", hint ? "\"" : "");
    }
    free(raw);
    free(art);
    return 0;
}
