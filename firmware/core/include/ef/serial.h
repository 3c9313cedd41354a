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

/* Streaming encoder: the same frame, handed to a sink piece by piece (a COBS block at a
 * time, at most 254 bytes) as the payload is put, so a frame larger than any buffer can
 * be sent (a node's debug capture). ef_serial_encode is this encoder with a memory sink:
 * both give the same bytes. Usage: begin, put any number of times, end. */
typedef void (*ef_serial_sink)(void *ctx, const uint8_t *data, size_t len);
typedef struct {
    ef_serial_sink sink;
    void *ctx;
    uint32_t crc;       /* CRC-32 of the payload so far */
    uint8_t n;          /* bytes in blk */
    uint8_t after_full; /* a full block was just written and nothing has followed it */
    uint8_t blk[254];   /* the open COBS block */
} ef_serial_tx;

void ef_serial_tx_begin(ef_serial_tx *tx, ef_serial_sink sink, void *ctx);
void ef_serial_tx_put(ef_serial_tx *tx, const void *data, size_t len);
/* Make the frame's CRC wrong, so that every receiver drops it: for a sender that finds,
 * part way through, that what it has already sent must not be delivered. */
void ef_serial_tx_spoil(ef_serial_tx *tx);
/* The CRC, the last block and the delimiter. */
void ef_serial_tx_end(ef_serial_tx *tx);

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
