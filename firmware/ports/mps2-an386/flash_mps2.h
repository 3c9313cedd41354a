/* "Flash" on the emulated MPS2 AN386: QEMU's SSRAM1 above the code stands in for
 * NOR flash. The driver keeps NOR's rules so the OTA core is exercised as on a
 * board: erase in 4 KB sectors to 0xFF, program only erased bytes (a second write
 * without an erase is refused), reads and in-place mapping anywhere in the area.
 * Each function returns 0, or -1 out of bounds / misaligned, -2 programming a
 * byte that is not erased. */
#ifndef EF_FLASH_MPS2_H
#define EF_FLASH_MPS2_H
#include <stdint.h>

#include "ef/platform.h"

#define MPS2_FLASH_SECTOR 4096u

typedef struct {
    uint8_t *base;
    uint32_t size;
} mps2_flash;

/* f becomes the area of `size` bytes (a multiple of the sector) at `base`; ctx holds it. */
void mps2_flash_init(ef_flash *f, mps2_flash *ctx, uint8_t *base, uint32_t size);
#endif
