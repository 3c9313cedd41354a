/* Serial framing for nodes without a network stack (a gateway bridges them to MQTT).
 *
 * Wire format of one frame: COBS(payload || CRC-32(payload) little-endian) 0x00.
 * COBS removes every 0x00 from the body, so 0x00 only ever ends a frame: a
 * receiver that joins mid-stream, or sees line noise, drops bytes up to the
 * next 0x00 and is in sync again. The CRC-32 is zlib's (ef/crc.h). */
#ifndef EF_SERIAL_H
#define EF_SERIAL_H
#include <stddef.h>
#include <stdint.h>

#include "ef/status.h"

#define EF_SERIAL_CRC_BYTES 4u
/* Worst-case encoded size of a payload of n bytes, delimiter included. */
#define EF_SERIAL_ENCODED_MAX(n) ((n) + EF_SERIAL_CRC_BYTES + ((n) + EF_SERIAL_CRC_BYTES) / 254u + 2u)

/* Encode one frame into out; returns its length, or 0 if cap is too small. */
size_t ef_serial_encode(const uint8_t *payload, size_t len, uint8_t *out, size_t cap);

/* Receiver over a caller buffer; cap bounds the encoded frame it accepts. */
typedef struct {
    uint8_t *buf;
    size_t cap, len;
    int overflow;      /* current frame exceeded cap: drop it at the next 0x00 */
    uint32_t frames;   /* good frames delivered */
    uint32_t dropped;  /* frames rejected (COBS, CRC or size) */
} ef_serial_rx;

void ef_serial_rx_init(ef_serial_rx *rx, uint8_t *buf, size_t cap);

/* Feed one received byte. Returns the payload length (>= 0) and sets *payload
 * (valid until the next call) when a good frame ends here; returns -1 while a
 * frame is incomplete or when an empty / bad frame ended (counted in dropped). */
int ef_serial_rx_byte(ef_serial_rx *rx, uint8_t byte, const uint8_t **payload);

#endif
