/* COBS framing with CRC-32 (see ef/serial.h). */
#include "ef/serial.h"

#include "ef/bytes.h"
#include "ef/crc.h"

/* Canonical COBS of a||b into out (no delimiter): a full 254-byte block at
 * the very end opens no empty trailing block. Returns length, 0 if cap is short. */
static size_t cobs_put(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, uint8_t *out, size_t cap)
{
    const size_t total = na + nb;
    size_t o = 1, code_at = 0, i;
    uint8_t code = 1;
    int open = 1;
    if (cap < 1)
        return 0;
    for (i = 0; i < total; i++) {
        uint8_t v = i < na ? a[i] : b[i - na];
        if (v == 0) {
            out[code_at] = code;
            if (o >= cap)
                return 0;
            code_at = o++;
            code = 1;
            continue;
        }
        if (o >= cap)
            return 0;
        out[o++] = v;
        if (++code == 0xFF) {
            out[code_at] = code;
            if (i + 1 < total) {
                if (o >= cap)
                    return 0;
                code_at = o++;
                code = 1;
            } else {
                open = 0;
            }
        }
    }
    if (open)
        out[code_at] = code;
    return o;
}

size_t ef_serial_encode(const uint8_t *payload, size_t len, uint8_t *out, size_t cap)
{
    uint8_t crc[EF_SERIAL_CRC_BYTES];
    size_t n;
    if ((payload == NULL && len > 0) || out == NULL || cap < 2)
        return 0;
    ef_put_le32(crc, ef_crc32(0, payload, len));
    n = cobs_put(payload, len, crc, sizeof crc, out, cap - 1);
    if (n == 0)
        return 0;
    out[n] = 0x00;
    return n + 1;
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
