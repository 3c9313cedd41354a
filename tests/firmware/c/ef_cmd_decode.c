/* ef_cmd_decode: drive the nodes' cmd decoder (firmware/core/src/ef_cmd.c) from
 * stdin, for the golden test. Writes the decoded fields as one JSON object (the cmd without
 * `v`, keys in schema order, thr as %.17g); exit 2 with "schema" on stderr when refused. */
#include <stdio.h>

#include "ef/cmd.h"

static const char *const k_ops[] = {"calibrate", "debug", "reboot", "set_threshold", "ping", "revert"};

int main(void)
{
    static char in[4096];
    ef_cmd c;
    size_t n = fread(in, 1, sizeof in, stdin);
    if (ef_cmd_decode(in, n, &c) != EF_OK) {
        fputs("schema\n", stderr);
        return 2;
    }
    printf("{\"seq\":%lu,\"id\":\"%s\",\"op\":\"%s\"", (unsigned long)c.seq, c.id, k_ops[c.op]);
    if (c.has_n)
        printf(",\"n\":%lu", (unsigned long)c.n);
    if (c.has_thr)
        printf(",\"thr\":%.17g", c.thr);
    if (c.campaign[0])
        printf(",\"campaign\":\"%s\"", c.campaign);
    puts("}");
    return 0;
}
