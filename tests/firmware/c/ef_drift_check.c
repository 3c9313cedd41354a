/* Driver for tests/firmware/test_node_drift_parity.py: ef_baseline_drift on cases read from stdin.
 * Each case: "n m dt_s" (dt as a %a hex float), then n center, n origin, n spread, n noted, m*n rows
 * (integers); writes the new centre (n integers), the changed flag, and ef_baseline_drift_moved of the
 * new centre against noted: the flag and the shift (%a), one line per case. */
#include <stdio.h>
#include <stdlib.h>

#include "ef/baseline.h"

#define MAX_N 64
#define MAX_M 256

int main(void)
{
    static int16_t center[MAX_N], origin[MAX_N], spread[MAX_N], noted[MAX_N], out[MAX_N], rows[MAX_M * MAX_N];
    static int32_t work[MAX_M];
    unsigned n, m, i;
    double dt, shift;
    int v, moved;
    while (scanf("%u %u %la", &n, &m, &dt) == 3) {
        if (n == 0 || n > MAX_N || m > MAX_M)
            return 2;
        for (i = 0; i < n; i++)
            if (scanf("%d", &v) != 1) return 2; else center[i] = (int16_t)v;
        for (i = 0; i < n; i++)
            if (scanf("%d", &v) != 1) return 2; else origin[i] = (int16_t)v;
        for (i = 0; i < n; i++)
            if (scanf("%d", &v) != 1) return 2; else spread[i] = (int16_t)v;
        for (i = 0; i < n; i++)
            if (scanf("%d", &v) != 1) return 2; else noted[i] = (int16_t)v;
        for (i = 0; i < m * n; i++)
            if (scanf("%d", &v) != 1) return 2; else rows[i] = (int16_t)v;
        v = ef_baseline_drift(center, origin, spread, (uint16_t)n, rows, m, dt, work, out);
        for (i = 0; i < n; i++)
            printf("%d ", out[i]);
        shift = -1.0;
        moved = ef_baseline_drift_moved(out, noted, origin, spread, (uint16_t)n, &shift);
        printf("%d %d %a\n", v, moved, shift);
    }
    return 0;
}
