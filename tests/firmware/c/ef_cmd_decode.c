/* ef_cmd_decode: drive the nodes' cmd decoder (firmware/core/src/ef_cmd.c) from
 * stdin, for the golden test. Writes the decoded fields as one JSON object (the cmd without
 * `v`, keys in schema order, thr and rpm as %.17g); exit 2 with "schema: REASON" on stderr when
 * refused. */
#include <stdio.h>

#include "ef/cmd.h"

int main(void)
{
    static char in[4096];
    ef_cmd c;
    size_t n = fread(in, 1, sizeof in, stdin);
    if (ef_cmd_decode(in, n, &c) != EF_OK) {
        fprintf(stderr, "schema: %s\n", c.error);
        return 2;
    }
    printf("{\"seq\":%lu,\"id\":\"%s\",\"op\":\"%s\"", (unsigned long)c.seq, c.id, ef_cmd_op_str(c.op));
    if (c.has_n)
        printf(",\"n\":%lu", (unsigned long)c.n);
    if (c.has_thr)
        printf(",\"thr\":%.17g", c.thr);
    if (c.campaign[0])
        printf(",\"campaign\":\"%s\"", c.campaign);
    if (c.has_windows)
        printf(",\"windows\":%lu", (unsigned long)c.windows);
    if (c.has_rpm)
        printf(",\"rpm\":%.17g", c.rpm);
    puts("}");
    return 0;
}
