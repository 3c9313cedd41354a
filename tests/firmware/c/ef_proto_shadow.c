/* ef_proto_shadow: drive ef_proto_encode_result_shadow from stdin, for the golden test.
 *   line 1: boot model thr dropped [shadow_model shadow_thr]
 *   then one line per record: seq ts score anom inf_us [shadow_score shadow_anom]
 * Numbers are decimal text (strtod/strtoull). Writes the canonical message to stdout;
 * exit 2 with "schema"/"capacity" on stderr when the encoder refuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/protocol.h"

#define MAX_RECS 256

static ef_proto_result_rec g_recs[MAX_RECS];
static ef_proto_shadow_rec g_srecs[MAX_RECS];
static char g_out[1 << 16];

int main(void)
{
    char line[512], boot[16];
    double model, thr, dropped, sh_model = 0.0, sh_thr = 0.0;
    ef_proto_result_head h;
    ef_proto_shadow_head sh;
    size_t n = 0;
    int fields, n_out;
    if (!fgets(line, sizeof line, stdin))
        return 1;
    fields = sscanf(line, "%15s %lf %lf %lf %lf %lf", boot, &model, &thr, &dropped, &sh_model, &sh_thr);
    if (fields != 4 && fields != 6)
        return 1;
    memset(&h, 0, sizeof h);
    h.boot = boot;
    h.model = (uint32_t)model;
    h.thr = thr;
    h.dropped = (uint32_t)dropped;
    sh.model = (uint32_t)sh_model;
    sh.thr = sh_thr;
    while (n < MAX_RECS && fgets(line, sizeof line, stdin)) {
        double seq, ts, score, anom, inf_us, s_score = 0.0, s_anom = 0.0;
        int k = sscanf(line, "%lf %lf %lf %lf %lf %lf %lf", &seq, &ts, &score, &anom, &inf_us, &s_score, &s_anom);
        if (k != 5 && k != 7)
            return 1;
        g_recs[n].seq = (uint32_t)seq;
        g_recs[n].ts = (uint64_t)ts;
        g_recs[n].score = score;
        g_recs[n].anom = anom != 0.0;
        g_recs[n].inf_us = (uint32_t)inf_us;
        g_srecs[n].score = s_score;
        g_srecs[n].anom = s_anom != 0.0;
        n++;
    }
    n_out = ef_proto_encode_result_shadow(g_out, sizeof g_out, &h, g_recs, n, fields == 6 ? &sh : NULL,
                                          fields == 6 ? g_srecs : NULL);
    if (n_out < 0) {
        fprintf(stderr, "%s\n", n_out == EF_ERR_SCHEMA ? "schema" : "capacity");
        return 2;
    }
    fwrite(g_out, 1, (size_t)n_out, stdout);
    return 0;
}
