/* ef_sensor: the per-window sensor check (core ef_sensor_check) on the host, for tests.
 *   ef_sensor ROWS.f32 N [DEAD_RMS [RAIL]]
 *       ROWS.f32: float32 LE windows of N samples each, back to back. One JSON line per window:
 *       {"outcome": 0-3, "state": "..."|null, "rms": %a, "at_extreme", "longest_run", "stuck_pairs"}
 *       (rms as a C99 hex float: the exact float32 bits, for a bit-for-bit comparison).
 * Exit codes: 0 ok, 1 usage / I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef/sensor_check.h"
#include "ef_host.h"

int main(int argc, char **argv)
{
    size_t len = 0, k, rows;
    uint8_t *raw;
    long n;
    ef_sensor_limits lim = {EF_SENSOR_DEAD_RMS, 0.0f};
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: ef_sensor ROWS.f32 N [DEAD_RMS [RAIL]]\n");
        return 1;
    }
    n = strtol(argv[2], NULL, 10);
    if (n < 1 || n > 1L << 24) {
        fprintf(stderr, "error: N must be 1..16777216\n");
        return 1;
    }
    if (argc > 3)
        lim.dead_rms = strtof(argv[3], NULL);
    if (argc > 4)
        lim.rail = strtof(argv[4], NULL);
    raw = ef_host_read_file(argv[1], &len);
    if (!raw || len % (4u * (size_t)n) != 0u) {
        fprintf(stderr, "error: %s is not a whole number of float32 windows of %ld samples\n", argv[1], n);
        free(raw);
        return 1;
    }
    rows = len / (4u * (size_t)n);
    {
        float *x = malloc((size_t)n * sizeof(float));
        if (!x) {
            free(raw);
            return 1;
        }
        for (k = 0; k < rows; k++) {
            ef_sensor_figures f;
            ef_sensor_outcome o;
            const char *st;
            memcpy(x, raw + k * 4u * (size_t)n, (size_t)n * sizeof(float));
            o = ef_sensor_check(x, (uint32_t)n, &lim, &f);
            st = ef_sensor_state(o);
            printf("{\"outcome\": %d, \"state\": %s%s%s, \"rms\": \"%a\", \"at_extreme\": %u, \"longest_run\": %u, "
                   "\"stuck_pairs\": %u}\n", (int)o, st ? "\"" : "", st ? st : "null", st ? "\"" : "",
                   (double)f.rms, (unsigned)f.at_extreme, (unsigned)f.longest_run, (unsigned)f.stuck_pairs);
        }
        free(x);
    }
    free(raw);
    return 0;
}
