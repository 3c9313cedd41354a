/* NOR-like flash over QEMU's SSRAM (see flash_mps2.h). */
#include "flash_mps2.h"

#include <string.h>

static int in_area(const mps2_flash *a, uint32_t off, uint32_t len)
{
    return off <= a->size && len <= a->size - off;
}

static int fl_read(void *ctx, uint32_t off, void *dst, uint32_t len)
{
    const mps2_flash *a = (const mps2_flash *)ctx;
    if (!in_area(a, off, len))
        return -1;
    memcpy(dst, a->base + off, len);
    return 0;
}

static int fl_write(void *ctx, uint32_t off, const void *src, uint32_t len)
{
    const mps2_flash *a = (const mps2_flash *)ctx;
    uint32_t i;
    if (!in_area(a, off, len))
        return -1;
    for (i = 0; i < len; i++)
        if (a->base[off + i] != 0xFFu)
            return -2;
    memcpy(a->base + off, src, len);
    return 0;
}

static int fl_erase(void *ctx, uint32_t off, uint32_t len)
{
    const mps2_flash *a = (const mps2_flash *)ctx;
    if (!in_area(a, off, len) || off % MPS2_FLASH_SECTOR != 0 || len % MPS2_FLASH_SECTOR != 0)
        return -1;
    memset(a->base + off, 0xFF, len);
    return 0;
}

static const uint8_t *fl_map(void *ctx, uint32_t off, uint32_t len)
{
    const mps2_flash *a = (const mps2_flash *)ctx;
    return in_area(a, off, len) ? a->base + off : NULL;
}

void mps2_flash_init(ef_flash *f, mps2_flash *ctx, uint8_t *base, uint32_t size)
{
    ctx->base = base;
    ctx->size = size;
    f->ctx = ctx;
    f->size = size;
    f->erase_size = MPS2_FLASH_SECTOR;
    f->read = fl_read;
    f->write = fl_write;
    f->erase = fl_erase;
    f->map = fl_map;
}
