/* POSIX host port: file helpers and the fake flash used by the host tools and tests. */
#ifndef EF_HOST_H
#define EF_HOST_H
#include <stddef.h>
#include <stdint.h>

#include "ef/platform.h"

/* Whole file into a 4-byte-aligned heap buffer (host only); NULL + message on error. */
uint8_t *ef_host_read_file(const char *path, size_t *len);
int ef_host_write_file(const char *path, const void *data, size_t len);

/* A RAM flash that behaves like NOR: refuses to program bytes that are not
 * erased, counts operations, and can "lose power" after a chosen number of
 * writes (later operations fail) with an optional torn last write. */
typedef struct {
    uint8_t *mem;
    uint32_t size, erase_size;
    uint32_t writes, erases;      /* operations done so far */
    uint32_t cut_after;           /* 0: never; else power fails after this many writes + erases */
    int torn;                     /* 1: the cut write programs only its first half */
    int dead;                     /* power is off: every operation fails */
    uint32_t violations;          /* writes refused because a byte was not erased */
} ef_fake_flash;

void ef_fake_flash_init(ef_fake_flash *ff, uint8_t *mem, uint32_t size, uint32_t erase_size);
ef_flash ef_fake_flash_device(ef_fake_flash *ff);

#endif
