/* Fake NOR flash for host tests (MCUboot's simflash idea): writes to bytes
 * that were not erased are refused and counted, and power can be cut after
 * any write, optionally tearing that write in half. */
#include <string.h>

#include "ef_host.h"

void ef_fake_flash_init(ef_fake_flash *ff, uint8_t *mem, uint32_t size, uint32_t erase_size)
{
    memset(ff, 0, sizeof *ff);
    ff->mem = mem;
    ff->size = size;
    ff->erase_size = erase_size;
    memset(mem, 0xFF, size);
}

static int ff_read(void *ctx, uint32_t off, void *dst, uint32_t len)
{
    ef_fake_flash *ff = (ef_fake_flash *)ctx;
    if (ff->dead)
        return -2;
    if ((uint64_t)off + len > ff->size)
        return -1;
    memcpy(dst, ff->mem + off, len);
    return 0;
}

static int ff_write(void *ctx, uint32_t off, const void *src, uint32_t len)
{
    ef_fake_flash *ff = (ef_fake_flash *)ctx;
    uint32_t i, n = len;
    if (ff->dead)
        return -2;
    if ((uint64_t)off + len > ff->size)
        return -1;
    for (i = 0; i < len; i++) {
        if (ff->mem[off + i] != 0xFF) {
            ff->violations++;
            return -3;
        }
    }
    ff->writes++;
    if (ff->cut_after && ff->writes + ff->erases >= ff->cut_after) {
        ff->dead = 1;
        if (ff->torn)
            n = len / 2;
    }
    memcpy(ff->mem + off, src, n);
    return ff->dead ? -2 : 0;
}

static int ff_erase(void *ctx, uint32_t off, uint32_t len)
{
    ef_fake_flash *ff = (ef_fake_flash *)ctx;
    if (ff->dead)
        return -2;
    if ((uint64_t)off + len > ff->size || off % ff->erase_size || len % ff->erase_size)
        return -1;
    memset(ff->mem + off, 0xFF, len);
    ff->erases++;
    if (ff->cut_after && ff->writes + ff->erases >= ff->cut_after) {
        ff->dead = 1; /* the erase completed, then power went */
        return -2;
    }
    return 0;
}

static const uint8_t *ff_map(void *ctx, uint32_t off, uint32_t len)
{
    ef_fake_flash *ff = (ef_fake_flash *)ctx;
    if ((uint64_t)off + len > ff->size)
        return NULL;
    return ff->mem + off;
}

ef_flash ef_fake_flash_device(ef_fake_flash *ff)
{
    ef_flash f;
    f.ctx = ff;
    f.size = ff->size;
    f.erase_size = ff->erase_size;
    f.read = ff_read;
    f.write = ff_write;
    f.erase = ff_erase;
    f.map = ff_map;
    return f;
}
