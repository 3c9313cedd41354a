/* Host file helpers (the core never allocates; host tools may). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ef_host.h"

uint8_t *ef_host_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (!f) {
        fprintf(stderr, "error: cannot open %s\n", path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        fprintf(stderr, "error: cannot size %s\n", path);
        return NULL;
    }
    /* malloc is suitably aligned for any type, so the artifact is 4-byte aligned */
    buf = (uint8_t *)malloc((size_t)n + 4);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        fprintf(stderr, "error: cannot read %s\n", path);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int ef_host_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "error: cannot write %s\n", path);
        return -1;
    }
    return 0;
}
