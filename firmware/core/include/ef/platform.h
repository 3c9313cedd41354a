/* The platform interface: everything the core needs from a board, and no more.
 *
 * A port (ports/host for POSIX, ports/<board> for an MCU) supplies:
 *   - one or more ef_flash devices (the OTA slots live on one);
 *   - ef_platform_ticks_ms(): a monotonic millisecond counter (may wrap);
 *   - ef_platform_log(): a line of text to wherever the board logs (may drop);
 *   - ef_platform_serial_write()/read(): the byte link used by ef_serial
 *     on nodes without a network stack.
 * Core modules never call these directly for flash: they receive an
 * ef_flash pointer, so tests can hand them a fake one. */
#ifndef EF_PLATFORM_H
#define EF_PLATFORM_H
#include <stddef.h>
#include <stdint.h>

/* A flash area. Offsets are relative to the area. Contract:
 *  - erase(off, len): off and len multiples of erase_size; erased bytes read 0xFF.
 *  - write(off, src, len): programs bytes that are erased (0xFF); writing a
 *    byte twice without an erase is an error the driver may refuse.
 *  - read(off, dst, len): copies bytes out.
 *  - map(off, len): a pointer to memory-mapped contents (for in-place model
 *    reads), or NULL if the area is not memory-mapped.
 * Each returns 0 on success and a negative value on failure (including a
 * power loss in the middle of the operation on the host fake). */
typedef struct ef_flash {
    void *ctx;
    uint32_t size;
    uint32_t erase_size;
    int (*read)(void *ctx, uint32_t off, void *dst, uint32_t len);
    int (*write)(void *ctx, uint32_t off, const void *src, uint32_t len);
    int (*erase)(void *ctx, uint32_t off, uint32_t len);
    const uint8_t *(*map)(void *ctx, uint32_t off, uint32_t len);
} ef_flash;

uint32_t ef_platform_ticks_ms(void);
void ef_platform_log(const char *line);
/* Bytes written (may be fewer than len), or < 0 on error. */
int ef_platform_serial_write(const uint8_t *data, size_t len);
/* Bytes read into buf (0 when nothing is pending), or < 0 on error / end of stream. */
int ef_platform_serial_read(uint8_t *buf, size_t cap);

#endif
