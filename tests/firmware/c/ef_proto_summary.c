/* ef_proto_summary: drive the summary encoder (ef_proto_encode_summary) and the node's accumulator
 * (ef_summary_add/fill) from stdin, for the golden test.
 *   "E boot seq ts period model thr dropped n anom min mean p95 max [vrms vrms_max]": encode these fields
 *   "A boot seq ts period model thr dropped", then one line per window "score anom [vrms]": accumulate,
 *   fill and encode
 * Writes the canonical message to stdout; exit 2 with "schema"/"capacity" on stderr when refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/protocol.h"

static ef_summary_acc g_acc;
static char g_out[4096];

int main(void)
{
    char line[512], boot[16], mode;
    double seq, ts, period, model, thr, dropped, n = 0, anom = 0, v[6];
    ef_proto_summary s;
    int k, rc;
    if (!fgets(line, sizeof line, stdin))
        return 1;
    k = sscanf(line, "%c %15s %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf", &mode, boot, &seq, &ts,
               &period, &model, &thr, &dropped, &n, &anom, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
    memset(&s, 0, sizeof s);
    s.boot = boot;
    s.seq = (uint32_t)seq;
    s.ts = (uint64_t)ts;
    s.period = (uint32_t)period;
    s.model = (uint32_t)model;
    s.thr = thr;
    s.dropped = (uint32_t)dropped;
    if (mode == 'E') {
        if (k != 14 && k != 16)
            return 1;
        s.n = (uint32_t)n;
        s.anom = (uint32_t)anom;
        s.min = v[0];
        s.mean = v[1];
        s.p95 = v[2];
        s.max = v[3];
        s.has_vrms = k == 16;
        s.vrms = v[4];
        s.vrms_max = v[5];
    } else if (mode == 'A' && k == 8) {
        ef_summary_reset(&g_acc);
        while (fgets(line, sizeof line, stdin)) {
            double score, a, vrms = -1.0;
            if (sscanf(line, "%lf %lf %lf", &score, &a, &vrms) < 2)
                return 1;
            rc = ef_summary_add(&g_acc, score, a != 0.0, vrms);
            if (rc < 0) {
                fprintf(stderr, "%s\n", rc == EF_ERR_SCHEMA ? "schema" : "capacity");
                return 2;
            }
        }
        if (ef_summary_fill(&g_acc, &s) < 0) {
            fprintf(stderr, "schema\n");
            return 2;
        }
    } else {
        return 1;
    }
    rc = ef_proto_encode_summary(g_out, sizeof g_out, &s);
    if (rc < 0) {
        fprintf(stderr, "%s\n", rc == EF_ERR_SCHEMA ? "schema" : "capacity");
        return 2;
    }
    fwrite(g_out, 1, (size_t)rc, stdout);
    return 0;
}
