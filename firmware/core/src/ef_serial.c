/* COBS framing with CRC-32 (see ef/serial.h). */
#include "ef/serial.h"

#include <string.h>

#include "ef/bytes.h"
#include "ef/crc.h"

/* ---- encoder: canonical COBS, streamed a block at a time ---- */

static void block_out(ef_serial_tx *tx)
{
    const uint8_t code = (uint8_t)(tx->n + 1u);
    tx->sink(tx->ctx, &code, 1);
    tx->sink(tx->ctx, tx->blk, tx->n);
    tx->n = 0;
}

static void cobs_put(ef_serial_tx *tx, const uint8_t *d, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        tx->after_full = 0;
        if (d[i] == 0) { /* a block ends with an implied zero */
            block_out(tx);
            continue;
        }
        tx->blk[tx->n++] = d[i];
        if (tx->n == sizeof tx->blk) { /* a 0xFF block: no implied zero */
            block_out(tx);
            tx->after_full = 1;
        }
    }
}

void ef_serial_tx_begin(ef_serial_tx *tx, ef_serial_sink sink, void *ctx)
{
    tx->sink = sink;
    tx->ctx = ctx;
    tx->crc = 0; /* ef_crc32 starts from 0 */
    tx->n = 0;
    tx->after_full = 0;
}

void ef_serial_tx_put(ef_serial_tx *tx, const void *data, size_t len)
{
    tx->crc = ef_crc32(tx->crc, data, len);
    cobs_put(tx, (const uint8_t *)data, len);
}

void ef_serial_tx_spoil(ef_serial_tx *tx) { tx->crc ^= 0xFFFFFFFFu; }

void ef_serial_tx_end(ef_serial_tx *tx)
{
    static const uint8_t delim = 0x00;
    uint8_t crc[EF_SERIAL_CRC_BYTES];
    ef_put_le32(crc, tx->crc);
    cobs_put(tx, crc, sizeof crc);
    if (!(tx->n == 0 && tx->after_full)) /* canonical: a full block at the very end opens no empty one */
        block_out(tx);
    tx->sink(tx->ctx, &delim, 1);
}

typedef struct {
    uint8_t *out;
    size_t cap, len;
    int short_cap;
} memory_sink;

static void to_memory(void *ctx, const uint8_t *data, size_t len)
{
    memory_sink *m = (memory_sink *)ctx;
    if (m->short_cap || len > m->cap - m->len) {
        m->short_cap = 1;
        return;
    }
    memcpy(m->out + m->len, data, len);
    m->len += len;
}

size_t ef_serial_encode(const uint8_t *payload, size_t len, uint8_t *out, size_t cap)
{
    ef_serial_tx tx;
    memory_sink m;
    if ((payload == NULL && len > 0) || out == NULL || cap < 2)
        return 0;
    m.out = out;
    m.cap = cap;
    m.len = 0;
    m.short_cap = 0;
    ef_serial_tx_begin(&tx, to_memory, &m);
    ef_serial_tx_put(&tx, payload, len);
    ef_serial_tx_end(&tx);
    return m.short_cap ? 0 : m.len;
}

void ef_serial_rx_init(ef_serial_rx *rx, uint8_t *buf, size_t cap)
{
    rx->buf = buf;
    rx->cap = cap;
    rx->len = 0;
    rx->overflow = 0;
    rx->frames = rx->dropped = 0;
}

/* In-place COBS decode of buf[0..n); returns decoded length or -1 when malformed. */
static long cobs_decode(uint8_t *buf, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = buf[i++];
        size_t k;
        if (code == 0 || i + (size_t)code - 1u > n)
            return -1;
        for (k = 1; k < code; k++)
            buf[o++] = buf[i++];
        if (code != 0xFF && i < n)
            buf[o++] = 0;
    }
    return (long)o;
}

int ef_serial_rx_byte(ef_serial_rx *rx, uint8_t byte, const uint8_t **payload)
{
    long n;
    if (byte != 0x00) {
        if (rx->len < rx->cap)
            rx->buf[rx->len++] = byte;
        else
            rx->overflow = 1;
        return -1;
    }
    /* end of frame */
    if (rx->len == 0 && !rx->overflow)
        return -1; /* idle delimiter */
    n = rx->overflow ? -1 : cobs_decode(rx->buf, rx->len);
    rx->len = 0;
    rx->overflow = 0;
    if (n < (long)EF_SERIAL_CRC_BYTES ||
        ef_crc32(0, rx->buf, (size_t)n - EF_SERIAL_CRC_BYTES) != ef_le32(rx->buf + n - EF_SERIAL_CRC_BYTES)) {
        rx->dropped++;
        return -1;
    }
    rx->frames++;
    *payload = rx->buf;
    return (int)(n - (long)EF_SERIAL_CRC_BYTES);
}
